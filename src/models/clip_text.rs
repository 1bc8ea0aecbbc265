//! The CLIP text transformer of diffusion pipelines (transformers' `CLIPTextModel` and
//! `CLIPTextModelWithProjection`), written here because the pipelines need what candle's CLIP does not give: any
//! size with either activation (`quick_gelu` for OpenAI's encoders, exact `gelu` for OpenCLIP's), every layer's
//! hidden state (SDXL conditions on the penultimate one), and the projected pooled output of the second SDXL
//! encoder. Causal attention only, as the pipelines call it (no padding mask).

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
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

#[derive(Debug, Clone, Copy)]
enum Act {
    QuickGelu,
    Gelu,
}

struct Layer {
    norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
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
    act: Act,
    token: Embedding,
    position: Embedding,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    projection: Option<Linear>,
}

impl ClipText {
    /// Build from the weights in `vb`: with or without transformers' `text_model.` prefix (transformers 5 drops
    /// it for `CLIPTextModel`), and `text_projection` at the root when the config has a `projection_dim`.
    pub fn new(config: ClipTextConfig, vb: VarBuilder) -> Result<ClipText, String> {
        let act = match config.hidden_act.as_str() {
            "quick_gelu" => Act::QuickGelu,
            "gelu" => Act::Gelu,
            other => {
                return Err(format!(
                    "hidden_act {other:?} is not supported (quick_gelu or gelu)"
                ));
            }
        };
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            ));
        }
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
                let l = vb.pp(format!("encoder.layers.{i}"));
                layers.push(Layer {
                    norm1: candle_nn::layer_norm(h, eps, l.pp("layer_norm1"))?,
                    q: candle_nn::linear(h, h, l.pp("self_attn.q_proj"))?,
                    k: candle_nn::linear(h, h, l.pp("self_attn.k_proj"))?,
                    v: candle_nn::linear(h, h, l.pp("self_attn.v_proj"))?,
                    out: candle_nn::linear(h, h, l.pp("self_attn.out_proj"))?,
                    norm2: candle_nn::layer_norm(h, eps, l.pp("layer_norm2"))?,
                    fc1: candle_nn::linear(h, config.intermediate_size, l.pp("mlp.fc1"))?,
                    fc2: candle_nn::linear(config.intermediate_size, h, l.pp("mlp.fc2"))?,
                });
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
                act,
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
        let (batch, len) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, len as u32, device)?;
        let mut x = self
            .token
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mask = causal_mask(len, device)?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.hidden_size / heads;
        let scale = (head_dim as f64).powf(-0.5);
        let mut hidden = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let residual = x.clone();
            let h = layer.norm1.forward(&x)?;
            let split = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((batch, len, heads, head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = split((layer.q.forward(&h)? * scale)?)?;
            let k = split(layer.k.forward(&h)?)?;
            let v = split(layer.v.forward(&h)?)?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let attended = probs.matmul(&v)?.transpose(1, 2)?.reshape((
                batch,
                len,
                self.config.hidden_size,
            ))?;
            x = (residual + layer.out.forward(&attended)?)?;
            let residual = x.clone();
            let h = layer.fc1.forward(&layer.norm2.forward(&x)?)?;
            let h = match self.act {
                Act::QuickGelu => (&h * candle_nn::ops::sigmoid(&(&h * 1.702)?)?)?,
                Act::Gelu => h.gelu_erf()?,
            };
            x = (residual + layer.fc2.forward(&h)?)?;
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

    /// The hidden state at each row's end-of-text token, found as transformers does: the first `eos_token_id`,
    /// or the largest id for legacy configs whose `eos_token_id` is 2.
    fn pool(&self, last: &Tensor, ids: &Tensor) -> candle_core::Result<Tensor> {
        let rows = ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let mut pooled = Vec::with_capacity(rows.len());
        for (b, row) in rows.iter().enumerate() {
            let position = if self.config.eos_token_id == 2 {
                row.iter()
                    .enumerate()
                    .max_by_key(|(i, id)| (**id, std::cmp::Reverse(*i)))
                    .map_or(0, |(i, _)| i)
            } else {
                row.iter()
                    .position(|id| *id == self.config.eos_token_id)
                    .unwrap_or(0)
            };
            pooled.push(last.i((b, position))?);
        }
        Tensor::stack(&pooled, 0)
    }
}

/// The additive causal mask: 0 on and below the diagonal, −∞ above (`len × len`).
fn causal_mask(len: usize, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(values, (len, len), device)
}
