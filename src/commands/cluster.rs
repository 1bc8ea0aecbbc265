//! `vlmdb cluster`: k-means over one kind of a space's items (narrowed to a dataset/split), written under a
//! `cluster` run: one `clusters` row per item (cluster_id, distance to its centroid), one `centroids` row per cluster
//! (size, vector), and the inertia after every Lloyd step in `metrics` (name `inertia`, `step`, `iteration`).

use std::sync::Arc;

use arrow::array::{
    Float32Array, Float32Builder, Float64Array, Int32Array, Int64Array, ListBuilder, StringArray,
};

use datafusion::prelude::{col, lit};

use crate::cluster::kmeans::{KMeans, KMeansOptions, Metric, kmeans};
use crate::commands::eval::space_model;
use crate::error::{Error, Result};
use crate::eval::space::{Filter, load, resolve};
use crate::models::DeviceChoice;
use crate::store::Store;
use crate::store::columns::integers;
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::fixed_table;
use crate::store::twins::{Inputs, finished_twin};
use crate::store::write::{append, batch_for};

/// What `vlmdb cluster` does.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The space, or the model that made it.
    pub model: String,
    pub dataset: Option<String>,
    pub split: Option<String>,
    /// The item kind clustered (`image`, `caption`, …).
    pub kind: String,
    pub k: usize,
    pub iterations: usize,
    pub seed: u64,
    pub inits: usize,
    pub metric: Metric,
    /// The tracking iteration recorded on every row (seed S0's rounds); with `run`, the hop clustered.
    pub iteration: i32,
    /// Only the items this loop run wrote (at hop `iteration`).
    pub run: Option<String>,
    /// Every k of a sweep this run is one of (recorded to link the runs; empty for a single k).
    pub k_sweep: Vec<usize>,
    pub device: DeviceChoice,
    /// Run even when a finished cluster run did exactly this over the same space version.
    pub again: bool,
}

/// What it did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterSummary {
    pub run_id: String,
    pub table: String,
    pub items: usize,
    pub k: usize,
    pub inertia: f64,
    pub lloyd_steps: usize,
    pub sizes: Vec<u64>,
    /// The run is an earlier one that did exactly this (its stored results; nothing was written).
    pub reused: bool,
}

fn spec(name: &str) -> Result<crate::store::schema::TableSpec> {
    fixed_table(name)?.ok_or_else(|| Error::UnknownTable { name: name.into() })
}

async fn write(
    store: &Store,
    run_id: &str,
    iteration: i32,
    ids: &[String],
    dim: usize,
    result: &KMeans,
) -> Result<()> {
    let n = ids.len();
    let repeat = crate::store::arrays::repeated;
    let clusters = spec("clusters")?;
    let batch = batch_for(
        &clusters,
        vec![
            ("run_id", repeat(run_id, n)),
            ("iteration", Arc::new(Int32Array::from(vec![iteration; n]))),
            (
                "item_id",
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(String::as_str),
                )),
            ),
            (
                "cluster_id",
                Arc::new(Int32Array::from_iter_values(
                    result.assignment.iter().map(|c| *c as i32),
                )),
            ),
            (
                "distance",
                Arc::new(Float32Array::from(result.distance.clone())),
            ),
        ],
    )?;
    append(store, &clusters, batch).await?;

    let k = result.sizes.len();
    let centroids = spec("centroids")?;
    let mut vectors = ListBuilder::new(Float32Builder::new());
    for c in 0..k {
        vectors
            .values()
            .append_slice(&result.centroids[c * dim..(c + 1) * dim]);
        vectors.append(true);
    }
    let batch = batch_for(
        &centroids,
        vec![
            ("run_id", repeat(run_id, k)),
            ("iteration", Arc::new(Int32Array::from(vec![iteration; k]))),
            (
                "cluster_id",
                Arc::new(Int32Array::from_iter_values(0..k as i32)),
            ),
            (
                "size",
                Arc::new(Int64Array::from_iter_values(
                    result.sizes.iter().map(|s| *s as i64),
                )),
            ),
            ("vector", Arc::new(vectors.finish())),
        ],
    )?;
    append(store, &centroids, batch).await?;

    let steps = result.history.len();
    let metrics = spec("metrics")?;
    let batch = batch_for(
        &metrics,
        vec![
            ("run_id", repeat(run_id, steps)),
            ("name", repeat("inertia", steps)),
            (
                "value",
                Arc::new(Float64Array::from(result.history.clone())),
            ),
            (
                "step",
                Arc::new(Int64Array::from_iter_values(1..=steps as i64)),
            ),
            (
                "iteration",
                Arc::new(Int32Array::from(vec![iteration; steps])),
            ),
            ("k", Arc::new(Int32Array::from(vec![k as i32; steps]))),
            ("dim", Arc::new(Int32Array::from(vec![dim as i32; steps]))),
        ],
    )?;
    append(store, &metrics, batch).await?;
    Ok(())
}

/// A cluster run's configuration. `run` and `k_sweep` appear only when given, so the configuration of a plain run
/// is what it always was (a re-run still finds its finished twin).
fn config(options: &ClusterOptions, table: &str, km: &KMeansOptions) -> serde_json::Value {
    let mut config = serde_json::json!({
        "model": options.model,
        "space": table,
        "dataset": options.dataset,
        "split": options.split,
        "kind": options.kind,
        "k": km.k,
        "iterations": km.iterations,
        "inits": km.inits,
        "metric": format!("{:?}", km.metric).to_lowercase(),
        "iteration": options.iteration,
        "seed": options.seed,
    });
    if let Some(run) = &options.run {
        config["run"] = serde_json::json!(run);
    }
    if options.k_sweep.len() > 1 {
        config["k_sweep"] = serde_json::json!(options.k_sweep);
    }
    config
}

/// Cluster under a `cluster` run.
pub async fn cluster(store: &Store, options: &ClusterOptions) -> Result<ClusterSummary> {
    store.ensure_writable("cluster")?;
    store.upgrade_tables(&["clusters", "centroids"]).await?;
    let filter = Filter::new(
        Some(&options.kind),
        options.dataset.as_deref(),
        options.split.as_deref(),
    )
    .lineage(
        options.run.as_deref(),
        options.run.as_ref().map(|_| options.iteration),
    );
    let table = resolve(store, &options.model).await?;
    // The versions about to be read: the space, and for a loop run's items the lineage tables that pick them.
    let mut inputs = Inputs::default();
    let mut read = vec![table.as_str()];
    read.extend(filter.lineage_tables());
    inputs.tables(store, &read).await?;
    let data = load(store, &table, &filter).await?;
    let km = KMeansOptions {
        k: options.k,
        iterations: options.iterations,
        seed: options.seed,
        metric: options.metric,
        inits: options.inits,
    };
    if data.len() < km.k {
        return Err(Error::Usage(format!(
            "k-means with k = {} needs at least {} vectors; space {table} has {} {} vectors{}",
            km.k,
            km.k,
            data.len(),
            options.kind,
            options
                .dataset
                .as_ref()
                .map(|d| format!(" in dataset '{d}'"))
                .unwrap_or_default()
        )));
    }
    store
        .ensure_tables(&["clusters", "centroids", "metrics"])
        .await?;
    let run_spec = RunSpec {
        kind: "cluster".into(),
        name: format!("k-means k={} on {table}", km.k),
        config: config(options, &table, &km),
        seed: Some(options.seed as i64),
    };
    if let Some((id, revision)) = space_model(store, &table).await? {
        inputs.models.insert(id, revision);
    }
    if !options.again
        && let Some(id) = finished_twin(store, "cluster", &run_spec.config, &[], &inputs).await?
    {
        return stored_summary(store, id, table, km.k).await;
    }
    let mut run = Run::open(store, run_spec).await?;
    if let Some((id, revision)) = space_model(store, &table).await? {
        run.record_model(&id, &revision);
    }
    for (table, version) in &inputs.tables {
        run.record_input(table, *version);
    }
    let run_id = run.id().to_string();
    let outcome = async {
        let result = kmeans(&data, &km, &options.device.device()?)?;
        write(
            store,
            &run_id,
            options.iteration,
            &data.ids,
            data.dim,
            &result,
        )
        .await?;
        Ok(result)
    }
    .await;
    let result = run.close(store, outcome).await?;
    Ok(ClusterSummary {
        run_id,
        table,
        items: data.len(),
        k: km.k,
        inertia: result.inertia,
        lloyd_steps: result.history.len(),
        sizes: result.sizes,
        reused: false,
    })
}

/// The summary of a finished cluster run, from what it stored: its centroids' sizes and its inertia history.
async fn stored_summary(
    store: &Store,
    run_id: String,
    table: String,
    k: usize,
) -> Result<ClusterSummary> {
    let by_run = || col("run_id").eq(lit(run_id.clone()));
    let mut sizes: Vec<(i64, u64)> = Vec::new();
    for batch in store
        .scan("centroids", &["cluster_id", "size"], Some(by_run()))
        .await?
    {
        for (c, n) in integers(&batch, "cluster_id")?
            .into_iter()
            .zip(integers(&batch, "size")?)
        {
            if let (Some(c), Some(n)) = (c, n) {
                sizes.push((c, n.max(0) as u64));
            }
        }
    }
    sizes.sort_unstable();
    let history = crate::store::metrics::series(store, &run_id, "inertia").await?;
    Ok(ClusterSummary {
        run_id,
        table,
        items: sizes.iter().map(|s| s.1 as usize).sum(),
        k,
        inertia: history.last().map_or(f64::NAN, |h| h.1),
        lloyd_steps: history.len(),
        sizes: sizes.into_iter().map(|s| s.1).collect(),
        reused: true,
    })
}
