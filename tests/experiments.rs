//! Experiments as SQL files (`vlmdb run`), run comparison (`sql/runs/compare.sql`) and training logs brought in
//! with `vlmdb import metrics`, end to end through the CLI.

use crate::common::{
    TestStore, assert_fails_with, assert_success, retrieval_store, run_in_parens, stderr, stdout,
};

/// The run id `vlmdb run` reports on stderr.
fn experiment_run(out: &std::process::Output) -> String {
    let err = stderr(out);
    err.lines()
        .find_map(|l| l.strip_prefix("run ").and_then(|r| r.split(':').next()))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no run id in {err}"))
}

#[test]
fn run_binds_parameters_records_the_run_and_stores_metrics() {
    let store = retrieval_store();
    let file = store.dir.path().join("captions_per_split.sql");
    std::fs::write(
        &file,
        "-- Captions per split of one dataset.\n-- @metrics\n\
         CREATE VIEW picked AS SELECT * FROM captions WHERE dataset = $dataset;\n\
         SELECT split, count(*) AS captions FROM picked GROUP BY split ORDER BY split;\n\
         SELECT $run_id AS run;\n",
    )
    .expect("write sql");
    let path = file.to_str().unwrap_or_default();
    let out = store.vlmdb(&["run", path, "--param", "dataset=shapes", "--format", "csv"]);
    assert_success(&out);
    let run = experiment_run(&out);
    let text = stdout(&out);
    assert!(
        text.contains("test,30") && text.contains("train,90"),
        "{text}"
    );
    assert!(text.contains(&run), "$run_id is the run's id: {text}");
    let rows = store.csv(&format!(
        "SELECT split, value FROM metrics WHERE run_id = '{run}' AND name = 'captions' ORDER BY split"
    ));
    assert_eq!(rows, "split,value\ntest,30.0\ntrain,90.0\nval,30.0\n");
    let record = store.csv(&format!(
        "SELECT kind, status, config FROM runs WHERE run_id = '{run}'"
    ));
    assert!(
        record.contains("run,finished") && record.contains("\"\"dataset\"\":\"\"shapes\"\""),
        "{record}"
    );

    // A bound value is a value, never SQL.
    let out = store.vlmdb(&[
        "run",
        path,
        "--param",
        "dataset=x' OR '1'='1",
        "--format",
        "csv",
    ]);
    assert_success(&out);
    assert_eq!(
        stdout(&out).lines().filter(|l| l.contains(",90")).count(),
        0
    );
    // NAME:null= binds NULL (the view then has no rows); a value after it is refused.
    let out = store.vlmdb(&["run", path, "--param", "dataset:null=", "--format", "csv"]);
    assert_success(&out);
    assert_eq!(
        stdout(&out).lines().filter(|l| l.contains(",90")).count(),
        0
    );
    assert_fails_with(
        &store.vlmdb(&["run", path, "--param", "dataset:null=x"]),
        "parameter dataset",
    );
    // $run_id is vlmdb's; a missing file and a bad statement are clear errors.
    assert_fails_with(
        &store.vlmdb(&["run", path, "--param", "run_id=x"]),
        "run_id",
    );
    assert_fails_with(
        &store.vlmdb(&["run", "/nonexistent.sql"]),
        "/nonexistent.sql",
    );
    std::fs::write(&file, "SELECT 1;\nSELEC oops;\n").expect("write sql");
    assert_fails_with(&store.vlmdb(&["run", path]), "captions_per_split.sql");
}

/// Every SQL file the project ships runs through `vlmdb run` on the retrieval fixture.
#[test]
fn every_shipped_sql_file_runs() {
    let store = retrieval_store();
    let cluster = |iteration: &str| {
        let out = store.vlmdb(&[
            "cluster",
            "--model",
            "ref",
            "--dataset",
            "shapes",
            "-k",
            "3",
            "--iteration",
            iteration,
        ]);
        assert_success(&out);
        run_in_parens(&out)
    };
    let (c0, c1) = (cluster("0"), cluster("1"));
    for iteration in ["0", "1"] {
        assert_success(&store.vlmdb(&[
            "mine",
            "--model",
            "ref",
            "--dataset",
            "shapes",
            "--split",
            "test",
            "-k",
            "3",
            "--iteration",
            iteration,
        ]));
    }
    let runs = format!("{c0},{c1}");
    let looped = store.vlmdb(&[
        "loop",
        "--captioner",
        "fixtures/models/tiny-blip",
        "--generator",
        "fixtures/models/tiny-sd",
        "--dataset",
        "shapes",
        "--images",
        "2",
        "--iterations",
        "1",
        "--steps",
        "2",
        "--image-space",
        "fixtures/models/tiny-clip",
        "--text-space",
        "fixtures/models/tiny-clip",
    ]);
    assert_success(&looped);
    let loop_run = stdout(&looped)
        .strip_prefix("loop run ")
        .and_then(|rest| rest.split(':').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no loop run in {}", stdout(&looped)));
    let hop_clusters = |hop: &str| {
        let out = store.vlmdb(&[
            "cluster",
            "--model",
            "fixtures/models/tiny-clip",
            "--run",
            &loop_run,
            "--iteration",
            hop,
            "-k",
            "2",
        ]);
        assert_success(&out);
        run_in_parens(&out)
    };
    let (h0, h1) = (hop_clusters("0"), hop_clusters("1"));
    let files: Vec<(&str, Vec<String>)> = vec![
        (
            "sql/cluster/drift.sql",
            vec![format!("from_run={c0}"), format!("to_run={c1}")],
        ),
        (
            "sql/cluster/topical_batches.sql",
            vec![format!("run={c0}"), "batch_size=4".into(), "seed=0".into()],
        ),
        (
            "sql/eval/retrieval.sql",
            [
                "space=ref",
                "dataset=shapes",
                "split=test",
                "dim=8",
                "combiner=sum",
                "step=0",
                "iteration=0",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ("sql/examples/tour.sql", vec!["dataset=shapes".into()]),
        (
            "sql/loop/clusters.sql",
            vec![format!("from_run={h0}"), format!("to_run={h1}")],
        ),
        ("sql/loop/drift.sql", vec![format!("run={loop_run}")]),
        (
            "sql/mine/diff.sql",
            vec!["from_iteration=0".into(), "to_iteration=1".into()],
        ),
        (
            "sql/mine/hard_negatives.sql",
            [
                "space=ref",
                "dataset=shapes",
                "split=test",
                "direction=t2i",
                "k=3",
                "depth=10",
                "iteration=7",
                "margin=0.0",
                "max_ratio=10.0",
                "max_positive_similarity=1.0",
                "augmented=include",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "sql/plot/contact_sheet.sql",
            vec![format!("clusters={c0}"), "per_cluster=2".into()],
        ),
        (
            "sql/plot/lineage.sql",
            vec![format!("run={loop_run}"), "items=2".into()],
        ),
        (
            "sql/plot/metrics.sql",
            vec![
                format!("runs={runs}"),
                "metrics=inertia".into(),
                "x=step".into(),
            ],
        ),
        (
            "sql/plot/pca_scatter.sql",
            vec![
                format!("clusters={c0}"),
                "run:null=".into(),
                "iteration:null=".into(),
                "dataset=shapes".into(),
                "kind=image".into(),
                "space=ref".into(),
                "split=test".into(),
            ],
        ),
        (
            "sql/plot/similarity.sql",
            [
                "dataset=shapes",
                "negatives=2",
                "seed=0",
                "space=ref",
                "split=test",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "sql/plot/tsne_scatter.sql",
            vec![
                format!("clusters={c0}"),
                "run:null=".into(),
                "iteration:null=".into(),
                "dataset=shapes".into(),
                "kind=image".into(),
                "space=ref".into(),
                "split=test".into(),
                "perplexity=3.0".into(),
                "iterations=250".into(),
                "seed=0".into(),
            ],
        ),
        ("sql/runs/compare.sql", vec![format!("runs={runs}")]),
    ];
    let shipped: Vec<String> = walk("sql");
    assert_eq!(
        shipped.len(),
        files.len(),
        "a shipped file without a smoke test: {shipped:?}"
    );
    for (file, params) in &files {
        assert!(shipped.iter().any(|s| s == file), "{file} is not shipped");
        let mut args = vec!["run", *file, "--format", "csv"];
        for p in params {
            args.extend(["--param", p.as_str()]);
        }
        let out = store.vlmdb(&args);
        assert_success(&out);
        let rows = stdout(&out).lines().filter(|l| !l.is_empty()).count();
        assert!(rows >= 2, "{file} printed no rows:\n{}", stdout(&out));
    }
}

fn walk(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read sql/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(path.to_str().unwrap_or_default()));
        } else if path.extension().is_some_and(|e| e == "sql") {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// `sql/runs/compare.sql` shows the settings two runs differ in and their metrics side by side.
#[test]
fn compare_shows_setting_differences_and_metrics() {
    let store = retrieval_store();
    let cluster = |k: &str| {
        let out = store.vlmdb(&["cluster", "--model", "ref", "--dataset", "shapes", "-k", k]);
        assert_success(&out);
        run_in_parens(&out)
    };
    let (a, b) = (cluster("2"), cluster("4"));
    let out = store.vlmdb(&[
        "run",
        "sql/runs/compare.sql",
        "--param",
        &format!("runs={a},{b}"),
        "--format",
        "csv",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("config.k,{a},2")) && text.contains(&format!("config.k,{b},4")),
        "{text}"
    );
    assert!(
        !text.contains("config.dataset,"),
        "equal settings are not differences: {text}"
    );
    let inertia: Vec<&str> = text.lines().filter(|l| l.starts_with("inertia,")).collect();
    assert_eq!(inertia.len(), 2, "one last inertia per run: {text}");
}

#[test]
fn metrics_import_round_trips_a_csv_and_a_json_log() {
    let store = TestStore::initialised();
    let csv = store.dir.path().join("training_clipse.csv");
    std::fs::write(
        &csv,
        "epoch,train_loss,val_r1_i2t,note\n1,2.5,0.125,warmup\n2,1.25,0.375,\n3,0.75,0.5,best\n",
    )
    .expect("write csv");
    let out = store.vlmdb(&[
        "import",
        "metrics",
        csv.to_str().unwrap_or_default(),
        "--csv",
        "--run-name",
        "clipse-baseline",
    ]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("left out text columns: note"),
        "{}",
        stdout(&out)
    );
    let run =
        store.csv("SELECT run_id FROM runs WHERE kind = 'import' AND name = 'clipse-baseline'");
    let run = run.lines().nth(1).expect("the import run").to_string();
    let rows = store.csv(&format!(
        "SELECT name, step, value FROM metrics WHERE run_id = '{run}' ORDER BY name, step"
    ));
    assert_eq!(
        rows,
        "name,step,value\ntrain_loss,1,2.5\ntrain_loss,2,1.25\ntrain_loss,3,0.75\n\
         val_r1_i2t,1,0.125\nval_r1_i2t,2,0.375\nval_r1_i2t,3,0.5\n"
    );

    let json = store.dir.path().join("metrics.json");
    std::fs::write(
        &json,
        r#"{"train_loss": [1.5, 0.5], "val": {"loss": [2.0, 1.0]}, "final": {"clip_score": 0.3125}}"#,
    )
    .expect("write json");
    let out = store.vlmdb(&[
        "import",
        "metrics",
        json.to_str().unwrap_or_default(),
        // The format follows from the extension (issue 25 item 12).
        "--run-name",
        "dashverse",
    ]);
    assert_success(&out);
    let run = store.csv("SELECT run_id FROM runs WHERE name = 'dashverse'");
    let run = run.lines().nth(1).expect("the import run").to_string();
    let rows = store.csv(&format!(
        "SELECT name, step, value FROM metrics WHERE run_id = '{run}' ORDER BY name, step"
    ));
    assert_eq!(
        rows,
        "name,step,value\nfinal.clip_score,,0.3125\ntrain_loss,1,1.5\ntrain_loss,2,0.5\nval.loss,1,2.0\nval.loss,2,1.0\n"
    );

    // A text in a column of numbers names its row and column, and nothing is written.
    let before = store.csv("SELECT count(*) FROM metrics");
    std::fs::write(&csv, "epoch,loss\n1,0.5\n2,oops\n").expect("write csv");
    let out = store.vlmdb(&[
        "import",
        "metrics",
        csv.to_str().unwrap_or_default(),
        "--csv",
        "--run-name",
        "bad",
    ]);
    assert_fails_with(&out, "row 2, column 'loss'");
    assert_eq!(store.csv("SELECT count(*) FROM metrics"), before);
    let text = store.dir.path().join("log.txt");
    std::fs::write(&text, "epoch,loss\n1,0.5\n").expect("write txt");
    let out = store.vlmdb(&[
        "import",
        "metrics",
        text.to_str().unwrap_or_default(),
        "--run-name",
        "unknown",
    ]);
    assert_fails_with(&out, "name it .csv or .json, or pass --csv or --json");
}

/// A bad cell of an imported log is named as the user wrote it, not as Rust debug text (issue 25 item 12).
#[test]
fn a_bad_log_cell_is_named_plainly() {
    let store = TestStore::initialised();
    let log = store.dir.path().join("log.csv");
    std::fs::write(&log, "step,loss\n1,2.0\n2,oops\n").expect("log");
    let out = store.vlmdb(&[
        "import",
        "metrics",
        log.to_str().unwrap_or_default(),
        "--run-name",
        "x",
    ]);
    assert_fails_with(
        &out,
        "row 2, column 'loss': 'oops' is not a number (the column's other values are)",
    );
    assert!(!stderr(&out).contains("Text("), "{}", stderr(&out));
}
