//! CLIP (ViT-B/32, ViT-L/14 and any HF `CLIPModel`): candle's text and vision transformers, built from the model's
//! `config.json` (candle has no serde for CLIP and only a B/32 preset), with vlmdb's own projections and pooling.
//! Text: truncated to 77 tokens (the position count), padded to the batch's longest, pooled at the end-of-text
//! token the way transformers finds it (first `eos_token_id`, or the largest id for legacy configs whose
//! `eos_token_id` is 2) rather than candle's argmax, which picks the wrong position when the pad token is the EOT
//! token. Images: shortest edge to the input size (bicubic), centre crop, OpenAI mean/std.

use candle_core::{Device, Tensor};
use candle_nn::{Linear, Module};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use serde::Deserialize;

use super::hub::ModelFiles;
use super::preprocess::ImageProcessor;
use super::tokens::{Padding, TextTokenizer, TokenBatch};
use super::{Encoder, image_processor, read_json, weights};
use crate::error::{Error, Result};

fn default_projection() -> usize {
    512
}

#[derive(Deserialize)]
pub(crate) struct Config {
    #[serde(default)]
    pub(crate) text_config: TextConfig,
    #[serde(default)]
    pub(crate) vision_config: VisionConfig,
    #[serde(default = "default_projection")]
    pub(crate) projection_dim: usize,
}

#[derive(Deserialize)]
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

#[derive(Deserialize)]
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

/// Where the text tower's sentence vector is read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pool {
    /// The first occurrence of this token id.
    FirstOf(u32),
    /// The largest id in the row (legacy configs, where the EOT token has the largest id).
    LargestId,
}

/// A CLIP image–text model.
pub struct Clip {
    text: ClipTextTransformer,
    text_projection: Linear,
    vision: ClipVisionTransformer,
    visual_projection: Linear,
    tokenizer: TextTokenizer,
    images: ImageProcessor,
    pool: Pool,
    dim: usize,
}

fn check_supported(files: &ModelFiles, tower: &str, act: &str, eps: f64) -> Result<()> {
    if act != "quick_gelu" {
        return Err(Error::Model {
            model: files.spec.clone(),
            message: format!(
                "{tower}: hidden_act {act:?} is not supported (candle's CLIP has quick_gelu only)"
            ),
        });
    }
    if (eps - 1e-5).abs() > 1e-12 {
        return Err(Error::Model {
            model: files.spec.clone(),
            message: format!(
                "{tower}: layer_norm_eps {eps} is not supported (candle's CLIP uses 1e-5)"
            ),
        });
    }
    Ok(())
}

/// The tokenizer, the text pooling rule and the image processor of a CLIP directory (shared by inference and
/// fine-tuning, so both see the same tokens and pixels).
pub(crate) fn inputs(
    files: &mut ModelFiles,
    config: &Config,
) -> Result<(TextTokenizer, Pool, ImageProcessor)> {
    let (t, v) = (&config.text_config, &config.vision_config);
    let mut tokenizer = TextTokenizer::load(
        &files.require("tokenizer.json")?,
        t.max_position_embeddings,
        0,
        Padding::Longest,
    )?;
    // OpenAI's tokenizer pads with the end-of-text token; the pad id never reaches the pooled vector anyway
    // (causal attention, pooling at the first end-of-text).
    tokenizer.pad_id = tokenizer
        .token_id("<|endoftext|>")
        .or(t.pad_token_id)
        .unwrap_or(0);
    let pool = match t.eos_token_id {
        Some(2) | None => Pool::LargestId,
        Some(id) => Pool::FirstOf(id),
    };
    let images = image_processor(files, ImageProcessor::clip(v.image_size as u32))?;
    Ok((tokenizer, pool, images))
}

/// The flat index (row · len + position) of each row's end-of-text token in a padded `rows × len` batch.
pub(crate) fn eos_positions(pool: Pool, rows: &[Vec<u32>], len: usize) -> Vec<u32> {
    rows.iter()
        .enumerate()
        .map(|(row, ids)| {
            let at = match pool {
                Pool::FirstOf(eos) => ids.iter().position(|&id| id == eos),
                Pool::LargestId => ids
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                    .map(|(i, _)| i),
            };
            (row * len + at.unwrap_or(ids.len().saturating_sub(1))) as u32
        })
        .collect()
}

impl Encoder for Clip {
    fn load(files: &mut ModelFiles, device: &Device) -> Result<Self> {
        let config: Config = read_json(files, "config.json")?;
        let (t, v) = (&config.text_config, &config.vision_config);
        check_supported(files, "text_config", &t.hidden_act, t.layer_norm_eps)?;
        check_supported(files, "vision_config", &v.hidden_act, v.layer_norm_eps)?;
        let text_config = ClipTextConfig {
            vocab_size: t.vocab_size,
            embed_dim: t.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: t.intermediate_size,
            max_position_embeddings: t.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            projection_dim: config.projection_dim,
        };
        let vision_config = ClipVisionConfig {
            embed_dim: v.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: v.intermediate_size,
            num_hidden_layers: v.num_hidden_layers,
            num_attention_heads: v.num_attention_heads,
            projection_dim: config.projection_dim,
            num_channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        };
        let (tokenizer, pool, images) = inputs(files, &config)?;
        let vb = weights(files, device)?;
        let candle = |source| Error::Candle {
            model: files.spec.clone(),
            source,
        };
        let text = ClipTextTransformer::new(vb.pp("text_model"), &text_config).map_err(candle)?;
        let vision =
            ClipVisionTransformer::new(vb.pp("vision_model"), &vision_config).map_err(candle)?;
        let text_projection = candle_nn::linear_no_bias(
            t.hidden_size,
            config.projection_dim,
            vb.pp("text_projection"),
        )
        .map_err(candle)?;
        let visual_projection = candle_nn::linear_no_bias(
            v.hidden_size,
            config.projection_dim,
            vb.pp("visual_projection"),
        )
        .map_err(candle)?;
        Ok(Clip {
            text,
            text_projection,
            vision,
            visual_projection,
            tokenizer,
            images,
            pool,
            dim: config.projection_dim,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn tokenizer(&self) -> Option<&TextTokenizer> {
        Some(&self.tokenizer)
    }

    fn text_features(&self, batch: &TokenBatch) -> candle_core::Result<Tensor> {
        let hidden = self.text.forward_with_mask(&batch.ids, usize::MAX)?;
        let (rows, len, width) = hidden.dims3()?;
        let positions = eos_positions(self.pool, &batch.rows, len);
        let index = Tensor::new(positions, hidden.device())?;
        let pooled = hidden
            .reshape((rows * len, width))?
            .index_select(&index, 0)?;
        self.text_projection.forward(&pooled)
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
