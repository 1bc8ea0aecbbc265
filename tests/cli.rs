//! The CLI end to end through the real binary, each test on a fresh temporary store.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::{
    TestStore, assert_fails_with, assert_success, insert_images, snapshot, stderr, stdout,
};

#[test]
fn init_creates_the_tables_once() {
    let store = TestStore::empty();
    let out = store.vlmdb(&["init"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("created images, captions, pairs"),
        "{}",
        stdout(&out)
    );
    let again = store.vlmdb(&["init"]);
    assert_success(&again);
    assert!(stdout(&again).contains("up to date"), "{}", stdout(&again));
    assert_eq!(
        store.csv("SELECT kind, status FROM runs"),
        "kind,status\ninit,finished\n",
        "only the init that created tables is a run"
    );
}

#[test]
fn every_output_format() {
    let store = TestStore::initialised();
    let sql = "SELECT 1 AS n, 'a,b' AS s, CAST(NULL AS VARCHAR) AS z";
    let table = store.vlmdb(&["sql", sql]);
    assert_success(&table);
    assert_eq!(
        stdout(&table),
        "+---+-----+------+\n| n | s   | z    |\n+---+-----+------+\n| 1 | a,b | NULL |\n+---+-----+------+\n",
        "NULL is shown apart from ''"
    );
    let csv = store.vlmdb(&["sql", sql, "--format", "csv"]);
    assert_eq!(stdout(&csv), "n,s,z\n1,\"a,b\",\n");
    let json = store.vlmdb(&["sql", sql, "--format", "json"]);
    assert_eq!(stdout(&json), "[{\"n\":1,\"s\":\"a,b\",\"z\":null}]\n");
    let ndjson = store.vlmdb(&[
        "sql",
        "SELECT * FROM generate_series(1, 2) AS t(v)",
        "--format",
        "ndjson",
    ]);
    assert_eq!(stdout(&ndjson), "{\"v\":1}\n{\"v\":2}\n");
    // Empty results keep their header.
    let empty = store.vlmdb(&["sql", "SELECT caption_id FROM captions", "--format", "csv"]);
    assert_eq!(stdout(&empty), "caption_id\n");
    let empty_json = store.vlmdb(&["sql", "SELECT caption_id FROM captions", "--format", "json"]);
    assert_eq!(stdout(&empty_json), "[]\n");
}

/// Tables show floats at six significant digits (CSV and JSON keep every digit); the results of several
/// statements in CSV are separated by an empty line, so each parses on its own (issue 25).
#[test]
fn readable_floats_and_separated_results() {
    let store = TestStore::initialised();
    let sql = "SELECT 1.0 / 3 AS third, CAST(0.1 AS FLOAT) AS tenth, 1e-7 AS tiny";
    let table = store.vlmdb(&["sql", sql]);
    assert_success(&table);
    assert!(
        stdout(&table).contains("| 0.333333 | 0.1   | 1e-7 |"),
        "{}",
        stdout(&table)
    );
    let csv = store.vlmdb(&["sql", sql, "--format", "csv"]);
    assert_eq!(
        stdout(&csv),
        "third,tenth,tiny\n0.3333333333333333,0.1,1e-7\n"
    );
    let several = store.vlmdb(&[
        "sql",
        "SELECT 1 AS a; SELECT 2 AS b, 3 AS c",
        "--format",
        "csv",
    ]);
    assert_success(&several);
    assert_eq!(stdout(&several), "a\n1\n\nb,c\n2,3\n");
}

#[test]
fn several_statements_run_in_order_from_a_file() {
    let store = TestStore::initialised();
    let file = store.dir.path().join("steps.sql");
    std::fs::write(
        &file,
        "-- two inserts and a query\n\
         INSERT INTO metrics (run_id, name, value) VALUES ($run_id, 'loss', 2.0);\n\
         INSERT INTO metrics (run_id, name, value) VALUES ($run_id, 'loss', 1.0);\n\
         SELECT name, sum(value) AS total FROM metrics GROUP BY name;\n",
    )
    .expect("write sql file");
    let out = store.vlmdb(&[
        "sql",
        "-f",
        file.to_str().expect("utf8 path"),
        "--format",
        "csv",
    ]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "count\n1\n\ncount\n1\n\nname,total\nloss,3.0\n"
    );
    // Both rows carry the run id of the one `sql` run that wrote them.
    let runs = store.csv(
        "SELECT count(DISTINCT m.run_id) AS runs, min(r.status) AS status, min(r.kind) AS kind \
         FROM metrics m JOIN runs r ON m.run_id = r.run_id",
    );
    assert_eq!(runs, "runs,status,kind\n1,finished,sql\n");
}

#[test]
fn hostile_parameters_stay_literal() {
    let store = TestStore::initialised();
    let hostile = "v=x' OR '1'='1";
    let plain = store.vlmdb(&[
        "sql",
        "SELECT $v AS v",
        "--param",
        hostile,
        "--format",
        "csv",
    ]);
    assert_success(&plain);
    assert_eq!(stdout(&plain), "v\nx' OR '1'='1\n");

    let function = store.vlmdb(&[
        "sql",
        "SELECT count(*) AS n FROM generate_series(1, $n)",
        "--param",
        "n=7",
        "--format",
        "csv",
    ]);
    assert_success(&function);
    assert_eq!(stdout(&function), "n\n7\n");

    let ddl = store.vlmdb(&[
        "sql",
        "CREATE VIEW h AS SELECT $v AS v; SELECT v, length(v) AS len FROM h",
        "--param",
        hostile,
        "--format",
        "csv",
    ]);
    assert_success(&ddl);
    assert_eq!(stdout(&ddl), "v,len\nx' OR '1'='1,12\n");

    let forced = store.vlmdb(&[
        "sql",
        "SELECT arrow_typeof($n) AS t",
        "--param",
        "n:text=5",
        "--format",
        "csv",
    ]);
    assert_eq!(stdout(&forced), "t\nUtf8\n");

    let reserved = store.vlmdb(&["sql", "SELECT 1", "--param", "run_id=mine"]);
    assert_fails_with(&reserved, "parameter run_id");
    let unbound = store.vlmdb(&["sql", "SELECT $nope"]);
    assert_fails_with(&unbound, "parameter $nope: not bound");
}

#[test]
fn failed_writes_are_failed_runs_and_change_nothing() {
    let store = TestStore::initialised();
    insert_images(&store, &["d/i1", "d/i2"]);
    let ok = store.vlmdb(&[
        "sql",
        "INSERT INTO captions (caption_id, image_id, dataset, text, source, run_id) \
         VALUES ('d/1', 'd/i1', 'd', 'a cat', 'human', $run_id)",
    ]);
    assert_success(&ok);
    let before = store.csv("SELECT count(*) AS n FROM captions");
    assert_eq!(before, "n\n1\n");

    let bad = store.vlmdb(&[
        "sql",
        "INSERT INTO captions (caption_id, image_id, dataset, text, source, run_id) \
         VALUES ('d/2', 'd/i2', 'd', NULL, 'human', $run_id)",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert_eq!(store.csv("SELECT count(*) AS n FROM captions"), before);

    let runs = store.csv(
        "SELECT status, error IS NOT NULL AS has_error, finished_at IS NOT NULL AS closed, inputs \
         FROM runs WHERE kind = 'sql' ORDER BY started_at",
    );
    let lines: Vec<&str> = runs.lines().collect();
    assert_eq!(lines.len(), 4, "{runs}");
    assert!(lines[2].starts_with("finished,false,true,"), "{runs}");
    assert!(lines[3].starts_with("failed,true,true,"), "{runs}");
    // The caption row and its run are joined by id.
    assert_eq!(
        store.csv("SELECT r.status FROM captions c JOIN runs r ON c.run_id = r.run_id"),
        "status\nfinished\n"
    );
}

#[test]
fn runs_list_and_show() {
    let store = TestStore::initialised();
    let list = store.vlmdb(&["runs", "list", "--format", "csv"]);
    assert_success(&list);
    let text = stdout(&list);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("run_id,kind,name,status,started_at,finished_at,error")
    );
    let row = lines.next().expect("the init run");
    let id = row.split(',').next().expect("run id").to_string();
    assert!(row.contains(",init,init,finished,"), "{row}");

    let show = store.vlmdb(&["runs", "show", &id]);
    assert_success(&show);
    let shown = stdout(&show);
    assert!(shown.contains("| status       | finished"), "{shown}");
    assert!(shown.contains("| code_version | "), "{shown}");

    let missing = store.vlmdb(&["runs", "show", "x' OR '1'='1"]);
    assert_fails_with(&missing, "run 'x' OR '1'='1' not found");

    let empty = TestStore::initialised();
    let none = empty.vlmdb(&["runs", "--format", "csv"]);
    assert_success(&none);
    assert!(
        stdout(&none).starts_with("run_id,kind,name,status,started_at,finished_at,error\n"),
        "{}",
        stdout(&none)
    );
}

/// A mistyped --db: every command that works on an existing store says there is none and creates nothing; the
/// commands that bring data in create it.
#[test]
fn a_missing_store_is_an_error_and_nothing_is_created() {
    let missing = TestStore::empty();
    for args in [
        vec!["sql", "SELECT count(*) FROM captions"],
        vec!["runs", "list"],
        vec!["runs"],
        vec![
            "search",
            "--model",
            "fixtures/models/tiny-clip",
            "--text",
            "a red square",
        ],
        vec!["eval", "--model", "ref", "--dataset", "shapes"],
        vec!["train", "--resume"],
        vec!["check"],
        vec!["export", "jsonl", "--dataset", "shapes"],
    ] {
        let out = missing.vlmdb(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            crate::common::stderr(&out).contains("no vlmdb store at"),
            "{args:?}: {}",
            crate::common::stderr(&out)
        );
        assert!(!missing.path().exists(), "{args:?} created the store");
    }
    assert_success(&missing.vlmdb(&["init"]));
    assert!(missing.path().is_dir());
}

#[test]
fn errors_are_one_line_with_exit_code_2() {
    let store = TestStore::initialised();
    assert_fails_with(
        &store.vlmdb(&["sql", "SELECT * FROM nope"]),
        "table 'vlmdb.store.nope' not found",
    );
    assert_fails_with(&store.vlmdb(&["sql", "SELEC 1"]), "SELEC");
    let bad_format = store.vlmdb(&["sql", "SELECT 1", "--format", "xml"]);
    assert_eq!(bad_format.status.code(), Some(2));
    assert!(
        stderr(&bad_format).contains("xml"),
        "{}",
        stderr(&bad_format)
    );
    let missing_file = store.vlmdb(&["sql", "-f", "/no/such/file.sql"]);
    assert_fails_with(&missing_file, "/no/such/file.sql");

    let file = store.dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write file");
    let mut command = std::process::Command::new(crate::common::binary());
    let out = command
        .args(["--db", file.to_str().expect("utf8"), "sql", "SELECT 1"])
        .output()
        .expect("run");
    assert_fails_with(&out, "is not a directory");
}

#[test]
fn read_only_store_refuses_writes_and_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let store = TestStore::initialised();
    let path = store.path();
    let before = snapshot(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let insert = store.vlmdb(&[
        "sql",
        "INSERT INTO metrics (run_id, name, value) VALUES ('r', 'x', 1.0)",
    ]);
    let reads = store.vlmdb(&[
        "sql",
        "SELECT count(*) AS n FROM metrics",
        "--format",
        "csv",
    ]);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
    assert_fails_with(&insert, "is read-only");
    assert_success(&reads);
    assert_eq!(stdout(&reads), "n\n0\n");
    assert_eq!(
        snapshot(&path),
        before,
        "a refused write left the store as it was"
    );

    let fresh = TestStore::empty();
    std::fs::create_dir(fresh.path()).expect("mkdir");
    std::fs::set_permissions(fresh.path(), std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let init = fresh.vlmdb(&["init"]);
    std::fs::set_permissions(fresh.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod back");
    assert_fails_with(&init, "is read-only");
    assert!(snapshot(&fresh.path()).is_empty());
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let store = TestStore::initialised();
    let mut child = store
        .command(&[
            "sql",
            "SELECT * FROM generate_series(1, 300000)",
            "--format",
            "csv",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut header = String::new();
    reader.read_line(&mut header).expect("read header");
    assert_eq!(header, "value\n");
    drop(reader);
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn db_from_the_environment() {
    let store = TestStore::initialised();
    let out = std::process::Command::new(crate::common::binary())
        .env("VLMDB_DB", store.path())
        .args(["sql", "SELECT count(*) AS n FROM runs", "--format", "csv"])
        .output()
        .expect("run");
    assert_success(&out);
    assert_eq!(stdout(&out), "n\n1\n");
}

#[test]
fn deep_expressions_plan_without_overflowing_the_stack() {
    // Issue 24: 200 terms or 300 ORs aborted with a stack overflow.
    let store = TestStore::initialised();
    let sum = vec!["1"; 200].join(" + ");
    assert_eq!(store.csv(&format!("SELECT {sum} AS n")), "n\n200\n");
    let ors = (0..300)
        .map(|i| format!("x = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    assert_eq!(
        store.csv(&format!(
            "SELECT count(*) AS n FROM (VALUES (1), (299), (500)) t(x) WHERE {ors}"
        )),
        "n\n2\n"
    );
}

#[test]
fn a_billion_shard_pattern_is_refused_before_expanding() {
    let store = TestStore::initialised();
    let out = store.vlmdb(&[
        "ingest",
        "webdataset",
        "x{0..999}{0..999}{0..999}.tar",
        "--dataset",
        "w",
    ]);
    assert_fails_with(&out, "names 1000000000 shards; at most 100000");
}

/// A query that needs more memory than `--memory-limit` fails with an error naming the limit, exit 2, instead of
/// the process running out of memory (issue 24 item 5); a bad size is a usage error.
#[test]
fn a_query_beyond_the_memory_limit_is_an_error() {
    let store = TestStore::initialised();
    let join = "SELECT count(*) AS n FROM generate_series(1, 3000000) a(x) \
                JOIN generate_series(1, 3000000) b(y) ON a.x = b.y";
    let out = store.vlmdb(&["--memory-limit", "2M", "sql", join]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Resources exhausted") && err.contains("--memory-limit"),
        "{err}"
    );
    let bad = store.vlmdb(&["--memory-limit", "lots", "sql", "SELECT 1"]);
    assert_fails_with(&bad, "--memory-limit 'lots'");
    let fine = store.vlmdb(&[
        "--memory-limit",
        "1G",
        "sql",
        "SELECT 1 AS one",
        "--format",
        "csv",
    ]);
    assert_success(&fine);
}
