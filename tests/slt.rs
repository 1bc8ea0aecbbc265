//! SQL behaviour pinned by `.slt` files under `tests/slt/`, each run on a fresh initialised store.
//! `\set NAME VALUE` in a file binds `$NAME` for the statements after it (the values are bound, never spliced).
//! `\fixture retrieval` loads the retrieval fixture: the shapes (Karpathy) and cirr datasets, the reference
//! vectors of `fixtures/eval/` as space `ref` (16 dimensions), and an empty 8-dimensional space `empty`.

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use vlmdb::sql::{Engine, ParamValue, Params, writes_store};
use vlmdb::store::Store;

struct SltDb {
    engine: Engine,
    params: Params,
}

#[derive(Debug)]
struct SltError(vlmdb::Error);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for SltError {}

impl From<vlmdb::Error> for SltError {
    fn from(e: vlmdb::Error) -> Self {
        SltError(e)
    }
}

fn render(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, SltError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SltError(e.into()))?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let text = f.value(row).to_string();
                        if text.is_empty() {
                            "(empty)".to_string()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

#[async_trait::async_trait]
impl AsyncDB for SltDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        if let Some(name) = sql.trim().strip_prefix("\\fixture ") {
            fixture(self.engine.store(), name.trim()).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if let Some(rest) = sql.trim().strip_prefix("\\set ") {
            let (name, value) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
            self.params.set(name, ParamValue::infer(value))?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let mut statements = self.engine.parse(sql)?;
        let Some(statement) = statements.pop() else {
            return Ok(DBOutput::StatementComplete(0));
        };
        assert!(statements.is_empty(), "one statement per record: {sql}");
        let writes = writes_store(&statement);
        let result = self.engine.execute(statement, &self.params).await?;
        if writes || result.schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(result.num_rows() as u64));
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; result.schema.fields().len()],
            rows: render(&result.batches)?,
        })
    }

    async fn shutdown(&mut self) {}
}

/// Load a named fixture into the store (through the CLI, as a user would).
async fn fixture(store: &Store, name: &str) -> Result<(), SltError> {
    assert_eq!(name, "retrieval", "unknown fixture '{name}'");
    let db = store.location().to_string();
    for args in crate::common::RETRIEVAL_FIXTURE {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vlmdb"))
            .arg("--db")
            .arg(&db)
            .args(args)
            .output()
            .expect("run vlmdb");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let empty = vlmdb::store::schema::embedding_table("empty", 8)?;
    store.create_table(&empty).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slt_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&tmp.path().join("store"))
            .await
            .expect("open store");
        store.init().await.expect("init store");
        let mut runner = sqllogictest::Runner::new(|| {
            let store = store.clone();
            async move {
                Ok(SltDb {
                    engine: Engine::new(store, vlmdb::models::DeviceChoice::Auto).await?,
                    params: Params::default(),
                })
            }
        });
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
