//! Retrieval end to end through the CLI: `import embeddings`, `eval` against the NumPy reference of
//! `fixtures/eval/make_reference.py`, MRL widths, `mine` and `sql/mine/diff.sql`.

use crate::common::{
    TestStore, Vector, assert_fails_with, assert_success, retrieval_store, snapshot, stdout,
    write_parquet,
};

/// The rows of `vlmdb eval … --format json` (the run's report with its metric rows) as (direction, name, dim,
/// value).
fn eval_json(store: &TestStore, args: &[&str]) -> Vec<(String, String, i64, f64)> {
    let mut full = vec!["eval", "--format", "json"];
    full.extend_from_slice(args);
    let out = store.vlmdb(&full);
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("eval JSON");
    assert!(report["run_id"].is_string(), "{report}");
    let rows = report["rows"].as_array().expect("rows");
    rows.iter()
        .map(|r| {
            (
                r["direction"].as_str().unwrap_or_default().to_string(),
                r["name"].as_str().unwrap_or_default().to_string(),
                r["dim"].as_i64().unwrap_or(-1),
                r["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

#[test]
fn eval_equals_the_numpy_reference() {
    let store = retrieval_store();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("fixtures/eval/reference.json").expect("reference.json"),
    )
    .expect("reference JSON");
    let mut compared = 0;
    for (dataset, splits) in reference.as_object().expect("datasets") {
        for (split, directions) in splits.as_object().expect("splits") {
            let mut args = vec!["--model", "ref", "--dataset", dataset.as_str()];
            if split != "all" {
                args.extend(["--split", split.as_str()]);
            }
            let got = eval_json(&store, &args);
            for (direction, metrics) in directions.as_object().expect("directions") {
                for (name, want) in metrics.as_object().expect("metrics") {
                    let want = want.as_f64().expect("number");
                    let have = got
                        .iter()
                        .find(|(d, n, _, _)| d == direction && n == name)
                        .map(|r| r.3)
                        .unwrap_or_else(|| {
                            panic!("{dataset}/{split}: no {direction} {name} in {got:?}")
                        });
                    assert!(
                        (have - want).abs() <= 1e-9,
                        "{dataset}/{split} {direction} {name}: vlmdb {have}, reference {want}"
                    );
                    compared += 1;
                }
            }
            // Nothing beyond the reference's metrics (plus the directions it has).
            let expected: usize = directions
                .as_object()
                .map(|d| {
                    d.values()
                        .map(|m| m.as_object().map_or(0, |m| m.len()))
                        .sum()
                })
                .unwrap_or(0);
            assert_eq!(got.len(), expected, "{dataset}/{split}: {got:?}");
        }
    }
    assert_eq!(compared, 4 * 12 + 2 * 10, "numbers compared");
    // Every number went to `metrics` under an eval run, with its split and width.
    let csv = store.csv(
        "SELECT count(*) AS n, count(DISTINCT m.run_id) AS runs, min(dim) AS dmin, max(dim) AS dmax \
         FROM metrics m JOIN runs r ON r.run_id = m.run_id WHERE r.kind = 'eval' AND r.status = 'finished'",
    );
    assert_eq!(
        csv.lines().nth(1),
        Some(format!("{compared},6,16,16").as_str()),
        "{csv}"
    );
    // The run records the model the space came from.
    let csv = store
        .csv("SELECT count(*) FROM runs WHERE kind = 'eval' AND models LIKE '%numpy-reference%'");
    assert_eq!(csv.lines().nth(1), Some("6"), "{csv}");
}

#[test]
fn mrl_widths_are_evaluated_in_one_command() {
    let store = retrieval_store();
    let rows = eval_json(
        &store,
        &[
            "--model",
            "ref",
            "--dataset",
            "shapes",
            "--split",
            "test",
            "--dims",
            "16,8,4",
        ],
    );
    for dim in [16, 8, 4] {
        assert_eq!(
            rows.iter().filter(|r| r.2 == dim).count(),
            12,
            "dim {dim}: {rows:?}"
        );
    }
    // The full width equals a plain eval; the narrowest differs (it is a different space).
    let full = eval_json(
        &store,
        &["--model", "ref", "--dataset", "shapes", "--split", "test"],
    );
    for (d, n, _, v) in &full {
        let at16 = rows
            .iter()
            .find(|r| &r.0 == d && &r.1 == n && r.2 == 16)
            .expect("dim 16 row");
        assert_eq!(at16.3, *v, "{d} {n}");
    }
    let differs = rows
        .iter()
        .filter(|r| r.2 == 4)
        .any(|r| full.iter().any(|f| f.0 == r.0 && f.1 == r.1 && f.3 != r.3));
    assert!(
        differs,
        "4-dimensional prefixes ranked exactly like the full vectors: {rows:?}"
    );
    let out = store.vlmdb(&[
        "eval",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "--dims",
        "32",
    ]);
    assert_fails_with(&out, "--dims has 32 dimensions but space emb_ref has 16");
}

#[test]
fn eval_without_vectors_is_a_clear_error() {
    let store = retrieval_store();
    let out = store.vlmdb(&["eval", "--model", "nope", "--dataset", "shapes"]);
    assert_fails_with(&out, "unknown space 'nope' (spaces in the store: ref)");
    let out = store.vlmdb(&["eval", "--model", "ref", "--dataset", "elsewhere"]);
    assert_fails_with(
        &out,
        "nothing to evaluate: space emb_ref has no vectors for dataset 'elsewhere'",
    );
}

#[test]
fn mined_negatives_are_never_positives_and_respect_the_filters() {
    let store = retrieval_store();
    let out = store.vlmdb(&["mine", "--model", "ref", "--dataset", "shapes", "-k", "3"]);
    assert_success(&out);
    let out = store.vlmdb(&["mine", "--model", "ref", "--dataset", "cirr", "-k", "3"]);
    assert_success(&out);
    // Every direction produced negatives: k per query where enough candidates exist.
    let csv = store.csv(
        "SELECT query_kind, count(DISTINCT query_id) AS q, sum(per) AS n, max(per) AS most FROM \
         (SELECT query_kind, query_id, count(*) AS per FROM hard_negatives GROUP BY query_kind, query_id) \
         GROUP BY query_kind ORDER BY query_kind",
    );
    assert_eq!(
        csv.lines().skip(1).collect::<Vec<_>>(),
        ["caption,150,450,3", "image,30,90,3", "pair,24,72,3"],
        "{csv}"
    );
    // No negative is a positive of its query (caption <-> image, pair -> target).
    let csv = store.csv(
        "SELECT count(*) FROM hard_negatives h \
         LEFT JOIN captions c1 ON h.query_kind = 'caption' AND c1.caption_id = h.query_id AND c1.image_id = h.negative_id \
         LEFT JOIN captions c2 ON h.query_kind = 'image' AND c2.image_id = h.query_id AND c2.caption_id = h.negative_id \
         LEFT JOIN pairs p ON h.query_kind = 'pair' AND p.pair_id = h.query_id AND p.target_id = h.negative_id \
         WHERE c1.caption_id IS NOT NULL OR c2.caption_id IS NOT NULL OR p.pair_id IS NOT NULL",
    );
    assert_eq!(csv.lines().nth(1), Some("0"), "{csv}");
    // Negatives are the best-ranked non-positives: a negative's rank is its place among all candidates, and the
    // positive's score/rank come from retrieval_ranks.
    let csv = store.csv(
        "SELECT count(*) FROM hard_negatives h JOIN retrieval_ranks('ref', 'shapes') r \
         ON r.direction = 't2i' AND r.query_id = h.query_id AND r.positive_id = h.positive_id \
         WHERE h.query_kind = 'caption' AND (h.positive_score <> r.score OR h.rank = r.rank)",
    );
    assert_eq!(csv.lines().nth(1), Some("0"), "{csv}");

    // Absolute margin and the false-negative guard, as round 1.
    let out = store.vlmdb(&[
        "mine",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "2",
        "--iteration",
        "1",
        "--directions",
        "t2i",
        "--margin",
        "0.1",
        "--max-positive-similarity",
        "0.5",
    ]);
    assert_success(&out);
    let csv = store.csv(
        "SELECT count(*) AS n, sum(CASE WHEN score > positive_score - 0.1 THEN 1 ELSE 0 END) AS inside \
         FROM hard_negatives WHERE iteration = 1",
    );
    let line = csv.lines().nth(1).unwrap_or_default().to_string();
    assert!(line.ends_with(",0") && !line.starts_with("0,"), "{csv}");
    let csv = store.csv(
        "SELECT count(*) FROM hard_negatives h \
         JOIN vectors('ref', 'shapes', NULL, 'image') n ON n.item_id = h.negative_id \
         JOIN vectors('ref', 'shapes', NULL, 'image') p ON p.item_id = h.positive_id \
         WHERE h.iteration = 1 AND cosine_similarity(n.vector, p.vector) > 0.5",
    );
    assert_eq!(csv.lines().nth(1), Some("0"), "{csv}");

    // diff.sql between round 0 and round 1 accounts for every negative of both.
    let out = store.vlmdb(&[
        "sql",
        "-f",
        "sql/mine/diff.sql",
        "--param",
        "from_iteration=0",
        "--param",
        "to_iteration=1",
        "--format",
        "csv",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    // The last statement's rows: status,count.
    let counts: Vec<(String, i64)> = text
        .lines()
        .filter_map(|l| {
            let (status, n) = l.split_once(',')?;
            let n: i64 = n.parse().ok()?;
            matches!(status, "appeared" | "persisted" | "resolved").then(|| (status.to_string(), n))
        })
        .collect();
    let get = |s: &str| counts.iter().rev().find(|c| c.0 == s).map_or(0, |c| c.1);
    let latest_round0 = store.csv(
        "SELECT count(*) FROM hard_negatives WHERE run_id = (SELECT max(run_id) FROM hard_negatives WHERE iteration = 0)",
    );
    let round0: i64 = latest_round0
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(-1);
    let round1: i64 = store
        .csv("SELECT count(*) FROM hard_negatives WHERE iteration = 1")
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(-1);
    assert_eq!(get("persisted") + get("resolved"), round0, "{text}");
    assert_eq!(get("persisted") + get("appeared"), round1, "{text}");
}

#[test]
fn import_rejects_bad_rows_and_writes_nothing() {
    let store = retrieval_store();
    let dir = tempfile::tempdir().expect("tmp");
    let v = |x: f32| Some(vec![Some(x), Some(1.0), Some(0.0)]);
    // (file name, item ids, kinds, vectors, the error expected)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, Vec<Vector>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "width",
            vec!["shapes/scene_001", "shapes/scene_002"],
            vec!["image", "image"],
            vec![v(1.0), Some(vec![Some(1.0), Some(2.0)])],
            "row 2 (item_id 'shapes/scene_002'): the vector has 2 dimensions but row 1 has 3",
        ),
        (
            "nan",
            vec!["shapes/scene_001", "shapes/scene_002"],
            vec!["image", "image"],
            vec![v(1.0), v(f32::NAN)],
            "row 2 (item_id 'shapes/scene_002'): element 0 of the vector is NaN",
        ),
        (
            "unknown",
            vec!["shapes/scene_001", "shapes/nope"],
            vec!["image", "image"],
            vec![v(1.0), v(2.0)],
            "row 2 (item_id 'shapes/nope'): no stored image has this id",
        ),
        (
            "kind",
            vec!["shapes/scene_001"],
            vec!["video"],
            vec![v(1.0)],
            "row 1 (item_id 'shapes/scene_001'): unknown kind 'video'",
        ),
        (
            "null",
            vec!["shapes/scene_001"],
            vec!["image"],
            vec![None],
            "row 1 (item_id 'shapes/scene_001'): vector is NULL",
        ),
    ];
    let before = snapshot(&store.path());
    for (name, ids, kinds, vectors, message) in cases {
        let file = dir.path().join(format!("{name}.parquet"));
        write_parquet(&file, &ids, &kinds, vectors);
        let out = store.vlmdb(&[
            "import",
            "embeddings",
            file.to_str().unwrap_or_default(),
            "--space",
            "bad",
        ]);
        assert_fails_with(&out, message);
    }
    // An existing space of another width.
    let file = dir.path().join("narrow.parquet");
    write_parquet(&file, &["shapes/scene_001"], &["image"], vec![v(1.0)]);
    let out = store.vlmdb(&[
        "import",
        "embeddings",
        file.to_str().unwrap_or_default(),
        "--space",
        "ref",
    ]);
    assert_fails_with(&out, "has 3 dimensions but space emb_ref has 16");
    // Nothing was written (not even a run: every check happens before the run opens).
    assert!(
        snapshot(&store.path()) == before,
        "a rejected import changed the store"
    );
    let out = store.vlmdb(&[
        "import",
        "embeddings",
        file.to_str().unwrap_or_default(),
        "--space",
        "Bad-Name",
    ]);
    assert_fails_with(
        &out,
        "space name 'Bad-Name' must be a non-empty slug of [a-z0-9_]",
    );
}

#[test]
fn reimporting_changes_nothing() {
    let store = retrieval_store();
    let count = |s: &TestStore| s.csv("SELECT count(*), count(DISTINCT item_id) FROM emb_ref");
    let before = count(&store);
    assert_eq!(before.lines().nth(1), Some("240,240"), "{before}");
    assert_success(&store.vlmdb(&[
        "import",
        "embeddings",
        "fixtures/eval/vectors.parquet",
        "--space",
        "ref",
    ]));
    assert_eq!(count(&store), before);
}

/// A store with `n` tiny images (dataset `synth`, ids `synth/img_NNNN`) and a random `dim`-wide space `synth`.
fn synthetic_store(n: usize, dim: usize) -> TestStore {
    let store = TestStore::initialised();
    let dir = store.dir.path().join("synth");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 0..n {
        let pixel = image::Rgb([(i % 251) as u8, (i / 251) as u8, 7]);
        let img = image::RgbImage::from_pixel(2, 2, pixel);
        img.save(dir.join(format!("img_{i:04}.png")))
            .expect("write png");
    }
    let out = store.vlmdb(&[
        "ingest",
        "folder",
        dir.to_str().unwrap_or_default(),
        "--dataset",
        "synth",
    ]);
    assert_success(&out);
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        Some((state % 20001) as f32 / 10000.0 - 1.0)
    };
    let ids: Vec<String> = (0..n).map(|i| format!("synth/img_{i:04}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let vectors = (0..n)
        .map(|_| Some((0..dim).map(|_| next()).collect()))
        .collect();
    let file = store.dir.path().join("synth.parquet");
    write_parquet(&file, &id_refs, &vec!["image"; n], vectors);
    assert_success(&store.vlmdb(&[
        "import",
        "embeddings",
        file.to_str().unwrap_or_default(),
        "--space",
        "synth",
    ]));
    store
}

/// The recall an approximate search printed after `label` on stderr.
fn printed_recall(stderr: &str, label: &str) -> f64 {
    stderr
        .split(label)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no recall printed after '{label}': {stderr}"))
}

#[test]
fn approximate_search_reports_its_recall() {
    let store = synthetic_store(2000, 32);
    // hnsw_rs through knn: every query gets k neighbours, and the recall against exact search is printed.
    let out = store.vlmdb(&[
        "sql",
        "SELECT count(*) AS n, count(DISTINCT query_id) AS q FROM knn('synth:image', 'synth:image', 10, NULL, NULL, 'hnsw')",
        "--format",
        "csv",
    ]);
    assert_success(&out);
    assert_eq!(
        stdout(&out).lines().nth(1),
        Some("20000,2000"),
        "{}",
        stdout(&out)
    );
    let err = crate::common::stderr(&out);
    let recall = printed_recall(&err, "hnsw recall@10 = ");
    assert!(recall >= 0.9, "hnsw recall@10 {recall}");
    // The approximate neighbours agree with the exact ones for most queries.
    let csv = store.csv(
        "SELECT count(*) FROM knn('synth:image', 'synth:image', 10, NULL, NULL, 'hnsw') a \
         JOIN knn('synth:image', 'synth:image', 10) e ON a.query_id = e.query_id AND a.neighbor_id = e.neighbor_id",
    );
    let shared: f64 = csv
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0);
    assert!(shared / 20000.0 >= 0.9, "{csv}");

    // Lance's own index: built, its recall measured and recorded.
    for kind in ["ivf_pq", "ivf_hnsw_sq"] {
        let out = store.vlmdb(&["index", "--model", "synth", "--kind", kind]);
        assert_success(&out);
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "{kind} index on emb_synth (2000 vectors): recall@10 "
            )),
            "{text}"
        );
    }
    let csv = store.csv(
        "SELECT count(*), min(value) >= 0.0, max(value) <= 1.0 FROM metrics WHERE name = 'index_recall_at_10'",
    );
    assert_eq!(csv.lines().nth(1), Some("2,true,true"), "{csv}");
    // Exact search is unchanged by the index.
    let csv = store.csv(
        "SELECT count(*) FROM vector_search('synth', (SELECT vector FROM vectors('synth') WHERE item_id = 'synth/img_0042'), 1) \
         WHERE item_id = 'synth/img_0042'",
    );
    assert_eq!(csv.lines().nth(1), Some("1"), "{csv}");
}

/// The stored index answers `knn(…, 'ann')`, `vector_search(…, 'ann')` and `vlmdb search --ann`, each naming it
/// and its recall; rows written after it was built are searched exactly beside it and counted; a space without one
/// is refused.
#[test]
fn searches_through_the_stored_index_name_it_and_see_newer_rows() {
    let store = synthetic_store(2000, 32);
    let refused = store.vlmdb(&[
        "sql",
        "SELECT count(*) FROM knn('synth:image', 'synth:image', 10, NULL, NULL, 'ann')",
    ]);
    assert_fails_with(
        &refused,
        "space emb_synth has no vector index: build one with `vlmdb index --model emb_synth`",
    );
    let out = store.vlmdb(&[
        "index",
        "--model",
        "synth",
        "--kind",
        "ivf_hnsw_sq",
        "--format",
        "json",
    ]);
    assert_success(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json report");
    let run = report["run_id"].as_str().unwrap_or_default().to_string();
    let built_recall = report["recall_at_10"].as_f64().unwrap_or(-1.0);
    assert!(built_recall >= 0.5, "{report}");

    let out = store.vlmdb(&[
        "sql",
        "SELECT count(*) AS n, count(DISTINCT query_id) AS q, min(rank) AS best, max(rank) AS worst \
         FROM knn('synth:image', 'synth:image', 10, NULL, NULL, 'ann')",
        "--format",
        "csv",
    ]);
    assert_success(&out);
    assert_eq!(
        stdout(&out).lines().nth(1),
        Some("20000,2000,1,10"),
        "{}",
        stdout(&out)
    );
    let err = crate::common::stderr(&out);
    let named = format!(
        "through the IVF_HNSW_SQ index of emb_synth (2000 rows; built by run {run}, recall@10 {built_recall:.4} \
         against exact search)"
    );
    assert!(err.contains(&named), "{err}\nwanted: {named}");
    let recall = printed_recall(&err, "ann recall@10 = ");
    assert!((0.5..=1.0).contains(&recall), "ann recall@10 {recall}");

    // A vector rewritten after the index was built (an upsert: a new row) is found, and the rows the index does
    // not cover are counted.
    let fresh: Vec<Option<f32>> = (0..32)
        .map(|i| Some(if i == 3 { 1.0 } else { 0.0 }))
        .collect();
    let file = store.dir.path().join("fresh.parquet");
    write_parquet(&file, &["synth/img_0042"], &["image"], vec![Some(fresh)]);
    assert_success(&store.vlmdb(&[
        "import",
        "embeddings",
        file.to_str().unwrap_or_default(),
        "--space",
        "synth",
    ]));
    let query = "SELECT item_id, round(score, 4) AS score FROM vector_search('synth', \
                 [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, \
                  0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1, \
                 NULL, NULL, NULL, 'ann')";
    let out = store.vlmdb(&["sql", query, "--format", "csv"]);
    assert_success(&out);
    assert_eq!(
        stdout(&out).lines().nth(1),
        Some("synth/img_0042,1.0"),
        "{}",
        stdout(&out)
    );
    let err = crate::common::stderr(&out);
    assert!(
        err.contains("vector_search: through the IVF_HNSW_SQ index of emb_synth")
            && err.contains("1 row(s) written since are searched exactly beside it"),
        "{err}"
    );
}

#[test]
fn a_lance_index_needs_enough_vectors() {
    let store = retrieval_store();
    let out = store.vlmdb(&["index", "--model", "ref"]);
    assert_fails_with(
        &out,
        "space emb_ref has 240 vectors; a Lance vector index needs at least 256",
    );
}

#[test]
fn cluster_writes_clusters_centroids_and_inertia_reproducibly() {
    let store = retrieval_store();
    let args = [
        "cluster",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "4",
        "--seed",
        "5",
        "--inits",
        "2",
    ];
    let out = store.vlmdb(&args);
    assert_success(&out);
    assert!(
        stdout(&out).contains("k-means k=4 on 30 items of emb_ref: inertia "),
        "{}",
        stdout(&out)
    );
    let mut again = args.to_vec();
    again.extend(["--iteration", "1"]);
    assert_success(&store.vlmdb(&again));
    let csv = store.csv(
        "SELECT iteration, count(*), count(DISTINCT cluster_id), sum(CASE WHEN distance >= 0 THEN 1 ELSE 0 END) \
         FROM clusters GROUP BY iteration ORDER BY iteration",
    );
    assert_eq!(
        csv.lines().skip(1).collect::<Vec<_>>(),
        ["0,30,4,30", "1,30,4,30"],
        "{csv}"
    );
    // The same seed gives the same assignment; centroid sizes add up; inertia never rises over the steps.
    let csv = store.csv(
        "SELECT count(*) FROM clusters a JOIN clusters b ON a.item_id = b.item_id \
         WHERE a.iteration = 0 AND b.iteration = 1 AND a.cluster_id <> b.cluster_id",
    );
    assert_eq!(csv.lines().nth(1), Some("0"), "{csv}");
    let csv = store.csv(
        "SELECT iteration, sum(size), count(*), min(array_length(vector)) FROM centroids GROUP BY iteration ORDER BY iteration",
    );
    assert_eq!(
        csv.lines().skip(1).collect::<Vec<_>>(),
        ["0,30,4,16", "1,30,4,16"],
        "{csv}"
    );
    // The cluster number is `cluster_id`, which needs no quotes (`cluster` is a SQL keyword; issue 25).
    let csv =
        store.csv("SELECT item_id, cluster_id FROM clusters WHERE iteration = 0 ORDER BY item_id");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "item_id,cluster_id", "{csv}");
    assert_eq!(rows.len(), 31, "{csv}");
    assert!(
        rows[1..].iter().all(|r| r.starts_with("shapes/")
            && matches!(
                r.rsplit_once(',').map(|(_, c)| c),
                Some("0" | "1" | "2" | "3")
            )),
        "{csv}"
    );
    let csv = store.csv("SELECT cluster_id FROM centroids WHERE iteration = 0 ORDER BY cluster_id");
    assert_eq!(csv, "cluster_id\n0\n1\n2\n3\n");
    let csv = store.csv(
        "SELECT count(*) FROM metrics a JOIN metrics b ON a.run_id = b.run_id AND b.step = a.step + 1 \
         WHERE a.name = 'inertia' AND b.name = 'inertia' AND b.value > a.value + 1e-9",
    );
    assert_eq!(csv.lines().nth(1), Some("0"), "{csv}");
    let out = store.vlmdb(&[
        "cluster",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "31",
    ]);
    assert_fails_with(
        &out,
        "k-means with k = 31 needs at least 31 vectors; space emb_ref has 30 image vectors",
    );
}

/// Ids of the shapes fixture's images, in order.
fn shape_images() -> Vec<String> {
    (1..=30).map(|i| format!("shapes/scene_{i:03}")).collect()
}

#[test]
fn drift_tracking_reports_a_planted_shift() {
    let store = retrieval_store();
    let dir = tempfile::tempdir().expect("tmp");
    let ids = shape_images();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    // Three tight groups on axes 0, 1, 2 of a 16-d space; in iteration 1 the third group turns 60° towards axis 3,
    // which moves its (unit) centroid by a chord of 2 sin 30° = 1.
    let point = |i: usize, shifted: bool| -> Vector {
        let mut v = vec![0.0f32; 16];
        let group = i / 10;
        if group == 2 && shifted {
            v[2] = 0.5;
            v[3] = 3f32.sqrt() / 2.0;
        } else {
            v[group] = 1.0;
        }
        v[4 + i % 10] += 0.001;
        Some(v.into_iter().map(Some).collect())
    };
    let mut runs = Vec::new();
    for (space, shifted) in [("it0", false), ("it1", true)] {
        let file = dir.path().join(format!("{space}.parquet"));
        write_parquet(
            &file,
            &id_refs,
            &vec!["image"; 30],
            (0..30).map(|i| point(i, shifted)).collect(),
        );
        let path = file.to_str().unwrap_or_default();
        assert_success(&store.vlmdb(&["import", "embeddings", path, "--space", space]));
        let out = store.vlmdb(&[
            "cluster",
            "--model",
            space,
            "--dataset",
            "shapes",
            "-k",
            "3",
            "--seed",
            "1",
        ]);
        assert_success(&out);
        let text = stdout(&out);
        runs.push(
            text.trim_end()
                .rsplit("(run ")
                .next()
                .unwrap_or_default()
                .trim_end_matches(')')
                .to_string(),
        );
    }
    let out = store.vlmdb(&[
        "sql",
        "-f",
        "sql/cluster/drift.sql",
        "--param",
        &format!("from_run={}", runs[0]),
        "--param",
        &format!("to_run={}", runs[1]),
        "--format",
        "json",
    ]);
    assert_success(&out);
    let text = stdout(&out);
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with('['))
        .unwrap_or_default();
    let rows: Vec<serde_json::Value> = serde_json::from_str(last).expect("drift JSON");
    let value = |name: &str, item: Option<&str>| -> f64 {
        rows.iter()
            .find(|r| r["name"] == name && r["item_id"].as_str() == item)
            .and_then(|r| r["value"].as_f64())
            .unwrap_or_else(|| panic!("no {name} {item:?} in {text}"))
    };
    assert!(
        (value("ari", None) - 1.0).abs() < 1e-12 && (value("nmi", None) - 1.0).abs() < 1e-12,
        "{text}"
    );
    // The moved group's cluster in iteration 1, from the stored assignment of scene_021.
    let csv = store.csv(&format!(
        "SELECT cluster_id FROM clusters WHERE run_id = '{}' AND item_id = 'shapes/scene_021'",
        runs[1]
    ));
    let moved = csv.lines().nth(1).unwrap_or_default().to_string();
    let drifts: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r["name"] == "centroid_drift")
        .map(|r| {
            (
                r["item_id"].as_str().unwrap_or_default().to_string(),
                r["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert_eq!(drifts.len(), 3, "{text}");
    for (item, drift) in &drifts {
        if *item == format!("cluster:{moved}") {
            assert!(
                (drift - 1.0).abs() < 0.01,
                "moved cluster drift {drift}: {text}"
            );
        } else {
            assert!(
                *drift < 0.01,
                "still cluster {item} drifted {drift}: {text}"
            );
        }
    }
    assert_eq!(
        value("cluster_size", Some(&format!("cluster:{moved}"))),
        10.0
    );
    assert!(
        value("mean_similarity", Some(&format!("cluster:{moved}"))) > 0.99,
        "{text}"
    );
    // Written to metrics under the sql run.
    let csv = store.csv("SELECT count(*) FROM metrics WHERE name IN ('centroid_drift', 'ari', 'nmi', 'mean_similarity')");
    assert_eq!(csv.lines().nth(1), Some("8"), "{csv}");
}

#[test]
fn topical_batches_hold_one_cluster_each() {
    let store = retrieval_store();
    let out = store.vlmdb(&[
        "cluster",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "3",
        "--seed",
        "2",
    ]);
    assert_success(&out);
    let run = stdout(&out)
        .trim_end()
        .rsplit("(run ")
        .next()
        .unwrap_or_default()
        .trim_end_matches(')')
        .to_string();
    let batches = |seed: &str| {
        let out = store.vlmdb(&[
            "sql",
            "-f",
            "sql/cluster/topical_batches.sql",
            "--param",
            &format!("run={run}"),
            "--param",
            "batch_size=4",
            "--param",
            &format!("seed={seed}"),
            "--format",
            "csv",
        ]);
        assert_success(&out);
        stdout(&out)
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("batch,"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[0].parse::<i64>().unwrap_or(-1),
                    f[2].to_string(),
                    f[3].parse::<i64>().unwrap_or(-1),
                )
            })
            .collect::<Vec<_>>()
    };
    let a = batches("7");
    assert_eq!(a.len(), 30, "every item once: {a:?}");
    let mut items: Vec<&String> = a.iter().map(|r| &r.1).collect();
    items.sort();
    items.dedup();
    assert_eq!(items.len(), 30);
    let mut by_batch: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (batch, _, cluster) in &a {
        by_batch.entry(*batch).or_default().push(*cluster);
    }
    for (batch, clusters) in &by_batch {
        assert!(clusters.len() <= 4, "batch {batch} too large");
        assert!(
            clusters.iter().all(|c| *c == clusters[0]),
            "batch {batch} mixes clusters {clusters:?}"
        );
    }
    assert_eq!(batches("7"), a, "same seed, same batches");
    assert_ne!(batches("8"), a, "another seed, another order");
}
