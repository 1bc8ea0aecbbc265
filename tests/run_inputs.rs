//! Every run records the version of every store table it read (issue 25 item 17): `inputs` is what joins a number
//! to the data it came from ("which model, on which data version, at which dimension, got which R@1"). Command by
//! command, the run's `inputs` must be exactly the tables the command read, each at the version it had just before
//! the command ran: tables it only writes are not inputs, and reading back its own rows does not move a version.

use std::collections::BTreeMap;
use std::process::Output;

use crate::common::{RETRIEVAL_FIXTURE, TestStore, assert_success, stdout, write_parquet};

const SPACE: &str = "fixtures/models/tiny-clip";
const CAPTIONER: &str = "fixtures/models/tiny-blip";
const GENERATOR: &str = "fixtures/models/tiny-sd";

/// Table name -> version.
type Versions = BTreeMap<String, u64>;

/// The current version of every table of the store.
fn versions(store: &TestStore) -> Versions {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let opened = vlmdb::store::Store::open(&store.path())
            .await
            .expect("open store");
        let mut out = Versions::new();
        for name in opened.table_names().await.expect("table names") {
            let table = opened.open_table(&name).await.expect("open table");
            out.insert(name, table.version().await.expect("version"));
        }
        out
    })
}

/// The newest run of `kind`.
fn newest(store: &TestStore, kind: &str) -> String {
    let csv = store.csv(&format!(
        "SELECT run_id FROM runs WHERE kind = '{kind}' ORDER BY started_at DESC LIMIT 1"
    ));
    csv.lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no {kind} run"))
        .to_string()
}

/// The `inputs` of finished run `id`.
fn inputs(store: &TestStore, id: &str) -> Versions {
    let out = store.vlmdb(&[
        "sql",
        &format!("SELECT status, inputs FROM runs WHERE run_id = '{id}'"),
        "--format",
        "ndjson",
    ]);
    assert_success(&out);
    let row: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one row");
    assert_eq!(row["status"], "finished", "run {id}");
    serde_json::from_str(row["inputs"].as_str().expect("inputs text")).expect("inputs JSON")
}

/// `tables`, each at its version in `at`.
fn at(at: &Versions, tables: &[&str]) -> Versions {
    tables
        .iter()
        .map(|t| {
            let version = at
                .get(*t)
                .copied()
                .unwrap_or_else(|| panic!("no table {t} in {at:?}"));
            (t.to_string(), version)
        })
        .collect()
}

/// Run `vlmdb args…` and check that the newest `kind` run read exactly `tables`, at their versions from just
/// before; returns (the run id, the output).
fn check(store: &TestStore, kind: &str, args: &[&str], tables: &[&str]) -> (String, Output) {
    let before = versions(store);
    let out = store.vlmdb(args);
    assert_success(&out);
    let run = newest(store, kind);
    assert_eq!(inputs(store, &run), at(&before, tables), "{args:?}");
    (run, out)
}

/// The space an `embed` printed that it wrote (`embedded N … into TABLE (run …`).
fn embedded_into(out: &Output) -> String {
    let text = stdout(out);
    text.split(" into ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no space in {text}"))
        .to_string()
}

/// A store with the shapes dataset, its images and captions embedded with the tiny CLIP: (store, space table).
fn embedded_shapes() -> (TestStore, String) {
    let store = TestStore::initialised();
    assert_success(&store.vlmdb(RETRIEVAL_FIXTURE[0]));
    let out = store.vlmdb(&["embed", "--model", SPACE, "--images"]);
    assert_success(&out);
    assert_success(&store.vlmdb(&["embed", "--model", SPACE, "--captions"]));
    (store, embedded_into(&out))
}

/// A file under the store's temporary directory, as a `&str` argument.
fn file(store: &TestStore, name: &str) -> String {
    store
        .dir
        .path()
        .join(name)
        .to_str()
        .expect("UTF-8 path")
        .to_string()
}

/// ingest reads the dataset's stored rows (to skip them) before it writes; embed reads its items and the space
/// (the ids already there) before it writes; eval and mine read the space and the truth through table functions,
/// not the tables they write (`metrics`, `hard_negatives`); cluster reads the space; every kind of plot reads what
/// its SQL and its table functions read, and `runs` as it was before the plot's own row.
#[test]
fn dataset_commands_record_every_table_they_read() {
    let store = TestStore::initialised();
    let (_, _) = check(
        &store,
        "ingest",
        RETRIEVAL_FIXTURE[0],
        &["images", "captions", "pairs"],
    );
    // Again: the same rows are read (and skipped) at the versions the first ingest left.
    check(
        &store,
        "ingest",
        RETRIEVAL_FIXTURE[0],
        &["images", "captions", "pairs"],
    );

    // The first embed creates the space and reads it empty, at its first version.
    let before = versions(&store);
    let out = store.vlmdb(&["embed", "--model", SPACE, "--images"]);
    assert_success(&out);
    let space = embedded_into(&out);
    assert!(!before.contains_key(&space), "{before:?}");
    let mut want = at(&before, &["images"]);
    want.insert(space.clone(), 1);
    assert_eq!(inputs(&store, &newest(&store, "embed")), want);
    check(
        &store,
        "embed",
        &["embed", "--model", SPACE, "--captions"],
        &["captions", &space],
    );

    check(
        &store,
        "eval",
        &["eval", "--model", SPACE, "--dataset", "shapes"],
        &[&space, "captions", "pairs"],
    );
    check(
        &store,
        "mine",
        &[
            "mine",
            "--model",
            SPACE,
            "--dataset",
            "shapes",
            "--split",
            "train",
            "-k",
            "2",
        ],
        &[&space, "captions", "pairs"],
    );
    let (clusters, _) = check(
        &store,
        "cluster",
        &[
            "cluster",
            "--model",
            SPACE,
            "--dataset",
            "shapes",
            "-k",
            "3",
            "--seed",
            "1",
        ],
        &[&space],
    );

    let png = file(&store, "plot.png");
    check(
        &store,
        "plot",
        &["plot", "metrics", "--run", &clusters, "--out", &png],
        &["metrics", "runs"],
    );
    check(
        &store,
        "plot",
        &[
            "plot",
            "scatter",
            "--model",
            SPACE,
            "--dataset",
            "shapes",
            "--clusters",
            &clusters,
            "--out",
            &png,
        ],
        &[&space, "clusters", "runs"],
    );
    check(
        &store,
        "plot",
        &[
            "plot",
            "scatter",
            "--model",
            SPACE,
            "--dataset",
            "shapes",
            "--method",
            "tsne",
            "--tsne-iterations",
            "50",
            "--out",
            &png,
        ],
        &[&space, "clusters"],
    );
    check(
        &store,
        "plot",
        &[
            "plot",
            "similarity",
            "--model",
            SPACE,
            "--dataset",
            "shapes",
            "--negatives",
            "2",
            "--out",
            &png,
        ],
        &[&space, "captions"],
    );
    check(
        &store,
        "plot",
        &[
            "plot",
            "contact-sheet",
            "--clusters",
            &clusters,
            "--thumb",
            "16",
            "--out",
            &png,
        ],
        &["clusters", "captions", "images", "runs"],
    );
}

/// SQL that writes records what its statements read and not the table an INSERT only writes (its own SELECT may
/// read it); table functions' reads count (`vlmdb sql`, `vlmdb run`, the shell). `import embeddings` reads the
/// items' tables (for their dataset and split), `import metrics` reads nothing, `index` reads its space.
#[test]
fn sql_imports_and_index_record_every_table_they_read() {
    let (store, space) = embedded_shapes();
    assert_eq!(inputs(&store, &newest(&store, "init")), Versions::new());
    let insert = "INSERT INTO metrics (run_id, name, value) ";
    check(
        &store,
        "sql",
        &["sql", &format!("{insert} VALUES ($run_id, 'one', 1.0)")],
        &[],
    );
    check(
        &store,
        "sql",
        &[
            "sql",
            &format!("{insert} SELECT $run_id, 'captions', count(*) FROM captions"),
        ],
        &["captions"],
    );
    check(
        &store,
        "sql",
        &[
            "sql",
            &format!("{insert} SELECT $run_id, 'metrics', count(*) FROM metrics"),
        ],
        &["metrics"],
    );
    let experiment = file(&store, "ranks.sql");
    std::fs::write(
        &experiment,
        format!(
            "CREATE TABLE ranks AS SELECT * FROM retrieval_ranks('{space}', 'shapes', 'test');\n\
             {insert} SELECT $run_id, 'ranked', count(*) FROM ranks;\n\
             SELECT count(*) AS n FROM ranks;\n"
        ),
    )
    .expect("write SQL file");
    check(
        &store,
        "run",
        &["run", &experiment],
        &[&space, "captions", "pairs"],
    );
    let before = versions(&store);
    let mut shell = store
        .command(&["shell", "--format", "csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn shell");
    std::io::Write::write_all(
        &mut shell.stdin.take().expect("stdin"),
        format!(
            "SELECT count(*) FROM images;\n\
             {insert} SELECT $run_id, 'neighbours', count(*) FROM knn('{space}:caption', '{space}:image', 2);\n"
        )
        .as_bytes(),
    )
    .expect("write stdin");
    assert_success(&shell.wait_with_output().expect("shell"));
    assert_eq!(
        inputs(&store, &newest(&store, "sql")),
        at(&before, &["images", &space]),
        "the shell's session read images, and knn read the space"
    );

    let log = file(&store, "log.csv");
    std::fs::write(&log, "step,loss\n1,0.5\n2,0.25\n").expect("write log");
    check(
        &store,
        "import",
        &["import", "metrics", &log, "--run-name", "a log"],
        &[],
    );

    // 300 vectors (a Lance index needs 256) for the dataset's images and captions and 120 more images.
    let folder = store.dir.path().join("synth");
    std::fs::create_dir_all(&folder).expect("mkdir");
    for i in 0..120u32 {
        image::RgbImage::from_pixel(2, 2, image::Rgb([i as u8, 3, 7]))
            .save(folder.join(format!("img_{i:03}.png")))
            .expect("write png");
    }
    let folder = folder.to_str().expect("UTF-8 path");
    assert_success(&store.vlmdb(&["ingest", "folder", folder, "--dataset", "synth"]));
    let items = store.csv(
        "SELECT image_id AS id, 'image' AS kind FROM images UNION ALL \
         SELECT caption_id, 'caption' FROM captions ORDER BY id",
    );
    let rows: Vec<(&str, &str)> = items
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .collect();
    assert_eq!(rows.len(), 300, "{items}");
    let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let vectors = (0..rows.len())
        .map(|i| {
            Some(
                (0..16)
                    .map(|d| Some(((i * 7 + d * 13) % 17) as f32 - 8.0))
                    .collect(),
            )
        })
        .collect();
    let parquet = store.dir.path().join("vectors.parquet");
    write_parquet(&parquet, &ids, &kinds, vectors);
    check(
        &store,
        "import",
        &[
            "import",
            "embeddings",
            parquet.to_str().expect("UTF-8 path"),
            "--space",
            "synth",
        ],
        &["images", "captions", "pairs"],
    );
    check(
        &store,
        "index",
        &["index", "--model", "synth", "--kind", "ivf_pq"],
        &["emb_synth"],
    );
}

/// Head training reads the two spaces, its items, the clusters of `--topical` and the negatives of
/// `--negatives` (and `pairs`, which its validation scores with) — not the space it trains into, though every
/// epoch reads it back; `embed --model head:<run>` reads the base space and the checkpoint in `artifacts`;
/// fine-tuning reads the images and captions (and validation the truth), not its validation space.
#[test]
fn training_records_every_table_it_read() {
    let (store, space) = embedded_shapes();
    let cluster = store.vlmdb(&[
        "cluster",
        "--model",
        SPACE,
        "--dataset",
        "shapes",
        "-k",
        "3",
        "--seed",
        "1",
    ]);
    assert_success(&cluster);
    let clusters = newest(&store, "cluster");
    assert_success(&store.vlmdb(&[
        "mine",
        "--model",
        SPACE,
        "--dataset",
        "shapes",
        "--split",
        "train",
        "-k",
        "2",
    ]));
    let mined = newest(&store, "mine");
    let (train, _) = check(
        &store,
        "train",
        &[
            "train",
            "--image-model",
            SPACE,
            "--text-model",
            SPACE,
            "--dataset",
            "shapes",
            "--dim",
            "8",
            "--epochs",
            "2",
            "--batch",
            "16",
            "--dead-steps",
            "0",
            "--quiet",
            "--loss",
            "infonce",
            "--topical",
            &clusters,
            "--negatives",
            &mined,
        ],
        &[&space, "captions", "pairs", "clusters", "hard_negatives"],
    );
    check(
        &store,
        "embed",
        &["embed", "--model", &format!("head:{train}"), "--captions"],
        &[&space, "artifacts"],
    );
    check(
        &store,
        "train",
        &[
            "train",
            "--finetune",
            SPACE,
            "--dataset",
            "shapes",
            "--batch",
            "16",
            "--epochs",
            "1",
            "--loss",
            "infonce",
            "--quiet",
            "--dead-steps",
            "0",
        ],
        &["images", "captions", "pairs"],
    );
}

/// caption reads the images; augment reads the pairs and their target images; every run of a loop — its baselines
/// too, which start after the loop wrote its own images and captions — reads the dataset's images and captions at
/// the versions from before the loop; clustering or drawing a loop's items reads the lineage tables that pick them.
#[test]
fn generation_commands_record_every_table_they_read() {
    let store = TestStore::initialised();
    assert_success(&store.vlmdb(RETRIEVAL_FIXTURE[0]));
    assert_success(&store.vlmdb(RETRIEVAL_FIXTURE[1]));
    check(
        &store,
        "caption",
        &[
            "caption",
            "--model",
            CAPTIONER,
            "--dataset",
            "shapes",
            "--split",
            "test",
            "--max-new-tokens",
            "3",
        ],
        &["images"],
    );
    check(
        &store,
        "augment",
        &[
            "augment",
            "pairs",
            "--captioner",
            CAPTIONER,
            "--dataset",
            "cirr",
            "--max-new-tokens",
            "3",
        ],
        &["pairs", "images"],
    );

    let before = versions(&store);
    let out = store.vlmdb(&[
        "loop",
        "--captioner",
        CAPTIONER,
        "--generator",
        GENERATOR,
        "--dataset",
        "shapes",
        "--images",
        "2",
        "--iterations",
        "1",
        "--image-space",
        SPACE,
        "--text-space",
        SPACE,
        "--steps",
        "2",
        "--seed",
        "11",
        "--baselines",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let runs: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| {
            let (variant, rest) = line.split_once(" run ")?;
            Some((variant, rest.split(':').next()?))
        })
        .collect();
    assert_eq!(runs.len(), 4, "the loop and its 3 baselines: {text}");
    for (variant, run) in &runs {
        assert_eq!(
            inputs(&store, run),
            at(&before, &["images", "captions"]),
            "{variant}"
        );
    }
    let after = versions(&store);
    assert!(
        after["images"] > before["images"] && after["captions"] > before["captions"],
        "the loop wrote images and captions: {before:?} -> {after:?}"
    );
    let looped = runs[0].1;
    let space = after
        .keys()
        .find(|t| t.starts_with("emb_tiny_clip"))
        .expect("the loop's measuring space")
        .clone();
    let (hop0, _) = check(
        &store,
        "cluster",
        &[
            "cluster",
            "--model",
            SPACE,
            "--run",
            looped,
            "--iteration",
            "0",
            "-k",
            "2",
        ],
        &[&space, "images", "captions"],
    );
    let png = file(&store, "plot.png");
    check(
        &store,
        "plot",
        &[
            "plot",
            "scatter",
            "--model",
            SPACE,
            "--run",
            looped,
            "--iteration",
            "0",
            "--clusters",
            &hop0,
            "--out",
            &png,
        ],
        &[&space, "images", "captions", "clusters", "runs"],
    );
    check(
        &store,
        "plot",
        &["plot", "lineage", "--run", looped, "--out", &png],
        &["images", "captions", "runs"],
    );
    check(
        &store,
        "plot",
        &["plot", "drift", "--run", looped, "--out", &png],
        &["metrics", "runs"],
    );
}
