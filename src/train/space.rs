//! Trained heads as an embedding space: `emb_head_<run>` holds the frozen base vectors projected through a training
//! run's heads (images through the image head, captions and pair texts through the text head) and normalised, with
//! dataset and split copied in — so a trained model is evaluated, searched, mined and clustered like any other
//! space. The schema metadata names the run and both base spaces.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float32Type;
use candle_core::{Device, Tensor};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use super::head::Heads;
use super::loss::normalize_rows;
use crate::error::{Error, Result};
use crate::eval::space::{Filter, HEAD_PREFIX, head_space};
use crate::store::Store;
use crate::store::arrays::repeated;
use crate::store::schema::{TableSpec, embedding_table};
use crate::store::write::{batch_for, upsert};

/// The space table spec of a run's heads, with the run and its base spaces in the metadata.
pub fn head_space_spec(
    run_id: &str,
    dim: usize,
    image_table: &str,
    text_table: &str,
) -> Result<TableSpec> {
    let mut spec = embedding_table(&head_space(run_id), dim)?;
    spec.metadata = HashMap::from([
        (
            "vlmdb.model_id".to_string(),
            format!("{HEAD_PREFIX}{run_id}"),
        ),
        (
            "vlmdb.model_spec".to_string(),
            format!("{HEAD_PREFIX}{run_id}"),
        ),
        ("vlmdb.revision".to_string(), run_id.to_string()),
        ("vlmdb.family".to_string(), "head".to_string()),
        ("vlmdb.dim".to_string(), dim.to_string()),
        ("vlmdb.normalization".to_string(), "l2".to_string()),
        (
            "vlmdb.head.image_space".to_string(),
            image_table.to_string(),
        ),
        ("vlmdb.head.text_space".to_string(), text_table.to_string()),
    ]);
    Ok(spec)
}

/// Rows projected per forward pass and per commit.
const CHUNK: usize = 4096;

/// Which head a kind of item goes through.
fn is_image(kind: &str) -> bool {
    kind == "image"
}

/// Project the `kind` items of `base_table` (narrowed by dataset/split) through `heads` into the space of `spec`,
/// written by `run_id`. Returns the number of vectors written.
#[allow(clippy::too_many_arguments)]
pub async fn project(
    store: &Store,
    heads: &Heads,
    spec: &TableSpec,
    base_table: &str,
    kind: &str,
    dataset: Option<&str>,
    split: Option<&str>,
    run_id: &str,
    device: &Device,
) -> Result<usize> {
    let filter = Filter::new(Some(kind), dataset, split);
    let handle = store.open_table(base_table).await?;
    let mut query = handle.query().select(Select::columns(&[
        "item_id", "kind", "dataset", "split", "vector",
    ]));
    if let Some(predicate) = filter.expr() {
        query = query.only_if_expr(predicate);
    }
    let batches: Vec<RecordBatch> = query.execute().await?.try_collect().await?;
    let head = if is_image(kind) {
        &heads.image
    } else {
        &heads.text
    };
    let input_dim = if is_image(kind) {
        heads.shape.image_dim
    } else {
        heads.shape.text_dim
    };
    let op = Error::tensor("projecting through the head");
    let mut written = 0;
    for batch in &batches {
        for start in (0..batch.num_rows()).step_by(CHUNK) {
            let part = batch.slice(start, CHUNK.min(batch.num_rows() - start));
            let vectors = part
                .column_by_name("vector")
                .ok_or_else(|| Error::SchemaMismatch {
                    table: base_table.to_string(),
                    message: "a space table needs a column 'vector'".into(),
                })?
                .as_fixed_size_list();
            if vectors.value_length() as usize != input_dim {
                return Err(Error::DimensionMismatch {
                    left: format!("space {base_table}"),
                    left_dim: vectors.value_length() as usize,
                    right: "the head's input".into(),
                    right_dim: input_dim,
                });
            }
            let values = vectors
                .values()
                .as_primitive::<Float32Type>()
                .values()
                .to_vec();
            let n = part.num_rows();
            let x = Tensor::from_vec(values, (n, input_dim), device).map_err(op)?;
            let z = normalize_rows(&normalize_rows(&x).map_err(op)?)
                .and_then(|x| head.forward(&x))
                .and_then(|y| normalize_rows(&y))
                .and_then(|y| y.flatten_all()?.to_vec1::<f32>())
                .map_err(op)?;
            let vector = crate::store::arrays::vectors(z, heads.shape.dim)?;
            let column = |name: &str| -> Result<Arc<dyn Array>> {
                part.column_by_name(name)
                    .cloned()
                    .ok_or_else(|| Error::SchemaMismatch {
                        table: base_table.to_string(),
                        message: format!("a space table needs a column '{name}'"),
                    })
            };
            let out = batch_for(
                spec,
                vec![
                    ("item_id", column("item_id")?),
                    ("kind", column("kind")?),
                    ("dataset", column("dataset")?),
                    ("split", column("split")?),
                    ("vector", Arc::new(vector)),
                    ("run_id", repeated(run_id, n)),
                ],
            )?;
            upsert(store, spec, out).await?;
            written += n;
        }
    }
    Ok(written)
}

/// The kinds of item a head projects from each of its base spaces.
pub const IMAGE_KINDS: [&str; 1] = ["image"];
pub const TEXT_KINDS: [&str; 2] = ["caption", "pair_text"];

/// Project every item of `dataset` (all splits; every dataset when `None`) from both base spaces.
#[allow(clippy::too_many_arguments)]
pub async fn project_all(
    store: &Store,
    heads: &Heads,
    spec: &TableSpec,
    image_table: &str,
    text_table: &str,
    dataset: Option<&str>,
    split: Option<&str>,
    run_id: &str,
    device: &Device,
) -> Result<usize> {
    let mut written = 0;
    for kind in IMAGE_KINDS {
        written += project(
            store,
            heads,
            spec,
            image_table,
            kind,
            dataset,
            split,
            run_id,
            device,
        )
        .await?;
    }
    for kind in TEXT_KINDS {
        written += project(
            store, heads, spec, text_table, kind, dataset, split, run_id, device,
        )
        .await?;
    }
    Ok(written)
}

/// A training run's best heads and the spaces they project from.
#[derive(Debug)]
pub struct TrainedHeads {
    pub run_id: String,
    pub heads: Heads,
    pub image_table: String,
    pub text_table: String,
    /// The artifact the weights came from (`best_step<N>.safetensors`): the heads' revision.
    pub checkpoint: String,
}

/// Load the best heads of training run `run_id` from the store.
pub async fn load_heads(store: &Store, run_id: &str, device: &Device) -> Result<TrainedHeads> {
    let config = store
        .run_config(run_id, "train")
        .await?
        .ok_or_else(|| Error::UnknownRun {
            id: format!("{run_id} (head:{run_id} names a `vlmdb train` run)"),
        })?;
    let config: serde_json::Value = serde_json::from_str(&config)?;
    let field = |name: &str| -> Result<serde_json::Value> {
        config.get(name).cloned().ok_or_else(|| {
            Error::Usage(format!(
                "train run {run_id}: its configuration has no '{name}'"
            ))
        })
    };
    let shape: super::head::HeadShape = serde_json::from_value(field("shape")?)?;
    let image_table: String = serde_json::from_value(field("image_space")?)?;
    let text_table: String = serde_json::from_value(field("text_space")?)?;
    let (checkpoint, bytes) = store
        .latest_artifact(run_id, "best_")
        .await?
        .ok_or_else(|| {
            Error::Usage(format!(
                "train run {run_id} has no trained heads yet (no best_* checkpoint in artifacts)"
            ))
        })?;
    let (tensors, _) = super::checkpoint::decode(&bytes, device)?;
    let heads = Heads::init(shape, &mut crate::rng::Rng::new(0), device)?;
    heads.load(&tensors)?;
    Ok(TrainedHeads {
        run_id: run_id.to_string(),
        heads,
        image_table,
        text_table,
        checkpoint,
    })
}
