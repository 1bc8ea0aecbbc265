//! Stores on an S3-compatible object store (`--db s3://bucket/prefix`), against a real S3 server (moto's, from
//! PyPI: `fixtures/tools/moto.sh`) that each test starts on 127.0.0.1 with its own bucket and always stops.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{RETRIEVAL_FIXTURE, TestStore, assert_success, binary, stderr, stdout};

/// A moto S3 server on a free loopback port, killed when dropped (and ended by `timeout` after 15 minutes should
/// the test process itself be killed).
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("timeout")
            .args([
                "900",
                "python3",
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
            ])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto's S3 server (python3 -m moto.server; see fixtures/tools/moto.sh)");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while ureq::get(&server.endpoint).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto's S3 server did not answer on {} within 60 s (is `moto[server]` installed? \
                 fixtures/tools/moto.sh)",
                server.endpoint
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    /// Create bucket `name`; returns its URI.
    fn bucket(&self, name: &str) -> String {
        ureq::put(&format!("{}/{name}", self.endpoint))
            .call()
            .expect("create bucket");
        format!("s3://{name}")
    }

    /// `vlmdb --db <uri> …`, with this server's endpoint and test credentials in the environment, and `cache` as
    /// the machine's cache directory (the write lock of an object store lives there: two caches are two machines).
    fn vlmdb(&self, uri: &str, cache: &Path, args: &[&str]) -> Output {
        self.command(uri, cache, args).output().expect("run vlmdb")
    }

    fn command(&self, uri: &str, cache: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--db")
            .arg(uri)
            .args(args)
            .env_remove("VLMDB_DB")
            .env_remove("AWS_ALLOW_HTTP")
            .env("AWS_ACCESS_KEY_ID", "vlmdb-test")
            .env("AWS_SECRET_ACCESS_KEY", "vlmdb-test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("XDG_CACHE_HOME", cache)
            .env("VLMDB_HISTORY", cache.join("history"))
            .stdin(Stdio::null());
        command
    }
}

impl Drop for S3Server {
    /// SIGTERM to `timeout`, which passes it on to the server (a SIGKILL would end `timeout` alone and leave the
    /// server running), then SIGKILL should it not be gone within 10 s.
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: `kill` on the pid of our own child, which has not been waited for, so it is not reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MODEL: &str = "fixtures/models/tiny-clip";

/// The main job's steps and the experiments after them, as one store sees them.
const STEPS: &[&[&str]] = &[
    // The fixture dataset's ingest, as the retrieval fixture has it.
    RETRIEVAL_FIXTURE[0],
    &["embed", "--model", MODEL, "--images"],
    &["embed", "--model", MODEL, "--captions"],
    &[
        "eval",
        "--model",
        MODEL,
        "--dataset",
        "shapes",
        "--split",
        "test",
    ],
    &[
        "mine",
        "--model",
        MODEL,
        "--dataset",
        "shapes",
        "--split",
        "test",
        "-k",
        "3",
    ],
    &[
        "cluster",
        "--model",
        MODEL,
        "--dataset",
        "shapes",
        "-k",
        "3",
        "--seed",
        "0",
    ],
];

/// What must read the same from either store: metrics, hard negatives, clusters, a GROUP BY / JOIN over
/// captions, images and the image space, earlier versions (time travel), and the run registry.
const SAME: &[&str] = &[
    "SELECT r.kind, m.direction, m.name, m.k, m.dim, m.value FROM metrics m JOIN runs r USING (run_id) \
     ORDER BY 1, 2, 3, 4, 5",
    "SELECT query_id, query_kind, positive_id, negative_id, rank, score, positive_score FROM hard_negatives \
     ORDER BY query_id, rank",
    "SELECT item_id, cluster_id FROM clusters ORDER BY item_id",
    "SELECT i.split, count(DISTINCT i.image_id) AS images, count(c.caption_id) AS captions, \
     round(avg(array_length(e.vector)), 3) AS width \
     FROM images i JOIN captions c USING (image_id) JOIN emb_tiny_clip_c94a344 e ON e.item_id = i.image_id \
     GROUP BY i.split ORDER BY i.split",
    "SELECT (SELECT count(*) FROM \"runs@1\") AS runs_v1, (SELECT count(*) FROM \"captions@1\") AS captions_v1, \
     (SELECT count(*) FROM \"emb_tiny_clip_c94a344@1\") AS space_v1",
    "SELECT kind, status, name FROM runs ORDER BY started_at",
];

fn csv(out: &Output) -> String {
    assert_success(out);
    stdout(out)
}

#[test]
fn experiments_on_an_object_store_equal_those_on_a_directory() {
    let server = S3Server::start();
    let uri = format!("{}/lab/store", server.bucket("vlmdb-equal"));
    let local = TestStore::empty();
    let cache = tempfile::tempdir().expect("cache");
    for step in STEPS {
        assert_success(&server.vlmdb(&uri, cache.path(), step));
        assert_success(&local.vlmdb(step));
    }
    for query in SAME {
        let remote = csv(&server.vlmdb(&uri, cache.path(), &["sql", query, "--format", "csv"]));
        let here = local.csv(query);
        assert!(remote.lines().count() > 1, "{query} read no rows");
        assert_eq!(remote, here, "{query}");
    }
    // Nothing of the store was written on this machine (only the lock file, in the machine's cache).
    let tables = csv(&server.vlmdb(
        &uri,
        cache.path(),
        &["sql", "SHOW TABLES", "--format", "csv"],
    ));
    assert!(tables.contains("emb_tiny_clip_c94a344"), "{tables}");
    assert!(!Path::new(&uri.replace("s3://", "")).exists());
    let check = server.vlmdb(&uri, cache.path(), &["check"]);
    assert_success(&check);
    assert!(
        stdout(&check).contains("emb_tiny_clip_c94a344"),
        "{}",
        stdout(&check)
    );
}

/// Writers on different machines (here: different cache directories, so no shared lock file) are kept apart by
/// Lance's conditional-write commits alone: every row of every writer lands.
#[test]
fn concurrent_writers_without_a_shared_lock_lose_nothing() {
    let server = S3Server::start();
    let uri = format!("{}/store", server.bucket("vlmdb-writers"));
    let machines: Vec<tempfile::TempDir> = (0..4)
        .map(|_| tempfile::tempdir().expect("cache"))
        .collect();
    assert_success(&server.vlmdb(&uri, machines[0].path(), &["init"]));
    let rounds = 3;
    let mut writers = Vec::new();
    for (m, machine) in machines.iter().enumerate() {
        let rows: Vec<String> = (0..rounds)
            .map(|r| format!("('m{m}-r{r}', 'd', X'00', 1, 1, 'png', '0', $run_id)"))
            .collect();
        let children: Vec<Child> = rows
            .iter()
            .map(|row| {
                let sql = format!(
                    "INSERT INTO images (image_id, dataset, data, width, height, format, sha256, run_id) \
                     VALUES {row}"
                );
                server
                    .command(&uri, machine.path(), &["sql", &sql])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn a writer")
            })
            .collect();
        writers.extend(children);
    }
    for writer in writers {
        let out = writer.wait_with_output().expect("writer");
        assert_success(&out);
    }
    let count = csv(&server.vlmdb(
        &uri,
        machines[1].path(),
        &[
            "sql",
            "SELECT count(*) AS n, count(DISTINCT image_id) AS ids FROM images",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(count.trim(), format!("n,ids\n{0},{0}", 4 * rounds));
    let runs = csv(&server.vlmdb(
        &uri,
        machines[2].path(),
        &[
            "sql",
            "SELECT count(*) AS n FROM runs WHERE kind = 'sql' AND status = 'finished'",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(runs.trim(), format!("n\n{}", 4 * rounds));
}

#[test]
fn a_missing_store_bucket_or_server_is_named() {
    let server = S3Server::start();
    let bucket = server.bucket("vlmdb-errors");
    let cache = tempfile::tempdir().expect("cache");
    // A prefix with no tables is no store for a command that reads one; nothing is created there.
    let out = server.vlmdb(
        &format!("{bucket}/nothing"),
        cache.path(),
        &["sql", "SELECT 1"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no vlmdb store at s3://vlmdb-errors/nothing"),
        "{}",
        stderr(&out)
    );
    // A bucket that does not exist: the store and the server's answer are named.
    let out = server.vlmdb("s3://no-such-bucket/store", cache.path(), &["init"]);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{:?}", out.status);
    assert!(
        stderr(&out).contains("s3://no-such-bucket/store"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("NoSuchBucket"), "{}", stderr(&out));
    // An unknown scheme is refused by name, not taken for a directory.
    let out = server.vlmdb("ftp://host/store", cache.path(), &["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown scheme 'ftp://'"),
        "{}",
        stderr(&out)
    );
    assert!(!Path::new("ftp:").exists());
}
