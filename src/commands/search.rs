//! `vlmdb search`: exact cosine top-k over a model's space for one text or image query. The query is embedded by
//! the same model (through the model cache); the scan is Lance's flat search with the vector index bypassed, so
//! the answer is exact, and the dataset/split/kind filter is applied before ranking, so k results come back
//! whenever k items match. Each result says what it is (`content`): a caption's or pair's text, an image's path and
//! size.

use std::path::PathBuf;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{col, lit};

use crate::error::{Error, Result};
use crate::eval::nearest::{Search, nearest};
use crate::eval::space::Filter;
use crate::inference::cache::Input;
use crate::inference::{embed_one, load_model, space_spec};
use crate::models::DeviceChoice;
use crate::store::Store;
use crate::store::columns::{integers, strings};

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
    /// Exact, or through the space's stored index (named on stderr).
    pub search: Search,
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
    if options.search == Search::Ann {
        let index = crate::eval::ann::StoredIndex::of(store, &space.name).await?;
        crate::progress::note(&format!("search: through {}", index.describe()));
    }
    let found = nearest(
        store,
        &space.name,
        query_vector,
        options.k,
        &filter,
        options.search,
    )
    .await?;
    with_content(store, found).await
}

/// The results with a `content` column before the score: what each item is, for people.
async fn with_content(store: &Store, found: RecordBatch) -> Result<RecordBatch> {
    let ids = strings(&found, "item_id")?;
    let kinds = strings(&found, "kind")?;
    let of_kind = |kind: &str| -> Vec<String> {
        ids.iter()
            .zip(&kinds)
            .filter(|(_, k)| k.as_deref() == Some(kind))
            .filter_map(|(id, _)| id.clone())
            .collect()
    };
    let mut content: HashMap<String, String> = HashMap::new();
    for (kind, table, key, column) in [
        ("caption", "captions", "caption_id", "text"),
        ("pair_text", "pairs", "pair_id", "text"),
    ] {
        let wanted = of_kind(kind);
        if wanted.is_empty() {
            continue;
        }
        let filter = col(key).in_list(wanted.iter().map(|id| lit(id.as_str())).collect(), false);
        for batch in store
            .scan_if_exists(table, &[key, column], Some(filter))
            .await?
        {
            for (id, text) in strings(&batch, key)?
                .into_iter()
                .zip(strings(&batch, column)?)
            {
                if let (Some(id), Some(text)) = (id, text) {
                    content.insert(id, text);
                }
            }
        }
    }
    let images = of_kind("image");
    if !images.is_empty() {
        let filter =
            col("image_id").in_list(images.iter().map(|id| lit(id.as_str())).collect(), false);
        let columns = ["image_id", "path", "width", "height"];
        for batch in store
            .scan_if_exists("images", &columns, Some(filter))
            .await?
        {
            let (ids, paths) = (strings(&batch, "image_id")?, strings(&batch, "path")?);
            let (widths, heights) = (integers(&batch, "width")?, integers(&batch, "height")?);
            for r in 0..batch.num_rows() {
                if let Some(id) = ids[r].clone() {
                    let size = match (widths[r], heights[r]) {
                        (Some(w), Some(h)) => format!(" ({w}×{h})"),
                        _ => String::new(),
                    };
                    let path = paths[r].clone().unwrap_or_else(|| id.clone());
                    content.insert(id, format!("{path}{size}"));
                }
            }
        }
    }
    let described: ArrayRef = Arc::new(StringArray::from(
        ids.iter()
            .map(|id| id.as_ref().and_then(|id| content.get(id).cloned()))
            .collect::<Vec<_>>(),
    ));
    let schema = found.schema();
    let at = schema.index_of("score").unwrap_or(schema.fields().len());
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = found.columns().to_vec();
    fields.insert(at, Field::new("content", DataType::Utf8, true));
    columns.insert(at, described);
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
