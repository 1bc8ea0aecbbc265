//! `vlmdb index`: Lance's own vector index on a space table (IVF-PQ or IVF-HNSW-SQ, cosine), then its recall@10
//! measured against exact search on a sample of the space's own vectors, printed and written to `metrics`.
//! Searches are exact unless asked for the index (`vector_search(…, 'ann')`, `knn(…, 'ann')`, `vlmdb search
//! --ann`: [`crate::eval::ann`]), which then name it and this recall.

use std::sync::Arc;

use arrow::array::RecordBatch;
use candle_core::Device;
use futures::TryStreamExt;
use lancedb::DistanceType;
use lancedb::index::Index;
use lancedb::index::vector::{IvfHnswSqIndexBuilder, IvfPqIndexBuilder};
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use crate::error::{Error, Result};
use crate::eval::ann;
use crate::eval::space::{Filter, Vectors, load, resolve};
use crate::eval::topk::{Hit, top_k};
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::fixed_table;
use crate::store::write::{append, batch_for};

/// Fewest vectors Lance's PQ training accepts (each codebook has 256 centroids).
pub const MIN_ROWS: usize = 256;

/// Queries sampled to measure recall.
pub const SAMPLE: usize = 100;

/// The index types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IndexKind {
    /// IVF partitions with product-quantised vectors.
    #[value(name = "ivf_pq")]
    IvfPq,
    /// IVF partitions, each an HNSW graph over scalar-quantised vectors.
    #[value(name = "ivf_hnsw_sq")]
    IvfHnswSq,
}

impl IndexKind {
    pub fn index(self) -> Index {
        match self {
            IndexKind::IvfPq => {
                Index::IvfPq(IvfPqIndexBuilder::default().distance_type(DistanceType::Cosine))
            }
            IndexKind::IvfHnswSq => Index::IvfHnswSq(
                IvfHnswSqIndexBuilder::default().distance_type(DistanceType::Cosine),
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            IndexKind::IvfPq => "ivf_pq",
            IndexKind::IvfHnswSq => "ivf_hnsw_sq",
        }
    }
}

/// What `vlmdb index` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexReport {
    pub run_id: String,
    pub table: String,
    pub kind: &'static str,
    pub rows: usize,
    pub recall_at_10: f64,
    pub sample: usize,
}

/// Build the index under an `index` run.
pub async fn build(
    store: &Store,
    model: &str,
    kind: IndexKind,
    device: &Device,
) -> Result<IndexReport> {
    store.ensure_writable("index")?;
    let table_name = resolve(store, model).await?;
    let table = store.open_table(&table_name).await?;
    let rows = table.count_rows(None).await?;
    if rows < MIN_ROWS {
        return Err(Error::Usage(format!(
            "space {table_name} has {rows} vectors; a Lance vector index needs at least {MIN_ROWS} to train its \
             quantiser (exact search needs no index)"
        )));
    }
    store.ensure_tables(&["metrics"]).await?;
    let spec = RunSpec {
        kind: "index".into(),
        name: format!("{} on {table_name}", kind.name()),
        config: serde_json::json!({ "model": model, "space": table_name, "kind": kind.name() }),
        seed: None,
    };
    let mut run = Run::open(store, spec).await?;
    run.record_input(&table_name, table.version().await?);
    let run_id = run.id().to_string();
    let outcome = async {
        table
            .create_index(&["vector"], kind.index())
            .replace(true)
            .execute()
            .await?;
        let vectors = load(store, &table_name, &Filter::default()).await?;
        let recall = measure(&table, &vectors, device).await?;
        let metrics = fixed_table("metrics")?.ok_or_else(|| Error::UnknownTable {
            name: "metrics".into(),
        })?;
        let batch = batch_for(
            &metrics,
            vec![
                (
                    "run_id",
                    Arc::new(arrow::array::StringArray::from(vec![run_id.as_str()])),
                ),
                (
                    "name",
                    Arc::new(arrow::array::StringArray::from(vec!["index_recall_at_10"])),
                ),
                (
                    "value",
                    Arc::new(arrow::array::Float64Array::from(vec![recall])),
                ),
                ("k", Arc::new(arrow::array::Int32Array::from(vec![10]))),
                (
                    "dim",
                    Arc::new(arrow::array::Int32Array::from(vec![vectors.dim as i32])),
                ),
            ],
        )?;
        append(store, &metrics, batch).await?;
        Ok(recall)
    }
    .await;
    let recall = run.close(store, outcome).await?;
    Ok(IndexReport {
        run_id,
        table: table_name,
        kind: kind.name(),
        rows,
        recall_at_10: recall,
        sample: SAMPLE.min(rows),
    })
}

/// recall@10 of the indexed search against exact search, for evenly spaced vectors of the space as queries.
async fn measure(table: &lancedb::Table, vectors: &Vectors, device: &Device) -> Result<f64> {
    let step = (vectors.len() / SAMPLE).max(1);
    let picked: Vec<usize> = (0..vectors.len()).step_by(step).take(SAMPLE).collect();
    let queries = Vectors {
        ids: picked.iter().map(|&i| vectors.ids[i].clone()).collect(),
        dim: vectors.dim,
        data: picked
            .iter()
            .flat_map(|&i| vectors.row(i).to_vec())
            .collect(),
    };
    let exact: Vec<Vec<Hit>> = top_k(&queries, vectors, 10, None, device)?;
    let (mut found, mut total) = (0usize, 0usize);
    for (q, want) in exact.iter().enumerate() {
        let batches: Vec<RecordBatch> = ann::query(table, queries.row(q).to_vec(), 10)?
            .select(Select::columns(&["item_id"]))
            .execute()
            .await?
            .try_collect()
            .await?;
        let got: Vec<String> = ann::hits_of(&batches, table.name())?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        total += want.len();
        found += want
            .iter()
            .filter(|h| got.iter().any(|g| *g == vectors.ids[h.index as usize]))
            .count();
    }
    Ok(if total == 0 {
        1.0
    } else {
        found as f64 / total as f64
    })
}
