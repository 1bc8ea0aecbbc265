//! `vlmdb sql` and the shell: statements run in a session, and those that write to the store run under a `sql`
//! run record whose id `$run_id` is bound to, with the table versions the session read.

use crate::error::{Error, Result};
use crate::sql::{Engine, ParamValue, Params};
use crate::store::runs::{Run, RunSpec};

/// The run record of SQL that writes to the store.
pub fn sql_run_spec(name: &str, sql: &str, params: &Params) -> RunSpec {
    RunSpec {
        kind: "sql".into(),
        name: name.to_string(),
        config: serde_json::json!({ "sql": sql, "params": params.to_json() }),
        seed: None,
    }
}

/// Run `work` under a run record with id `run_id`, recording the table versions the session read.
pub async fn recorded<T>(
    engine: &Engine,
    run_id: String,
    spec: RunSpec,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let mut run = Run::open_with_id(engine.store(), run_id, spec).await?;
    let outcome = work.await;
    for (table, version) in engine.reads() {
        run.record_input(&table, version);
    }
    run.close(engine.store(), outcome).await
}

/// Bind `$run_id` to a fresh run id; it is reserved, so a user binding is an error.
pub fn bind_run_id(params: &mut Params) -> Result<String> {
    if params.get("run_id").is_some() {
        return Err(Error::Param {
            name: "run_id".into(),
            message: "is bound by vlmdb to the current run and cannot be set".into(),
        });
    }
    rebind_run_id(params)
}

/// Bind `$run_id` to a fresh run id, replacing any earlier one (each writing statement of a shell is a run).
pub fn rebind_run_id(params: &mut Params) -> Result<String> {
    let id = Run::new_id();
    params.set("run_id", ParamValue::Text(id.clone()))?;
    Ok(id)
}
