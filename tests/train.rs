//! `vlmdb train` end to end on planted synthetic pairs brought in with `vlmdb import embeddings`: the text vector
//! of each pair is a fixed rotation of its image vector plus noise, so raw cosine retrieval is near chance and only
//! a learned map recovers the pairs. Also: determinism, kill + resume, dead-training detection, SANW losses with
//! MRL, topical and hard-negative batches, rounds, and trained heads used as a model (`head:<run_id>`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{
    RETRIEVAL_FIXTURE, TestStore, assert_fails_with, assert_success, run_in_parens, stdout,
    write_parquet,
};

/// Dimension of the planted spaces.
const DIM: usize = 16;

/// A small deterministic generator (the test's own, independent of vlmdb's).
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A random rotation (Gram–Schmidt of a Gaussian matrix), rows orthonormal.
fn rotation(noise: &mut Noise, n: usize) -> Vec<Vec<f64>> {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    while rows.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| noise.normal()).collect();
        for r in &rows {
            let dot: f64 = v.iter().zip(r).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(r).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-6 {
            rows.push(v.iter().map(|a| a / norm).collect());
        }
    }
    rows
}

/// The planted store: `train` and `val` folders of tiny PNGs with one caption each, ingested as dataset
/// `planted`, and three imported spaces: `pimg` (images), `ptxt` (captions = rotated images + noise), and `praw`
/// (both, for the raw-cosine baseline).
fn planted_store(n_train: usize, n_val: usize) -> TestStore {
    let store = TestStore::initialised();
    for (split, n, offset) in [("train", n_train, 0), ("val", n_val, 5000)] {
        let dir = store.dir.path().join(split);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for i in offset..offset + n {
            let pixel = image::Rgb([(i % 251) as u8, (i / 251 % 251) as u8, 9]);
            image::RgbImage::from_pixel(2, 2, pixel)
                .save(dir.join(format!("p{i:05}.png")))
                .expect("png");
            std::fs::write(
                dir.join(format!("p{i:05}.txt")),
                format!("planted item {i}"),
            )
            .expect("txt");
        }
        assert_success(&store.vlmdb(&[
            "ingest",
            "folder",
            dir.to_str().unwrap_or_default(),
            "--dataset",
            "planted",
            "--split",
            split,
        ]));
    }
    let rows = store.csv("SELECT caption_id, image_id FROM captions ORDER BY caption_id");
    let pairs: Vec<(String, String)> = rows
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .map(|(c, i)| (c.to_string(), i.to_string()))
        .collect();
    assert_eq!(pairs.len(), n_train + n_val);
    let mut noise = Noise(0x9E3779B97F4A7C15);
    let r = rotation(&mut noise, DIM);
    let (mut image_ids, mut image_vectors, mut caption_ids, mut caption_vectors) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (caption, image) in &pairs {
        let x: Vec<f64> = (0..DIM).map(|_| noise.normal()).collect();
        let t: Vec<f64> = r
            .iter()
            .map(|row| row.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>() + 0.05 * noise.normal())
            .collect();
        image_ids.push(image.clone());
        image_vectors.push(Some(x.iter().map(|v| Some(*v as f32)).collect()));
        caption_ids.push(caption.clone());
        caption_vectors.push(Some(t.iter().map(|v| Some(*v as f32)).collect()));
    }
    fn ids(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let import = |name: &str, ids: &[&str], kinds: &[&str], vectors: Vec<crate::common::Vector>| {
        let file = store.dir.path().join(format!("{name}.parquet"));
        write_parquet(&file, ids, kinds, vectors);
        assert_success(&store.vlmdb(&[
            "import",
            "embeddings",
            file.to_str().unwrap_or_default(),
            "--space",
            name,
        ]));
    };
    let n = pairs.len();
    import(
        "pimg",
        &ids(&image_ids),
        &vec!["image"; n],
        image_vectors.clone(),
    );
    import(
        "ptxt",
        &ids(&caption_ids),
        &vec!["caption"; n],
        caption_vectors.clone(),
    );
    let mut both_ids = ids(&image_ids);
    both_ids.extend(ids(&caption_ids));
    let mut kinds = vec!["image"; n];
    kinds.extend(vec!["caption"; n]);
    let mut both = image_vectors;
    both.extend(caption_vectors);
    import("praw", &both_ids, &kinds, both);
    store
}

/// The run id a `vlmdb train` printed.
fn run_id(out: &std::process::Output) -> String {
    let text = stdout(out);
    text.split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .map(|w| w.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("no run id in {text}"))
}

/// The largest batch a training run took (pairs plus the negatives they carried).
fn largest_batch(store: &TestStore, run: &str) -> f64 {
    number(
        store,
        &format!("SELECT max(value) FROM metrics WHERE run_id = '{run}' AND name = 'batch_size'"),
    )
}

/// Start `vlmdb ARGS` and kill it once its run has written three checkpoints.
fn interrupt_after_three_checkpoints(store: &TestStore, args: &[&str]) {
    let mut child = store.command(args).spawn().expect("spawn");
    let started = Instant::now();
    loop {
        let n = number(
            store,
            "SELECT count(*) FROM artifacts a JOIN runs r ON a.run_id = r.run_id \
             WHERE r.status = 'running' AND starts_with(a.name, 'checkpoint_')",
        );
        if n >= 3.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoints appeared"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    let _ = child.wait();
}

/// (direction -> R@1) of a `vlmdb eval --format csv` output.
fn r_at_1(csv: &str) -> BTreeMap<String, f64> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.get(1) == Some(&"r_at_1")).then(|| (f[0].to_string(), f[4].parse().expect("value")))
        })
        .collect()
}

/// `vlmdb eval --model MODEL --dataset planted --split val --format csv`, which must succeed.
fn eval_csv(store: &TestStore, model: &str) -> String {
    let out = store.vlmdb(&[
        "eval",
        "--model",
        model,
        "--dataset",
        "planted",
        "--split",
        "val",
        "--format",
        "csv",
    ]);
    assert_success(&out);
    stdout(&out)
}

/// One number of a single-row, single-column CSV query.
fn number(store: &TestStore, sql: &str) -> f64 {
    let csv = store.csv(sql);
    csv.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: {csv}"))
}

const PLANTED_TRAIN: [&str; 14] = [
    "train",
    "--image-model",
    "pimg",
    "--text-model",
    "ptxt",
    "--dataset",
    "planted",
    "--dim",
    "16",
    "--batch",
    "32",
    "--quiet",
    "--seed",
    "5",
];

/// InfoNCE lifts validation R@1 from chance (raw cosine ≤ 0.05) to ≥ 0.8 both ways within 200 steps; every step's
/// numbers are in `metrics`; the trained heads are a space that `vlmdb eval` scores like any other; a healthy run
/// is not flagged dead.
#[test]
fn infonce_learns_the_planted_rotation() {
    let store = planted_store(320, 50);
    let raw = eval_csv(&store, "praw");
    let before = r_at_1(&raw);
    assert_eq!(before.len(), 2, "{raw}");
    assert!(
        before.values().all(|&r| r <= 0.05),
        "raw cosine is not near chance: {before:?}"
    );

    let mut args = PLANTED_TRAIN.to_vec();
    args.extend(["--lr", "0.01", "--loss", "infonce", "--epochs", "20"]);
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_id(&out);
    assert!(stdout(&out).contains("200 steps"), "{}", stdout(&out));

    let best = |direction: &str| {
        number(
            &store,
            &format!(
                "SELECT max(value) FROM metrics WHERE run_id = '{run}' AND name = 'r_at_1' AND direction = \
                 '{direction}' AND split = 'val' AND step <= 200"
            ),
        )
    };
    assert!(
        best("t2i") >= 0.8 && best("i2t") >= 0.8,
        "t2i {} i2t {}",
        best("t2i"),
        best("i2t")
    );
    for name in ["loss", "logit_scale", "grad_norm", "lr"] {
        let n = number(
            &store,
            &format!("SELECT count(*) FROM metrics WHERE run_id = '{run}' AND name = '{name}'"),
        );
        assert_eq!(n, 200.0, "{name}");
    }
    let first_loss = number(
        &store,
        &format!("SELECT value FROM metrics WHERE run_id = '{run}' AND name = 'loss' AND step = 1"),
    );
    let last_loss = number(
        &store,
        &format!(
            "SELECT value FROM metrics WHERE run_id = '{run}' AND name = 'loss' AND step = 200"
        ),
    );
    assert!(
        last_loss < 0.5 * first_loss,
        "loss {first_loss} -> {last_loss}"
    );
    let dead = number(
        &store,
        &format!("SELECT count(*) FROM metrics WHERE run_id = '{run}' AND name = 'dead_training'"),
    );
    assert_eq!(dead, 0.0);

    let model = format!("head:{run}");
    let head = eval_csv(&store, &model);
    let after = r_at_1(&head);
    assert_eq!(after.len(), 2, "{head}");
    assert!(after.values().all(|&r| r >= 0.8), "{head}");
    let checkpoints = number(
        &store,
        &format!(
            "SELECT count(*) FROM artifacts WHERE run_id = '{run}' AND starts_with(name, 'checkpoint_')"
        ),
    );
    assert_eq!(checkpoints, 20.0);
}

/// All (name, step) -> value of a run's metrics.
fn metrics_of(store: &TestStore, run: &str) -> BTreeMap<(String, i64, String, String), f64> {
    let csv = store.csv(&format!(
        "SELECT name, step, coalesce(direction, '') AS d, coalesce(CAST(dim AS VARCHAR), '') AS w, value \
         FROM metrics WHERE run_id = '{run}' ORDER BY name, step, d, w"
    ));
    let mut out = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let key = (
            f[0].to_string(),
            f[1].parse().unwrap_or(-1),
            f[2].to_string(),
            f[3].to_string(),
        );
        assert!(
            out.insert(key.clone(), f[4].parse().expect("value"))
                .is_none(),
            "duplicate metric {key:?}"
        );
    }
    out
}

/// Two runs with the same seed are identical; a run killed mid-way and resumed equals an uninterrupted one to 1e-6
/// (every metric and the final weights), without duplicate rows.
#[test]
fn same_seed_same_run_and_resume_equals_uninterrupted() {
    let store = planted_store(96, 24);
    let mut args = PLANTED_TRAIN.to_vec();
    args.extend([
        "--lr",
        "0.01",
        "--loss",
        "sanw-debias",
        "--epochs",
        "30",
        "--mrl",
        "16,8",
        "--again",
    ]);
    let a = store.vlmdb(&args);
    assert_success(&a);
    let run_a = run_id(&a);
    let b = store.vlmdb(&args);
    assert_success(&b);
    let run_b = run_id(&b);
    let (ma, mb) = (metrics_of(&store, &run_a), metrics_of(&store, &run_b));
    assert!(ma.len() > 30 * 3 * 5, "{}", ma.len());
    assert_eq!(ma, mb, "two runs with the same seed differ");

    // Interrupt a third run once it has written three checkpoints.
    interrupt_after_three_checkpoints(&store, &args);
    let interrupted =
        store.csv("SELECT run_id FROM runs WHERE kind = 'train' AND status = 'interrupted'");
    let run_c = interrupted
        .lines()
        .nth(1)
        .expect("an unfinished run")
        .to_string();
    let resumed = store.vlmdb(&["train", "--resume", "--quiet"]);
    assert_success(&resumed);
    assert!(
        stdout(&resumed).contains(&format!("train run {run_c} (resumed after step")),
        "{}",
        stdout(&resumed)
    );
    let mc = metrics_of(&store, &run_c);
    assert_eq!(ma.keys().collect::<Vec<_>>(), mc.keys().collect::<Vec<_>>());
    for (key, value) in &ma {
        assert!(
            (value - mc[key]).abs() <= 1e-6,
            "{key:?}: {value} vs {}",
            mc[key]
        );
    }
    // The final weights: the vectors both runs' heads wrote to their spaces.
    let table = |run: &str| format!("emb_head_{}", run.replace('-', "_"));
    let (ta, tc) = (table(&run_a), table(&run_c));
    let join = format!("FROM {ta} a JOIN {tc} c ON a.item_id = c.item_id AND a.kind = c.kind");
    assert_eq!(
        number(&store, &format!("SELECT count(*) {join}")),
        120.0 * 2.0,
        "every image and caption"
    );
    let farthest = number(
        &store,
        &format!("SELECT max(l2_distance(a.vector, c.vector)) {join}"),
    );
    assert!(farthest <= 4e-6, "resumed heads differ: {farthest}");
    let status = store.csv(&format!(
        "SELECT status, config FROM runs WHERE run_id = '{run_c}'"
    ));
    assert!(
        status.contains("finished") && status.contains("resumed_from"),
        "{status}"
    );
    // Nothing left to resume: a finished run, or no unfinished one.
    assert_fails_with(
        &store.vlmdb(&["train", "--resume", &run_a]),
        "already finished",
    );
    assert_fails_with(
        &store.vlmdb(&["train", "--resume"]),
        "no unfinished train run",
    );
    assert_fails_with(
        &TestStore::empty().vlmdb(&["train", "--resume"]),
        "no vlmdb store at",
    );
}

/// A run that converges — its loss falls to near 0 and then sits there with tiny gradients — learned and is not
/// dead: exit 0, no `dead_training` metric (it used to be flagged "the loss has not moved").
#[test]
fn a_converged_run_is_not_flagged_dead() {
    let store = planted_store(64, 16);
    let mut args = PLANTED_TRAIN.to_vec();
    args.extend([
        "--loss",
        "infonce",
        "--epochs",
        "150",
        "--lr",
        "0.05",
        "--dead-steps",
        "10",
        "--no-val",
    ]);
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_id(&out);
    let per = |sql: &str| number(&store, &sql.replace("RUN", &run));
    let first =
        per("SELECT value FROM metrics WHERE run_id = 'RUN' AND name = 'loss' AND step = 1");
    let last =
        per("SELECT value FROM metrics WHERE run_id = 'RUN' AND name = 'loss' AND step = 300");
    let late_range = per(
        "SELECT max(value) - min(value) FROM metrics WHERE run_id = 'RUN' AND name = 'loss' AND step > 290",
    );
    assert!(
        first > 2.0 && last < 0.01,
        "the loss fell from {first} to {last}"
    );
    assert!(late_range < 1e-4, "and sat still ({late_range})");
    assert_eq!(
        per("SELECT count(*) FROM metrics WHERE run_id = 'RUN' AND name = 'dead_training'"),
        0.0
    );
}

/// Without a terminal (a batch job's log), train prints one line per epoch — loss, lr, validation R@1 per
/// direction and width, time, ETA — and ingest its progress as plain lines.
#[test]
fn without_a_terminal_train_prints_one_line_per_epoch() {
    let store = planted_store(64, 16);
    let ingested = crate::common::stderr(&store.vlmdb(&[
        "ingest",
        "folder",
        store.dir.path().join("train").to_str().unwrap_or_default(),
        "--dataset",
        "again",
    ]));
    assert!(ingested.contains("ingesting: 64/64 (100 %)"), "{ingested}");
    let args: Vec<&str> = PLANTED_TRAIN
        .iter()
        .copied()
        .filter(|a| *a != "--quiet")
        .chain(["--loss", "infonce", "--epochs", "3", "--lr", "0.01"])
        .collect();
    let out = store.vlmdb(&args);
    assert_success(&out);
    let err = crate::common::stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("train ")).collect();
    assert_eq!(lines.len(), 3, "{err}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.contains(&format!("epoch {}/3: loss ", i + 1)),
            "{line}"
        );
        for part in ["lr ", "val R@1 i2t@16 ", "val R@1 t2i@16 ", "ETA "] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }
}

/// Training again with the same configuration over the same spaces reports the finished run and writes nothing;
/// `--again` trains a replicate.
#[test]
fn retraining_reports_the_finished_run() {
    let store = planted_store(64, 16);
    let mut args = PLANTED_TRAIN.to_vec();
    args.extend(["--loss", "infonce", "--epochs", "2", "--lr", "0.01"]);
    let first = store.vlmdb(&args);
    assert_success(&first);
    let run = run_id(&first);
    let metrics = store.csv("SELECT count(*) FROM metrics");
    let again = store.vlmdb(&args);
    assert_success(&again);
    assert!(
        stdout(&again).contains("already finished"),
        "{}",
        stdout(&again)
    );
    assert_eq!(run_id(&again), run);
    assert_eq!(store.csv("SELECT count(*) FROM metrics"), metrics);
    args.push("--again");
    let replicate = store.vlmdb(&args);
    assert_success(&replicate);
    assert_ne!(run_id(&replicate), run);
}

/// A learning rate of 0 is flagged as dead training: a warning, exit code 1, a metric and a note on the run; and
/// early stopping ends a run whose validation R@1 does not improve.
#[test]
fn a_run_with_learning_rate_zero_is_flagged_dead() {
    let store = planted_store(64, 16);
    let mut args = PLANTED_TRAIN.to_vec();
    args.extend([
        "--loss",
        "infonce",
        "--epochs",
        "12",
        "--lr",
        "0",
        "--dead-steps",
        "20",
    ]);
    let out = store.vlmdb(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        crate::common::stderr(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("training looks dead"));
    let run = run_id(&out);
    let flagged = number(
        &store,
        &format!("SELECT min(step) FROM metrics WHERE run_id = '{run}' AND name = 'dead_training'"),
    );
    assert_eq!(flagged, 20.0);
    let config = store.csv(&format!("SELECT config FROM runs WHERE run_id = '{run}'"));
    assert!(config.contains("dead_training"), "{config}");

    // Validation R@1 cannot improve without learning: --patience 2 stops after epoch 3 of 12 (2 steps each).
    let mut args = PLANTED_TRAIN.to_vec();
    args.extend([
        "--loss",
        "infonce",
        "--epochs",
        "12",
        "--lr",
        "0",
        "--patience",
        "2",
    ]);
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_id(&out);
    assert!(stdout(&out).contains(": 6 steps"), "{}", stdout(&out));
    let stopped = number(
        &store,
        &format!("SELECT value FROM metrics WHERE run_id = '{run}' AND name = 'early_stop'"),
    );
    assert_eq!(stopped, 3.0);
}

/// SANW-Bandpass with MRL, topical batches from a k-means run, two rounds (round 1 mines with round 0's heads),
/// and a run whose batches carry that mining run's negatives.
#[test]
fn sanw_mrl_topical_rounds_and_mined_negatives() {
    let store = planted_store(96, 24);
    let cluster = store.vlmdb(&[
        "cluster",
        "--model",
        "pimg",
        "--dataset",
        "planted",
        "--split",
        "train",
        "-k",
        "4",
    ]);
    assert_success(&cluster);
    let cluster_run = run_in_parens(&cluster);
    let mut args = PLANTED_TRAIN.to_vec();
    args.extend([
        "--lr",
        "0.01",
        "--loss",
        "sanw-bandpass",
        "--alpha",
        "0.5",
        "--m1",
        "0.1",
        "--m2",
        "0.9",
        "--gamma",
        "0.1",
        "--mrl",
        "16,8,4",
        "--epochs",
        "3",
        "--rounds",
        "2",
        "--mine-k",
        "3",
        "--topical",
        &cluster_run,
    ]);
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_id(&out);
    let per = |sql: &str| number(&store, &sql.replace("RUN", &run));
    assert!(per("SELECT count(*) FROM metrics WHERE run_id = 'RUN' AND name = 'w_mean'") > 0.0);
    let coverage =
        per("SELECT avg(value) FROM metrics WHERE run_id = 'RUN' AND name = 'band_coverage_pct'");
    assert!(
        coverage > 0.0 && coverage <= 100.0,
        "band coverage {coverage} %"
    );
    assert!(per("SELECT count(*) FROM metrics WHERE run_id = 'RUN' AND name = 'temp'") > 0.0);
    for iteration in [0, 1] {
        for dim in [16, 8, 4] {
            let n = per(&format!(
                "SELECT count(*) FROM metrics WHERE run_id = 'RUN' AND name = 'r_at_1' AND iteration = {iteration} \
                 AND dim = {dim}"
            ));
            assert_eq!(
                n,
                2.0 * 3.0,
                "round {iteration}, width {dim}: both directions every epoch"
            );
        }
    }
    let mine_run = store.csv("SELECT run_id FROM runs WHERE kind = 'mine'");
    let mine_run = mine_run.lines().nth(1).expect("round 1 mined").to_string();
    let mined = number(
        &store,
        &format!(
            "SELECT count(*) FROM hard_negatives WHERE run_id = '{mine_run}' AND iteration = 1"
        ),
    );
    assert!(mined > 0.0);

    let mut args = PLANTED_TRAIN.to_vec();
    args.extend([
        "--lr",
        "0.01",
        "--loss",
        "infonce",
        "--epochs",
        "1",
        "--negatives",
        &mine_run,
        "--negatives-per-query",
        "2",
    ]);
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_id(&out);
    let largest = largest_batch(&store, &run);
    assert!(
        largest > 32.0,
        "mined negatives were appended to the batches: {largest}"
    );
}

/// Heads trained over the tiny CLIP's spaces are a model: `embed_text('head:<run>', …)` equals the vectors
/// training wrote to the space, `vlmdb search --model head:<run>` ranks with them, and `vlmdb embed --model
/// head:<run>` projects stored vectors.
#[test]
fn trained_heads_are_a_model() {
    let store = TestStore::initialised();
    for args in [
        RETRIEVAL_FIXTURE[0],
        &[
            "embed",
            "--model",
            "fixtures/models/tiny-clip",
            "--images",
            "--quiet",
        ],
        &[
            "embed",
            "--model",
            "fixtures/models/tiny-clip",
            "--captions",
            "--quiet",
        ],
    ] {
        assert_success(&store.vlmdb(args));
    }
    let out = store.vlmdb(&[
        "train",
        "--image-model",
        "fixtures/models/tiny-clip",
        "--text-model",
        "fixtures/models/tiny-clip",
        "--dataset",
        "shapes",
        "--loss",
        "infonce",
        "--dim",
        "8",
        "--batch",
        "8",
        "--epochs",
        "2",
        "--quiet",
    ]);
    assert_success(&out);
    let run = run_id(&out);
    let table = format!("emb_head_{}", run.replace('-', "_"));
    let similarity = number(
        &store,
        &format!(
            "SELECT min(cosine_similarity(embed_text('head:{run}', c.text), e.vector)) FROM captions c \
             JOIN {table} e ON e.item_id = c.caption_id AND e.kind = 'caption'"
        ),
    );
    assert!(similarity > 0.9999, "{similarity}");
    let search = store.vlmdb(&[
        "search",
        "--model",
        &format!("head:{run}"),
        "--text",
        "a red square",
        "-k",
        "3",
        "--format",
        "csv",
    ]);
    assert_success(&search);
    assert_eq!(stdout(&search).lines().count(), 4, "{}", stdout(&search));
    let embed = store.vlmdb(&[
        "embed",
        "--model",
        &format!("head:{run}"),
        "--images",
        "--quiet",
    ]);
    assert_success(&embed);
    assert!(
        stdout(&embed).contains("embedded 30 image"),
        "{}",
        stdout(&embed)
    );
}

/// `train --finetune` on the shapes fixture, the tiny CLIP written by transformers.
const FINETUNE: [&str; 14] = [
    "train",
    "--finetune",
    "fixtures/models/tiny-clip",
    "--dataset",
    "shapes",
    "--batch",
    "16",
    "--lr",
    "0.001",
    "--quiet",
    "--seed",
    "3",
    "--dead-steps",
    "0",
];

fn shapes_store() -> TestStore {
    let store = TestStore::initialised();
    assert_success(&store.vlmdb(RETRIEVAL_FIXTURE[0]));
    store
}

/// Fine-tuning a whole CLIP with SANW-Bandpass: an epoch is every caption–image pair, the loss falls over 20+
/// steps, every step logs CLIPSE's statistics and the temperature, every epoch validation R@1; the best weights
/// are a Hugging Face CLIP directory with exactly the tensors transformers wrote for the base model (names,
/// shapes, dtype), and `ft:<run>` is a model that embed and eval use.
#[test]
fn finetuning_lowers_the_loss_and_exports_a_model() {
    let store = shapes_store();
    let pairs = number(
        &store,
        "SELECT count(*) FROM captions WHERE dataset = 'shapes' AND split = 'train'",
    );
    let mut args = FINETUNE.to_vec();
    args.extend(["--loss", "sanw-bandpass", "--epochs", "4"]);
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_id(&out);
    let per = |sql: &str| number(&store, &sql.replace("RUN", &run));
    let steps = per("SELECT max(step) FROM metrics WHERE run_id = 'RUN' AND name = 'loss'");
    assert_eq!(
        steps,
        4.0 * (pairs / 16.0).ceil(),
        "every pair once per epoch ({pairs} pairs)"
    );
    assert!(steps >= 20.0);
    let early =
        per("SELECT avg(value) FROM metrics WHERE run_id = 'RUN' AND name = 'loss' AND step <= 3");
    let late = per(&format!(
        "SELECT avg(value) FROM metrics WHERE run_id = 'RUN' AND name = 'loss' AND step > {}",
        steps - 3.0
    ));
    assert!(late < early - 0.1, "the loss fell from {early} to {late}");
    for name in ["w_mean", "band_coverage_pct", "temp", "grad_norm", "lr"] {
        assert_eq!(
            per(&format!(
                "SELECT count(*) FROM metrics WHERE run_id = 'RUN' AND name = '{name}'"
            )),
            steps,
            "{name} every step"
        );
    }
    assert_eq!(
        per(
            "SELECT count(*) FROM metrics WHERE run_id = 'RUN' AND name = 'r_at_1' AND split = 'val'"
        ),
        8.0,
        "validation R@1 both ways every epoch"
    );

    let dir = store.path().join("finetuned").join(format!("ft-{run}"));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
    ] {
        assert!(dir.join(file).is_file(), "{file} in the export");
    }
    let header = |path: &std::path::Path| -> BTreeMap<String, (String, Vec<usize>)> {
        let bytes = std::fs::read(path).expect("safetensors");
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("length")) as usize;
        let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
        json.as_object()
            .expect("object")
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(k, v)| {
                let dtype = v["dtype"].as_str().unwrap_or_default().to_string();
                let shape = v["shape"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter_map(|d| d.as_u64())
                            .map(|d| d as usize)
                            .collect()
                    })
                    .unwrap_or_default();
                (k.clone(), (dtype, shape))
            })
            .collect()
    };
    assert_eq!(
        header(&dir.join("model.safetensors")),
        header(std::path::Path::new(
            "fixtures/models/tiny-clip/model.safetensors"
        )),
        "the export holds what transformers wrote for the base model"
    );
    assert_eq!(
        std::fs::read(dir.join("config.json")).expect("config"),
        std::fs::read("fixtures/models/tiny-clip/config.json").expect("config")
    );
    let model = format!("ft:{run}");
    for what in ["--images", "--captions"] {
        assert_success(&store.vlmdb(&["embed", "--model", &model, what, "--dataset", "shapes"]));
    }
    let eval = store.vlmdb(&[
        "eval",
        "--model",
        &model,
        "--dataset",
        "shapes",
        "--split",
        "test",
    ]);
    assert_success(&eval);
    assert!(stdout(&eval).contains("r_at_1"), "{}", stdout(&eval));
    assert_fails_with(
        &store.vlmdb(&["embed", "--model", "ft:no-such-run", "--images"]),
        "no fine-tuned weights",
    );
    // The same fine-tuning again is the finished run, reported; nothing is trained or written.
    let artifacts = store.csv("SELECT count(*) FROM artifacts");
    let again = store.vlmdb(&args);
    assert_success(&again);
    assert!(
        stdout(&again).contains("already finished"),
        "{}",
        stdout(&again)
    );
    assert_eq!(run_id(&again), run);
    assert_eq!(store.csv("SELECT count(*) FROM artifacts"), artifacts);
}

/// Fine-tuning an OpenCLIP checkpoint (OpenCLIP's own layout, exact GELU) exports an OpenCLIP checkpoint: the
/// source's config byte for byte, and `open_clip_model.safetensors` with exactly the source's tensor names, shapes
/// and dtype (open_clip reads it with `create_model("local-dir:…")`), holding trained weights; `ft:<run>` embeds.
#[test]
fn finetuning_an_openclip_checkpoint_exports_one() {
    let store = shapes_store();
    let mut args = FINETUNE.to_vec();
    args[2] = "fixtures/models/tiny-openclip";
    args.extend(["--loss", "infonce", "--epochs", "2"]);
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_id(&out);
    let dir = store.path().join("finetuned").join(format!("ft-{run}"));
    let source = std::path::Path::new("fixtures/models/tiny-openclip");
    assert_eq!(
        std::fs::read(dir.join("open_clip_config.json")).expect("config"),
        std::fs::read(source.join("open_clip_config.json")).expect("config")
    );
    assert!(dir.join("tokenizer.json").is_file());
    assert!(
        !dir.join("config.json").exists(),
        "not transformers' layout"
    );
    let device = candle_core::Device::Cpu;
    let load = |path: std::path::PathBuf| {
        candle_core::safetensors::load(path, &device).expect("safetensors")
    };
    let (trained, base) = (
        load(dir.join("open_clip_model.safetensors")),
        load(source.join("open_clip_model.safetensors")),
    );
    let shapes = |m: &std::collections::HashMap<String, candle_core::Tensor>| {
        m.iter()
            .map(|(k, t)| (k.clone(), (t.dims().to_vec(), t.dtype())))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(shapes(&trained), shapes(&base));
    let values = |t: &candle_core::Tensor| {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("f32")
    };
    let fused = "visual.transformer.resblocks.1.attn.in_proj_weight";
    assert_ne!(
        values(&trained[fused]),
        values(&base[fused]),
        "training moved the weights"
    );
    let model = format!("ft:{run}");
    let embed = store.vlmdb(&[
        "embed",
        "--model",
        &model,
        "--images",
        "--dataset",
        "shapes",
    ]);
    assert_success(&embed);
}

/// A fine-tuning run killed after its third checkpoint and resumed equals an uninterrupted one: every metric,
/// and the exported weights.
#[test]
fn finetuning_resume_equals_uninterrupted() {
    let store = shapes_store();
    let mut args = FINETUNE.to_vec();
    args.extend([
        "--loss",
        "sanw-debias",
        "--epochs",
        "14",
        "--freeze-logit-scale-epochs",
        "2",
        "--unfreeze-last",
        "1",
        "--again",
    ]);
    let a = store.vlmdb(&args);
    assert_success(&a);
    let run_a = run_id(&a);
    interrupt_after_three_checkpoints(&store, &args);
    let resumed = store.vlmdb(&["train", "--resume", "--quiet"]);
    assert_success(&resumed);
    let run_c = run_id(&resumed);
    assert_ne!(run_a, run_c);
    assert!(
        stdout(&resumed).contains("resumed after step"),
        "{}",
        stdout(&resumed)
    );
    let (ma, mc) = (metrics_of(&store, &run_a), metrics_of(&store, &run_c));
    assert_eq!(ma.keys().collect::<Vec<_>>(), mc.keys().collect::<Vec<_>>());
    for (key, value) in &ma {
        assert!(
            (value - mc[key]).abs() <= 1e-6,
            "{key:?}: {value} vs {}",
            mc[key]
        );
    }
    // The logit scale sat still for the first two epochs, then moved.
    let scale = |step: &str| {
        number(
            &store,
            &format!(
                "SELECT value FROM metrics WHERE run_id = '{run_a}' AND name = 'logit_scale' AND step = {step}"
            ),
        )
    };
    let per_epoch = number(
        &store,
        &format!("SELECT min(step) FROM metrics WHERE run_id = '{run_a}' AND name = 'epoch'"),
    );
    assert_eq!(scale("1"), scale(&(2.0 * per_epoch).to_string()));
    assert_ne!(scale("1"), scale(&(2.0 * per_epoch + 2.0).to_string()));
    let weights = |run: &str| {
        std::fs::read(
            store
                .path()
                .join("finetuned")
                .join(format!("ft-{run}"))
                .join("model.safetensors"),
        )
        .expect("export")
    };
    assert_eq!(
        weights(&run_a),
        weights(&run_c),
        "the exported weights differ"
    );
}

/// `vlmdb bench finetune` times fine-tuning steps of the tiny CLIP and reports peak memory (the PyTorch side runs
/// where torch is installed; `--no-peer` here).
#[test]
fn bench_finetune_reports_steps_per_second_and_memory() {
    let store = TestStore::initialised();
    let out = store.vlmdb(&[
        "bench",
        "finetune",
        "--no-peer",
        "--steps",
        "2",
        "--batch",
        "4",
        "--loss",
        "sanw-debias",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("sanw-debias loss"), "{text}");
    assert!(
        text.contains("steps/s") && text.contains("peak RSS"),
        "{text}"
    );
    assert_fails_with(
        &store.vlmdb(&["bench", "finetune", "--no-peer", "--batch", "1"]),
        "--batch 1",
    );
}

/// A CIRR-format dataset of planted composed pairs: every pair has its own reference and target image; the
/// reference vector x is random, the modification text's vector m is random, and the target's is
/// normalise(x + B·m + noise) for one fixed random rotation B — a relation linear heads can learn (text head = image
/// head · B) but the raw sum of x and m does not capture. Spaces `cimg` (images) and `ctxt` (pair texts).
fn planted_composed_store(n_train: usize, n_val: usize) -> TestStore {
    let store = TestStore::initialised();
    let root = store.dir.path().join("cirr");
    for dir in ["images", "image_splits", "captions"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    let mut index = 0;
    for (split, n) in [("train", n_train), ("val", n_val)] {
        let mut names = serde_json::Map::new();
        let mut pairs = Vec::new();
        let first = index;
        for p in 0..n {
            let (reference, target) =
                (format!("img_{:05}", index), format!("img_{:05}", index + 1));
            index += 2;
            for name in [&reference, &target] {
                let i: usize = name[4..].parse().expect("number");
                image::RgbImage::from_pixel(
                    2,
                    2,
                    image::Rgb([(i % 251) as u8, (i / 251) as u8, 7]),
                )
                .save(root.join("images").join(format!("{name}.png")))
                .expect("png");
                names.insert(
                    name.clone(),
                    serde_json::json!(format!("./images/{name}.png")),
                );
            }
            // Candidates: the target and three other targets of the split.
            let members: Vec<String> = (0..4)
                .map(|k| format!("img_{:05}", first + 2 * ((p + k * 7) % n) + 1))
                .collect();
            pairs.push(serde_json::json!({
                "pairid": p,
                "reference": reference,
                "caption": format!("change item {p}"),
                "img_set": {"id": p, "members": members},
                "target_hard": target,
                "target_soft": {target.clone(): 1.0},
            }));
        }
        std::fs::write(
            root.join("image_splits")
                .join(format!("split.rc2.{split}.json")),
            serde_json::to_vec(&names).expect("json"),
        )
        .expect("write");
        std::fs::write(
            root.join("captions").join(format!("cap.rc2.{split}.json")),
            serde_json::to_vec(&pairs).expect("json"),
        )
        .expect("write");
    }
    assert_success(&store.vlmdb(&[
        "ingest",
        "cirr",
        root.to_str().unwrap_or_default(),
        "--dataset",
        "pc",
    ]));
    let rows = store.csv("SELECT pair_id, reference_id, target_id FROM pairs ORDER BY pair_id");
    let mut noise = Noise(0x2545F4914F6CDD1D);
    let b = rotation(&mut noise, DIM);
    let unit = |v: Vec<f64>| -> Vec<f64> {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    };
    let (mut image_ids, mut image_vectors, mut text_ids, mut text_vectors) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let as_vector = |v: &[f64]| Some(v.iter().map(|x| Some(*x as f32)).collect());
    for line in rows.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let x = unit((0..DIM).map(|_| noise.normal()).collect());
        let m = unit((0..DIM).map(|_| noise.normal()).collect());
        let t = unit(
            (0..DIM)
                .map(|i| {
                    x[i] + b[i].iter().zip(&m).map(|(a, c)| a * c).sum::<f64>()
                        + 0.1 * noise.normal()
                })
                .collect(),
        );
        image_ids.extend([f[1].to_string(), f[2].to_string()]);
        image_vectors.extend([as_vector(&x), as_vector(&t)]);
        text_ids.push(f[0].to_string());
        text_vectors.push(as_vector(&m));
    }
    for (name, ids, kind, vectors) in [
        ("cimg", &image_ids, "image", image_vectors),
        ("ctxt", &text_ids, "pair_text", text_vectors),
    ] {
        let file = store.dir.path().join(format!("{name}.parquet"));
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        write_parquet(&file, &ids, &vec![kind; ids.len()], vectors);
        assert_success(&store.vlmdb(&[
            "import",
            "embeddings",
            file.to_str().unwrap_or_default(),
            "--space",
            name,
        ]));
    }
    store
}

/// `train --composed --rounds 3` on planted composed pairs: each round mines composed negatives with the
/// previous round's heads, trains with them, and scores CIRR R@K and Recall_subset@K per round; validation R@1
/// rises over the rounds, and `sql/mine/diff.sql` compares the rounds' negatives.
#[test]
fn composed_rounds_raise_r_at_1() {
    let store = planted_composed_store(96, 32);
    let out = store.vlmdb(&[
        "train",
        "--composed",
        "--image-model",
        "cimg",
        "--text-model",
        "ctxt",
        "--dataset",
        "pc",
        "--loss",
        "infonce",
        "--dim",
        "16",
        "--batch",
        "16",
        "--epochs",
        "2",
        "--rounds",
        "3",
        "--mine-k",
        "3",
        "--negatives-per-query",
        "2",
        "--lr",
        "0.003",
        "--quiet",
        "--seed",
        "1",
    ]);
    assert_success(&out);
    let run = run_id(&out);
    let last_r1 = |iteration: i32| {
        number(
            &store,
            &format!(
                "SELECT value FROM metrics WHERE run_id = '{run}' AND name = 'r_at_1' AND direction = 'composed' \
                 AND iteration = {iteration} ORDER BY step DESC LIMIT 1"
            ),
        )
    };
    let (r0, r1, r2) = (last_r1(0), last_r1(1), last_r1(2));
    assert!(r0 < r1 && r1 < r2, "composed R@1 per round: {r0} {r1} {r2}");
    for name in [
        "r_at_5",
        "r_at_10",
        "r_at_50",
        "recall_subset_at_1",
        "recall_subset_at_3",
    ] {
        let n = number(
            &store,
            &format!(
                "SELECT count(DISTINCT iteration) FROM metrics WHERE run_id = '{run}' AND name = '{name}' \
                 AND direction = 'composed'"
            ),
        );
        assert_eq!(n, 3.0, "{name} in every round");
    }
    let mines = store.csv("SELECT run_id FROM runs WHERE kind = 'mine' ORDER BY started_at");
    let mines: Vec<&str> = mines.lines().skip(1).collect();
    assert_eq!(mines.len(), 2, "rounds 1 and 2 mine");
    let pairs = number(
        &store,
        &format!(
            "SELECT count(*) FROM hard_negatives WHERE run_id = '{}' AND query_kind = 'pair'",
            mines[0]
        ),
    );
    assert_eq!(
        pairs,
        96.0 * 3.0,
        "three composed negatives per training pair"
    );
    let diff = store.vlmdb(&[
        "run",
        "sql/mine/diff.sql",
        "--param",
        "from_iteration=1",
        "--param",
        "to_iteration=2",
        "--format",
        "csv",
    ]);
    assert_success(&diff);
    let counted: f64 = stdout(&diff)
        .lines()
        .filter_map(|l| l.split(',').nth(1))
        .filter_map(|n| n.parse::<f64>().ok())
        .sum();
    assert_eq!(
        counted,
        96.0 * 3.0
            + number(
                &store,
                &format!(
                    "SELECT count(*) FROM hard_negatives WHERE run_id = '{}' AND query_kind = 'pair'",
                    mines[1]
                ),
            )
            - number(
                &store,
                "SELECT count(*) FROM (SELECT a.query_id FROM hard_negatives a JOIN hard_negatives b \
         ON a.query_id = b.query_id AND a.negative_id = b.negative_id WHERE a.iteration = 1 AND b.iteration = 2)",
            ),
        "persisted + appeared + resolved cover both rounds\n{}",
        stdout(&diff)
    );
}

/// Fine-tuning takes topical batches from a k-means run and carries a mining run's negatives, as head training
/// does: batches grow past --batch by the negatives they carry.
#[test]
fn finetuning_with_topical_batches_and_mined_negatives() {
    let store = shapes_store();
    for what in ["--images", "--captions"] {
        assert_success(&store.vlmdb(&["embed", "--model", "fixtures/models/tiny-clip", what]));
    }
    let cluster = store.vlmdb(&[
        "cluster",
        "--model",
        "fixtures/models/tiny-clip",
        "--dataset",
        "shapes",
        "--split",
        "train",
        "-k",
        "2",
    ]);
    assert_success(&cluster);
    let cluster_run = run_in_parens(&cluster);
    let mine = store.vlmdb(&[
        "mine",
        "--model",
        "fixtures/models/tiny-clip",
        "--dataset",
        "shapes",
        "--split",
        "train",
        "-k",
        "2",
    ]);
    assert_success(&mine);
    let mine_run = store.csv("SELECT run_id FROM runs WHERE kind = 'mine'");
    let mine_run = mine_run.lines().nth(1).expect("a mine run").to_string();
    let mut args = FINETUNE.to_vec();
    args.extend([
        "--loss",
        "infonce",
        "--epochs",
        "1",
        "--topical",
        &cluster_run,
        "--negatives",
        &mine_run,
        "--negatives-per-query",
        "2",
        "--no-val",
    ]);
    let out = store.vlmdb(&args);
    assert_success(&out);
    let run = run_id(&out);
    let largest = largest_batch(&store, &run);
    assert!(
        largest > 16.0,
        "no batch carried negatives (largest {largest})"
    );
}

/// Every bench states its conditions and runs its peer on the peer's best kernels, several times (issue 26): a
/// stand-in `python` records the environment each peer run gets and answers with a different time per run; the
/// bench reports the median of its runs and says OPENBLAS_CORETYPE=SkylakeX where the CPU has AVX-512.
#[test]
fn benches_run_peers_on_their_best_kernels_and_report_medians() {
    let store = TestStore::initialised();
    let dir = store.dir.path();
    let log = dir.join("peer-env.log");
    let python = dir.join("python");
    std::fs::write(
        &python,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = \"-c\" ]; then printf '{{\"modules\": [\"numpy\"], \"pools\": [{{\"internal_api\": \"openblas\", \
             \"version\": \"0.3.29\", \"architecture\": \"%s\", \"num_threads\": 2, \
             \"filepath\": \"/x/numpy.libs/libopenblas.so\"}}]}}\\n' \"${{OPENBLAS_CORETYPE:-Prescott}}\"; exit 0; fi\n\
             echo \"OPENBLAS_CORETYPE=${{OPENBLAS_CORETYPE:-unset}}\" >> {log}\n\
             n=$(wc -l < {log})\n\
             echo '{{\"faiss_seconds\": '$n', \"faiss_inertia\": 1.0}}'\n",
            log = log.display()
        ),
    )
    .expect("stand-in python");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&python)
        .status()
        .expect("chmod");
    let out = store.vlmdb(&[
        "bench",
        "kmeans",
        "--n",
        "300",
        "--dim",
        "8",
        "--k",
        "3",
        "--iterations",
        "2",
        "--no-sklearn",
        "--python",
        python.to_str().unwrap_or_default(),
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let avx512 = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" avx512f"));
    assert!(
        text.contains("conditions: median of 3 runs per timing"),
        "{text}"
    );
    // Three peer runs took 1, 2 and 3 "seconds": the median is 2.
    assert!(
        text.contains("faiss Kmeans (all points)            2.00 s"),
        "{text}"
    );
    let env = std::fs::read_to_string(&log).expect("the peer ran");
    assert_eq!(env.lines().count(), 3, "{env}");
    if avx512 {
        assert!(
            env.lines().all(|l| l == "OPENBLAS_CORETYPE=SkylakeX"),
            "{env}"
        );
        assert!(
            text.contains("peer kernels: openblas 0.3.29 SkylakeX, 2 threads (numpy)"),
            "{text}"
        );
    }
    let once = store.vlmdb(&[
        "bench",
        "kmeans",
        "--n",
        "300",
        "--dim",
        "8",
        "--k",
        "3",
        "--iterations",
        "2",
        "--no-peer",
        "--runs",
        "1",
    ]);
    assert_success(&once);
    assert!(
        stdout(&once).contains("median of 1 runs"),
        "{}",
        stdout(&once)
    );
}

/// `bench knn` times the stored index (what `knn(…, 'ann')` searches) beside exact search and hnsw_rs.
#[test]
fn bench_knn_times_the_stored_index() {
    let store = TestStore::empty();
    let out = store.vlmdb(&[
        "bench",
        "knn",
        "--n",
        "300",
        "--hnsw-n",
        "600",
        "--dim",
        "16",
        "-k",
        "5",
        "--no-peer",
        "--runs",
        "1",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "ann    vlmdb stored index (Lance IVF_HNSW_SQ, knn(…, 'ann')) on 600 items: build ",
            )
        })
        .unwrap_or_else(|| panic!("no stored-index line: {text}"));
    let recall: f64 = line
        .split("recall@5 ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no recall: {line}"));
    assert!((0.5..=1.0).contains(&recall), "{line}");
    assert!(line.ends_with(" queries/s"), "{line}");
}
