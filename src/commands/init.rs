//! `vlmdb init`: create the store's missing tables (from `schemas/`) under an `init` run.

use crate::error::Result;
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};

/// Create the tables the store lacks; returns their names (empty when it was up to date, and then no run is
/// recorded).
pub async fn init(store: &Store) -> Result<Vec<String>> {
    store.ensure_writable("init")?;
    let existing = store.table_names().await?;
    let missing: Vec<String> = crate::store::schema::fixed_tables()?
        .into_iter()
        .map(|t| t.name)
        .filter(|name| !existing.contains(name))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let spec = RunSpec {
        kind: "init".into(),
        name: "init".into(),
        config: serde_json::json!({ "store": store.location().to_string() }),
        seed: None,
    };
    let run = Run::open(store, spec).await?;
    let outcome = store.init().await;
    run.close(store, outcome).await?;
    Ok(missing)
}
