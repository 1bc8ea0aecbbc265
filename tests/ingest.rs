//! `vlmdb ingest` and `vlmdb export` end to end on the fixture datasets (fixtures/make_datasets.py).

use std::path::PathBuf;

use crate::common::{TestStore, assert_fails_with, assert_success, stderr, stdout};

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/datasets")
        .join(rel)
        .display()
        .to_string()
}

fn ingest(store: &TestStore, args: &[&str]) -> std::process::Output {
    let mut all = vec!["ingest"];
    all.extend_from_slice(args);
    store.vlmdb(&all)
}

#[test]
fn coco_joins_annotations_to_images() {
    let store = TestStore::initialised();
    let images = fixture("coco/images");
    let train = fixture("coco/annotations/captions_train.json");
    let out = ingest(
        &store,
        &[
            "coco",
            &train,
            "--dataset",
            "shapes",
            "--images",
            &images,
            "--split",
            "train",
        ],
    );
    assert_success(&out);
    assert!(
        stdout(&out).contains("images 18 (18 new or changed), captions 90"),
        "{}",
        stdout(&out)
    );
    let val = fixture("coco/annotations/captions_val.json");
    assert_success(&ingest(
        &store,
        &[
            "coco",
            &val,
            "--dataset",
            "shapes",
            "--images",
            &images,
            "--split",
            "val",
        ],
    ));
    assert_eq!(
        store.csv("SELECT split, count(*) AS n FROM images GROUP BY split ORDER BY split"),
        "split,n\ntrain,18\nval,6\n"
    );
    assert_eq!(
        store.csv("SELECT c.caption_id, c.image_id, i.format, i.width, i.height FROM captions c JOIN images i ON c.image_id = i.image_id ORDER BY c.caption_id LIMIT 2"),
        "caption_id,image_id,format,width,height\nshapes/1,shapes/1,jpeg,48,64\nshapes/10,shapes/2,png,64,48\n"
    );
    // Rows carry the ingest run, which is recorded as finished.
    assert_eq!(
        store.csv("SELECT r.kind, r.status, count(*) AS n FROM images i JOIN runs r ON i.run_id = r.run_id GROUP BY r.kind, r.status"),
        "kind,status,n\ningest,finished,24\n"
    );
}

#[test]
fn karpathy_keeps_its_splits() {
    let store = TestStore::initialised();
    let file = fixture("karpathy/dataset_shapes.json");
    let out = ingest(
        &store,
        &[
            "karpathy",
            &file,
            "--dataset",
            "k",
            "--images",
            &fixture("karpathy/images"),
        ],
    );
    assert_success(&out);
    assert_eq!(
        store.csv("SELECT split, count(DISTINCT c.image_id) AS images, count(*) AS captions FROM captions c GROUP BY split ORDER BY split"),
        "split,images,captions\ntest,6,30\ntrain,18,90\nval,6,30\n"
    );
}

#[test]
fn jsonl_folder_webdataset_and_parquet() {
    let store = TestStore::initialised();
    assert_success(&ingest(
        &store,
        &["jsonl", &fixture("jsonl/metadata.jsonl"), "--dataset", "j"],
    ));
    assert_success(&ingest(
        &store,
        &[
            "folder",
            &fixture("folder"),
            "--dataset",
            "f",
            "--split",
            "train",
        ],
    ));
    let shards = fixture("webdataset/shards/{000..001}.tar");
    assert_success(&ingest(
        &store,
        &["webdataset", &shards, "--dataset", "w", "--split", "train"],
    ));
    assert_success(&ingest(
        &store,
        &["hf-parquet", &fixture("hf-parquet"), "--dataset", "p"],
    ));
    assert_eq!(
        store.csv(
            "SELECT i.dataset, count(DISTINCT i.image_id) AS images, count(c.caption_id) AS captions \
             FROM images i LEFT JOIN captions c ON c.image_id = i.image_id GROUP BY i.dataset ORDER BY i.dataset"
        ),
        "dataset,images,captions\nf,12,11\nj,30,60\np,24,24\nw,30,30\n"
    );
    // The folder's 12th image has no caption file and is stored uncaptioned.
    assert_eq!(
        store.csv("SELECT image_id FROM images i WHERE dataset = 'f' AND NOT EXISTS (SELECT 1 FROM captions c WHERE c.image_id = i.image_id)"),
        "image_id\nf/scene_012\n"
    );
    // Parquet splits come from the file names; webdataset captions from .txt and .json members.
    assert_eq!(
        store.csv("SELECT split, count(*) AS n FROM images WHERE dataset = 'p' GROUP BY split ORDER BY split"),
        "split,n\ntest,6\ntrain,18\n"
    );
    assert_eq!(
        store.csv(
            "SELECT caption_id, text FROM captions WHERE dataset = 'w' ORDER BY caption_id LIMIT 2"
        ),
        "caption_id,text\nw/scene_001#0,a orange circle on a green background\nw/scene_002#0,a white square on a orange background\n"
    );
}

#[test]
fn composed_retrieval_pairs() {
    let store = TestStore::initialised();
    let out = ingest(&store, &["cirr", &fixture("cirr"), "--dataset", "cirr"]);
    assert_success(&out);
    assert_eq!(
        store.csv("SELECT split, count(*) AS n, count(target_id) AS targets, min(cardinality(candidates)) AS set_size FROM pairs GROUP BY split ORDER BY split"),
        "split,n,targets,set_size\ntest,6,0,4\ntrain,18,18,4\nval,6,6,4\n"
    );
    assert_eq!(
        store.csv(
            "SELECT pair_id, reference_id, target_id FROM pairs WHERE pair_id = 'cirr/val/18000'"
        ),
        "pair_id,reference_id,target_id\ncirr/val/18000,cirr/scene_019,cirr/scene_020\n"
    );
    let out = ingest(
        &store,
        &["fashioniq", &fixture("fashioniq"), "--dataset", "fiq"],
    );
    assert_success(&out);
    assert_eq!(
        store.csv("SELECT category, split, count(*) AS n FROM pairs WHERE dataset = 'fiq' GROUP BY category, split ORDER BY category, split"),
        "category,split,n\ndress,train,9\ndress,val,3\nshirt,train,9\nshirt,val,3\n"
    );
    assert_eq!(
        store.csv("SELECT text FROM pairs WHERE pair_id = 'fiq/dress/train/0'"),
        "text\nis red and has a triangle\n"
    );
}

#[test]
fn ingesting_twice_changes_nothing() {
    let store = TestStore::initialised();
    let file = fixture("jsonl/metadata.jsonl");
    assert_success(&ingest(
        &store,
        &["jsonl", &file, "--dataset", "j", "--split", "train"],
    ));
    let before = store.csv("SELECT image_id, sha256, run_id FROM images ORDER BY image_id");
    let versions = store.csv("SELECT count(*) AS n FROM \"images@2\"");
    let again = ingest(
        &store,
        &["jsonl", &file, "--dataset", "j", "--split", "train"],
    );
    assert_success(&again);
    assert!(
        stdout(&again).contains("images 30 (0 new or changed), captions 60 (0 new or changed)"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        store.csv("SELECT image_id, sha256, run_id FROM images ORDER BY image_id"),
        before
    );
    assert_eq!(versions, "n\n30\n");
    let out = store.vlmdb(&["sql", "SELECT count(*) AS n FROM \"images@3\""]);
    assert_fails_with(&out, "there is no version 3");
}

#[test]
fn split_ratio_is_deterministic() {
    let a = TestStore::initialised();
    let b = TestStore::initialised();
    let file = fixture("jsonl/metadata.jsonl");
    for store in [&a, &b] {
        let args = [
            "jsonl",
            &file,
            "--dataset",
            "j",
            "--split-ratio",
            "train=0.9,val=0.1",
            "--seed",
            "7",
        ];
        assert_success(&ingest(store, &args));
    }
    let query = "SELECT image_id, split FROM images ORDER BY image_id";
    assert_eq!(a.csv(query), b.csv(query));
    let counts = a.csv("SELECT count(*) AS n, count(split) AS with_split FROM images");
    assert_eq!(counts, "n,with_split\n30,30\n");
    let bad = ingest(
        &a,
        &[
            "jsonl",
            &file,
            "--dataset",
            "j",
            "--split-ratio",
            "train=0.9,val=0.2",
        ],
    );
    assert_fails_with(&bad, "ratios sum to");
}

#[test]
fn resize_keeps_aspect_and_original_size() {
    let store = TestStore::initialised();
    let out = ingest(
        &store,
        &[
            "folder",
            &fixture("folder"),
            "--dataset",
            "r",
            "--resize",
            "32",
        ],
    );
    assert_success(&out);
    assert_eq!(
        store.csv("SELECT width, height, orig_width, orig_height, count(*) AS n FROM images GROUP BY width, height, orig_width, orig_height ORDER BY width"),
        "width,height,orig_width,orig_height,n\n24,32,48,64,3\n32,24,64,48,9\n"
    );
}

#[test]
fn bad_items_are_recorded_and_the_rest_goes_in() {
    let store = TestStore::initialised();
    let out = ingest(
        &store,
        &["jsonl", &fixture("bad/metadata.jsonl"), "--dataset", "bad"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("images 2 (2 new or changed)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        store.csv("SELECT image_id, format FROM images ORDER BY image_id"),
        "image_id,format\nbad/images/really_png,png\nbad/images/scene_001,jpeg\n"
    );
    let errors = store.csv("SELECT item, reason FROM ingest_errors ORDER BY item");
    for (item, reason) in [
        ("line 4", "malformed JSON"),
        ("images/empty.png", "empty file (0 bytes)"),
        ("images/truncated.png", "corrupt or truncated png image"),
        (
            "images/not_an_image.jpg",
            "not an image (unrecognised content)",
        ),
        ("images/bomb.png", "exceeds the 16384-pixel limit"),
        ("images/missing.png", "missing image file"),
        ("../outside.png", "escapes the images root"),
        ("/etc/hostname", "outside the images root"),
        ("images/link_out.png", "outside the images root"),
        ("line 12", "duplicate of line 1"),
    ] {
        assert!(
            errors
                .lines()
                .any(|l| l.contains(item) && l.contains(reason)),
            "no ingest_errors row for {item} with {reason:?}:\n{errors}"
        );
    }
    assert_eq!(errors.lines().count(), 11, "{errors}");

    let out = ingest(
        &store,
        &["folder", &fixture("bad/folder"), "--dataset", "badfolder"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        store.csv("SELECT c.text FROM captions c WHERE dataset = 'badfolder'"),
        "text\na fine caption\n"
    );
    assert!(
        store
            .csv("SELECT reason FROM ingest_errors WHERE dataset = 'badfolder'")
            .contains("not valid UTF-8")
    );
}

#[test]
fn strict_stops_before_writing() {
    let store = TestStore::initialised();
    assert_success(&ingest(
        &store,
        &["jsonl", &fixture("jsonl/metadata.jsonl"), "--dataset", "j"],
    ));
    let query = "SELECT image_id FROM images ORDER BY image_id";
    let before = (
        store.csv(query),
        store.csv("SELECT caption_id FROM captions ORDER BY caption_id"),
    );
    let out = ingest(
        &store,
        &[
            "jsonl",
            &fixture("bad/metadata.jsonl"),
            "--dataset",
            "j",
            "--strict",
        ],
    );
    assert_fails_with(&out, "--strict stops at the first bad item");
    let after = (
        store.csv(query),
        store.csv("SELECT caption_id FROM captions ORDER BY caption_id"),
    );
    assert_eq!(before, after);
    assert_eq!(
        store.csv("SELECT count(*) AS n FROM ingest_errors"),
        "n\n0\n"
    );
    assert_eq!(
        store.csv("SELECT status FROM runs WHERE kind = 'ingest' ORDER BY started_at"),
        "status\nfinished\n",
        "strict validation fails before the run opens"
    );
}

#[test]
// The child is reaped with wait4 (to read its peak RSS), not with std's wait.
#[allow(clippy::zombie_processes)]
fn a_decompression_bomb_is_refused_without_allocating_it() {
    let store = TestStore::initialised();
    let child = store
        .command(&[
            "ingest",
            "jsonl",
            &fixture("bad/metadata.jsonl"),
            "--dataset",
            "bomb",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we spawned and have not waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let peak_mb = usage.ru_maxrss as f64 / 1024.0;
    // Decoded, the image would take 14 GB; the bound leaves room for what the process maps of its own (large,
    // debug) binary, which counts in the peak RSS and grows with the code.
    assert!(
        peak_mb < 500.0,
        "peak RSS {peak_mb:.0} MB while refusing a 60000x60000 PNG"
    );
    assert_eq!(
        store.csv("SELECT reason FROM ingest_errors WHERE item = 'images/bomb.png'"),
        "reason\nimage of 60000x60000 pixels exceeds the 16384-pixel limit (decompression bomb?)\n"
    );
}

#[test]
fn missing_inputs_name_the_path() {
    let store = TestStore::initialised();
    assert_fails_with(
        &ingest(&store, &["coco", "/no/such.json", "--dataset", "x"]),
        "/no/such.json",
    );
    assert_fails_with(
        &ingest(
            &store,
            &[
                "jsonl",
                &fixture("jsonl/metadata.jsonl"),
                "--dataset",
                "a/b",
            ],
        ),
        "--dataset 'a/b'",
    );
    assert_fails_with(
        &ingest(&store, &["webdataset", "/no/{0..1}.tar", "--dataset", "x"]),
        "/no/0.tar",
    );
}

#[test]
fn export_round_trips() {
    let store = TestStore::initialised();
    assert_success(&ingest(
        &store,
        &[
            "jsonl",
            &fixture("jsonl/metadata.jsonl"),
            "--dataset",
            "j",
            "--split-ratio",
            "train=0.5,val=0.5",
        ],
    ));
    let out = store.vlmdb(&["export", "jsonl", "--dataset", "j", "--split", "val"]);
    assert_success(&out);
    let text = stdout(&out);
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert!(
        first["file_name"]
            .as_str()
            .is_some_and(|f| f.starts_with("images/scene_")),
        "{first}"
    );
    assert_eq!(first["split"], "val");
    let exported = store.dir.path().join("metadata.jsonl");
    let file_out = store.vlmdb(&[
        "export",
        "jsonl",
        "--dataset",
        "j",
        "--out",
        exported.to_str().expect("utf8"),
    ]);
    assert_success(&file_out);
    // The export ingests back (its paths are relative to the original images root).
    let back = ingest(
        &store,
        &[
            "jsonl",
            exported.to_str().expect("utf8"),
            "--dataset",
            "j2",
            "--images",
            &fixture("jsonl"),
        ],
    );
    assert_success(&back);
    assert_eq!(
        store.csv("SELECT count(*) AS n FROM captions WHERE dataset = 'j2'"),
        "n\n60\n"
    );

    let parquet = store.dir.path().join("images.parquet");
    let p = store.vlmdb(&[
        "export",
        "parquet",
        "--table",
        "images",
        "--dataset",
        "j",
        "--out",
        parquet.to_str().expect("utf8"),
    ]);
    assert_success(&p);
    let bytes = std::fs::read(&parquet).expect("parquet file");
    assert_eq!(&bytes[..4], b"PAR1");
    let csv = store.vlmdb(&["export", "csv", "--table", "captions", "--split", "val"]);
    assert_success(&csv);
    assert!(
        stdout(&csv)
            .starts_with("caption_id,image_id,dataset,split,text,source,run_id,iteration\n")
    );
    assert_fails_with(
        &store.vlmdb(&["export", "csv", "--table", "nope"]),
        "table 'nope' not found",
    );
    assert_fails_with(
        &store.vlmdb(&["export", "parquet", "--dataset", "j"]),
        "needs --out",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_restores_every_table() {
    let store = TestStore::initialised();
    assert_success(&ingest(
        &store,
        &["jsonl", &fixture("jsonl/metadata.jsonl"), "--dataset", "j"],
    ));
    let ids = "SELECT image_id FROM images ORDER BY image_id";
    let captions = "SELECT caption_id FROM captions ORDER BY caption_id";
    let before = (store.csv(ids), store.csv(captions));

    // Replace `pairs` with a table of another shape: a CIRR ingest writes images and captions, then fails on pairs.
    let lance = vlmdb::store::Store::open(&store.path())
        .await
        .expect("open store");
    lance.open_table("pairs").await.expect("pairs");
    let conn = lancedb::connect(store.path().to_str().expect("utf8"))
        .execute()
        .await
        .expect("connect");
    conn.drop_table("pairs", &[]).await.expect("drop pairs");
    let odd =
        vlmdb::store::schema::parse("odd.schema", "table pairs\nx int32\n", &Default::default())
            .expect("schema");
    lance.create_table(&odd).await.expect("odd pairs");

    let out = ingest(&store, &["cirr", &fixture("cirr"), "--dataset", "cirr"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        (store.csv(ids), store.csv(captions)),
        before,
        "no row of the failed ingest remains"
    );
    // The images had been written (version 3) before the pairs write failed, and were undone (version 4).
    assert_eq!(
        store.csv("SELECT count(*) AS n FROM \"images@3\" WHERE dataset = 'cirr'"),
        "n\n30\n"
    );
    assert_eq!(
        store.csv("SELECT count(*) AS n FROM \"images@4\" WHERE dataset = 'cirr'"),
        "n\n0\n"
    );
    assert_eq!(
        store.csv("SELECT status, error IS NOT NULL AS has_error FROM runs WHERE kind = 'ingest' ORDER BY started_at"),
        "status,has_error\nfinished,false\nfailed,true\n"
    );
}

#[test]
fn image_functions_over_ingested_images() {
    let store = TestStore::initialised();
    assert_success(&ingest(
        &store,
        &["folder", &fixture("folder"), "--dataset", "f"],
    ));
    assert_eq!(
        store.csv(
            "SELECT count(*) AS n, sum(CASE WHEN image_size(data)['width'] = width AND image_size(data)['height'] = height THEN 1 ELSE 0 END) AS agree FROM images"
        ),
        "n,agree\n12,12\n"
    );
    assert_eq!(
        store.csv(
            "SELECT image_size(thumbnail(data, 16))['width'] AS w, image_size(thumbnail(data, 16))['height'] AS h, count(*) AS n \
             FROM images GROUP BY 1, 2 ORDER BY w"
        ),
        "w,h,n\n12,16,3\n16,12,9\n"
    );
}

/// `export jsonl --dataset D --images-out DIR` writes the stored images (resized ones as stored) with
/// `metadata.jsonl` beside them, and `vlmdb ingest jsonl DIR/metadata.jsonl` restores the dataset in another store:
/// the same image ids, splits and bytes, the same captions of each image, for every fixture format (issue 25).
#[test]
fn an_images_folder_export_ingests_back_to_the_same_dataset() {
    let source = TestStore::initialised();
    let webdataset = fixture("webdataset/shards/{000..001}.tar");
    let coco = fixture("coco/annotations/captions_train.json");
    let karpathy = fixture("karpathy/dataset_shapes.json");
    let datasets: Vec<(&str, Vec<String>)> = vec![
        (
            "coco",
            vec![
                "coco".into(),
                coco,
                "--images".into(),
                fixture("coco/images"),
                "--split".into(),
                "train".into(),
            ],
        ),
        (
            "karpathy",
            vec![
                "karpathy".into(),
                karpathy,
                "--images".into(),
                fixture("karpathy/images"),
            ],
        ),
        (
            "jsonl",
            vec!["jsonl".into(), fixture("jsonl/metadata.jsonl")],
        ),
        (
            "resized",
            vec![
                "jsonl".into(),
                fixture("jsonl/metadata.jsonl"),
                "--resize".into(),
                "16".into(),
            ],
        ),
        (
            "folder",
            vec![
                "folder".into(),
                fixture("folder"),
                "--split".into(),
                "train".into(),
            ],
        ),
        (
            "webdataset",
            vec![
                "webdataset".into(),
                webdataset,
                "--split".into(),
                "train".into(),
            ],
        ),
        ("parquet", vec!["hf-parquet".into(), fixture("hf-parquet")]),
        ("cirr", vec!["cirr".into(), fixture("cirr")]),
        ("fashioniq", vec!["fashioniq".into(), fixture("fashioniq")]),
    ];
    for (dataset, args) in &datasets {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["--dataset", dataset]);
        assert_success(&ingest(&source, &all));
    }
    let images = "SELECT image_id, split, format, sha256, width, height FROM images WHERE dataset = $d \
                  ORDER BY image_id";
    let captions = "SELECT c.image_id, c.split, c.text FROM captions c WHERE c.dataset = $d \
                    ORDER BY c.image_id, c.text";
    let rows = |store: &TestStore, sql: &str, dataset: &str| {
        let out = store.vlmdb(&[
            "sql",
            sql,
            "--param",
            &format!("d={dataset}"),
            "--format",
            "csv",
        ]);
        assert_success(&out);
        stdout(&out)
    };
    let target = TestStore::initialised();
    for (dataset, _) in &datasets {
        let dir = source.dir.path().join(format!("export-{dataset}"));
        let out = source.vlmdb(&[
            "export",
            "jsonl",
            "--dataset",
            dataset,
            "--images-out",
            dir.to_str().unwrap_or_default(),
        ]);
        assert_success(&out);
        assert!(
            stderr(&out).contains("vlmdb ingest jsonl"),
            "{}",
            stderr(&out)
        );
        let metadata = dir.join("metadata.jsonl");
        assert_success(&ingest(
            &target,
            &[
                "jsonl",
                metadata.to_str().unwrap_or_default(),
                "--dataset",
                dataset,
            ],
        ));
        let (before, after) = (
            rows(&source, images, dataset),
            rows(&target, images, dataset),
        );
        assert!(before.lines().count() > 1, "{dataset}: no images");
        assert_eq!(before, after, "{dataset}: images");
        assert_eq!(
            rows(&source, captions, dataset),
            rows(&target, captions, dataset),
            "{dataset}: captions"
        );
    }
    // The resized dataset came back as its resized bytes (compared above), 16 pixels on the longest side.
    assert_eq!(
        target.csv(
            "SELECT max(greatest(width, height)) AS side FROM images WHERE dataset = 'resized'"
        ),
        "side\n16\n"
    );

    // A directory that holds something is refused, and left as it was.
    let busy = source.dir.path().join("busy");
    std::fs::create_dir(&busy).expect("mkdir");
    std::fs::write(busy.join("keep.txt"), "mine").expect("write");
    let out = source.vlmdb(&[
        "export",
        "jsonl",
        "--dataset",
        "jsonl",
        "--images-out",
        busy.to_str().unwrap_or_default(),
    ]);
    assert_fails_with(&out, "not empty");
    assert_eq!(std::fs::read_dir(&busy).expect("dir").count(), 1);
    // An unknown dataset writes nothing.
    let none = source.dir.path().join("none");
    let out = source.vlmdb(&[
        "export",
        "jsonl",
        "--dataset",
        "nope",
        "--images-out",
        none.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!none.exists());
}

/// `export csv` of a space writes its vectors as JSON arrays; `export artifact RUN NAME --out FILE` writes a
/// stored plot (issue 25).
#[test]
fn vectors_export_as_json_arrays_and_artifacts_as_files() {
    let store = crate::common::retrieval_store();
    let out = store.vlmdb(&["export", "csv", "--table", "emb_ref"]);
    assert_success(&out);
    let text = stdout(&out);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let vector = header
        .split(',')
        .position(|c| c == "vector")
        .unwrap_or_else(|| panic!("no vector column: {header}"));
    let first = lines.next().unwrap_or_default();
    // The vector is one quoted field holding a JSON array.
    let quoted = first
        .split('"')
        .nth(1)
        .unwrap_or_else(|| panic!("no quoted vector: {first}"));
    let values: Vec<f64> = serde_json::from_str(quoted).expect("a JSON array");
    assert!(values.len() > 1, "{first}");
    assert!(vector > 0, "{header}");

    let png = store.dir.path().join("sim.png");
    let plot = store.vlmdb(&[
        "plot",
        "similarity",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "--out",
        png.to_str().unwrap_or_default(),
        "--format",
        "json",
    ]);
    assert_success(&plot);
    let report: serde_json::Value = serde_json::from_str(&stdout(&plot)).expect("json");
    let run = report["run_id"].as_str().expect("run id");
    let copy = store.dir.path().join("copy.png");
    let out = store.vlmdb(&[
        "export",
        "artifact",
        run,
        "sim.png",
        "--out",
        copy.to_str().unwrap_or_default(),
    ]);
    assert_success(&out);
    assert_eq!(
        std::fs::read(&copy).expect("copy"),
        std::fs::read(&png).expect("plot")
    );
    let missing = store.vlmdb(&["export", "artifact", run, "nope.png", "--out", "x.png"]);
    assert_fails_with(&missing, "has no artifact 'nope.png' (it has: sim.png)");
}

/// JPEGs decode to exactly the pixels Pillow gives (`Image.open(f).convert("RGB")`), as libjpeg-turbo decodes them:
/// sizes, qualities, 4:4:4 / 4:2:2 / 4:2:0, progressive, restart markers, grayscale, CMYK and an EXIF orientation
/// (not applied, as Pillow does not). The corpus and Pillow's pixels are written by fixtures/jpeg/make_corpus.py
/// (issue 24).
#[test]
fn jpeg_pixels_are_pillows() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/jpeg");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("jpg") {
            continue;
        }
        let name = path.display().to_string();
        let bytes = std::fs::read(&path).expect("jpeg");
        let (decoded, info) =
            vlmdb::image::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info.format, image::ImageFormat::Jpeg, "{name}");
        let ours = decoded.to_rgb8();
        let pillow = image::open(path.with_extension("png"))
            .unwrap_or_else(|e| panic!("{name}: reference: {e}"))
            .to_rgb8();
        assert_eq!(ours.dimensions(), pillow.dimensions(), "{name}");
        let differing = ours
            .pixels()
            .zip(pillow.pixels())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} pixels differ from Pillow's"
        );
        compared += 1;
    }
    assert_eq!(compared, 20, "the whole corpus");
}
