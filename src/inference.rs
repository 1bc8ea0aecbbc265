//! Models run over stored inputs: the one loader SQL functions and commands call ([`load_model`], which also
//! resolves trained heads, `head:<run_id>`, from the store), the model cache around every forward pass ([`cache`]),
//! captioning ([`captions`]), and the embedding of one query.

pub mod cache;
pub mod captions;

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::eval::space::{FT_PREFIX, HEAD_PREFIX};
use crate::models::{DEFAULT_BATCH, DeviceChoice, Modality, Model};
use crate::store::Store;
use crate::store::schema::{TableSpec, embedding_table};
use cache::{Input, embed};

/// The model `spec` names on `device`, loaded once per process. A trained head (`head:<run_id>`) is read from
/// `store` and assembled over its base models.
pub async fn load_model(
    store: Option<&Store>,
    spec: &str,
    device: DeviceChoice,
) -> Result<Arc<Model>> {
    if let Some(run_id) = spec.strip_prefix(FT_PREFIX) {
        let store = store.ok_or_else(|| Error::Model {
            model: spec.to_string(),
            message: "a fine-tuned model is read from a store, and this call has none".into(),
        })?;
        let dir = store.finetuned_dir(run_id);
        let layouts = ["model.safetensors", crate::models::open_clip::SAFETENSORS];
        if !layouts.iter().any(|weights| dir.join(weights).is_file()) {
            return Err(Error::Model {
                model: spec.to_string(),
                message: format!(
                    "no fine-tuned weights at {} (is {run_id} a finished `vlmdb train --finetune` run?)",
                    dir.display()
                ),
            });
        }
        return crate::models::load_shared(&dir.display().to_string(), device).await;
    }
    if !spec.starts_with(HEAD_PREFIX) {
        return crate::models::load_shared(spec, device).await;
    }
    if let Some(model) = crate::models::loaded(spec, device) {
        return Ok(model);
    }
    let store = store.ok_or_else(|| Error::Model {
        model: spec.to_string(),
        message: "a trained head is read from a store, and this call has none".into(),
    })?;
    let model = crate::train::head_model::load(store, spec, device).await?;
    Ok(crate::models::keep(spec, device, model))
}

/// The table spec of `model`'s space, with the model recorded in the schema metadata.
pub fn space_spec(model: &Model) -> Result<TableSpec> {
    let mut spec = embedding_table(&model.space(), model.dim())?;
    spec.metadata = HashMap::from([
        ("vlmdb.model_id".to_string(), model.files.id.clone()),
        ("vlmdb.model_spec".to_string(), model.files.spec.clone()),
        ("vlmdb.revision".to_string(), model.files.revision.clone()),
        ("vlmdb.family".to_string(), model.family.to_string()),
        ("vlmdb.dim".to_string(), model.dim().to_string()),
        ("vlmdb.normalization".to_string(), "l2".to_string()),
    ]);
    Ok(spec)
}

/// Refuse to write `model`'s vectors into a space table that another model made: the table's schema metadata
/// names the model id it holds (two repos of one name at one revision would otherwise share a table).
pub async fn check_space_owner(store: &Store, model: &Model) -> Result<()> {
    let table = format!("{}{}", crate::eval::space::SPACE_PREFIX, model.space());
    let handle = match store.open_table(&table).await {
        Ok(handle) => handle,
        Err(Error::UnknownTable { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let schema = handle.schema().await?;
    match schema.metadata().get("vlmdb.model_id") {
        Some(owner) if *owner != model.files.id => Err(Error::Model {
            model: model.files.spec.clone(),
            message: format!(
                "space {table} holds the vectors of model {owner} (revision {}), not of {} at the same revision \
                 name: embed one of them into another store, or move that table away",
                schema
                    .metadata()
                    .get("vlmdb.revision")
                    .map_or("?", String::as_str),
                model.files.id
            ),
        }),
        _ => Ok(()),
    }
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
