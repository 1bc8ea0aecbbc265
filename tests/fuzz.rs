//! The fuzz corpus of issue 24 (`tests/fuzz/`, written by `tests/fuzz/make_corpus.py`): hostile SQL, hostile
//! ingest inputs of every format, damaged stores. The rule for every case: it ends with exit code 0, 1 or 2 and a
//! message — never a panic (101), an abort (134) or a signal — within a time bound.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestStore, assert_success, retrieval_store};

fn corpus(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(rel)
}

/// Run `command` with `input` on stdin, killed after `limit`: (exit code, stdout, stderr). No exit code means a
/// signal or the time limit.
fn run(mut command: Command, input: &[u8], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vlmdb");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let out = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    (status.and_then(|s| s.code()), out, err)
}

/// The rule: exit 0, 1 or 2, a message when not 0 (on stderr, or a report on stdout: `check`, an ingest's
/// rejections), and no panic text.
fn check(what: &str, code: Option<i32>, out: &str, err: &str) -> Option<String> {
    let tail: String = err
        .chars()
        .rev()
        .take(600)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    match code {
        Some(0) => None,
        Some(1 | 2) if !err.trim().is_empty() || !out.trim().is_empty() => None,
        Some(1 | 2) => Some(format!("{what}: failed without a message")),
        Some(other) => Some(format!("{what}: exit code {other}\n{tail}")),
        None => Some(format!(
            "{what}: killed by a signal or the time limit\n{tail}"
        )),
    }
    .or_else(|| {
        err.contains("panicked at")
            .then(|| format!("{what}: a panic was reported\n{tail}"))
    })
}

/// Every SQL case of `tests/fuzz/sql.txt`, in one piped shell session over a store holding the fixtures: a marker
/// after each case shows how far it got, so a crash names its case.
#[test]
fn hostile_sql_never_crashes() {
    let store = retrieval_store();
    let text = std::fs::read_to_string(corpus("sql.txt")).expect("tests/fuzz/sql.txt");
    let cases: Vec<&str> = text.lines().collect();
    assert!(cases.len() > 1000, "the corpus has {} cases", cases.len());
    let mut input = String::new();
    for (i, case) in cases.iter().enumerate() {
        // A case is one statement; a meta-command-looking case is run as SQL by a leading space-free prefix.
        input.push_str(case.trim_start_matches('\\'));
        input.push_str(";\n");
        input.push_str(&format!("SELECT 'fuzz-case-{i}' AS marker;\n"));
    }
    let mut command = store.command(&["shell", "--format", "csv", "--memory-limit", "1GiB"]);
    command.stdin(Stdio::piped());
    let (code, out, err) = run(command, input.as_bytes(), Duration::from_secs(900));
    let done = (0..cases.len())
        .take_while(|i| out.contains(&format!("fuzz-case-{i}\n")))
        .count();
    let culprit = cases
        .get(done)
        .map(|c| c.chars().take(300).collect::<String>());
    assert!(
        matches!(code, Some(0 | 1)),
        "the shell ended with {code:?} after {done} of {} cases; the next case was {culprit:?}\n{}",
        cases.len(),
        err.chars()
            .rev()
            .take(2000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    assert_eq!(done, cases.len(), "case {culprit:?} did not finish");
    assert!(
        !err.contains("panicked at"),
        "a case reported a panic:\n{}",
        err.lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every ingest case of `tests/fuzz/ingest/cases.txt` into a fresh store.
#[test]
fn hostile_ingest_inputs_never_crash() {
    let root = corpus("ingest");
    let cases = std::fs::read_to_string(root.join("cases.txt")).expect("cases.txt");
    let mut failures = Vec::new();
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let store = TestStore::initialised();
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut args = vec!["ingest".to_string(), words[0].to_string()];
        let path = |p: &str| {
            if p.starts_with('/') {
                p.to_string()
            } else {
                root.join(p).display().to_string()
            }
        };
        args.push(path(words[1]));
        let mut rest = words[2..].iter();
        while let Some(word) = rest.next() {
            args.push(word.to_string());
            if *word == "--images"
                && let Some(dir) = rest.next()
            {
                args.push(path(dir));
            }
        }
        args.extend(["--dataset".to_string(), "fuzz".to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = run(store.command(&refs), b"", Duration::from_secs(120));
        failures.extend(check(&format!("ingest {line}"), code, &out, &err));
        // Whatever the input, the store still answers.
        let after = store.vlmdb(&["sql", "SELECT count(*) AS n FROM images", "--format", "csv"]);
        assert_success(&after);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One way of damaging a store.
struct Damage {
    name: &'static str,
    apply: fn(&Path),
}

/// The newest file under `dir` (a table's latest manifest, data file, …).
fn newest(dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(_, p)| p.is_file())
        .collect();
    files.sort();
    files.pop().map(|(_, p)| p)
}

fn truncate(path: Option<PathBuf>, keep: f64) {
    if let Some(path) = path {
        let bytes = std::fs::read(&path).unwrap_or_default();
        let _ = std::fs::write(&path, &bytes[..(bytes.len() as f64 * keep) as usize]);
    }
}

fn scramble(path: Option<PathBuf>) {
    if let Some(path) = path {
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        let n = bytes.len();
        for (i, b) in bytes.iter_mut().enumerate() {
            if i > n / 4 && i < n / 2 {
                *b ^= 0xA5;
            }
        }
        let _ = std::fs::write(&path, bytes);
    }
}

const DAMAGES: &[Damage] = &[
    Damage {
        name: "latest images manifest cut in half",
        apply: |s| truncate(newest(&s.join("images.lance/_versions")), 0.5),
    },
    Damage {
        name: "latest captions manifest emptied",
        apply: |s| truncate(newest(&s.join("captions.lance/_versions")), 0.0),
    },
    Damage {
        name: "images versions deleted",
        apply: |s| {
            let _ = std::fs::remove_dir_all(s.join("images.lance/_versions"));
        },
    },
    Damage {
        name: "a captions data file deleted",
        apply: |s| {
            if let Some(p) = newest(&s.join("captions.lance/data")) {
                let _ = std::fs::remove_file(p);
            }
        },
    },
    Damage {
        name: "an images data file scrambled",
        apply: |s| scramble(newest(&s.join("images.lance/data"))),
    },
    Damage {
        name: "an images data file cut short",
        apply: |s| truncate(newest(&s.join("images.lance/data")), 0.3),
    },
    Damage {
        name: "the runs manifest scrambled",
        apply: |s| scramble(newest(&s.join("runs.lance/_versions"))),
    },
    Damage {
        name: "a table directory replaced by a file",
        apply: |s| {
            let _ = std::fs::remove_dir_all(s.join("pairs.lance"));
            let _ = std::fs::write(s.join("pairs.lance"), b"not a table");
        },
    },
    Damage {
        name: "transaction files deleted",
        apply: |s| {
            let _ = std::fs::remove_dir_all(s.join("images.lance/_transactions"));
        },
    },
    Damage {
        name: "a stray table of garbage",
        apply: |s| {
            let _ = std::fs::create_dir_all(s.join("junk.lance/_versions"));
            let _ = std::fs::write(s.join("junk.lance/_versions/1.manifest"), b"garbage");
        },
    },
    Damage {
        name: "the space's latest manifest cut in half",
        apply: |s| truncate(newest(&s.join("emb_ref.lance/_versions")), 0.5),
    },
];

/// Every command a researcher runs next, on every kind of damage.
#[test]
fn damaged_stores_never_crash() {
    let healthy = retrieval_store();
    let jsonl =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/datasets/jsonl/metadata.jsonl");
    let jsonl = jsonl.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["sql", "SELECT count(*) FROM images"],
        vec!["sql", "SELECT count(*) FROM captions"],
        vec!["sql", "SELECT count(*) FROM \"images@1\""],
        vec!["sql", "SELECT count(*) FROM emb_ref"],
        vec!["check"],
        vec!["runs", "list"],
        vec!["eval", "--model", "ref", "--dataset", "shapes"],
        vec!["ingest", "jsonl", &jsonl, "--dataset", "more"],
        vec!["export", "csv", "--table", "captions"],
    ];
    let mut failures = Vec::new();
    for damage in DAMAGES {
        let dir = tempfile::tempdir().expect("tmp");
        let store = dir.path().join("store");
        copy_dir(&healthy.path(), &store);
        (damage.apply)(&store);
        for args in &commands {
            let mut command = Command::new(crate::common::binary());
            command
                .arg("--db")
                .arg(&store)
                .args(args)
                .env_remove("VLMDB_DB");
            let (code, out, err) = run(command, b"", Duration::from_secs(120));
            failures.extend(check(
                &format!("{} / vlmdb {}", damage.name, args.join(" ")),
                code,
                &out,
                &err,
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
