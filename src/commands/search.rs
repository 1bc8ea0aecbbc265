//! `vlmdb search`: exact cosine top-k over a model's space for one text or image query. The query is embedded by
//! the same model (through the model cache); the scan is Lance's flat search with the vector index bypassed, so
//! the answer is exact, and the dataset/split/kind filter is applied before ranking, so k results come back
//! whenever k items match.

use std::path::PathBuf;

use arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::eval::nearest::nearest;
use crate::eval::space::Filter;
use crate::inference::cache::Input;
use crate::inference::{embed_one, load_model, space_spec};
use crate::models::DeviceChoice;
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
    let model = load_model(Some(store), &options.model, options.device).await?;
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
