//! Integrity (issue 21): what SQL may touch, what ingest and export refuse, what concurrent writers get.

use crate::common::{TestStore, assert_success, insert_images, stderr};

#[test]
fn sql_cannot_write_or_read_the_store_files() {
    let store = TestStore::initialised();
    let before = store.csv("SELECT count(*) AS n FROM runs");
    let versions = store.path().join("runs.lance").join("_versions");
    let manifest = std::fs::read_dir(&versions)
        .expect("versions")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "manifest"))
        .expect("a manifest");
    let copy = format!(
        "COPY (SELECT 'pwned' AS x) TO '{}' STORED AS CSV",
        manifest.display()
    );
    let out = store.vlmdb(&["sql", &copy]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("inside the store"),
        "{}",
        stderr(&out)
    );
    // A path that climbs back into the store is refused too, and so is reading the store's files.
    let climbing = format!(
        "COPY (SELECT 1 AS x) TO '{}/../store/new.csv' STORED AS CSV",
        store.path().display()
    );
    assert_eq!(store.vlmdb(&["sql", &climbing]).status.code(), Some(2));
    let external = format!(
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}'",
        manifest.display()
    );
    assert_eq!(store.vlmdb(&["sql", &external]).status.code(), Some(2));
    // The table is intact.
    assert_eq!(store.csv("SELECT count(*) AS n FROM runs"), before);

    // Outside the store COPY works, unless external access is off.
    let target = store.dir.path().join("out.csv");
    let export = format!(
        "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
        target.display()
    );
    let out = store.vlmdb(&["--no-external-access", "sql", &export]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("external access is off"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists());
    assert_success(&store.vlmdb(&["sql", &export]));
    assert!(target.exists());
}

fn fixture_image(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/datasets/karpathy/images")
        .join(name)
}

/// `ingest karpathy` of the fixture dataset (30 images, 150 captions) as dataset `dataset`, then `extra`.
fn shapes_ingest(dataset: &str, extra: &[&str]) -> Vec<String> {
    let root =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/datasets/karpathy");
    let mut args: Vec<String> = ["ingest", "karpathy"].map(String::from).into();
    args.push(root.join("dataset_shapes.json").display().to_string());
    args.push("--images".into());
    args.push(root.join("images").display().to_string());
    args.extend(["--dataset".to_string(), dataset.to_string()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn id_collisions_inside_one_input_are_rejected_naming_both() {
    let store = TestStore::initialised();
    let dir = store.dir.path().join("karpathy");
    std::fs::create_dir_all(&dir).expect("dir");
    for name in ["scene_001.jpg", "scene_002.png"] {
        std::fs::copy(fixture_image(name), dir.join(name)).expect("copy image");
    }
    // Two images whose captions share sentid 7.
    let file = dir.join("dataset.json");
    std::fs::write(
        &file,
        r#"{"images": [
            {"filename": "scene_001.jpg", "split": "train", "sentences": [{"raw": "first", "sentid": 7}]},
            {"filename": "scene_002.png", "split": "train", "sentences": [{"raw": "second", "sentid": 7}]}
        ]}"#,
    )
    .expect("write dataset");
    let file = file.display().to_string();
    let args = ["ingest", "karpathy", &file, "--dataset", "k"];
    for _ in 0..2 {
        let out = store.vlmdb(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        // One caption has the id, the same one every time.
        assert_eq!(
            store.csv("SELECT caption_id, image_id, text FROM captions"),
            "caption_id,image_id,text\nk/7,k/scene_001,first\n"
        );
    }
    let errors = store.csv("SELECT DISTINCT item, reason FROM ingest_errors");
    assert!(
        errors.contains("caption 7 of image scene_002")
            && errors.contains("duplicate caption id 7: caption 7 of image scene_001 has it too"),
        "{errors}"
    );

    // Three images with one stem in a folder: one is stored, the others are rejected naming it.
    let folder = store.dir.path().join("folder");
    std::fs::create_dir_all(&folder).expect("dir");
    std::fs::copy(fixture_image("scene_001.jpg"), folder.join("full.jpg")).expect("copy");
    std::fs::copy(fixture_image("scene_002.png"), folder.join("full.png")).expect("copy");
    std::fs::write(folder.join("full.txt"), "a caption").expect("caption");
    let folder = folder.display().to_string();
    let out = store.vlmdb(&["ingest", "folder", &folder, "--dataset", "f"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let errors = store.csv("SELECT item, reason FROM ingest_errors WHERE dataset = 'f'");
    assert!(
        errors.contains("full.png") && errors.contains("full.jpg has the same stem"),
        "{errors}"
    );
}

#[test]
fn export_replaces_only_regular_files_and_leaves_nothing_behind() {
    let store = TestStore::initialised();
    let dir = store.dir.path();
    let export = |out: &std::path::Path| {
        let out = out.display().to_string();
        store.vlmdb(&["export", "csv", "--table", "runs", "--out", &out])
    };
    // A device, a link and a directory at the path are refused and left as they are.
    let out = export(std::path::Path::new("/dev/full"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert!(std::fs::metadata("/dev/full").is_ok_and(|m| !m.is_file()));
    let target = dir.join("target.csv");
    std::fs::write(&target, "keep").expect("target");
    let link = dir.join("link.csv");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    assert_eq!(export(&link).status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&target).expect("target"), "keep");
    assert_eq!(export(dir).status.code(), Some(2));
    // An unrelated `.partial` beside the target survives, and a regular file is replaced whole.
    let report = dir.join("report.csv");
    let partial = dir.join("report.partial");
    std::fs::write(&partial, "mine").expect("partial");
    assert_success(&export(&report));
    assert!(
        std::fs::read_to_string(&report)
            .expect("report")
            .starts_with("run_id,")
    );
    assert_eq!(std::fs::read_to_string(&partial).expect("partial"), "mine");
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("vlmdb-partial"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn folder_captions_stay_inside_the_root_and_small() {
    let store = TestStore::initialised();
    let root = store.dir.path().join("folder");
    std::fs::create_dir_all(&root).expect("dir");
    let secret = store.dir.path().join("secret.txt");
    std::fs::write(&secret, "a secret").expect("secret");
    for (image, caption) in [("a", None), ("b", None), ("c", None), ("d", Some("fine"))] {
        std::fs::copy(
            fixture_image("scene_001.jpg"),
            root.join(format!("{image}.jpg")),
        )
        .expect("copy");
        if let Some(text) = caption {
            std::fs::write(root.join(format!("{image}.txt")), text).expect("caption");
        }
    }
    std::os::unix::fs::symlink(&secret, root.join("a.txt")).expect("link out");
    std::os::unix::fs::symlink("/dev/zero", root.join("b.txt")).expect("link to a device");
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("c.txt"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let folder = root.display().to_string();
    let out = store.vlmdb(&["ingest", "folder", &folder, "--dataset", "f"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(store.csv("SELECT text FROM captions"), "text\nfine\n");
    let errors = store.csv("SELECT item, reason FROM ingest_errors ORDER BY item");
    for (item, reason) in [
        ("a.jpg", "outside the images root"),
        ("b.jpg", "outside the images root"),
        ("c.jpg", "is not a file"),
    ] {
        assert!(
            errors
                .lines()
                .any(|l| l.contains(item) && l.contains(reason)),
            "no row for {item} with {reason:?}:\n{errors}"
        );
    }
}

#[test]
fn a_read_only_table_is_refused_before_anything_is_written() {
    use std::os::unix::fs::PermissionsExt;
    let store = TestStore::initialised();
    let images = store.path().join("images.lance");
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let root = store.dir.path().join("folder");
    std::fs::create_dir_all(&root).expect("dir");
    std::fs::copy(fixture_image("scene_001.jpg"), root.join("a.jpg")).expect("copy");
    let folder = root.display().to_string();
    let out = store.vlmdb(&["ingest", "folder", &folder, "--dataset", "f"]);
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("images.lance is read-only")
            && stderr(&out).contains("table 'images'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(store.csv("SELECT count(*) AS n FROM images"), "n\n0\n");
    assert_eq!(
        store.csv("SELECT count(*) AS n FROM runs WHERE kind = 'ingest'"),
        "n\n0\n"
    );
}

/// Start `vlmdb` with `args` on `store` in the background.
fn spawn(store: &TestStore, args: &[&str]) -> std::process::Child {
    store
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start vlmdb")
}

fn finished(child: std::process::Child) -> std::process::Output {
    child.wait_with_output().expect("wait for vlmdb")
}

#[test]
fn concurrent_writers_never_store_a_key_twice() {
    let store = TestStore::initialised();
    let ingest = shapes_ingest("same", &[]);
    let ingest: Vec<&str> = ingest.iter().map(String::as_str).collect();
    let both = [spawn(&store, &ingest), spawn(&store, &ingest)];
    for child in both {
        let out = finished(child);
        assert_success(&out);
    }
    assert_eq!(
        store.csv("SELECT count(*) AS n, count(DISTINCT image_id) AS ids FROM images"),
        "n,ids\n30,30\n"
    );
    assert_eq!(
        store.csv("SELECT count(*) AS n, count(DISTINCT caption_id) AS ids FROM captions"),
        "n,ids\n150,150\n"
    );

    let model = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/models/tiny-clip")
        .display()
        .to_string();
    let embed = ["embed", "--model", &model, "--images"];
    let both = [spawn(&store, &embed), spawn(&store, &embed)];
    for child in both {
        assert_success(&finished(child));
    }
    let table = store
        .csv("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'emb_%'")
        .lines()
        .nth(1)
        .expect("a space table")
        .to_string();
    assert_eq!(
        store.csv(&format!(
            "SELECT count(*) AS n, count(DISTINCT item_id) AS ids FROM {table}"
        )),
        "n,ids\n30,30\n"
    );
    // Every item has one vector, so exact search over the space works.
    let knn = format!(
        "SELECT count(*) AS n FROM knn('{}:image', '{}:image', 2)",
        &table[4..],
        &table[4..]
    );
    assert_eq!(store.csv(&knn), "n\n60\n");
}

#[test]
fn each_ingest_commit_has_its_images_captions() {
    let store = TestStore::initialised();
    let args = shapes_ingest("s", &["--chunk", "10"]);
    let out = store.vlmdb(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&out);
    // Version 1 of each table is `init`'s; the 30 images went in as 3 chunks, each followed by its captions, so
    // whatever point an interruption stops at, at most one chunk's images lack their captions.
    for (version, images) in [(2, 10), (3, 20), (4, 30)] {
        let counts = store.csv(&format!(
            "SELECT (SELECT count(*) FROM \"images@{version}\") AS images, \
                    (SELECT count(DISTINCT image_id) FROM \"captions@{version}\") AS captioned"
        ));
        assert_eq!(
            counts,
            format!("images,captioned\n{images},{images}\n"),
            "version {version}"
        );
    }
}

#[test]
fn a_run_whose_process_is_gone_reads_as_interrupted() {
    let store = TestStore::initialised();
    // A process that has ended: its pid names no process now (or another one, started later).
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    let host = host.trim();
    let sql = format!(
        "INSERT INTO runs (run_id, kind, name, status, config, inputs, models, code_version, started_at, \
                           host, pid, heartbeat_at) VALUES \
         ('gone-here', 'embed', 'x', 'running', '{{}}', '{{}}', '{{}}', 'test', now(), '{host}', {pid}, now()), \
         ('stale-elsewhere', 'embed', 'x', 'running', '{{}}', '{{}}', '{{}}', 'test', now(), 'another-host', 1, \
          now() - INTERVAL '1 hour'), \
         ('alive-elsewhere', 'embed', 'x', 'running', '{{}}', '{{}}', '{{}}', 'test', now(), 'another-host', 1, now())"
    );
    assert_success(&store.vlmdb(&["sql", &sql]));
    let runs = store.vlmdb(&["runs", "list", "--format", "csv"]);
    assert_success(&runs);
    assert!(
        stderr(&runs).contains("run gone-here was interrupted"),
        "{}",
        stderr(&runs)
    );
    assert_eq!(
        store.csv("SELECT run_id, status FROM runs WHERE kind = 'embed' ORDER BY run_id"),
        "run_id,status\nalive-elsewhere,running\ngone-here,interrupted\nstale-elsewhere,interrupted\n"
    );
    let error = store.csv("SELECT error FROM runs WHERE run_id = 'gone-here'");
    assert!(
        error.contains(&format!(
            "process {pid} on {host} ended without closing the run"
        )),
        "{error}"
    );
    // This process's own runs record it.
    assert_eq!(
        store.csv(
            "SELECT host IS NOT NULL AND pid IS NOT NULL AND heartbeat_at IS NOT NULL AS recorded \
                   FROM runs WHERE kind = 'init'"
        ),
        "recorded\ntrue\n"
    );
}

#[test]
fn ingest_names_the_interrupted_run_it_continues() {
    let store = TestStore::initialised();
    let args = shapes_ingest("s", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_success(&store.vlmdb(&args));
    // An interrupted run of the same ingest (its configuration copied from the finished one).
    assert_success(&store.vlmdb(&[
        "sql",
        "INSERT INTO runs (run_id, kind, name, status, config, seed, inputs, models, code_version, started_at) \
         SELECT 'earlier-ingest', kind, name, 'interrupted', config, seed, inputs, models, code_version, started_at \
         FROM runs WHERE kind = 'ingest'",
    ]));
    let again = store.vlmdb(&args);
    assert_success(&again);
    assert!(
        stderr(&again).contains("continues interrupted run earlier-ingest"),
        "{}",
        stderr(&again)
    );
    let notes = store.csv(
        "SELECT strpos(config, '\"continues\":\"earlier-ingest\"') > 0 AS named FROM runs \
         WHERE kind = 'ingest' AND run_id <> 'earlier-ingest' ORDER BY started_at DESC LIMIT 1",
    );
    assert_eq!(notes, "named\ntrue\n");
}

#[test]
fn concurrent_sql_writers_all_land() {
    let store = TestStore::initialised();
    // 4 processes × 5 single-row INSERTs (each its own `sql` run) at once: every row and every run is stored.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            (0..5)
                .map(|i| {
                    let sql = format!(
                        "INSERT INTO metrics (run_id, name, value, step) VALUES ($run_id, 'w{w}', {i}, {i})"
                    );
                    spawn(&store, &["sql", &sql])
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for child in writers.into_iter().flatten() {
        assert_success(&finished(child));
    }
    assert_eq!(store.csv("SELECT count(*) AS n FROM metrics"), "n\n20\n");
    assert_eq!(
        store.csv("SELECT count(*) AS n FROM runs WHERE kind = 'sql' AND status = 'finished'"),
        "n\n20\n"
    );
}

#[test]
fn a_truncated_manifest_is_an_error_naming_the_table() {
    let store = TestStore::initialised();
    insert_images(&store, &["d/i"]);
    for id in ["d/1", "d/2"] {
        let sql = format!(
            "INSERT INTO captions (caption_id, image_id, dataset, text, source, run_id) \
             VALUES ('{id}', 'd/i', 'd', 'a cat', 'human', 'r')"
        );
        assert_success(&store.vlmdb(&["sql", &sql]));
    }
    // The newest manifest, cut in half.
    let versions = store.path().join("captions.lance").join("_versions");
    let newest = std::fs::read_dir(&versions)
        .expect("versions")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "manifest"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("a manifest");
    let bytes = std::fs::read(&newest).expect("manifest");
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).expect("truncate");
    let out = store.vlmdb(&["sql", "SELECT count(*) FROM captions"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("table 'captions' cannot be read at its latest version")
            && err.contains("captions.lance/_versions")
            && !err.contains(".cargo/registry"),
        "{err}"
    );
    // An undamaged earlier version still reads by time travel (issue 24 item 1): one caption at version 2.
    assert_eq!(
        store.csv("SELECT count(*) AS n FROM \"captions@2\""),
        "n\n1\n"
    );
}

#[test]
fn a_table_directory_without_versions_is_an_error_never_a_fresh_table() {
    let store = TestStore::initialised();
    let args = shapes_ingest("s", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_success(&store.vlmdb(&args));
    let sound = store.vlmdb(&["check"]);
    assert_success(&sound);
    assert!(
        crate::common::stdout(&sound).contains("images: ok (2 versions, 30 rows)"),
        "{}",
        crate::common::stdout(&sound)
    );
    std::fs::remove_dir_all(store.path().join("images.lance").join("_versions")).expect("rm");
    // `vlmdb check` names the damaged table and exits 1; the others read.
    let checked = store.vlmdb(&["check"]);
    assert_eq!(checked.status.code(), Some(1), "{}", stderr(&checked));
    let report = crate::common::stdout(&checked);
    assert!(
        report.contains("images: DAMAGED: images.lance exists but holds no readable version"),
        "{report}"
    );
    assert!(report.contains("captions: ok"), "{report}");
    let out = store.vlmdb(&args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}\n{}",
        crate::common::stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("table 'images' cannot be read")
            && stderr(&out).contains("_versions"),
        "{}",
        stderr(&out)
    );
    // Nothing was started afresh in its place.
    assert!(!store.path().join("images.lance").join("_versions").exists());
    // Past versions are read-only for DROP too.
    let drop = store.vlmdb(&["sql", "DROP TABLE \"captions@1\""]);
    assert_eq!(drop.status.code(), Some(2), "{}", stderr(&drop));
}

/// Re-running a finished eval or mine over the same inputs reports that run and writes nothing; `--again` runs a
/// replicate; a changed input (a new caption) makes it a new experiment.
#[test]
fn rerunning_eval_or_mine_reports_the_finished_run() {
    let store = crate::common::retrieval_store();
    let count = |sql: &str| -> String {
        store
            .csv(sql)
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    for (verb, extra, table) in [
        ("eval", vec!["--split", "test"], "metrics"),
        ("mine", vec!["--split", "test", "-k", "2"], "hard_negatives"),
    ] {
        let mut args = vec![verb, "--model", "ref", "--dataset", "shapes"];
        args.extend(extra.iter().copied());
        let first = store.vlmdb(&args);
        assert_success(&first);
        let rows = count(&format!("SELECT count(*) FROM {table}"));
        let again = store.vlmdb(&args);
        assert_success(&again);
        let said = crate::common::stdout(&again);
        assert!(
            said.contains("already finished with this configuration"),
            "{verb}: {said}"
        );
        // The stored result again (mine's summary leaves out directions that found nothing).
        let before = crate::common::stdout(&first);
        for line in said.lines().filter(|l| l.starts_with('|')) {
            assert!(before.contains(line), "{verb}: {line} not in\n{before}");
        }
        assert_eq!(
            count(&format!("SELECT count(*) FROM {table}")),
            rows,
            "{verb} wrote again"
        );
        assert_eq!(
            count(&format!("SELECT count(*) FROM runs WHERE kind = '{verb}'")),
            "1"
        );

        let mut replicate = args.clone();
        replicate.push("--again");
        assert_success(&store.vlmdb(&replicate));
        assert_eq!(
            count(&format!("SELECT count(*) FROM runs WHERE kind = '{verb}'")),
            "2"
        );
    }
    assert_success(&store.vlmdb(&[
        "sql",
        "INSERT INTO captions (caption_id, image_id, dataset, split, text, source, run_id) \
         SELECT 'shapes/extra', image_id, 'shapes', 'train', 'one more caption', 'human', $run_id \
         FROM images WHERE dataset = 'shapes' LIMIT 1",
    ]));
    let changed = store.vlmdb(&[
        "eval",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "--split",
        "test",
    ]);
    assert_success(&changed);
    assert!(!crate::common::stdout(&changed).contains("already finished"));
}

/// Re-running a finished cluster run reports its stored sizes and inertia and writes nothing; another seed or
/// `--again` runs anew.
#[test]
fn rerunning_cluster_reports_the_finished_run() {
    let store = crate::common::retrieval_store();
    let count = |verb: &str| -> String {
        store
            .csv(&format!("SELECT count(*) FROM runs WHERE kind = '{verb}'"))
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    let args = [
        "cluster",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "2",
        "--seed",
        "4",
    ];
    let first = crate::common::stdout(&store.vlmdb(&args));
    let rows = store.csv("SELECT count(*) FROM clusters");
    let again = store.vlmdb(&args);
    assert_success(&again);
    let said = crate::common::stdout(&again);
    assert!(said.contains("already finished"), "{said}");
    let summary = |line: &str| line.split(" (run ").next().unwrap_or_default().to_string();
    assert_eq!(
        summary(&first),
        summary(&said),
        "the stored sizes and inertia"
    );
    assert_eq!(store.csv("SELECT count(*) FROM clusters"), rows);
    assert_eq!(count("cluster"), "1");
    let other_seed = store.vlmdb(&[
        "cluster",
        "--model",
        "ref",
        "--dataset",
        "shapes",
        "-k",
        "2",
        "--seed",
        "5",
    ]);
    assert!(!crate::common::stdout(&other_seed).contains("already finished"));
    let mut replicate = args.to_vec();
    replicate.push("--again");
    assert!(!crate::common::stdout(&store.vlmdb(&replicate)).contains("already finished"));
    assert_eq!(count("cluster"), "3");
}

/// A table whose creation was killed before its first version (a directory with neither a version nor data, as
/// kill -9 during `embed`'s first write leaves it) is created afresh by the next write: nothing was ever stored
/// there, so there is nothing to protect.
#[test]
fn a_table_creation_killed_before_its_first_version_is_redone() {
    let store = TestStore::initialised();
    let args = shapes_ingest("s", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_success(&store.vlmdb(&args));
    let space = vlmdb::models::ModelFiles::resolve("fixtures/models/tiny-clip")
        .expect("tiny-clip")
        .space();
    let directory = store.path().join(format!("emb_{space}.lance"));
    std::fs::create_dir_all(directory.join("_transactions")).expect("mkdir");
    std::fs::write(directory.join("_transactions").join("0-x.txn"), b"partial").expect("txn");
    let checked = store.vlmdb(&["check"]);
    assert_success(&checked);
    assert!(
        crate::common::stdout(&checked).contains(&format!("emb_{space}: not created yet")),
        "{}",
        crate::common::stdout(&checked)
    );
    let out = store.vlmdb(&["embed", "--model", "fixtures/models/tiny-clip", "--images"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("its creation had been interrupted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        store.csv(&format!("SELECT count(*) AS n FROM emb_{space}")),
        "n\n30\n"
    );
}
