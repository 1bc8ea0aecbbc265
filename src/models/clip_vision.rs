//! The CLIP vision transformer (transformers' `CLIPVisionModel`): non-overlapping patches embedded by a strided
//! convolution, a class token, learned positions, a pre-norm, the encoder layers ([`super::clip_layer`]), and the
//! class token's final state through the post-norm. Any size, either activation, any layer-norm epsilon (candle's
//! own CLIP is `quick_gelu` with epsilon 1e-5 only, which refuses every OpenCLIP/LAION model).

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, VarBuilder};

use super::clip_layer::{EncoderLayer, LayerShape};

/// The vision tower's size.
#[derive(Debug, Clone, Copy)]
pub struct VisionShape {
    pub layer: LayerShape,
    pub layers: usize,
    pub channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
}

/// A loaded CLIP vision tower.
pub struct ClipVision {
    patch: Conv2d,
    class: Tensor,
    positions: Tensor,
    pre_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    post_norm: LayerNorm,
}

impl ClipVision {
    /// Read the tower under `vb` (transformers' names below `vision_model.`).
    pub fn new(shape: VisionShape, vb: VarBuilder) -> Result<ClipVision, String> {
        shape.layer.check()?;
        if shape.patch_size == 0 || !shape.image_size.is_multiple_of(shape.patch_size) {
            return Err(format!(
                "image_size {} is not a multiple of patch_size {}",
                shape.image_size, shape.patch_size
            ));
        }
        let build = || -> candle_core::Result<ClipVision> {
            let (h, eps) = (shape.layer.hidden, shape.layer.eps);
            let grid = shape.image_size / shape.patch_size;
            let embeddings = vb.pp("embeddings");
            let patch = candle_nn::conv2d_no_bias(
                shape.channels,
                h,
                shape.patch_size,
                Conv2dConfig {
                    stride: shape.patch_size,
                    ..Default::default()
                },
                embeddings.pp("patch_embedding"),
            )?;
            let class = embeddings.get(h, "class_embedding")?;
            let positions = embeddings
                .pp("position_embedding")
                .get((grid * grid + 1, h), "weight")?;
            let pre_norm = candle_nn::layer_norm(h, eps, vb.pp("pre_layrnorm"))?;
            let layers = (0..shape.layers)
                .map(|i| EncoderLayer::new(shape.layer, vb.pp(format!("encoder.layers.{i}"))))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let post_norm = candle_nn::layer_norm(h, eps, vb.pp("post_layernorm"))?;
            Ok(ClipVision {
                patch,
                class,
                positions,
                pre_norm,
                layers,
                post_norm,
            })
        };
        build().map_err(|e| format!("building the vision encoder: {e}"))
    }

    /// The pooled output (`pooler_output`: the class token after the post-norm) of `pixels` (`batch × 3 × H × W`).
    pub fn forward(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.hidden_state(pixels, self.layers.len())?;
        let first = x.narrow(1, 0, 1)?.squeeze(1)?;
        self.post_norm.forward(&first)
    }

    /// The number of encoder layers.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// transformers' `hidden_states[n]`: the class and patch tokens after the pre-norm and the first `n` layers
    /// (`batch × (1 + patches) × hidden`; `n` = 0 is the embeddings after the pre-norm).
    pub fn hidden_state(&self, pixels: &Tensor, n: usize) -> candle_core::Result<Tensor> {
        let batch = pixels.dim(0)?;
        let patches = self
            .patch
            .forward(pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let width = self.class.dim(0)?;
        let class = self.class.reshape((1, 1, width))?.repeat((batch, 1, 1))?;
        let mut x = Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&self.positions)?;
        x = self.pre_norm.forward(&x)?;
        for layer in self.layers.iter().take(n) {
            x = layer.forward(&x, None)?;
        }
        Ok(x)
    }
}
