//! Approximate search through a space's stored vector index: the Lance index `vlmdb index` builds (IVF-PQ or
//! IVF-HNSW-SQ, cosine) and keeps in the space table itself, so it persists, travels with the store, and is tied to
//! the table's versions. Rows written after the index was built are not in it; Lance searches them exactly beside
//! the index, so a grown space is never searched stale, and [`StoredIndex::describe`] says how many rows that is.
//! `vlmdb index` again folds them in.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type};
use datafusion::prelude::{col, lit};
use futures::{StreamExt, TryStreamExt};
use lancedb::DistanceType;
use lancedb::query::{ExecutableQuery, QueryBase, Select, VectorQuery};

use super::space::{Filter, Vectors};
use super::topk::Hit;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::columns::strings;

/// Searches in flight at once (each is one Lance query).
const CONCURRENT_QUERIES: usize = 8;

/// The vector index of a space table, as search will use it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIndex {
    pub table: String,
    /// Lance's name for the index type (`IVF_PQ`, `IVF_HNSW_SQ`).
    pub index_type: String,
    /// Rows the index covers, and rows written since (searched exactly beside it).
    pub indexed_rows: usize,
    pub unindexed_rows: usize,
    /// The `vlmdb index` run that built it and the recall@10 it measured against exact search, when recorded.
    pub built_by: Option<(String, f64)>,
}

impl StoredIndex {
    /// The index on `table_name`'s vectors; an error saying how to build one when there is none.
    pub async fn of(store: &Store, table_name: &str) -> Result<StoredIndex> {
        let table = store.open_table(table_name).await?;
        let index = table
            .list_indices()
            .await?
            .into_iter()
            .find(|i| i.columns.iter().any(|c| c == "vector"))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "space {table_name} has no vector index: build one with `vlmdb index --model {table_name}` \
                     (or search it exactly: method 'exact')"
                ))
            })?;
        let stats = table.index_stats(&index.name).await?;
        let (indexed_rows, unindexed_rows) = stats
            .as_ref()
            .map_or((0, 0), |s| (s.num_indexed_rows, s.num_unindexed_rows));
        Ok(StoredIndex {
            table: table_name.to_string(),
            index_type: index.index_type.to_string(),
            indexed_rows,
            unindexed_rows,
            built_by: built_by(store, table_name).await?,
        })
    }

    /// One line naming the index, its measured recall, and what it does not cover.
    pub fn describe(&self) -> String {
        let built = match &self.built_by {
            Some((run, recall)) => {
                format!("built by run {run}, recall@10 {recall:.4} against exact search")
            }
            None => "no recall recorded (built outside vlmdb index)".to_string(),
        };
        let stale = if self.unindexed_rows > 0 {
            format!(
                "; {} row(s) written since are searched exactly beside it (`vlmdb index` again folds them in)",
                self.unindexed_rows
            )
        } else {
            String::new()
        };
        format!(
            "the {} index of {} ({} rows; {built}){stale}",
            self.index_type, self.table, self.indexed_rows
        )
    }
}

/// The newest finished `vlmdb index` run over `table_name` and the recall@10 it measured.
async fn built_by(store: &Store, table_name: &str) -> Result<Option<(String, f64)>> {
    let filter = col("kind")
        .eq(lit("index"))
        .and(col("status").eq(lit("finished")));
    let mut runs = Vec::new();
    for batch in store
        .scan_if_exists("runs", &["run_id", "config"], Some(filter))
        .await?
    {
        for (id, config) in strings(&batch, "run_id")?
            .into_iter()
            .zip(strings(&batch, "config")?)
        {
            let (Some(id), Some(config)) = (id, config) else {
                continue;
            };
            let space = serde_json::from_str::<serde_json::Value>(&config)
                .ok()
                .and_then(|c| c.get("space").and_then(|s| s.as_str()).map(str::to_string));
            if space.as_deref() == Some(table_name) {
                runs.push(id);
            }
        }
    }
    // Run ids begin with their start time, so the greatest is the newest.
    let Some(run) = runs.into_iter().max() else {
        return Ok(None);
    };
    let recall = crate::store::metrics::series(store, &run, "index_recall_at_10").await?;
    Ok(recall.last().map(|&(_, value)| (run, value)))
}

/// The indexed query for `vector`'s `k` nearest by cosine similarity: the one `vlmdb index` measures its recall with
/// and approximate searches run, so the recall reported is the recall they get.
pub fn query(table: &lancedb::Table, vector: Vec<f32>, k: usize) -> Result<VectorQuery> {
    Ok(table
        .vector_search(vector)?
        .column("vector")
        .distance_type(DistanceType::Cosine)
        .limit(k))
}

/// Item ids and cosine similarities of a search result, in its order.
pub fn hits_of(batches: &[RecordBatch], table_name: &str) -> Result<Vec<(String, f32)>> {
    let mut hits = Vec::new();
    for batch in batches {
        let missing = |name: &str| Error::SchemaMismatch {
            table: table_name.to_string(),
            message: format!("search result has no column '{name}'"),
        };
        let ids = batch
            .column_by_name("item_id")
            .ok_or_else(|| missing("item_id"))?;
        let ids = arrow::compute::cast(ids, &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let distance = batch
            .column_by_name("_distance")
            .ok_or_else(|| missing("_distance"))?;
        let distance = arrow::compute::cast(distance, &DataType::Float32)?;
        let distance = distance.as_primitive::<Float32Type>();
        hits.extend(
            (0..batch.num_rows())
                .filter(|&r| ids.is_valid(r))
                .map(|r| (ids.value(r).to_string(), 1.0 - distance.value(r))),
        );
    }
    Ok(hits)
}

/// The approximate top-k corpus rows of every query through the index of `table_name`, among the rows `filter`
/// keeps, leaving out `exclude[q]` (a composed query's reference): hits index `corpus` (the same rows, loaded),
/// best first, ties by row.
pub async fn top_k(
    store: &Store,
    table_name: &str,
    queries: &Vectors,
    corpus: &Vectors,
    k: usize,
    filter: &Filter,
    exclude: Option<&[Option<u32>]>,
) -> Result<Vec<Vec<Hit>>> {
    let table = store.open_table(table_name).await?;
    let rows: HashMap<&str, u32> = corpus.index();
    let extra = usize::from(exclude.is_some());
    let searches = (0..queries.len()).map(|q| {
        let table = &table;
        async move {
            let mut search = query(table, queries.row(q).to_vec(), k + extra)?
                .select(Select::columns(&["item_id"]));
            if let Some(predicate) = filter.expr() {
                search = search.only_if_expr(predicate);
            }
            let batches: Vec<RecordBatch> = search.execute().await?.try_collect().await?;
            hits_of(&batches, table_name)
        }
    });
    let found: Vec<Vec<(String, f32)>> = futures::stream::iter(searches)
        .buffered(CONCURRENT_QUERIES)
        .try_collect()
        .await?;
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(q, neighbours)| {
            let skip = exclude.and_then(|e| e[q]);
            let mut hits: Vec<Hit> = neighbours
                .iter()
                .filter_map(|(id, score)| {
                    rows.get(id.as_str()).map(|&index| Hit {
                        index,
                        score: *score,
                    })
                })
                .filter(|h| Some(h.index) != skip)
                .collect();
            hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
            hits.truncate(k);
            hits
        })
        .collect())
}
