//! `vlmdb search`: exact cosine top-k over a model's space for one text or image query. The query is embedded by
//! the same model (through the model cache); the scan is Lance's flat search with the vector index bypassed, so
//! the answer is exact, and the dataset/split/kind filter is applied before ranking, so k results come back
//! whenever k items match.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Float32Type};
use futures::TryStreamExt;
use lancedb::DistanceType;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use crate::embed::space_spec;
use crate::error::{Error, Result};
use crate::eval::space::Filter;
use crate::models::cache::{Input, embed};
use crate::models::{DEFAULT_BATCH, DeviceChoice, Modality, Model, load_shared};
use crate::store::Store;

/// The query of a search.
#[derive(Debug, Clone)]
pub enum Query {
    Text(String),
    Image(PathBuf),
}

/// What `vlmdb search` looks for.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub model: String,
    pub query: Query,
    pub k: usize,
    pub dataset: Option<String>,
    pub split: Option<String>,
    /// Only items of this kind (`image`, `caption`, `pair_text`).
    pub kind: Option<String>,
    pub device: DeviceChoice,
}

/// The k nearest items: rank (1-based), item_id, kind, dataset, split, score (cosine similarity).
pub async fn search(store: &Store, options: &SearchOptions) -> Result<RecordBatch> {
    if options.k == 0 {
        return Err(Error::Usage("-k must be at least 1".into()));
    }
    let model = load_shared(Some(store), &options.model, options.device).await?;
    let space = space_spec(&model)?;
    store.open_table(&space.name).await.map_err(|e| match e {
        Error::UnknownTable { .. } => Error::Usage(format!(
            "space '{}' has no vectors yet: run `vlmdb embed --model {} --images` (or --captions) first",
            space.name, options.model
        )),
        other => other,
    })?;
    let bytes;
    let input = match &options.query {
        Query::Text(text) => Input::Text(text),
        Query::Image(path) => {
            bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            Input::Image(&bytes)
        }
    };
    let query_vector = embed_one(store, &model, &options.model, input)
        .await
        .map_err(|e| match (e, &options.query) {
            (Error::ModelInput { message, .. }, Query::Image(path)) => Error::Input {
                path: path.clone(),
                message,
            },
            (other, _) => other,
        })?;
    let filter = Filter::new(
        options.kind.as_deref(),
        options.dataset.as_deref(),
        options.split.as_deref(),
    );
    nearest(store, &space.name, query_vector, options.k, &filter).await
}

/// The embedding of one query text or image by `model` (named `spec` in errors), through the model cache.
pub async fn embed_one(
    store: &Store,
    model: &Arc<Model>,
    spec: &str,
    input: Input<'_>,
) -> Result<Vec<f32>> {
    let modality = match input {
        Input::Text(_) => Modality::Text,
        Input::Image(_) => Modality::Image,
    };
    if !model.supports(modality) {
        return Err(Error::Model {
            model: spec.to_string(),
            message: format!(
                "this {} model cannot embed {} query",
                model.family,
                if modality == Modality::Image {
                    "an image"
                } else {
                    "a text"
                }
            ),
        });
    }
    let (vectors, _) = embed(Some(store), model, modality, &[Some(input)], DEFAULT_BATCH).await?;
    vectors
        .into_iter()
        .flatten()
        .next()
        .ok_or_else(|| Error::Model {
            model: spec.to_string(),
            message: "the query produced no vector".into(),
        })
}

/// The `k` items of space table `table` nearest to `vector` by cosine similarity, among those `filter` keeps
/// (applied before ranking): rank, item_id, kind, dataset, split, score. Exact: the vector index is bypassed.
pub async fn nearest(
    store: &Store,
    table_name: &str,
    vector: Vec<f32>,
    k: usize,
    filter: &Filter,
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
    let mut query = table
        .vector_search(vector)?
        .column("vector")
        .distance_type(DistanceType::Cosine)
        .bypass_vector_index()
        .limit(k)
        .select(Select::columns(&["item_id", "kind", "dataset", "split"]));
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
