//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

/// The vlmdb binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_vlmdb")
}

/// A fresh store directory that disappears with the test.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    /// An empty temporary directory (no tables).
    pub fn empty() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A temporary store after `vlmdb init`.
    pub fn initialised() -> TestStore {
        let store = TestStore::empty();
        let out = store.vlmdb(&["init"]);
        assert_success(&out);
        store
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A `vlmdb --db <store> …` command, ready to adjust.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--db")
            .arg(self.path())
            .args(args)
            .env_remove("VLMDB_DB")
            .env("VLMDB_HISTORY", self.dir.path().join("history"))
            .stdin(Stdio::null());
        command
    }

    /// Run `vlmdb --db <store> …` to completion.
    pub fn vlmdb(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run vlmdb")
    }

    /// Run a query and return its CSV output (asserting success).
    pub fn csv(&self, sql: &str) -> String {
        let out = self.vlmdb(&["sql", sql, "--format", "csv"]);
        assert_success(&out);
        stdout(&out)
    }
}

/// Store placeholder image rows `ids` (dataset `d`) through SQL, so captions inserted by SQL have images to
/// describe (a caption's `image_id` must be a stored image).
pub fn insert_images(store: &TestStore, ids: &[&str]) {
    let rows: Vec<String> = ids
        .iter()
        .map(|id| format!("('{id}', 'd', X'00', 1, 1, 'png', '0', $run_id)"))
        .collect();
    let sql = format!(
        "INSERT INTO images (image_id, dataset, data, width, height, format, sha256, run_id) VALUES {}",
        rows.join(", ")
    );
    assert_success(&store.vlmdb(&["sql", &sql]));
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "vlmdb failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

/// Assert a usage/fatal failure: exit code 2 and a one-line error on stderr containing `needle`.
pub fn assert_fails_with(out: &Output, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit code 2\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    let err = stderr(out);
    assert!(
        err.contains(needle),
        "stderr does not mention {needle:?}:\n{err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error is not one line:\n{err}"
    );
}

/// Every file under `dir` (recursively) with its bytes, for checking that a failed command changed nothing.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).expect("read file")));
            }
        }
    }
    files.sort();
    files
}

/// A store with the retrieval fixture: the shapes and cirr datasets and the reference vectors as space `ref`.
pub fn retrieval_store() -> TestStore {
    let store = TestStore::initialised();
    for args in RETRIEVAL_FIXTURE {
        assert_success(&store.vlmdb(args));
    }
    store
}

/// The retrieval fixture, as `vlmdb` argument lists: the shapes (Karpathy) and cirr datasets, and the reference
/// vectors of `fixtures/eval/` imported as space `ref`.
pub const RETRIEVAL_FIXTURE: [&[&str]; 3] = [
    &[
        "ingest",
        "karpathy",
        "fixtures/datasets/karpathy/dataset_shapes.json",
        "--images",
        "fixtures/datasets/karpathy/images",
        "--dataset",
        "shapes",
    ],
    &[
        "ingest",
        "cirr",
        "fixtures/datasets/cirr",
        "--dataset",
        "cirr",
    ],
    &[
        "import",
        "embeddings",
        "fixtures/eval/vectors.parquet",
        "--space",
        "ref",
        "--model-id",
        "numpy-reference",
    ],
];

/// One row's vector in a test Parquet file: NULL, or elements that may be NULL.
pub type Vector = Option<Vec<Option<f32>>>;

pub fn write_parquet(path: &Path, ids: &[&str], kinds: &[&str], vectors: Vec<Vector>) {
    use arrow::array::{ArrayRef, ListArray, StringArray};
    use arrow::datatypes::Float32Type;
    let vector: ListArray = ListArray::from_iter_primitive::<Float32Type, _, _>(vectors);
    let batch = arrow::array::RecordBatch::try_from_iter(vec![
        (
            "item_id",
            Arc::new(StringArray::from(ids.to_vec())) as ArrayRef,
        ),
        (
            "kind",
            Arc::new(StringArray::from(kinds.to_vec())) as ArrayRef,
        ),
        ("vector", Arc::new(vector) as ArrayRef),
    ])
    .expect("batch");
    let file = std::fs::File::create(path).expect("create parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

/// The run id a command printed as `(run ID)`.
pub fn run_in_parens(out: &Output) -> String {
    let text = stdout(out);
    text.rsplit("(run ")
        .next()
        .filter(|_| text.contains("(run "))
        .and_then(|s| s.split(')').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no run id in {text}"))
}
