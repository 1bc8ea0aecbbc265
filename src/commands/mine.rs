//! `vlmdb mine`: runs `sql/mine/hard_negatives.sql` (compiled into the binary) for each retrieval direction the
//! dataset has (t2i and i2t with captions, composed with pairs), under one `mine` run, so one round of mining is
//! one run and one iteration of `hard_negatives` (seed S4's rounds).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};

use crate::commands::eval::{retrieval_inputs, space_params, stored_result};
use crate::error::{Error, Result};
use crate::eval::space::resolve;
use crate::models::DeviceChoice;
use crate::sql::{Engine, FileRuns, ParamValue, Params, StatementResult};
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};
use crate::store::twins::finished_twin;

/// The mining SQL file.
pub const HARD_NEGATIVES_SQL: &str = include_str!("../../sql/mine/hard_negatives.sql");

/// The directions mined, in order.
pub const DIRECTIONS: [&str; 3] = ["t2i", "i2t", "composed"];

/// What `vlmdb mine` does.
#[derive(Debug, Clone)]
pub struct MineOptions {
    /// The space, or the model that made it.
    pub model: String,
    pub dataset: String,
    pub split: Option<String>,
    /// Negatives kept per query.
    pub k: usize,
    /// Neighbours fetched per query (default: 2k + the most positives a query has).
    pub depth: Option<usize>,
    pub iteration: i64,
    /// Directions to mine (empty: every one the dataset has).
    pub directions: Vec<String>,
    pub margin: Option<f64>,
    pub max_ratio: Option<f64>,
    pub max_positive_similarity: Option<f64>,
    pub device: DeviceChoice,
    /// Run even when a finished mine run did exactly this over the same inputs.
    pub again: bool,
    /// Which pairs composed queries come from (the dataset's own, augmented ones, or both).
    pub augmented: crate::eval::augmented::Augmented,
}

/// What a mining run did: the file's summary row per direction.
#[derive(Debug, Clone)]
pub struct MineReport {
    pub run_id: String,
    pub table: String,
    pub result: StatementResult,
    /// The run is an earlier one that did exactly this (its stored negatives are summarised; nothing was written).
    pub reused: bool,
}

/// The most captions one image of the dataset has (i2t queries have that many positives).
async fn most_positives(engine: &Engine, dataset: &str) -> Result<usize> {
    let mut params = Params::default();
    params.set("dataset", ParamValue::Text(dataset.to_string()))?;
    let results = engine
        .execute_sql(
            "SELECT CAST(coalesce(max(n), 0) AS BIGINT) AS n FROM \
             (SELECT count(*) AS n FROM captions WHERE dataset = $dataset GROUP BY image_id)",
            &params,
        )
        .await?;
    let n = results
        .first()
        .and_then(|r| r.batches.iter().find(|b| b.num_rows() > 0))
        .map(|b| {
            let c = arrow::compute::cast(b.column(0), &DataType::Int64).ok()?;
            let c = c.as_primitive::<Int64Type>();
            c.is_valid(0).then(|| c.value(0))
        })
        .unwrap_or(None)
        .unwrap_or(0);
    Ok(n.max(1) as usize)
}

fn optional(value: Option<f64>) -> ParamValue {
    value.map_or(ParamValue::Null, ParamValue::Float)
}

/// Mine under a `mine` run.
pub async fn mine(store: &Store, options: &MineOptions) -> Result<MineReport> {
    store.ensure_writable("mine")?;
    if options.k == 0 {
        return Err(Error::Usage("-k must be at least 1".into()));
    }
    let directions: Vec<String> = if options.directions.is_empty() {
        DIRECTIONS.iter().map(|d| d.to_string()).collect()
    } else {
        options.directions.clone()
    };
    if let Some(bad) = directions
        .iter()
        .find(|d| !DIRECTIONS.contains(&d.as_str()))
    {
        return Err(Error::Usage(format!(
            "unknown direction '{bad}' (use t2i, i2t or composed)"
        )));
    }
    let table = resolve(store, &options.model).await?;
    store
        .ensure_tables(&["captions", "pairs", "hard_negatives"])
        .await?;
    let spec = RunSpec {
        kind: "mine".into(),
        name: format!(
            "{} on {} (iteration {})",
            table, options.dataset, options.iteration
        ),
        config: serde_json::json!({
            "model": options.model,
            "space": table,
            "dataset": options.dataset,
            "split": options.split,
            "k": options.k,
            "depth": options.depth,
            "iteration": options.iteration,
            "directions": directions,
            "margin": options.margin,
            "max_ratio": options.max_ratio,
            "max_positive_similarity": options.max_positive_similarity,
            "sql": "sql/mine/hard_negatives.sql",
        }),
        seed: None,
    };
    let mut spec = spec;
    if options.augmented != crate::eval::augmented::Augmented::default() {
        spec.config["augmented"] = serde_json::json!(options.augmented.name());
    }
    let inputs = retrieval_inputs(store, &table).await?;
    if !options.again
        && let Some(id) = finished_twin(store, "mine", &spec.config, &[], &inputs).await?
    {
        let result = stored_result(
            store,
            "SELECT CASE query_kind WHEN 'caption' THEN 't2i' WHEN 'image' THEN 'i2t' ELSE 'composed' END \
             AS direction, count(DISTINCT query_id) AS queries, count(*) AS negatives, \
             avg(positive_score - score) AS mean_gap FROM hard_negatives WHERE run_id = $id \
             GROUP BY query_kind ORDER BY direction",
            &id,
        )
        .await?;
        return Ok(MineReport {
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
        let probe = Engine::new(store.clone(), options.device).await?;
        let depth = match options.depth {
            Some(d) => d.max(options.k),
            None => 2 * options.k + most_positives(&probe, &options.dataset).await?,
        };
        for (table, version) in probe.reads() {
            run.record_input(&table, version);
        }
        let mut runs = FileRuns::default();
        for direction in &directions {
            let mut params =
                space_params(run.id(), &table, &options.dataset, options.split.as_deref())?;
            params.set("direction", ParamValue::Text(direction.clone()))?;
            params.set("k", ParamValue::Int(options.k as i64))?;
            params.set("depth", ParamValue::Int(depth as i64))?;
            params.set("iteration", ParamValue::Int(options.iteration))?;
            params.set(
                "augmented",
                ParamValue::Text(options.augmented.name().to_string()),
            )?;
            params.set("margin", optional(options.margin))?;
            params.set("max_ratio", optional(options.max_ratio))?;
            params.set(
                "max_positive_similarity",
                optional(options.max_positive_similarity),
            )?;
            runs.run(
                store,
                options.device,
                "sql/mine/hard_negatives.sql",
                HARD_NEGATIVES_SQL,
                &params,
                &mut run,
            )
            .await?;
        }
        Ok(runs.finish())
    }
    .await;
    let run_id = run.id().to_string();
    let result = run.close(store, outcome).await?;
    Ok(MineReport {
        run_id,
        table,
        result,
        reused: false,
    })
}
