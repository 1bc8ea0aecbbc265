//! A trained head as a model (`head:<run_id>`): the base model of each tower (recorded in the base space's schema
//! metadata), its output L2-normalised, then projected through the run's best head. `embed_text('head:<run>', …)`,
//! `embed_image`, `vector_search` and `vlmdb search` use it like any other model, and its vectors are those of
//! the space `emb_head_<run>` (the stored vectors projected by training or by `vlmdb embed --model head:<run>`).
//! Training hands it to the model registry ([`crate::inference::load_model`]); the models floor never sees the store.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::head::Heads;
use super::loss::normalize_rows;
use super::space::load_heads;
use crate::error::{Error, Result};
use crate::eval::space::{HEAD_PREFIX, head_space};
use crate::models::preprocess::ImageProcessor;
use crate::models::tokens::{TextTokenizer, TokenBatch};
use crate::models::{DeviceChoice, Encoder, Modality, Model, ModelFiles, shared};
use crate::store::Store;

/// Base models below a trained head.
pub struct HeadEncoder {
    image: Option<Arc<Model>>,
    text: Option<Arc<Model>>,
    heads: Heads,
}

impl Encoder for HeadEncoder {
    fn load(files: &mut ModelFiles, _device: &Device) -> Result<Self> {
        Err(Error::Model {
            model: files.spec.clone(),
            message: "a trained head is loaded from the store, not from files".into(),
        })
    }

    fn dim(&self) -> usize {
        self.heads.shape.dim
    }

    fn tokenizer(&self) -> Option<&TextTokenizer> {
        self.text.as_ref().and_then(|m| m.encoder().tokenizer())
    }

    fn text_features(&self, batch: &TokenBatch) -> candle_core::Result<Tensor> {
        let base = self
            .text
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("the head has no text model".into()))?;
        let features = base.encoder().text_features(batch)?;
        self.heads.text.forward(&normalize_rows(&features)?)
    }

    fn image_processor(&self) -> Option<&ImageProcessor> {
        self.image
            .as_ref()
            .and_then(|m| m.encoder().image_processor())
    }

    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let base = self
            .image
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("the head has no image model".into()))?;
        let features = base.encoder().image_features(pixels)?;
        self.heads.image.forward(&normalize_rows(&features)?)
    }

    fn text_key(&self) -> String {
        self.text
            .as_ref()
            .map(|m| format!("head over {}", m.cache_key(Modality::Text)))
            .unwrap_or_default()
    }
}

/// The model spec a space records (`vlmdb.model_spec`), when a model made it (imported spaces have none).
async fn base_model(store: &Store, table: &str) -> Result<Option<String>> {
    let schema = store.open_table(table).await?.schema().await?;
    Ok(schema.metadata().get("vlmdb.model_spec").cloned())
}

/// Load `head:<run_id>` from the store, its base models onto `device`.
pub async fn load(store: &Store, spec: &str, device: DeviceChoice) -> Result<Model> {
    let run_id = spec.strip_prefix(HEAD_PREFIX).unwrap_or(spec);
    let target = device.device()?;
    let trained = load_heads(store, run_id, &target).await?;
    let load_base = |base: Option<String>| async move {
        match base {
            Some(base) => {
                let model = tokio::task::spawn_blocking(move || shared(&base, device))
                    .await
                    .map_err(Error::task("loading the model"))??;
                Ok::<_, Error>(Some(model))
            }
            None => Ok(None),
        }
    };
    let image = load_base(base_model(store, &trained.image_table).await?).await?;
    let text = load_base(base_model(store, &trained.text_table).await?).await?;
    if image.is_none() && text.is_none() {
        return Err(Error::Model {
            model: spec.to_string(),
            message: format!(
                "both base spaces ({}, {}) were imported, so there is no model to embed new inputs with; \
                 `vlmdb embed --model {spec}` projects their stored vectors",
                trained.image_table, trained.text_table
            ),
        });
    }
    Ok(Model::new(
        ModelFiles::in_store(spec, spec, &trained.checkpoint, &head_space(run_id)),
        "head",
        target,
        Box::new(HeadEncoder {
            image,
            text,
            heads: trained.heads,
        }),
    ))
}
