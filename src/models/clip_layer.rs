//! One pre-norm transformer layer of CLIP (transformers' `CLIPEncoderLayer`, OpenCLIP's `ResidualAttentionBlock`
//! once its fused `in_proj` is split): `x + attn(ln1(x))`, then `x + fc2(act(fc1(ln2(x))))`. Shared by the text
//! tower ([`super::clip_text`]) and the vision tower ([`super::clip_vision`]); any width, either activation, any
//! layer-norm epsilon.

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};

/// The MLP activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// `x · σ(1.702 x)` (OpenAI's CLIPs).
    QuickGelu,
    /// Exact, erf-based GELU (OpenCLIP / LAION CLIPs, `torch.nn.GELU()`).
    Gelu,
}

impl Act {
    /// The activation a config's `hidden_act` names.
    pub fn parse(name: &str) -> Result<Act, String> {
        match name {
            "quick_gelu" => Ok(Act::QuickGelu),
            "gelu" => Ok(Act::Gelu),
            other => Err(format!(
                "hidden_act {other:?} is not supported (quick_gelu or gelu)"
            )),
        }
    }

    pub fn forward(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Act::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Act::Gelu => x.gelu_erf(),
        }
    }
}

/// The shape of a tower's layers.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub eps: f64,
    pub act: Act,
}

impl LayerShape {
    /// Refuse a width the heads do not divide.
    pub fn check(&self) -> Result<(), String> {
        if self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden, self.heads
            ));
        }
        Ok(())
    }
}

/// One layer's weights.
pub struct EncoderLayer {
    shape: LayerShape,
    norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl EncoderLayer {
    /// Read a layer under `vb` (`layer_norm1`, `self_attn.{q,k,v,out}_proj`, `layer_norm2`, `mlp.fc1`, `mlp.fc2`).
    pub fn new(shape: LayerShape, vb: VarBuilder) -> candle_core::Result<EncoderLayer> {
        let (h, eps) = (shape.hidden, shape.eps);
        Ok(EncoderLayer {
            shape,
            norm1: candle_nn::layer_norm(h, eps, vb.pp("layer_norm1"))?,
            q: candle_nn::linear(h, h, vb.pp("self_attn.q_proj"))?,
            k: candle_nn::linear(h, h, vb.pp("self_attn.k_proj"))?,
            v: candle_nn::linear(h, h, vb.pp("self_attn.v_proj"))?,
            out: candle_nn::linear(h, h, vb.pp("self_attn.out_proj"))?,
            norm2: candle_nn::layer_norm(h, eps, vb.pp("layer_norm2"))?,
            fc1: candle_nn::linear(h, shape.intermediate, vb.pp("mlp.fc1"))?,
            fc2: candle_nn::linear(shape.intermediate, h, vb.pp("mlp.fc2"))?,
        })
    }

    /// The layer on `x` (`batch × len × hidden`), with an additive attention mask broadcast over batch and heads.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let (batch, len, width) = x.dims3()?;
        let heads = self.shape.heads;
        let head_dim = width / heads;
        let scale = (head_dim as f64).powf(-0.5);
        let h = self.norm1.forward(x)?;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((batch, len, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split((self.q.forward(&h)? * scale)?)?;
        let k = split(self.k.forward(&h)?)?;
        let v = split(self.v.forward(&h)?)?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let attended = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, len, width))?;
        let x = (x + self.out.forward(&attended)?)?;
        let h = self.fc1.forward(&self.norm2.forward(&x)?)?;
        let h = self.shape.act.forward(&h)?;
        &x + self.fc2.forward(&h)?
    }
}
