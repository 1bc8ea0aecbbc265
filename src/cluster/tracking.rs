//! Tracking clusters across iterations (seed S0): the clusters of one `vlmdb cluster` run matched one-to-one to
//! those of another by the Hungarian algorithm on centroid cosine similarity, with each matched pair's centroid
//! drift (Euclidean distance) and sizes; and how much the two assignments of their shared items agree (ARI, NMI).

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int32Type, Int64Type};
use datafusion::prelude::{col, lit};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use super::compare::{adjusted_rand_index, hungarian, normalized_mutual_info};
use crate::error::{Error, Result};
use crate::eval::scores::squared_distance;
use crate::store::Store;

/// One matched pair of clusters.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched {
    pub from_cluster: i32,
    pub to_cluster: i32,
    /// Cosine similarity of the two centroids.
    pub similarity: f64,
    /// Euclidean distance between the two centroids.
    pub drift: f64,
    pub from_size: i64,
    pub to_size: i64,
}

/// How two assignments agree on the items both clustered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub items: usize,
    pub ari: f64,
    pub nmi: f64,
}

async fn rows(store: &Store, table: &str, run: &str, columns: &[&str]) -> Result<Vec<RecordBatch>> {
    let handle = store.open_table(table).await?;
    Ok(handle
        .query()
        .only_if_expr(col("run_id").eq(lit(run)))
        .select(Select::columns(columns))
        .execute()
        .await?
        .try_collect()
        .await?)
}

/// cluster -> (size, centroid) of a run.
async fn centroids(store: &Store, run: &str) -> Result<HashMap<i32, (i64, Vec<f32>)>> {
    let mut out = HashMap::new();
    for batch in rows(store, "centroids", run, &["cluster_id", "size", "vector"]).await? {
        let cluster = arrow::compute::cast(batch.column(0), &DataType::Int32)?;
        let size = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let vectors = batch.column(2).as_list::<i32>();
        for r in 0..batch.num_rows() {
            let v = vectors.value(r);
            out.insert(
                cluster.as_primitive::<Int32Type>().value(r),
                (
                    size.as_primitive::<Int64Type>().value(r),
                    v.as_primitive::<Float32Type>().values().to_vec(),
                ),
            );
        }
    }
    if out.is_empty() {
        return Err(Error::Usage(format!(
            "run '{run}' has no centroids (give the run id of a `vlmdb cluster` run)"
        )));
    }
    Ok(out)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// The clusters of `from_run` matched to those of `to_run` (when the counts differ, the larger side's extra
/// clusters stay unmatched), by from_cluster.
pub async fn matching(store: &Store, from_run: &str, to_run: &str) -> Result<Vec<Matched>> {
    let from = centroids(store, from_run).await?;
    let to = centroids(store, to_run).await?;
    let mut a: Vec<i32> = from.keys().copied().collect();
    let mut b: Vec<i32> = to.keys().copied().collect();
    a.sort_unstable();
    b.sort_unstable();
    if let Some((ca, cb)) = from.values().next().zip(to.values().next())
        && ca.1.len() != cb.1.len()
    {
        return Err(Error::DimensionMismatch {
            left: format!("centroids of run {from_run}"),
            left_dim: ca.1.len(),
            right: format!("centroids of run {to_run}"),
            right_dim: cb.1.len(),
        });
    }
    let similarity: Vec<Vec<f64>> = a
        .iter()
        .map(|i| b.iter().map(|j| cosine(&from[i].1, &to[j].1)).collect())
        .collect();
    // Hungarian wants rows <= columns: transpose when `from` has more clusters.
    let pairs: Vec<(usize, usize)> = if a.len() <= b.len() {
        let cost: Vec<Vec<f64>> = similarity
            .iter()
            .map(|r| r.iter().map(|s| 1.0 - s).collect())
            .collect();
        hungarian(&cost).into_iter().enumerate().collect()
    } else {
        let cost: Vec<Vec<f64>> = (0..b.len())
            .map(|j| (0..a.len()).map(|i| 1.0 - similarity[i][j]).collect())
            .collect();
        let mut p: Vec<(usize, usize)> = hungarian(&cost)
            .into_iter()
            .enumerate()
            .map(|(j, i)| (i, j))
            .collect();
        p.sort_unstable();
        p
    };
    Ok(pairs
        .into_iter()
        .map(|(i, j)| {
            let (fs, fv) = &from[&a[i]];
            let (ts, tv) = &to[&b[j]];
            let drift = squared_distance(fv, tv).sqrt();
            Matched {
                from_cluster: a[i],
                to_cluster: b[j],
                similarity: similarity[i][j],
                drift,
                from_size: *fs,
                to_size: *ts,
            }
        })
        .collect())
}

/// item -> cluster of a run.
async fn assignment(store: &Store, run: &str) -> Result<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for batch in rows(store, "clusters", run, &["item_id", "cluster_id"]).await? {
        let ids = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let cluster = arrow::compute::cast(batch.column(1), &DataType::Int64)?;
        let cluster = cluster.as_primitive::<Int64Type>();
        for r in 0..batch.num_rows() {
            if ids.is_valid(r) {
                out.insert(ids.value(r).to_string(), cluster.value(r));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Usage(format!(
            "run '{run}' has no clusters (give the run id of a `vlmdb cluster` run)"
        )));
    }
    Ok(out)
}

/// ARI and NMI of the two runs' assignments over the items both clustered.
pub async fn agreement(store: &Store, from_run: &str, to_run: &str) -> Result<Agreement> {
    let from = assignment(store, from_run).await?;
    let to = assignment(store, to_run).await?;
    let mut shared: Vec<(&String, i64)> = from
        .iter()
        .map(|(k, v)| (k, *v))
        .filter(|(k, _)| to.contains_key(*k))
        .collect();
    shared.sort();
    let a: Vec<i64> = shared.iter().map(|(_, c)| *c).collect();
    let b: Vec<i64> = shared.iter().map(|(k, _)| to[*k]).collect();
    Ok(Agreement {
        items: a.len(),
        ari: adjusted_rand_index(&a, &b),
        nmi: normalized_mutual_info(&a, &b),
    })
}
