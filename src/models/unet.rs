//! The diffusion UNet (diffusers' `UNet2DConditionModel`), assembled from candle's public down, mid and up blocks
//! following `unet/config.json`, with what candle's own `UNet2DConditionModel` lacks: SDXL's added conditioning
//! (`addition_embed_type = "text_time"`: the pooled text embedding and the sinusoidal embedding of the six size/crop
//! numbers, through `add_embedding`, added to the timestep embedding). Configurations candle's blocks cannot build
//! faithfully are refused with the reason, never run approximately.

use candle_core::{DType, Module, Tensor};
use candle_nn::{Conv2d, GroupNorm, VarBuilder};
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    CrossAttnDownBlock2D, CrossAttnDownBlock2DConfig, CrossAttnUpBlock2D, CrossAttnUpBlock2DConfig,
    DownBlock2D, DownBlock2DConfig, UNetMidBlock2DCrossAttn, UNetMidBlock2DCrossAttnConfig,
    UpBlock2D, UpBlock2DConfig,
};
use serde::Deserialize;

/// An int, or one value per block.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, i: usize) -> Option<usize> {
        match self {
            PerBlock::One(n) => Some(*n),
            PerBlock::Each(values) => values.get(i).copied(),
        }
    }
}

/// `unet/config.json`, with diffusers' defaults.
#[derive(Deserialize, Debug, Clone)]
pub struct UnetConfig {
    #[serde(default = "four")]
    pub in_channels: usize,
    #[serde(default = "four")]
    pub out_channels: usize,
    #[serde(default)]
    center_input_sample: bool,
    #[serde(default = "yes")]
    flip_sin_to_cos: bool,
    #[serde(default)]
    freq_shift: f64,
    down_block_types: Vec<String>,
    up_block_types: Vec<String>,
    block_out_channels: Vec<usize>,
    #[serde(default = "two")]
    layers_per_block: usize,
    #[serde(default = "one")]
    downsample_padding: usize,
    #[serde(default = "one_f")]
    mid_block_scale_factor: f64,
    #[serde(default = "thirty_two")]
    norm_num_groups: usize,
    #[serde(default = "norm_eps")]
    norm_eps: f64,
    cross_attention_dim: usize,
    #[serde(default = "eight")]
    attention_head_dim: PerBlock,
    num_attention_heads: Option<PerBlock>,
    #[serde(default)]
    use_linear_projection: bool,
    transformer_layers_per_block: Option<PerBlock>,
    pub sample_size: Option<usize>,
    pub addition_embed_type: Option<String>,
    addition_time_embed_dim: Option<usize>,
    projection_class_embeddings_input_dim: Option<usize>,
    class_embed_type: Option<String>,
    time_cond_proj_dim: Option<usize>,
    encoder_hid_dim: Option<usize>,
    #[serde(default)]
    only_cross_attention: serde_json::Value,
    mid_block_type: Option<String>,
    time_embedding_type: Option<String>,
    resnet_time_scale_shift: Option<String>,
    reverse_transformer_layers_per_block: Option<serde_json::Value>,
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn four() -> usize {
    4
}
fn eight() -> PerBlock {
    PerBlock::One(8)
}
fn thirty_two() -> usize {
    32
}
fn one_f() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn norm_eps() -> f64 {
    1e-5
}

/// One block of the down path, as the config describes it.
#[derive(Debug, Clone, Copy)]
struct Block {
    out_channels: usize,
    /// Transformer layers when the block has cross-attention.
    cross: Option<usize>,
    heads: usize,
}

enum Down {
    Basic(DownBlock2D),
    Cross(CrossAttnDownBlock2D),
}

enum Up {
    Basic(UpBlock2D),
    Cross(CrossAttnUpBlock2D),
}

/// SDXL's added conditioning.
struct Added {
    time_proj: Timesteps,
    embedding: TimestepEmbedding,
}

/// A loaded UNet.
pub struct Unet {
    config: UnetConfig,
    blocks: Vec<Block>,
    conv_in: Conv2d,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    added: Option<Added>,
    down: Vec<Down>,
    mid: UNetMidBlock2DCrossAttn,
    up: Vec<Up>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Unet {
    /// Check `config` against what candle's blocks build, then load the weights from `vb`.
    pub fn new(config: UnetConfig, vb: VarBuilder) -> Result<Unet, String> {
        let blocks = blocks(&config)?;
        let build = || -> candle_core::Result<Unet> {
            let c = &config;
            let n = blocks.len();
            let b_channels = blocks[0].out_channels;
            let time_embed_dim = b_channels * 4;
            let conv3 = candle_nn::Conv2dConfig {
                padding: 1,
                ..Default::default()
            };
            let conv_in = candle_nn::conv2d(c.in_channels, b_channels, 3, conv3, vb.pp("conv_in"))?;
            let time_proj = Timesteps::new(b_channels, c.flip_sin_to_cos, c.freq_shift);
            let time_embedding =
                TimestepEmbedding::new(vb.pp("time_embedding"), b_channels, time_embed_dim)?;
            let added = match (
                c.addition_time_embed_dim,
                c.projection_class_embeddings_input_dim,
            ) {
                (Some(time_dim), Some(input_dim)) if c.addition_embed_type.is_some() => {
                    Some(Added {
                        time_proj: Timesteps::new(time_dim, c.flip_sin_to_cos, c.freq_shift),
                        embedding: TimestepEmbedding::new(
                            vb.pp("add_embedding"),
                            input_dim,
                            time_embed_dim,
                        )?,
                    })
                }
                _ => None,
            };
            let mut down = Vec::with_capacity(n);
            for (i, block) in blocks.iter().enumerate() {
                let in_channels = if i > 0 {
                    blocks[i - 1].out_channels
                } else {
                    b_channels
                };
                let config = DownBlock2DConfig {
                    num_layers: c.layers_per_block,
                    resnet_eps: c.norm_eps,
                    resnet_groups: c.norm_num_groups,
                    add_downsample: i < n - 1,
                    downsample_padding: c.downsample_padding,
                    ..Default::default()
                };
                let vs = vb.pp(format!("down_blocks.{i}"));
                down.push(match block.cross {
                    Some(layers) => Down::Cross(CrossAttnDownBlock2D::new(
                        vs,
                        in_channels,
                        block.out_channels,
                        Some(time_embed_dim),
                        false,
                        CrossAttnDownBlock2DConfig {
                            downblock: config,
                            attn_num_head_channels: block.heads,
                            cross_attention_dim: c.cross_attention_dim,
                            sliced_attention_size: None,
                            use_linear_projection: c.use_linear_projection,
                            transformer_layers_per_block: layers,
                        },
                    )?),
                    None => Down::Basic(DownBlock2D::new(
                        vs,
                        in_channels,
                        block.out_channels,
                        Some(time_embed_dim),
                        config,
                    )?),
                });
            }
            let last = blocks[n - 1];
            let mid = UNetMidBlock2DCrossAttn::new(
                vb.pp("mid_block"),
                last.out_channels,
                Some(time_embed_dim),
                false,
                UNetMidBlock2DCrossAttnConfig {
                    resnet_eps: c.norm_eps,
                    output_scale_factor: c.mid_block_scale_factor,
                    cross_attn_dim: c.cross_attention_dim,
                    attn_num_head_channels: last.heads,
                    resnet_groups: Some(c.norm_num_groups),
                    use_linear_projection: c.use_linear_projection,
                    transformer_layers_per_block: last.cross.unwrap_or(1),
                    ..Default::default()
                },
            )?;
            let mut up = Vec::with_capacity(n);
            for i in 0..n {
                let block = blocks[n - 1 - i];
                let prev_out_channels = if i > 0 {
                    blocks[n - i].out_channels
                } else {
                    last.out_channels
                };
                let in_channels = blocks[if i == n - 1 { 0 } else { n - i - 2 }].out_channels;
                let config = UpBlock2DConfig {
                    num_layers: c.layers_per_block + 1,
                    resnet_eps: c.norm_eps,
                    resnet_groups: c.norm_num_groups,
                    add_upsample: i < n - 1,
                    ..Default::default()
                };
                let vs = vb.pp(format!("up_blocks.{i}"));
                up.push(match block.cross {
                    Some(layers) => Up::Cross(CrossAttnUpBlock2D::new(
                        vs,
                        in_channels,
                        prev_out_channels,
                        block.out_channels,
                        Some(time_embed_dim),
                        false,
                        CrossAttnUpBlock2DConfig {
                            upblock: config,
                            attn_num_head_channels: block.heads,
                            cross_attention_dim: c.cross_attention_dim,
                            sliced_attention_size: None,
                            use_linear_projection: c.use_linear_projection,
                            transformer_layers_per_block: layers,
                        },
                    )?),
                    None => Up::Basic(UpBlock2D::new(
                        vs,
                        in_channels,
                        prev_out_channels,
                        block.out_channels,
                        Some(time_embed_dim),
                        config,
                    )?),
                });
            }
            let conv_norm_out = candle_nn::group_norm(
                c.norm_num_groups,
                b_channels,
                c.norm_eps,
                vb.pp("conv_norm_out"),
            )?;
            let conv_out =
                candle_nn::conv2d(b_channels, c.out_channels, 3, conv3, vb.pp("conv_out"))?;
            Ok(Unet {
                config: config.clone(),
                blocks: blocks.clone(),
                conv_in,
                time_proj,
                time_embedding,
                added,
                down,
                mid,
                up,
                conv_norm_out,
                conv_out,
            })
        };
        build().map_err(|e| format!("building the UNet: {e}"))
    }

    /// The predicted noise for `xs` at timestep `t` under text embeddings `context`; `added` is SDXL's (pooled
    /// text embeddings `batch × P`, size/crop numbers `batch × 6`), required exactly when the UNet takes it.
    pub fn forward(
        &self,
        xs: &Tensor,
        t: f64,
        context: &Tensor,
        added: Option<(&Tensor, &Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let (batch, _, height, width) = xs.dims4()?;
        let n = self.blocks.len();
        let overall = 2usize.pow((n - 1) as u32);
        let forward_upsample_size = height % overall != 0 || width % overall != 0;
        let xs = if self.config.center_input_sample {
            ((xs * 2.0)? - 1.0)?
        } else {
            xs.clone()
        };
        // The sinusoidal projections are computed in float32 (as diffusers does) and cast to the UNet's dtype:
        // in float16, sin/cos of timesteps in the hundreds lose most of their precision.
        let dtype = xs.dtype();
        let timesteps = (Tensor::ones(batch, DType::F32, xs.device())? * t)?;
        let mut emb = self
            .time_embedding
            .forward(&self.time_proj.forward(&timesteps)?.to_dtype(dtype)?)?;
        match (&self.added, added) {
            (Some(a), Some((text_embeds, time_ids))) => {
                let time = a
                    .time_proj
                    .forward(&time_ids.flatten_all()?.to_dtype(DType::F32)?)?
                    .to_dtype(dtype)?
                    .reshape((batch, ()))?;
                let inputs = Tensor::cat(&[text_embeds, &time], 1)?;
                emb = (emb + a.embedding.forward(&inputs)?)?;
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(candle_core::Error::Msg(
                    "this UNet needs SDXL's added conditioning (pooled text embeddings and size numbers)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(candle_core::Error::Msg(
                    "this UNet takes no added conditioning".into(),
                ));
            }
        }
        let xs = self.conv_in.forward(&xs)?;
        let mut residuals = vec![xs.clone()];
        let mut xs = xs;
        for block in &self.down {
            let (out, res) = match block {
                Down::Basic(b) => b.forward(&xs, Some(&emb))?,
                Down::Cross(b) => b.forward(&xs, Some(&emb), Some(context))?,
            };
            residuals.extend(res);
            xs = out;
        }
        let mut xs = self.mid.forward(&xs, Some(&emb), Some(context))?;
        let mut upsample_size = None;
        let resnets = self.config.layers_per_block + 1;
        for (i, block) in self.up.iter().enumerate() {
            let res = residuals.split_off(residuals.len() - resnets);
            if i < n - 1
                && forward_upsample_size
                && let Some(last) = residuals.last()
            {
                let (_, _, h, w) = last.dims4()?;
                upsample_size = Some((h, w));
            }
            xs = match block {
                Up::Basic(b) => b.forward(&xs, &res, Some(&emb), upsample_size)?,
                Up::Cross(b) => b.forward(&xs, &res, Some(&emb), upsample_size, Some(context))?,
            };
        }
        let xs = candle_nn::ops::silu(&self.conv_norm_out.forward(&xs)?)?;
        self.conv_out.forward(&xs)
    }
}

/// The down path's blocks, refusing what candle's blocks cannot build as the config says.
fn blocks(c: &UnetConfig) -> Result<Vec<Block>, String> {
    let refuse = |what: &str| Err(format!("unet/config.json: {what} is not supported"));
    match c.addition_embed_type.as_deref() {
        None => {}
        Some("text_time")
            if c.addition_time_embed_dim.is_none()
                || c.projection_class_embeddings_input_dim.is_none() =>
        {
            return Err("unet/config.json: addition_embed_type text_time needs addition_time_embed_dim and \
                        projection_class_embeddings_input_dim"
                .into());
        }
        Some("text_time") => {}
        Some(other) => return refuse(&format!("addition_embed_type {other:?}")),
    }
    if let Some(kind) = &c.class_embed_type {
        return refuse(&format!("class_embed_type {kind:?}"));
    }
    if c.time_cond_proj_dim.is_some() || c.encoder_hid_dim.is_some() {
        return refuse("time_cond_proj_dim / encoder_hid_dim");
    }
    if c.reverse_transformer_layers_per_block
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return refuse("reverse_transformer_layers_per_block");
    }
    let any_true = |v: &serde_json::Value| {
        v.as_bool() == Some(true)
            || v.as_array()
                .is_some_and(|a| a.iter().any(|b| b.as_bool() == Some(true)))
    };
    if any_true(&c.only_cross_attention) {
        return refuse("only_cross_attention");
    }
    for (what, value, expected) in [
        (
            "mid_block_type",
            &c.mid_block_type,
            "UNetMidBlock2DCrossAttn",
        ),
        ("time_embedding_type", &c.time_embedding_type, "positional"),
        (
            "resnet_time_scale_shift",
            &c.resnet_time_scale_shift,
            "default",
        ),
    ] {
        if let Some(v) = value
            && v != expected
        {
            return refuse(&format!("{what} {v:?}"));
        }
    }
    if c.norm_num_groups != 32 {
        // candle's down and up blocks build their resnets with 32 groups whatever the config says.
        return refuse(&format!(
            "norm_num_groups {} (candle's UNet blocks use 32)",
            c.norm_num_groups
        ));
    }
    let n = c.block_out_channels.len();
    if n == 0 || c.down_block_types.len() != n || c.up_block_types.len() != n {
        return Err(
            "unet/config.json: block_out_channels, down_block_types and up_block_types differ in length"
                .into(),
        );
    }
    let heads = c
        .num_attention_heads
        .as_ref()
        .unwrap_or(&c.attention_head_dim);
    let layers = c
        .transformer_layers_per_block
        .clone()
        .unwrap_or(PerBlock::One(1));
    let mut blocks = Vec::with_capacity(n);
    for i in 0..n {
        let cross = match c.down_block_types[i].as_str() {
            "CrossAttnDownBlock2D" => true,
            "DownBlock2D" => false,
            other => return refuse(&format!("down block {other:?}")),
        };
        // The up path mirrors the down path.
        let expected = if cross {
            "CrossAttnUpBlock2D"
        } else {
            "UpBlock2D"
        };
        if c.up_block_types[n - 1 - i] != expected {
            return refuse(&format!(
                "up_block_types {:?} that do not mirror down_block_types {:?}",
                c.up_block_types, c.down_block_types
            ));
        }
        let heads = heads
            .get(i)
            .ok_or("unet/config.json: fewer attention heads than blocks")?;
        let transformer_layers = layers
            .get(i)
            .ok_or("unet/config.json: fewer transformer_layers_per_block than blocks")?;
        blocks.push(Block {
            out_channels: c.block_out_channels[i],
            cross: cross.then_some(transformer_layers),
            heads,
        });
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_candle_cannot_build_are_refused_by_name() {
        let config = |extra: &str| -> UnetConfig {
            serde_json::from_str(&format!(
                r#"{{"down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"],
                    "block_out_channels": [32], "cross_attention_dim": 32 {extra}}}"#
            ))
            .expect("config")
        };
        assert!(blocks(&config("")).is_ok());
        let err = blocks(&config(r#", "norm_num_groups": 16"#)).expect_err("groups");
        assert!(err.contains("norm_num_groups 16"), "{err}");
        let err = blocks(&config(r#", "addition_embed_type": "image""#)).expect_err("image embeds");
        assert!(err.contains("\"image\""), "{err}");
        let err = blocks(&config(r#", "addition_embed_type": "text_time""#)).expect_err("dims");
        assert!(err.contains("addition_time_embed_dim"), "{err}");
        let err =
            blocks(&config(r#", "resnet_time_scale_shift": "scale_shift""#)).expect_err("shift");
        assert!(err.contains("scale_shift"), "{err}");
    }
}
