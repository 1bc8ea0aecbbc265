//! The CLIP text transformer (transformers' `CLIPTextModel` and `CLIPTextModelWithProjection`), for CLIP
//! embeddings ([`super::clip`]) and diffusion pipelines. Written here because candle's CLIP lacks what they need:
//! any size with either activation (`quick_gelu` for OpenAI's encoders, exact `gelu` for OpenCLIP/LAION's), any
//! layer-norm epsilon, every layer's hidden state (SDXL conditions on the penultimate one), and the projected
//! pooled output. Causal attention without a padding mask: the pooled token (the first end-of-text) attends only to
//! the tokens before it, so padding after it changes nothing.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

use super::clip_layer::{Act, EncoderLayer, LayerShape};
use serde::Deserialize;

/// The parts of a `CLIPTextConfig` the transformer is built from.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "seventy_seven")]
    pub max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "eos")]
    pub eos_token_id: u32,
    /// Width of `text_projection` (CLIPTextModelWithProjection).
    pub projection_dim: Option<usize>,
}

fn seventy_seven() -> usize {
    77
}
fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn eps() -> f64 {
    1e-5
}
fn eos() -> u32 {
    2
}

/// What the encoder returns for a batch of token ids.
pub struct TextOutput {
    /// The final layer's output after the final layer norm (`last_hidden_state`): `batch × len × hidden`.
    pub last: Tensor,
    /// Each layer's output before the final norm; `hidden[n - 2]` is SDXL's penultimate hidden state.
    pub hidden: Vec<Tensor>,
    /// The projected pooled output (`text_embeds`), when the model has a projection: `batch × projection_dim`.
    pub pooled: Option<Tensor>,
}

/// A loaded CLIP text transformer.
pub struct ClipText {
    config: ClipTextConfig,
    pool: Pool,
    token: Embedding,
    position: Embedding,
    layers: Vec<EncoderLayer>,
    final_norm: LayerNorm,
    projection: Option<Linear>,
}

impl ClipText {
    /// Build from the weights in `vb`: with or without transformers' `text_model.` prefix (transformers 5 drops
    /// it for `CLIPTextModel`), and `text_projection` at the root when the config has a `projection_dim`.
    pub fn new(config: ClipTextConfig, vb: VarBuilder) -> Result<ClipText, String> {
        let shape = LayerShape {
            hidden: config.hidden_size,
            intermediate: config.intermediate_size,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps,
            act: Act::parse(&config.hidden_act)?,
        };
        shape.check()?;
        let build = || -> candle_core::Result<ClipText> {
            let root = vb.clone();
            let vb = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
                vb.pp("text_model")
            } else {
                vb
            };
            let (h, eps) = (config.hidden_size, config.layer_norm_eps);
            let token =
                candle_nn::embedding(config.vocab_size, h, vb.pp("embeddings.token_embedding"))?;
            let position = candle_nn::embedding(
                config.max_position_embeddings,
                h,
                vb.pp("embeddings.position_embedding"),
            )?;
            let mut layers = Vec::with_capacity(config.num_hidden_layers);
            for i in 0..config.num_hidden_layers {
                layers.push(EncoderLayer::new(
                    shape,
                    vb.pp(format!("encoder.layers.{i}")),
                )?);
            }
            let final_norm = candle_nn::layer_norm(h, eps, vb.pp("final_layer_norm"))?;
            let projection = match config.projection_dim {
                Some(p) if root.contains_tensor("text_projection.weight") => {
                    Some(candle_nn::linear_no_bias(h, p, root.pp("text_projection"))?)
                }
                _ => None,
            };
            Ok(ClipText {
                config: config.clone(),
                pool: Pool::of_eos(config.eos_token_id),
                token,
                position,
                layers,
                final_norm,
                projection,
            })
        };
        build().map_err(|e| format!("building the text encoder: {e}"))
    }

    /// The encoder's length limit (77 for every released pipeline).
    pub fn max_len(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// Run the encoder on `ids` (`batch × len`, u32).
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<TextOutput> {
        let (_, len) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, len as u32, device)?;
        let mut x = self
            .token
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mask = causal_mask(len, device)?;
        let mut hidden = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            x = layer.forward(&x, Some(&mask))?;
            hidden.push(x.clone());
        }
        let last = self.final_norm.forward(&x)?;
        let pooled = match &self.projection {
            Some(projection) => Some(projection.forward(&self.pool(&last, ids)?)?),
            None => None,
        };
        Ok(TextOutput {
            last,
            hidden,
            pooled,
        })
    }

    /// Whether the weights carry a `text_projection` (and `pooled` is computed).
    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }

    /// Read the pooled vector where `pool` says instead of where the config's `eos_token_id` does.
    pub fn with_pool(mut self, pool: Pool) -> ClipText {
        self.pool = pool;
        self
    }

    /// The hidden state at each row's end-of-text token.
    fn pool(&self, last: &Tensor, ids: &Tensor) -> candle_core::Result<Tensor> {
        let rows = ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let (batch, len, width) = last.dims3()?;
        let index = Tensor::new(eos_positions(self.pool, &rows, len), last.device())?;
        last.reshape((batch * len, width))?.index_select(&index, 0)
    }
}

/// Where the text tower's sentence vector is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The first occurrence of this token id (transformers with a real `eos_token_id`; OpenCLIP's `eos` pooling).
    FirstOf(u32),
    /// The first occurrence of the largest id in the row (transformers' legacy configs, whose `eos_token_id` is 2;
    /// OpenCLIP's `argmax` pooling): the end-of-text token has the largest id of the vocabulary.
    LargestId,
}

impl Pool {
    /// The rule transformers applies for a config's `eos_token_id`.
    pub fn of_eos(eos_token_id: u32) -> Pool {
        if eos_token_id == 2 {
            Pool::LargestId
        } else {
            Pool::FirstOf(eos_token_id)
        }
    }
}

/// The flat index (row · len + position) of each row's pooled token in a padded `rows × len` batch.
pub fn eos_positions(pool: Pool, rows: &[Vec<u32>], len: usize) -> Vec<u32> {
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

/// The additive causal mask: 0 on and below the diagonal, −∞ above (`len × len`).
pub(crate) fn causal_mask(len: usize, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (len, len), device)
}
