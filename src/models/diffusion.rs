//! Stable Diffusion text-to-image (diffusers' `StableDiffusionPipeline` layout: `model_index.json`, `unet/`, `vae/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/`), e.g. SD 1.5 and SD 2.1. candle's `StableDiffusionConfig` keeps its
//! parts private and only has presets, so every part is built here from its own public config: the UNet
//! (`UNet2DConditionModelConfig`), the VAE (`AutoEncoderKLConfig`), and the CLIP text encoder (candle's CLIP for
//! `quick_gelu` encoders such as SD 1.5's, candle's SD 2.1 preset for the `gelu` OpenCLIP-H encoder).
//!
//! Sampling is DDIM with η = 0 over the pipeline's own noise schedule (betas, prediction type, timestep spacing and
//! offset from `scheduler/scheduler_config.json`, whatever scheduler class the pipeline names), with
//! classifier-free guidance against the empty prompt as diffusers does it (`uncond + g·(cond − uncond)`). candle
//! cannot seed its CPU generator, so the only noise, the initial latent, comes from vlmdb's seeded RNG: the same
//! seed gives the same latent, the same pixels, and the same PNG bytes.
//!
//! SDXL pipelines (two text encoders, the UNet's added time/text embedding) are refused with a clear error: candle's
//! UNet has no added conditioning, so its images would not be the model's.

use std::io::Cursor;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::text_model::{
    Activation as ClipActivation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::stable_diffusion::clip as sd_clip;
use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::{
    BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing,
};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};
use candle_transformers::models::stable_diffusion::vae::{AutoEncoderKL, AutoEncoderKLConfig};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::hub::ModelFiles;
use super::read_json;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Denoising steps when the caller gives none (diffusers' default).
pub const DEFAULT_STEPS: usize = 50;
/// Classifier-free guidance scale when the caller gives none (diffusers' default).
pub const DEFAULT_GUIDANCE: f64 = 7.5;

#[derive(Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
}

/// An int, or one value per block.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum PerBlock {
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

#[derive(Deserialize)]
struct UnetConfig {
    #[serde(default = "four")]
    in_channels: usize,
    #[serde(default = "four")]
    out_channels: usize,
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
    sample_size: Option<usize>,
    addition_embed_type: Option<String>,
    class_embed_type: Option<String>,
    time_cond_proj_dim: Option<usize>,
    encoder_hid_dim: Option<usize>,
    #[serde(default)]
    only_cross_attention: serde_json::Value,
    mid_block_type: Option<String>,
    time_embedding_type: Option<String>,
    resnet_time_scale_shift: Option<String>,
}

#[derive(Deserialize)]
struct VaeConfig {
    #[serde(default = "three")]
    in_channels: usize,
    #[serde(default = "three")]
    out_channels: usize,
    block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    layers_per_block: usize,
    #[serde(default = "four")]
    latent_channels: usize,
    #[serde(default = "thirty_two")]
    norm_num_groups: usize,
    #[serde(default = "scaling")]
    scaling_factor: f64,
    #[serde(default = "yes")]
    use_quant_conv: bool,
    #[serde(default = "yes")]
    use_post_quant_conv: bool,
}

#[derive(Deserialize)]
struct TextEncoderConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "seventy_seven")]
    max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
    #[serde(default = "clip_eps")]
    layer_norm_eps: f64,
}

#[derive(Deserialize)]
struct SchedulerJson {
    #[serde(default = "thousand")]
    num_train_timesteps: usize,
    #[serde(default = "beta_start")]
    beta_start: f64,
    #[serde(default = "beta_end")]
    beta_end: f64,
    #[serde(default = "linear")]
    beta_schedule: String,
    #[serde(default = "epsilon")]
    prediction_type: String,
    #[serde(default)]
    steps_offset: usize,
    #[serde(default = "leading")]
    timestep_spacing: String,
    #[serde(default)]
    set_alpha_to_one: bool,
    #[serde(default)]
    clip_sample: bool,
    #[serde(default)]
    thresholding: bool,
    #[serde(default)]
    rescale_betas_zero_snr: bool,
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn three() -> usize {
    3
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
fn seventy_seven() -> usize {
    77
}
fn thousand() -> usize {
    1000
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
fn clip_eps() -> f64 {
    1e-5
}
fn scaling() -> f64 {
    0.18215
}
fn beta_start() -> f64 {
    0.0001
}
fn beta_end() -> f64 {
    0.02
}
fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn linear() -> String {
    "linear".into()
}
fn epsilon() -> String {
    "epsilon".into()
}
fn leading() -> String {
    "leading".into()
}

enum TextEncoder {
    /// candle's CLIP text transformer (quick_gelu), built from the config.
    Clip(ClipTextTransformer),
    /// candle's Stable Diffusion CLIP text transformer, SD 2.1's preset (gelu).
    Sd(sd_clip::ClipTextTransformer),
}

impl TextEncoder {
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            TextEncoder::Clip(m) => m.forward_with_mask(ids, usize::MAX),
            TextEncoder::Sd(m) => m.forward_with_mask(ids, usize::MAX),
        }
    }
}

/// How one image is generated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    pub steps: usize,
    pub guidance: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            steps: DEFAULT_STEPS,
            guidance: DEFAULT_GUIDANCE,
        }
    }
}

/// A loaded Stable Diffusion pipeline.
pub struct Generator {
    pub files: ModelFiles,
    pub device: Device,
    tokenizer: Tokenizer,
    pad_id: u32,
    max_len: usize,
    text: TextEncoder,
    unet: UNet2DConditionModel,
    vae: AutoEncoderKL,
    scheduler: DDIMSchedulerConfig,
    scaling_factor: f64,
    latent_channels: usize,
    /// Pixels per latent cell: 2^(VAE blocks − 1).
    vae_scale: usize,
    pub height: usize,
    pub width: usize,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("id", &self.files.id)
            .field("height", &self.height)
            .field("width", &self.width)
            .finish()
    }
}

impl Generator {
    /// Load a Stable Diffusion pipeline from its files onto `device`.
    pub fn load(mut files: ModelFiles, device: Device) -> Result<Generator> {
        let spec = files.spec.clone();
        let bad = |message: String| Error::Model {
            model: spec.clone(),
            message,
        };
        let index: ModelIndex = read_json(&mut files, "model_index.json")?;
        match index.class_name.as_deref() {
            Some("StableDiffusionPipeline") => {}
            Some(other) if other.contains("XL") => {
                return Err(bad(format!(
                    "{other} is not supported yet: SDXL's UNet adds time/text conditioning that candle's UNet \
                     lacks (SD 1.x and 2.x pipelines work)"
                )));
            }
            other => {
                return Err(bad(format!(
                    "model_index.json _class_name {other:?} is not a StableDiffusionPipeline"
                )));
            }
        }
        let unet_config: UnetConfig = read_json(&mut files, "unet/config.json")?;
        let vae_config: VaeConfig = read_json(&mut files, "vae/config.json")?;
        let text_config: TextEncoderConfig = read_json(&mut files, "text_encoder/config.json")?;
        let scheduler_config: SchedulerJson =
            read_json(&mut files, "scheduler/scheduler_config.json")?;

        let candle_unet = unet_blocks(&unet_config).map_err(&bad)?;
        let scheduler = ddim_config(&scheduler_config).map_err(&bad)?;
        if vae_config.block_out_channels.is_empty() {
            return Err(bad("vae/config.json has no block_out_channels".into()));
        }
        let vae_scale = 1usize << (vae_config.block_out_channels.len() - 1);
        let sample = unet_config.sample_size.unwrap_or(64);
        let candle = |source| Error::Candle {
            model: spec.clone(),
            source,
        };

        let unet_vb = component_weights(&mut files, "unet", &device)?;
        let unet = UNet2DConditionModel::new(
            unet_vb,
            unet_config.in_channels,
            unet_config.out_channels,
            false,
            candle_unet,
        )
        .map_err(candle)?;
        let vae_vb = component_weights(&mut files, "vae", &device)?;
        let vae = AutoEncoderKL::new(
            vae_vb,
            vae_config.in_channels,
            vae_config.out_channels,
            AutoEncoderKLConfig {
                block_out_channels: vae_config.block_out_channels.clone(),
                layers_per_block: vae_config.layers_per_block,
                latent_channels: vae_config.latent_channels,
                norm_num_groups: vae_config.norm_num_groups,
                use_quant_conv: vae_config.use_quant_conv,
                use_post_quant_conv: vae_config.use_post_quant_conv,
            },
        )
        .map_err(candle)?;
        let text_vb = component_weights(&mut files, "text_encoder", &device)?;
        let text = text_encoder(&text_config, text_vb)
            .map_err(&bad)?
            .map_err(candle)?;
        let (tokenizer, pad_id) = tokenizer(&mut files)?;
        Ok(Generator {
            files,
            device,
            tokenizer,
            pad_id,
            max_len: text_config.max_position_embeddings,
            text,
            unet,
            vae,
            scheduler,
            scaling_factor: vae_config.scaling_factor,
            latent_channels: vae_config.latent_channels,
            vae_scale,
            height: sample * vae_scale,
            width: sample * vae_scale,
        })
    }

    fn candle(&self, source: candle_core::Error) -> Error {
        Error::Candle {
            model: self.files.spec.clone(),
            source,
        }
    }

    /// Token ids of a prompt as the pipeline feeds them: bos, tokens, eos, truncated and padded to the text
    /// encoder's length with the tokenizer's pad token.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        let encoded = self
            .tokenizer
            .encode(prompt, true)
            .map_err(|e| Error::Usage(format!("tokenizing the prompt {prompt:?}: {e}")))?;
        let mut ids = encoded.get_ids().to_vec();
        if ids.len() > self.max_len {
            // Truncation keeps the final end-of-text token, as transformers' does.
            let eos = ids[ids.len() - 1];
            ids.truncate(self.max_len - 1);
            ids.push(eos);
        }
        ids.resize(self.max_len, self.pad_id);
        Ok(ids)
    }

    /// The text encoder's last hidden state for `prompts`: `n × max_len × hidden`.
    pub fn prompt_embeds(&self, prompts: &[&str]) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(prompts.len() * self.max_len);
        for prompt in prompts {
            ids.extend(self.prompt_ids(prompt)?);
        }
        let ids = Tensor::from_vec(ids, (prompts.len(), self.max_len), &self.device)
            .map_err(|e| self.candle(e))?;
        self.text.forward(&ids).map_err(|e| self.candle(e))
    }

    /// The seeded initial latent: `1 × C × H/f × W/f` standard normals from vlmdb's RNG, row-major.
    pub fn initial_latent(&self, seed: u64) -> Result<Tensor> {
        let (h, w) = (self.height / self.vae_scale, self.width / self.vae_scale);
        let n = self.latent_channels * h * w;
        let mut rng = Rng::new(seed);
        let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(values, (1, self.latent_channels, h, w), &self.device)
            .map_err(|e| self.candle(e))
    }

    /// The UNet's prediction for `latents` at timestep `t` under text embeddings `embeds` (one row per latent).
    pub fn unet_output(&self, latents: &Tensor, t: f64, embeds: &Tensor) -> Result<Tensor> {
        self.unet
            .forward(latents, t, embeds)
            .map_err(|e| self.candle(e))
    }

    /// DDIM from `latent` under `prompt` (guided against the empty prompt when `guidance > 1`): the final latent.
    pub fn denoise(
        &self,
        prompt: &str,
        latent: &Tensor,
        options: GenerateOptions,
    ) -> Result<Tensor> {
        if options.steps == 0 || options.steps > self.scheduler.train_timesteps {
            return Err(Error::Usage(format!(
                "steps must be between 1 and {}, not {}",
                self.scheduler.train_timesteps, options.steps
            )));
        }
        let guided = options.guidance > 1.0;
        let embeds = if guided {
            self.prompt_embeds(&["", prompt])?
        } else {
            self.prompt_embeds(&[prompt])?
        };
        let run = || -> candle_core::Result<Tensor> {
            let mut scheduler = self.scheduler.build(options.steps)?;
            let mut latents = (latent * scheduler.init_noise_sigma())?;
            let timesteps = scheduler.timesteps().to_vec();
            for t in timesteps {
                let input = if guided {
                    Tensor::cat(&[&latents, &latents], 0)?
                } else {
                    latents.clone()
                };
                let input = scheduler.scale_model_input(input, t)?;
                let noise = self.unet.forward(&input, t as f64, &embeds)?;
                let noise = if guided {
                    let parts = noise.chunk(2, 0)?;
                    let (uncond, cond) = (&parts[0], &parts[1]);
                    (uncond + ((cond - uncond)? * options.guidance)?)?
                } else {
                    noise
                };
                latents = scheduler.step(&noise, t, &latents)?;
            }
            Ok(latents)
        };
        run().map_err(|e| self.candle(e))
    }

    /// The VAE's image of a latent, as diffusers post-processes it: `(x / 2 + 0.5).clamp(0, 1)`, `1 × 3 × H × W`.
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let run = || -> candle_core::Result<Tensor> {
            let image = self.vae.decode(&(latent / self.scaling_factor)?)?;
            ((image / 2.0)? + 0.5)?.clamp(0f32, 1f32)
        };
        run().map_err(|e| self.candle(e))
    }

    /// One image for `prompt` from the latent seeded by `seed`, as PNG bytes (8-bit RGB, `round(x · 255)`).
    pub fn generate(&self, prompt: &str, seed: u64, options: GenerateOptions) -> Result<Vec<u8>> {
        let latent = self.initial_latent(seed)?;
        let latent = self.denoise(prompt, &latent, options)?;
        let pixels = self.decode(&latent)?;
        png(&pixels).map_err(|e| self.candle(e))
    }

    /// The key generated images are cached under.
    pub fn cache_key(&self, options: GenerateOptions) -> String {
        format!(
            "{}@{}|generate|ddim|steps={}|guidance={}|{}x{}",
            self.files.id,
            self.files.revision,
            options.steps,
            options.guidance,
            self.width,
            self.height
        )
    }
}

/// PNG bytes of a `1 × 3 × H × W` image in [0, 1].
fn png(pixels: &Tensor) -> candle_core::Result<Vec<u8>> {
    let (_, _, h, w) = pixels.dims4()?;
    let hwc = pixels
        .squeeze(0)?
        .permute((1, 2, 0))?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let bytes: Vec<u8> = hwc
        .iter()
        .map(|v| (v * 255.0).round_ties_even().clamp(0.0, 255.0) as u8)
        .collect();
    let image = image::RgbImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| candle_core::Error::Msg("the decoded image has the wrong size".into()))?;
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| candle_core::Error::Msg(format!("PNG encoding failed: {e}")))?;
    Ok(out.into_inner())
}

/// candle's UNet config from diffusers', refusing what candle's UNet cannot build.
fn unet_blocks(c: &UnetConfig) -> std::result::Result<UNet2DConditionModelConfig, String> {
    let refuse = |what: &str| Err(format!("unet/config.json: {what} is not supported"));
    if let Some(kind) = &c.addition_embed_type {
        return refuse(&format!("addition_embed_type {kind:?} (SDXL)"));
    }
    if let Some(kind) = &c.class_embed_type {
        return refuse(&format!("class_embed_type {kind:?}"));
    }
    if c.time_cond_proj_dim.is_some() || c.encoder_hid_dim.is_some() {
        return refuse("time_cond_proj_dim / encoder_hid_dim");
    }
    if matches!(c.only_cross_attention, serde_json::Value::Bool(true))
        || c.only_cross_attention
            .as_array()
            .is_some_and(|v| v.iter().any(|b| b.as_bool() == Some(true)))
    {
        return refuse("only_cross_attention");
    }
    if c.mid_block_type
        .as_deref()
        .is_some_and(|t| t != "UNetMidBlock2DCrossAttn")
    {
        return refuse(&format!("mid_block_type {:?}", c.mid_block_type));
    }
    if c.time_embedding_type
        .as_deref()
        .is_some_and(|t| t != "positional")
    {
        return refuse(&format!("time_embedding_type {:?}", c.time_embedding_type));
    }
    if c.resnet_time_scale_shift
        .as_deref()
        .is_some_and(|t| t != "default")
    {
        return refuse(&format!(
            "resnet_time_scale_shift {:?}",
            c.resnet_time_scale_shift
        ));
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
        // candle builds the up path as the mirror of the down path.
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
        let attention_head_dim = heads
            .get(i)
            .ok_or("unet/config.json: fewer attention heads than blocks")?;
        let transformer_layers = layers
            .get(i)
            .ok_or("unet/config.json: fewer transformer_layers_per_block than blocks")?;
        blocks.push(BlockConfig {
            out_channels: c.block_out_channels[i],
            use_cross_attn: cross.then_some(transformer_layers),
            attention_head_dim,
        });
    }
    Ok(UNet2DConditionModelConfig {
        center_input_sample: c.center_input_sample,
        flip_sin_to_cos: c.flip_sin_to_cos,
        freq_shift: c.freq_shift,
        blocks,
        layers_per_block: c.layers_per_block,
        downsample_padding: c.downsample_padding,
        mid_block_scale_factor: c.mid_block_scale_factor,
        norm_num_groups: c.norm_num_groups,
        norm_eps: c.norm_eps,
        cross_attention_dim: c.cross_attention_dim,
        sliced_attention_size: None,
        use_linear_projection: c.use_linear_projection,
    })
}

/// candle's DDIM config from the pipeline's scheduler config.
fn ddim_config(c: &SchedulerJson) -> std::result::Result<DDIMSchedulerConfig, String> {
    let refuse = |what: String| Err(format!("scheduler/scheduler_config.json: {what}"));
    let beta_schedule = match c.beta_schedule.as_str() {
        "scaled_linear" => BetaSchedule::ScaledLinear,
        "linear" => BetaSchedule::Linear,
        "squaredcos_cap_v2" => BetaSchedule::SquaredcosCapV2,
        other => return refuse(format!("beta_schedule {other:?} is not supported")),
    };
    let prediction_type = match c.prediction_type.as_str() {
        "epsilon" => PredictionType::Epsilon,
        "v_prediction" => PredictionType::VPrediction,
        "sample" => PredictionType::Sample,
        other => return refuse(format!("prediction_type {other:?} is not supported")),
    };
    let timestep_spacing = match c.timestep_spacing.as_str() {
        "leading" => TimestepSpacing::Leading,
        "linspace" => TimestepSpacing::Linspace,
        "trailing" => TimestepSpacing::Trailing,
        other => return refuse(format!("timestep_spacing {other:?} is not supported")),
    };
    if c.set_alpha_to_one || c.clip_sample || c.thresholding || c.rescale_betas_zero_snr {
        return refuse(
            "set_alpha_to_one, clip_sample, thresholding and rescale_betas_zero_snr must be false (candle's DDIM)"
                .into(),
        );
    }
    Ok(DDIMSchedulerConfig {
        beta_start: c.beta_start,
        beta_end: c.beta_end,
        beta_schedule,
        eta: 0.0,
        steps_offset: c.steps_offset,
        prediction_type,
        train_timesteps: c.num_train_timesteps,
        timestep_spacing,
    })
}

/// The CLIP text encoder: candle's CLIP for quick_gelu configs, candle's SD 2.1 preset for OpenCLIP-H.
fn text_encoder(
    c: &TextEncoderConfig,
    vb: VarBuilder,
) -> std::result::Result<candle_core::Result<TextEncoder>, String> {
    if (c.layer_norm_eps - 1e-5).abs() > 1e-12 {
        return Err(format!(
            "text_encoder/config.json: layer_norm_eps {} is not supported (candle's CLIP uses 1e-5)",
            c.layer_norm_eps
        ));
    }
    match c.hidden_act.as_str() {
        // transformers 5 writes a CLIPTextModel's weights without the `text_model.` prefix earlier versions used.
        "quick_gelu" => Ok(ClipTextTransformer::new(
            if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
                vb.pp("text_model")
            } else {
                vb
            },
            &ClipTextConfig {
                vocab_size: c.vocab_size,
                embed_dim: c.hidden_size,
                activation: ClipActivation::QuickGelu,
                intermediate_size: c.intermediate_size,
                max_position_embeddings: c.max_position_embeddings,
                pad_with: None,
                num_hidden_layers: c.num_hidden_layers,
                num_attention_heads: c.num_attention_heads,
                projection_dim: c.hidden_size,
            },
        )
        .map(TextEncoder::Clip)),
        "gelu"
            if (
                c.vocab_size,
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers,
            ) == (49408, 1024, 4096, 23)
                && c.num_attention_heads == 16 =>
        {
            Ok(
                sd_clip::ClipTextTransformer::new(vb, &sd_clip::Config::v2_1())
                    .map(TextEncoder::Sd),
            )
        }
        other => Err(format!(
            "text_encoder/config.json: a {other} text encoder of this size is not supported (quick_gelu CLIP \
             encoders of any size, and SD 2.x's gelu OpenCLIP-H encoder)"
        )),
    }
}

/// A component's weights as f32: `<dir>/diffusion_pytorch_model.safetensors` or `<dir>/model.safetensors`.
fn component_weights(
    files: &mut ModelFiles,
    dir: &str,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    for name in ["diffusion_pytorch_model.safetensors", "model.safetensors"] {
        if let Some(path) = files.optional(&format!("{dir}/{name}"))? {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            return VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(
                |source| Error::Candle {
                    model: files.spec.clone(),
                    source,
                },
            );
        }
    }
    Err(Error::ModelFile {
        repo: files.id.clone(),
        revision: files.revision.clone(),
        file: format!("{dir}/diffusion_pytorch_model.safetensors"),
        message: "the pipeline has no safetensors weights for this component".into(),
    })
}

#[derive(Deserialize)]
struct TokenizerConfig {
    pad_token: Option<serde_json::Value>,
}

/// The pipeline's CLIP tokenizer (`tokenizer/tokenizer.json`, or built from OpenAI's `vocab.json` + `merges.txt`
/// as the released pipelines ship it) and its pad id (`pad_token` of `tokenizer_config.json`; SD 1.x pads with
/// `<|endoftext|>`, SD 2.x with `!`).
fn tokenizer(files: &mut ModelFiles) -> Result<(Tokenizer, u32)> {
    let tokenizer = match files.optional("tokenizer/tokenizer.json")? {
        Some(path) => Tokenizer::from_file(&path).map_err(|e| Error::Input {
            path: path.clone(),
            message: format!("cannot load the tokenizer: {e}"),
        })?,
        None => {
            let vocab = files.require("tokenizer/vocab.json")?;
            let merges = files.require("tokenizer/merges.txt")?;
            clip_bpe(&vocab, &merges)?
        }
    };
    let pad = match files.optional("tokenizer/tokenizer_config.json")? {
        Some(path) => {
            let config: TokenizerConfig = super::read_json_path(&files.spec, &path)?;
            match config.pad_token {
                Some(serde_json::Value::String(s)) => Some(s),
                Some(serde_json::Value::Object(o)) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string),
                _ => None,
            }
        }
        None => None,
    };
    let pad = pad.unwrap_or_else(|| "<|endoftext|>".to_string());
    let pad_id = tokenizer.token_to_id(&pad).ok_or_else(|| Error::Model {
        model: files.spec.clone(),
        message: format!("the tokenizer has no pad token {pad:?}"),
    })?;
    Ok((tokenizer, pad_id))
}

/// OpenAI CLIP's tokenizer (transformers' `CLIPTokenizer` pipeline) from `vocab.json` and `merges.txt`.
fn clip_bpe(vocab_path: &Path, merges_path: &Path) -> Result<Tokenizer> {
    let bad = |path: &Path, message: String| Error::Input {
        path: path.into(),
        message,
    };
    let vocab_text = std::fs::read_to_string(vocab_path).map_err(|e| Error::io(vocab_path, e))?;
    let vocab: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&vocab_text)
        .map_err(|e| bad(vocab_path, format!("not a JSON vocabulary: {e}")))?;
    let merges_text =
        std::fs::read_to_string(merges_path).map_err(|e| Error::io(merges_path, e))?;
    let merges: Vec<serde_json::Value> = merges_text
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap_or((l, ""));
            serde_json::json!([a, b])
        })
        .collect();
    let id = |token: &str| {
        vocab
            .get(token)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad(vocab_path, format!("has no {token}")))
    };
    let (bos, eos) = (id("<|startoftext|>")?, id("<|endoftext|>")?);
    let special = |id: u64, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(bos, "<|startoftext|>"), special(eos, "<|endoftext|>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex":
                "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
        "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", eos],
                           "cls": ["<|startoftext|>", bos], "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>", "continuing_subword_prefix": "",
                  "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    json.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| bad(vocab_path, format!("cannot build a CLIP tokenizer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_options_candle_cannot_honour_are_refused() {
        let config: SchedulerJson =
            serde_json::from_str(r#"{"clip_sample": true}"#).expect("config");
        let err = ddim_config(&config).expect_err("clip_sample");
        assert!(err.contains("clip_sample"), "{err}");
        let config: SchedulerJson =
            serde_json::from_str(r#"{"prediction_type": "v_prediction", "steps_offset": 1}"#)
                .expect("config");
        let ddim = ddim_config(&config).expect("v-prediction");
        assert!(matches!(ddim.prediction_type, PredictionType::VPrediction));
        assert_eq!(ddim.steps_offset, 1);
    }

    #[test]
    fn sdxl_unets_are_refused_by_name() {
        let config: UnetConfig = serde_json::from_str(
            r#"{"down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"],
                "block_out_channels": [32], "cross_attention_dim": 32, "addition_embed_type": "text_time"}"#,
        )
        .expect("config");
        let err = unet_blocks(&config).expect_err("sdxl");
        assert!(err.contains("text_time"), "{err}");
    }
}
