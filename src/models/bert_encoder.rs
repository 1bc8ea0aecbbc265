//! The BERT encoder of sentence-transformers models, on [`Dense`] layers: the same forward pass as
//! `candle_transformers::models::bert::BertModel` (HF `BertModel`, post-norm, extended attention mask of
//! `f32::MIN`), with the query, key and value projections fused into one product and every dense product on
//! vlmdb's AVX-512 kernel where it runs. Weights load from the same names (`[bert.|<model_type>.]embeddings…`,
//! `…encoder.layer.N…`). Where every dense layer is on the kernel, the layers run on host rows
//! ([`super::host_layers`]): only the batch's real tokens, so padding costs nothing; elsewhere on Candle tensors.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use candle_transformers::models::bert::{Config, HiddenAct};

use super::dense::{Activation, Dense};
use super::host_layers::{HostNorm, lengths, pad, self_attention, unpad};

pub struct BertEncoder {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: HiddenAct,
    /// The layer norms as host values, where every dense layer runs on the kernel (then the whole stack runs on
    /// host rows: [`BertEncoder::forward_host`]).
    host: Option<Vec<[HostNorm; 2]>>,
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

impl BertEncoder {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<BertEncoder> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            match &config.model_type {
                Some(t)
                    if vb.contains_tensor(&format!("{t}.embeddings.word_embeddings.weight")) =>
                {
                    vb.pp(t)
                }
                _ => vb,
            }
        };
        let (hidden, eps) = (config.hidden_size, config.layer_norm_eps);
        if config.num_attention_heads == 0 || hidden % config.num_attention_heads != 0 {
            candle_core::bail!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            );
        }
        let e = vb.pp("embeddings");
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let attention = l.pp("attention");
                let projections = ["query", "key", "value"].map(|p| attention.pp("self").pp(p));
                Ok(Layer {
                    qkv: Dense::fused(&projections, hidden, hidden)?,
                    attention_out: Dense::load(attention.pp("output.dense"), hidden, hidden)?,
                    attention_norm: layer_norm(hidden, eps, attention.pp("output.LayerNorm"))?,
                    intermediate: Dense::load(
                        l.pp("intermediate.dense"),
                        hidden,
                        config.intermediate_size,
                    )?,
                    output: Dense::load(l.pp("output.dense"), config.intermediate_size, hidden)?,
                    output_norm: layer_norm(hidden, eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let on_host = layers.iter().all(|l| {
            [&l.qkv, &l.attention_out, &l.intermediate, &l.output]
                .iter()
                .all(|d| d.on_host())
        });
        let host = if on_host {
            Some(
                layers
                    .iter()
                    .map(|l| {
                        Ok([
                            HostNorm::of(&l.attention_norm)?,
                            HostNorm::of(&l.output_norm)?,
                        ])
                    })
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        Ok(BertEncoder {
            words: embedding(config.vocab_size, hidden, e.pp("word_embeddings"))?,
            positions: embedding(
                config.max_position_embeddings,
                hidden,
                e.pp("position_embeddings"),
            )?,
            token_types: embedding(
                config.type_vocab_size,
                hidden,
                e.pp("token_type_embeddings"),
            )?,
            embedding_norm: layer_norm(hidden, eps, e.pp("LayerNorm"))?,
            layers,
            heads: config.num_attention_heads,
            act: config.hidden_act,
            host,
        })
    }

    /// Hidden states (batch × seq × hidden) of token `ids` (batch × seq, u32) with `mask` (1 = token, 0 = padding).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let positions = Tensor::arange(0u32, seq as u32, ids.device())?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.token_types.forward(&ids.zeros_like()?)?)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        let mut x = self.embedding_norm.forward(&x)?;
        if let Some(norms) = &self.host {
            return self.forward_host(&x, mask, norms);
        }
        // (1 − mask) · f32::MIN, broadcast over heads and query positions.
        let mask = mask.to_dtype(DType::F32)?.reshape((batch, 1, 1, seq))?;
        let bias = (mask.ones_like()? - &mask)?.affine(f64::from(f32::MIN), 0.0)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &bias)?;
        }
        Ok(x)
    }

    /// The layers on host rows: the batch's real tokens packed without padding, every product on the kernel,
    /// attention per sequence over its own tokens; padded positions come back as zeros.
    fn forward_host(
        &self,
        embedded: &Tensor,
        mask: &Tensor,
        norms: &[[HostNorm; 2]],
    ) -> Result<Tensor> {
        let (_, seq, hidden) = embedded.dims3()?;
        let lens = lengths(mask)?;
        let rows = lens.iter().sum::<usize>();
        let head = hidden / self.heads;
        let act = self.activation();
        let mut x = unpad(embedded, &lens)?;
        for (l, [attention_norm, output_norm]) in self.layers.iter().zip(norms) {
            let qkv = l.qkv.rows(&x, rows, Activation::Identity)?;
            let context = self_attention(&qkv, &lens, self.heads, head);
            let mut attended = l.attention_out.rows(&context, rows, Activation::Identity)?;
            attention_norm.add_and_norm(&mut attended, &x);
            let inner = l.intermediate.rows(&attended, rows, act)?;
            x = l.output.rows(&inner, rows, Activation::Identity)?;
            output_norm.add_and_norm(&mut x, &attended);
        }
        pad(&x, &lens, seq, hidden, embedded)
    }

    fn layer(&self, l: &Layer, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (batch, seq, hidden) = x.dims3()?;
        let head = hidden / self.heads;
        // batch × seq × 3 × heads × head → three batch × heads × seq × head tensors.
        let qkv = l
            .qkv
            .forward(x)?
            .reshape((batch, seq, 3, self.heads, head))?;
        let part = |i: usize| {
            qkv.narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let scores = (q.matmul(&k.t()?)? / (head as f64).sqrt())?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, seq, hidden))?;
        let attended = l
            .attention_norm
            .forward(&(l.attention_out.forward(&context)? + x)?)?;
        let inner = l.intermediate.forward_then(&attended, self.activation())?;
        l.output_norm
            .forward(&(l.output.forward(&inner)? + attended)?)
    }

    fn activation(&self) -> Activation {
        match self.act {
            HiddenAct::Gelu => Activation::Gelu,
            HiddenAct::GeluApproximate => Activation::GeluTanh,
            HiddenAct::Relu => Activation::Relu,
        }
    }
}
