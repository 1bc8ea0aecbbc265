//! `vlmdb runs`: the run records, newest first, or every field of one.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sql::{Engine, ParamValue, Params, StatementResult};
use crate::store::Store;
use crate::store::schema::fixed_table;

/// The columns `runs list` shows.
const RUN_LIST_COLUMNS: &[&str] = &[
    "run_id",
    "kind",
    "name",
    "status",
    "started_at",
    "finished_at",
    "error",
];

/// Every run, newest first, with the columns a listing shows.
pub async fn list(store: &Store) -> Result<StatementResult> {
    let result = if store.table_names().await?.iter().any(|t| t == "runs") {
        let engine = Engine::for_reads(store.clone()).await?;
        let sql = format!(
            "SELECT {} FROM runs ORDER BY started_at DESC, run_id DESC",
            RUN_LIST_COLUMNS.join(", ")
        );
        let mut results = engine.execute_sql(&sql, &Params::default()).await?;
        results
            .pop()
            .ok_or_else(|| Error::Usage("runs query returned nothing".into()))?
    } else {
        // A store that never ran anything: same columns, no rows.
        let spec = fixed_table("runs")?.ok_or_else(|| Error::UnknownTable {
            name: "runs".into(),
        })?;
        let schema = spec.arrow_schema();
        let indices = RUN_LIST_COLUMNS
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        StatementResult {
            schema: Arc::new(schema.project(&indices)?),
            batches: Vec::new(),
        }
    };
    Ok(result)
}

/// Every field of run `id`.
pub async fn show(store: &Store, id: &str) -> Result<StatementResult> {
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    params.set("id", ParamValue::Text(id.to_string()))?;
    let mut results = engine
        .execute_sql("SELECT * FROM runs WHERE run_id = $id", &params)
        .await?;
    let result = results
        .pop()
        .ok_or_else(|| Error::UnknownRun { id: id.to_string() })?;
    if result.num_rows() == 0 {
        return Err(Error::UnknownRun { id: id.to_string() });
    }
    Ok(result)
}
