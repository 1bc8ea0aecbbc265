//! CLIP (OpenAI's, OpenCLIP/LAION's, any transformers `CLIPModel`, and OpenCLIP's own checkpoint layout): vlmdb's
//! text tower ([`super::clip_text`]) and vision tower ([`super::clip_vision`]) with the two projections, built
//! from a [`Checkpoint`] in either layout. Text: truncated to the position count (77), padded to the batch's
//! longest, pooled at the end-of-text token as the reference code finds it (first `eos_token_id`, or the first
//! largest id). Images: the model's processor (transformers' `preprocessor_config.json`, or OpenCLIP's
//! `preprocess_cfg`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use super::clip_layer::{Act, LayerShape};
use super::clip_text::{ClipText, ClipTextConfig};
use super::clip_vision::{ClipVision, VisionShape};
use super::hub::ModelFiles;
use super::preprocess::ImageProcessor;
use super::tokens::{Padding, TextTokenizer, TokenBatch};
use super::{Encoder, image_processor, open_clip, read_json, weights};
use crate::error::{Error, Result};

pub use super::clip_text::Pool;

fn default_projection() -> usize {
    512
}

/// transformers' `CLIPConfig` (the parts vlmdb reads; an OpenCLIP config is translated into it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Config {
    #[serde(default)]
    pub(crate) text_config: TextConfig,
    #[serde(default)]
    pub(crate) vision_config: VisionConfig,
    #[serde(default = "default_projection")]
    pub(crate) projection_dim: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TextConfig {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) max_position_embeddings: usize,
    pub(crate) hidden_act: String,
    pub(crate) layer_norm_eps: f64,
    pub(crate) eos_token_id: Option<u32>,
    pub(crate) pad_token_id: Option<u32>,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            eos_token_id: Some(2),
            pad_token_id: Some(1),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct VisionConfig {
    pub(crate) hidden_size: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) num_channels: usize,
    pub(crate) image_size: usize,
    pub(crate) patch_size: usize,
    pub(crate) hidden_act: String,
    pub(crate) layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// transformers' `CLIPModel`: `config.json` + `model.safetensors` / `pytorch_model.bin`.
    Transformers,
    /// OpenCLIP's own: `open_clip_config.json` + `open_clip_model.safetensors` / `open_clip_pytorch_model.bin`.
    OpenClip,
}

/// Everything a CLIP is built from, whichever layout it came in: the config in transformers' terms, the
/// tokenizer, the pooling rule, the image processor, and (for OpenCLIP checkpoints) the weights already renamed to
/// transformers' names.
pub(crate) struct Checkpoint {
    pub(crate) config: Config,
    pub(crate) layout: Layout,
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) pool: Pool,
    pub(crate) images: ImageProcessor,
    converted: Option<HashMap<String, Tensor>>,
}

impl Checkpoint {
    /// Open the CLIP in `files`: transformers' layout when `config.json` is there (hub repos of LAION's CLIPs carry
    /// both layouts with the same weights), else OpenCLIP's.
    pub(crate) fn open(files: &mut ModelFiles, device: &Device) -> Result<Checkpoint> {
        if files.optional("config.json")?.is_some() {
            let config: Config = read_json(files, "config.json")?;
            let t = &config.text_config;
            let mut tokenizer = TextTokenizer::load(
                &files.require("tokenizer.json")?,
                t.max_position_embeddings,
                0,
                Padding::Longest,
            )?;
            // OpenAI's tokenizer pads with the end-of-text token; the pad id never reaches the pooled vector
            // (causal attention, pooling at the first end-of-text).
            tokenizer.pad_id = tokenizer
                .token_id("<|endoftext|>")
                .or(t.pad_token_id)
                .unwrap_or(0);
            let pool = Pool::of_eos(t.eos_token_id.unwrap_or(2));
            let images = image_processor(
                files,
                ImageProcessor::clip(config.vision_config.image_size as u32),
            )?;
            return Ok(Checkpoint {
                config,
                layout: Layout::Transformers,
                tokenizer,
                pool,
                images,
                converted: None,
            });
        }
        if files.optional(open_clip::CONFIG)?.is_some() {
            let native = open_clip::read(files, device)?;
            return Ok(Checkpoint {
                config: native.config,
                layout: Layout::OpenClip,
                tokenizer: native.tokenizer,
                pool: native.pool,
                images: native.images,
                converted: Some(native.tensors),
            });
        }
        Err(Error::ModelFile {
            repo: files.id.clone(),
            revision: files.revision.clone(),
            file: "config.json".into(),
            message: format!(
                "neither config.json (transformers' CLIPModel) nor {} (OpenCLIP) is there",
                open_clip::CONFIG
            ),
        })
    }

    /// The weights by transformers' name, for building the inference towers.
    fn var_builder(
        &mut self,
        files: &mut ModelFiles,
        device: &Device,
    ) -> Result<VarBuilder<'static>> {
        match self.converted.take() {
            Some(tensors) => Ok(VarBuilder::from_tensors(tensors, DType::F32, device)),
            None => weights(files, device),
        }
    }

    /// Every weight by transformers' name, for training (`model.safetensors` in transformers' layout).
    pub(crate) fn tensors(
        &mut self,
        files: &mut ModelFiles,
        device: &Device,
    ) -> Result<HashMap<String, Tensor>> {
        if let Some(tensors) = self.converted.take() {
            return Ok(tensors);
        }
        let path = files
            .optional("model.safetensors")?
            .ok_or_else(|| Error::Model {
                model: files.spec.clone(),
                message: "training reads model.safetensors, which this model does not have".into(),
            })?;
        candle_core::safetensors::load(&path, device).map_err(|source| Error::Candle {
            model: files.spec.clone(),
            source,
        })
    }

    /// The text tower's layer shape.
    pub(crate) fn text_shape(&self, model: &str) -> Result<LayerShape> {
        let t = &self.config.text_config;
        shape(
            model,
            t.hidden_size,
            t.intermediate_size,
            t.num_attention_heads,
            t.layer_norm_eps,
            &t.hidden_act,
        )
    }

    /// The vision tower's layer shape.
    pub(crate) fn vision_shape(&self, model: &str) -> Result<LayerShape> {
        let v = &self.config.vision_config;
        shape(
            model,
            v.hidden_size,
            v.intermediate_size,
            v.num_attention_heads,
            v.layer_norm_eps,
            &v.hidden_act,
        )
    }
}

fn shape(
    model: &str,
    hidden: usize,
    intermediate: usize,
    heads: usize,
    eps: f64,
    act: &str,
) -> Result<LayerShape> {
    let bad = |message: String| Error::Model {
        model: model.into(),
        message,
    };
    let shape = LayerShape {
        hidden,
        intermediate,
        heads,
        eps,
        act: Act::parse(act).map_err(bad)?,
    };
    shape.check().map_err(bad)?;
    Ok(shape)
}

/// A CLIP image–text model.
pub struct Clip {
    text: ClipText,
    vision: ClipVision,
    visual_projection: Linear,
    tokenizer: TextTokenizer,
    images: ImageProcessor,
    pool: Pool,
    dim: usize,
}

impl Encoder for Clip {
    fn load(files: &mut ModelFiles, device: &Device) -> Result<Self> {
        let mut checkpoint = Checkpoint::open(files, device)?;
        let vb = checkpoint.var_builder(files, device)?;
        let spec = files.spec.clone();
        let vision_shape = checkpoint.vision_shape(&spec)?;
        let (t, v) = (
            &checkpoint.config.text_config,
            &checkpoint.config.vision_config,
        );
        let dim = checkpoint.config.projection_dim;
        let text_config = ClipTextConfig {
            vocab_size: t.vocab_size,
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            max_position_embeddings: t.max_position_embeddings,
            hidden_act: t.hidden_act.clone(),
            layer_norm_eps: t.layer_norm_eps,
            eos_token_id: t.eos_token_id.unwrap_or(2),
            projection_dim: Some(dim),
        };
        let vision_shape = VisionShape {
            layer: vision_shape,
            layers: v.num_hidden_layers,
            channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        };
        let bad = |message: String| Error::Model {
            model: spec.clone(),
            message,
        };
        let text = ClipText::new(text_config, vb.clone())
            .map_err(bad)?
            .with_pool(checkpoint.pool);
        if !text.has_projection() {
            return Err(bad("the weights have no text_projection".into()));
        }
        let vision = ClipVision::new(vision_shape, vb.pp("vision_model")).map_err(bad)?;
        let visual_projection =
            candle_nn::linear_no_bias(v.hidden_size, dim, vb.pp("visual_projection")).map_err(
                |source| Error::Candle {
                    model: spec.clone(),
                    source,
                },
            )?;
        Ok(Clip {
            text,
            vision,
            visual_projection,
            tokenizer: checkpoint.tokenizer,
            images: checkpoint.images,
            pool: checkpoint.pool,
            dim,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn tokenizer(&self) -> Option<&TextTokenizer> {
        Some(&self.tokenizer)
    }

    fn text_features(&self, batch: &TokenBatch) -> candle_core::Result<Tensor> {
        self.text
            .forward(&batch.ids)?
            .pooled
            .ok_or_else(|| candle_core::Error::Msg("the text tower has no projection".into()))
    }

    fn image_processor(&self) -> Option<&ImageProcessor> {
        Some(&self.images)
    }

    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.visual_projection
            .forward(&self.vision.forward(pixels)?)
    }

    fn text_key(&self) -> String {
        format!(
            "clip:max_len={}:pool={:?}",
            self.tokenizer.max_len, self.pool
        )
    }
}
