//! `vlmdb eval`: runs `sql/eval/retrieval.sql` (compiled into the binary) once per Matryoshka width, under one
//! `eval` run, so every number lands in `metrics` and the command's output is exactly those rows.

use crate::error::{Error, Result};
use crate::models::DeviceChoice;
use crate::sql::{Engine, FileRuns, ParamValue, Params, StatementResult};
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};
use crate::store::twins::{Inputs, finished_twin};

use crate::eval::space::{dim, resolve};

/// The retrieval metrics SQL file.
pub const RETRIEVAL_SQL: &str = include_str!("../../sql/eval/retrieval.sql");

/// What `vlmdb eval` does.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The space, or the model that made it.
    pub model: String,
    pub dataset: String,
    pub split: Option<String>,
    /// MRL widths; empty = the space's full width.
    pub dims: Vec<usize>,
    /// Composed-query combiner (`sum`, `image`, `text`).
    pub combiner: String,
    pub device: DeviceChoice,
    /// Run even when a finished eval run did exactly this over the same inputs.
    pub again: bool,
}

/// The metrics of one eval run.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub run_id: String,
    pub table: String,
    pub result: StatementResult,
    /// The run is an earlier one that did exactly this (its stored metrics are the result; nothing was written).
    pub reused: bool,
}

/// What an eval or mine run over `table` is about to read: the space, the captions and pairs, the space's model.
pub async fn retrieval_inputs(store: &Store, table: &str) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    inputs.tables(store, &[table, "captions", "pairs"]).await?;
    if let Some((id, revision)) = space_model(store, table).await? {
        inputs.models.insert(id, revision);
    }
    Ok(inputs)
}

/// The result of `sql` (binding `$id`) over the store.
pub async fn stored_result(store: &Store, sql: &str, id: &str) -> Result<StatementResult> {
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    params.set("id", ParamValue::Text(id.to_string()))?;
    engine
        .execute_sql(sql, &params)
        .await?
        .pop()
        .ok_or_else(|| Error::Usage("no result".into()))
}

/// The model id and revision a space records in its schema metadata, when it does.
pub async fn space_model(store: &Store, table: &str) -> Result<Option<(String, String)>> {
    let schema = store.open_table(table).await?.schema().await?;
    let meta = schema.metadata();
    Ok(
        match (meta.get("vlmdb.model_id"), meta.get("vlmdb.revision")) {
            (Some(id), Some(rev)) => Some((id.clone(), rev.clone())),
            (Some(id), None) => Some((id.clone(), String::new())),
            _ => None,
        },
    )
}

/// The parameters every retrieval SQL file takes: `$run_id`, `$space`, `$dataset`, `$split` (NULL: all splits).
pub fn space_params(
    run_id: &str,
    table: &str,
    dataset: &str,
    split: Option<&str>,
) -> Result<Params> {
    let mut params = Params::default();
    params.set("run_id", ParamValue::Text(run_id.to_string()))?;
    params.set("space", ParamValue::Text(table.to_string()))?;
    params.set("dataset", ParamValue::Text(dataset.to_string()))?;
    params.set(
        "split",
        split.map_or(ParamValue::Null, |s| ParamValue::Text(s.to_string())),
    )?;
    Ok(params)
}

/// Run the evaluation under an `eval` run.
pub async fn evaluate(store: &Store, options: &EvalOptions) -> Result<EvalReport> {
    store.ensure_writable("eval")?;
    let table = resolve(store, &options.model).await?;
    let width = dim(store, &table).await?;
    let dims = if options.dims.is_empty() {
        vec![width]
    } else {
        options.dims.clone()
    };
    if let Some(&bad) = dims.iter().find(|&&d| d == 0 || d > width) {
        return Err(Error::DimensionMismatch {
            left: "--dims".into(),
            left_dim: bad,
            right: format!("space {table}"),
            right_dim: width,
        });
    }
    options
        .combiner
        .parse::<crate::eval::retrieval::Combiner>()?;
    store
        .ensure_tables(&["metrics", "captions", "pairs"])
        .await?;
    let spec = RunSpec {
        kind: "eval".into(),
        name: format!("{} on {}", table, options.dataset),
        config: serde_json::json!({
            "model": options.model,
            "space": table,
            "dataset": options.dataset,
            "split": options.split,
            "dims": dims,
            "combiner": options.combiner,
            "sql": "sql/eval/retrieval.sql",
        }),
        seed: None,
    };
    let inputs = retrieval_inputs(store, &table).await?;
    if !options.again
        && let Some(id) = finished_twin(store, "eval", &spec.config, &[], &inputs).await?
    {
        let result = stored_result(
            store,
            "SELECT direction, name, k, dim, value FROM metrics WHERE run_id = $id \
             ORDER BY direction, name, k, dim",
            &id,
        )
        .await?;
        return Ok(EvalReport {
            run_id: id,
            table,
            result,
            reused: true,
        });
    }
    let mut run = Run::open(store, spec).await?;
    // The tables it reads (the space and the truth, through table functions) are recorded as the SQL reads them.
    for (id, revision) in &inputs.models {
        run.record_model(id, revision);
    }
    let outcome = async {
        let mut runs = FileRuns::default();
        for &d in &dims {
            let mut params = space_params(run.id(), &table, &options.dataset, options.split.as_deref())?;
            params.set("dim", ParamValue::Int(d as i64))?;
            params.set("combiner", ParamValue::Text(options.combiner.clone()))?;
            params.set("step", ParamValue::Null)?;
            params.set("iteration", ParamValue::Null)?;
            runs.run(
                store,
                options.device,
                "sql/eval/retrieval.sql",
                RETRIEVAL_SQL,
                &params,
                &mut run,
            )
            .await?;
        }
        let result = runs.finish();
        if result.num_rows() == 0 {
            return Err(Error::Usage(format!(
                "nothing to evaluate: space {table} has no vectors for dataset '{}'{} (run `vlmdb embed --model {} \
                 --images` and `--captions`, or `--pairs`, first)",
                options.dataset,
                options
                    .split
                    .as_ref()
                    .map(|s| format!(" split '{s}'"))
                    .unwrap_or_default(),
                options.model
            )));
        }
        Ok(result)
    }
    .await;
    let run_id = run.id().to_string();
    let result = run.close(store, outcome).await?;
    Ok(EvalReport {
        run_id,
        table,
        result,
        reused: false,
    })
}
