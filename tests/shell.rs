//! The shell driven through piped stdin, as a script would drive it.

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdout, Stdio};

use crate::common::{TestStore, assert_success, insert_images, stderr, stdout};

fn shell(store: &TestStore, input: &str) -> std::process::Output {
    let mut child = store
        .command(&["shell", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait shell")
}

#[test]
fn statements_span_lines_and_no_prompt_is_printed() {
    let store = TestStore::initialised();
    let out = shell(&store, "SELECT\n  1 AS a,\n  2 AS b;\nSELECT 3 AS c\n");
    assert_success(&out);
    // The last statement has no `;`: end of input runs it. CSV results are separated by an empty line.
    assert_eq!(stdout(&out), "a,b\n1,2\n\nc\n3\n");
}

#[test]
fn an_error_prints_and_the_shell_keeps_going() {
    let store = TestStore::initialised();
    let out = shell(
        &store,
        "SELECT * FROM nope;\nSELEC 2;\nSELECT 'still here' AS s;\n",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed statement in a script exits 1"
    );
    assert_eq!(stdout(&out), "s\nstill here\n");
    let err = stderr(&out);
    assert!(err.contains("table 'vlmdb.store.nope' not found"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error: ")).count(),
        2,
        "{err}"
    );
}

#[test]
fn meta_commands() {
    let store = TestStore::initialised();
    let out = shell(
        &store,
        "\\d\n\\d captions\n\\df\n\\df+\n\\df abs\n\\df truncate_dim\n\\df embed_image\n\\format json\nSELECT 1 AS one;\n\\timing\nSELECT 2 AS two;\n\\?\n\\q\nSELECT 'after quit';\n",
    );
    assert_success(&out);
    let text = stdout(&out);
    // \d: tables with rows and version.
    assert!(text.contains("table,rows,version\n"), "{text}");
    assert!(text.contains("captions,0,1\n"), "{text}");
    assert!(text.contains("runs,1,"), "{text}");
    // \d captions: columns, types and the docs from schemas/captions.schema.
    assert!(
        text.contains("column,type,nullable,description\n"),
        "{text}"
    );
    assert!(
        text.contains("caption_id,Utf8,false,stable id: <dataset>/<source id>\n"),
        "{text}"
    );
    // \df lists vlmdb's functions with their one-line description, \df+ DataFusion's built-ins after them;
    // \df NAME shows the whole doc.
    let listings: Vec<&str> = text.split("function,from,kind,description\n").collect();
    assert_eq!(listings.len(), 3, "{text}");
    let (own, all) = (listings[1], listings[2]);
    assert!(own.contains("knn,vlmdb,table,"), "{own}");
    assert!(!own.contains("datafusion"), "{own}");
    assert!(all.contains("generate_series,datafusion,table,"), "{all}");
    assert!(
        all.find(",vlmdb,").expect("vlmdb's") < all.find(",datafusion,").expect("built-ins"),
        "vlmdb's functions come first: {all}"
    );
    assert!(
        text.contains("abs (scalar function)\nReturns the absolute value of a number."),
        "{text}"
    );
    assert!(text.contains("Syntax: abs(numeric_expression)"), "{text}");
    // vlmdb's own functions are listed and documented the same way.
    assert!(
        text.contains("cosine_similarity,vlmdb,scalar,\"Cosine similarity of two vectors"),
        "{text}"
    );
    assert!(
        text.contains("truncate_dim (scalar function)\nThe first d dimensions of a vector"),
        "{text}"
    );
    assert!(
        text.contains("  d: The number of leading dimensions to keep"),
        "{text}"
    );
    // The model functions (async in DataFusion) carry their docs too.
    assert!(
        text.contains("embed_image,vlmdb,scalar,\"The L2-normalised embedding of an image"),
        "{text}"
    );
    assert!(
        text.contains("embed_image (scalar function)\nThe L2-normalised embedding of an image"),
        "{text}"
    );
    // \format json switches the format.
    assert!(text.contains("[{\"one\":1}]\n"), "{text}");
    assert!(text.contains("[{\"two\":2}]\n"), "{text}");
    // \timing prints times on stderr, keeping stdout clean.
    let err = stderr(&out);
    assert!(err.contains("Timing is on."), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("Time: ")).count(),
        1,
        "{err}"
    );
    // \? prints help; \q stops before the last statement.
    assert!(text.contains("\\df NAME"), "{text}");
    assert!(!text.contains("after quit"), "{text}");
}

/// `\\o FILE` sends results to a file until `\\o`, `\\i FILE` runs a file (its last statement may lack `;`, and it
/// may include others), `\\x` shows one line per column (issue 25).
#[test]
fn output_file_included_files_and_expanded_display() {
    let store = TestStore::initialised();
    let dir = store.dir.path();
    std::fs::write(dir.join("inner.sql"), "SELECT 4 AS four;\n").expect("inner");
    std::fs::write(
        dir.join("outer.sql"),
        format!(
            "SELECT 5 AS five;\n\\i {}\n\\x\nSELECT 1 AS a, 'b' AS bee;\n\\x off\nSELECT 6\n  AS six",
            dir.join("inner.sql").display()
        ),
    )
    .expect("outer");
    let results = dir.join("results.txt");
    let out = shell(
        &store,
        &format!(
            "\\format table\n\\o {}\n\\i {}\n\\o\nSELECT 7 AS seven;\n",
            results.display(),
            dir.join("outer.sql").display()
        ),
    );
    assert_success(&out);
    assert_eq!(
        std::fs::read_to_string(&results).expect("results file"),
        "+------+\n| five |\n+------+\n| 5    |\n+------+\n\
         +------+\n| four |\n+------+\n| 4    |\n+------+\n\
         -[ RECORD 1 ]-------------\na   | 1\nbee | b\n\
         +-----+\n| six |\n+-----+\n| 6   |\n+-----+\n"
    );
    assert_eq!(
        stdout(&out),
        "+-------+\n| seven |\n+-------+\n| 7     |\n+-------+\n"
    );
    let missing = shell(&store, "\\i /no/such/file.sql\nSELECT 1 AS one;\n");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("/no/such/file.sql"),
        "{}",
        stderr(&missing)
    );
    assert_eq!(stdout(&missing), "one\n1\n");
}

#[test]
fn unknown_meta_command_is_reported() {
    let store = TestStore::initialised();
    let out = shell(
        &store,
        "\\bogus\n\\d no_such_table\n\\df no_such_function\nSELECT 1 AS x;\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "x\n1\n");
    let err = stderr(&out);
    assert!(err.contains("unknown command \\bogus"), "{err}");
    assert!(err.contains("table 'no_such_table' not found"), "{err}");
    assert!(
        err.contains("no function named 'no_such_function'"),
        "{err}"
    );
}

/// Read stdout lines until one equals `marker`, returning the lines before it.
fn read_until(reader: &mut BufReader<ChildStdout>, marker: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read shell output");
        assert!(
            n > 0,
            "shell ended before printing {marker:?}; got {lines:?}"
        );
        let line = line.trim_end().to_string();
        if line == marker {
            return lines;
        }
        lines.push(line);
    }
}

#[test]
fn sees_tables_and_rows_written_by_another_process() {
    let store = TestStore::empty();
    std::fs::create_dir(store.path()).expect("an empty store directory");
    let mut child = store
        .command(&["shell", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut send = |sql: &str| {
        stdin.write_all(sql.as_bytes()).expect("write");
        stdin.flush().expect("flush");
    };

    // The store is empty when the session starts. CSV results after the first are preceded by an empty line.
    send("SELECT count(*) AS n FROM captions;\nSELECT 'sync1' AS marker;\n");
    assert_eq!(read_until(&mut reader, "sync1"), vec!["marker".to_string()]);

    // Another process creates the tables and writes a row.
    assert_success(&store.vlmdb(&["init"]));
    insert_images(&store, &["d/i1", "d/i2"]);
    assert_success(&store.vlmdb(&[
        "sql",
        "INSERT INTO captions (caption_id, image_id, dataset, text, source, run_id) \
         VALUES ('d/1', 'd/i1', 'd', 'a dog', 'human', $run_id)",
    ]));
    send("SELECT count(*) AS n FROM captions;\nSELECT 'sync2' AS marker;\n");
    assert_eq!(
        read_until(&mut reader, "sync2"),
        vec!["", "n", "1", "", "marker"]
    );

    // And again: the same session sees the newer version without reopening anything.
    assert_success(&store.vlmdb(&[
        "sql",
        "INSERT INTO captions (caption_id, image_id, dataset, text, source, run_id) \
         VALUES ('d/2', 'd/i2', 'd', 'a cat', 'human', $run_id)",
    ]));
    send("SELECT count(*) AS n FROM captions;\nSELECT 'sync3' AS marker;\n");
    assert_eq!(
        read_until(&mut reader, "sync3"),
        vec!["", "n", "2", "", "marker"]
    );

    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    assert!(
        err.contains("table 'vlmdb.store.captions' not found"),
        "{err}"
    );
}

#[test]
fn writes_from_the_shell_are_runs() {
    let store = TestStore::initialised();
    let out = shell(
        &store,
        "INSERT INTO metrics (run_id, name, value) VALUES ($run_id, 'loss', 0.5);\n\
         SELECT r.kind, r.name, r.status FROM metrics m JOIN runs r ON m.run_id = r.run_id;\n",
    );
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "count\n1\n\nkind,name,status\nsql,shell,finished\n"
    );
}

/// What a meta-command prints appears at once, not when the next query's result flushes it (issue 25): `\?` is
/// answered while the session waits for more input.
#[test]
fn meta_command_output_is_not_held_back() {
    let store = TestStore::initialised();
    let mut child = store
        .command(&["shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    stdin.write_all(b"\\?\n").expect("write");
    stdin.flush().expect("flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line.contains("\\df") => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no help while the session waits for input; got {seen:?}"),
        }
    }
    drop(stdin);
    assert!(child.wait().expect("wait").success());
}

/// Drive `vlmdb shell` through a pseudo-terminal (Python's `pty` module): each step waits `pause` seconds of
/// output, then types `keys`. Returns everything the terminal showed, without escape sequences and carriage
/// returns.
fn terminal_session(store: &TestStore, steps: &[(f64, &str)]) -> String {
    let driver = r#"
import json, os, pty, re, select, sys, time
steps = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out = b""
def pump(seconds):
    global out
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                return
for pause, keys in steps:
    pump(pause)
    os.write(fd, keys.encode())
pump(5.0)
os.waitpid(pid, 0)
text = out.decode("utf-8", "replace")
sys.stdout.write(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", ""))
"#;
    let steps = serde_json::to_string(steps).expect("steps as JSON");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(driver)
        .arg(steps)
        .arg(crate::common::binary())
        .arg("--db")
        .arg(store.path())
        .arg("shell")
        .env("TERM", "xterm")
        .env_remove("VLMDB_DB")
        .env("VLMDB_HISTORY", store.dir.path().join("history"))
        .output()
        .expect("python3 drives the shell through a pseudo-terminal");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The shell on a terminal (issue 25): the banner and `\?` at once, Tab completing tables, columns and commands,
/// a row limit with a footer, Ctrl-C cancelling a running query, one history entry per statement, Ctrl-D ending it.
#[test]
fn on_a_terminal() {
    let store = TestStore::initialised();
    let text = terminal_session(
        &store,
        &[
            (1.5, "\\?\r"),
            (1.0, "SELECT count(*) AS n FROM capt\t;\r"),
            (1.5, "SELECT orig_wid\t FROM images;\r"),
            (1.5, "\\maxr\t 3\r"),
            (1.0, "SELECT v FROM generate_series(1, 1000) AS t(v);\r"),
            (
                1.5,
                "SELECT count(*) FROM generate_series(1, 1000000000000) AS t(v);\r",
            ),
            (3.0, "\x03"),
            (1.5, "SELECT 'alive' AS still;\r"),
            (1.5, "SELECT\r"),
            (0.5, "42 AS answer;\r"),
            // Ctrl-D on an empty line ends the session.
            (1.5, "\x04"),
        ],
    );
    assert!(text.contains("vlmdb shell on"), "banner:\n{text}");
    assert!(text.contains("\\maxrows N"), "help:\n{text}");
    // Tab completed the table, the column and the meta-command.
    assert!(text.contains("FROM captions;"), "table completion:\n{text}");
    assert!(text.contains("| n |"), "{text}");
    assert!(
        text.contains("| orig_width |"),
        "column completion:\n{text}"
    );
    assert!(
        text.contains("Tables on the terminal show at most 3 rows."),
        "\\maxrows completion:\n{text}"
    );
    assert!(
        text.contains("1,000 rows (3 shown; \\maxrows N or off to change)"),
        "row limit:\n{text}"
    );
    assert!(!text.contains("| 4 "), "{text}");
    assert!(
        text.contains("error: cancelled (Ctrl-C)"),
        "cancel:\n{text}"
    );
    assert!(
        text.contains("| alive |"),
        "the session goes on after a cancel:\n{text}"
    );
    assert!(text.contains("| 42     |"), "{text}");
    let history = std::fs::read_to_string(store.dir.path().join("history")).expect("history file");
    assert!(
        history.lines().any(|l| l == "SELECT\\n42 AS answer;"),
        "one entry per statement:\n{history}"
    );
    assert!(!history.lines().any(|l| l == "42 AS answer;"), "{history}");
}

/// Under a terminal, Ctrl-C discards the statement being typed (issue 25): `SELECT 1 AS a` ⏎ Ctrl-C
/// `SELECT 2 AS b;` runs only the second statement.
#[test]
fn ctrl_c_discards_the_pending_statement() {
    let store = TestStore::initialised();
    let text = terminal_session(
        &store,
        &[
            (1.5, "SELECT 1 AS a\r"),
            (1.5, "\x03"),
            (1.5, "SELECT 2 AS b;\r"),
            (1.5, "\\q\r"),
        ],
    );
    assert!(text.contains("| b |"), "the second statement ran:\n{text}");
    assert!(
        !text.contains("| a |"),
        "the abandoned statement ran:\n{text}"
    );
    assert!(!text.contains("ParserError"), "{text}");
}
