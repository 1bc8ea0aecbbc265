//! The `k` stored items nearest to one vector, by cosine similarity, with a filter applied before ranking: what
//! `vector_search(...)` and `vlmdb search` return. Lance's flat search with the vector index bypassed, so exact;
//! or, when asked, through the space's stored vector index ([`super::ann`]).

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Float32Type};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use super::space::Filter;
use crate::error::{Error, Result};
use crate::store::Store;

/// How a search finds its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Search {
    /// Every item scored: the vector index is bypassed.
    #[default]
    Exact,
    /// Through the space's stored vector index ([`super::ann::StoredIndex`]).
    Ann,
}

impl std::str::FromStr for Search {
    type Err = Error;
    fn from_str(s: &str) -> Result<Search> {
        match s {
            "exact" => Ok(Search::Exact),
            "ann" => Ok(Search::Ann),
            other => Err(Error::Usage(format!(
                "unknown search method '{other}' (use exact or ann)"
            ))),
        }
    }
}

/// The `k` items of space table `table` nearest to `vector` by cosine similarity, among those `filter` keeps
/// (applied before ranking): rank, item_id, kind, dataset, split, score. Exact unless `search` is
/// [`Search::Ann`].
pub async fn nearest(
    store: &Store,
    table_name: &str,
    vector: Vec<f32>,
    k: usize,
    filter: &Filter,
    search: Search,
) -> Result<RecordBatch> {
    let dim = crate::eval::space::dim(store, table_name).await?;
    if vector.len() != dim {
        return Err(Error::DimensionMismatch {
            left: "the query vector".into(),
            left_dim: vector.len(),
            right: format!("space {table_name}"),
            right_dim: dim,
        });
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(Error::Usage(
            "the query vector has a non-finite value".into(),
        ));
    }
    let table = store.open_table(table_name).await?;
    // More results than items is every item (and nothing is sized by an absurd k).
    let k = k.min(table.count_rows(None).await?.max(1));
    let query = super::ann::query(&table, vector, k)?;
    let query = match search {
        Search::Exact => query.bypass_vector_index(),
        Search::Ann => query,
    };
    let mut query = query.select(Select::columns(&["item_id", "kind", "dataset", "split"]));
    if let Some(predicate) = filter.expr() {
        query = query.only_if_expr(predicate);
    }
    let batches: Vec<RecordBatch> = query.execute().await?.try_collect().await?;
    // (score, item_id, kind, dataset, split)
    type Hit = (f32, String, String, Option<String>, Option<String>);
    let mut rows: Vec<Hit> = Vec::new();
    for batch in &batches {
        let text = |name: &str| -> Result<arrow::array::ArrayRef> {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| Error::SchemaMismatch {
                    table: table_name.to_string(),
                    message: format!("search result has no column '{name}'"),
                })?;
            Ok(arrow::compute::cast(column, &DataType::Utf8)?)
        };
        let (ids, kinds, datasets, splits) = (
            text("item_id")?,
            text("kind")?,
            text("dataset")?,
            text("split")?,
        );
        let distance = batch
            .column_by_name("_distance")
            .map(|c| arrow::compute::cast(c, &DataType::Float32))
            .transpose()?
            .ok_or_else(|| Error::SchemaMismatch {
                table: table_name.to_string(),
                message: "search result has no _distance column".into(),
            })?;
        let distance = distance.as_primitive::<Float32Type>();
        let value = |a: &arrow::array::ArrayRef, r: usize| {
            let a = a.as_string::<i32>();
            a.is_valid(r).then(|| a.value(r).to_string())
        };
        for r in 0..batch.num_rows() {
            rows.push((
                1.0 - distance.value(r),
                value(&ids, r).unwrap_or_default(),
                value(&kinds, r).unwrap_or_default(),
                value(&datasets, r),
                value(&splits, r),
            ));
        }
    }
    // Highest score first; equal scores by item id, so the order is deterministic.
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    rows.truncate(k);
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("rank", DataType::Int64, false),
        arrow::datatypes::Field::new("item_id", DataType::Utf8, false),
        arrow::datatypes::Field::new("kind", DataType::Utf8, false),
        arrow::datatypes::Field::new("dataset", DataType::Utf8, true),
        arrow::datatypes::Field::new("split", DataType::Utf8, true),
        arrow::datatypes::Field::new("score", DataType::Float32, false),
    ]));
    let columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(1..=rows.len() as i64)),
        Arc::new(arrow::array::StringArray::from_iter_values(
            rows.iter().map(|r| r.1.as_str()),
        )),
        Arc::new(arrow::array::StringArray::from_iter_values(
            rows.iter().map(|r| r.2.as_str()),
        )),
        Arc::new(arrow::array::StringArray::from_iter(
            rows.iter().map(|r| r.3.as_deref()),
        )),
        Arc::new(arrow::array::StringArray::from_iter(
            rows.iter().map(|r| r.4.as_deref()),
        )),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.0))),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}
