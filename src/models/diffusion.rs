//! Stable Diffusion text-to-image, in diffusers' pipeline layout (`model_index.json`, `unet/`, `vae/`,
//! `text_encoder/`, `tokenizer/`, `scheduler/`, and for SDXL `text_encoder_2/`, `tokenizer_2/`): SD 1.x, SD 2.x,
//! SDXL and SDXL-Turbo. candle's `StableDiffusionConfig` keeps its parts private and only has presets, so every
//! part is built here from its own public config: the UNet from candle's blocks ([`super::unet`], which adds SDXL's
//! time/text conditioning candle's UNet lacks), the VAE (`AutoEncoderKLConfig`), and the CLIP text encoders
//! ([`super::clip_text`]: any size, quick_gelu or gelu, every layer's hidden state, SDXL's pooled projection).
//!
//! Text conditioning follows diffusers: SD takes the encoder's `last_hidden_state`; SDXL concatenates both
//! encoders' penultimate hidden states, with the second encoder's projected pooled output and the six size/crop
//! numbers `(h, w, 0, 0, h, w)` as added conditioning, and its unconditional embeddings are zeros when the
//! pipeline sets `force_zeros_for_empty_prompt` (SD's come from the empty prompt).
//!
//! Sampling follows the pipeline's `scheduler/scheduler_config.json` (betas, prediction type, timestep spacing and
//! offset): `EulerAncestralDiscreteScheduler` with vlmdb's own Euler ancestral ([`super::euler_ancestral`]),
//! `DDIMScheduler` with candle's DDIM (η = 0), and every other scheduler class with DDIM over the same noise
//! schedule ([`Sampler`]). Classifier-free guidance is `uncond + g·(cond − uncond)` when g > 1, the unconditional
//! side being the negative prompt's embeddings when one is given. candle cannot seed its CPU generator, so all
//! noise (the initial latent, each ancestral step's) comes from vlmdb's RNG seeded by the generation seed: the same
//! seed gives the same latent, the same pixels, and the same PNG bytes.

use std::io::Cursor;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::{
    BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing,
};
use candle_transformers::models::stable_diffusion::vae::{AutoEncoderKL, AutoEncoderKLConfig};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::clip_text::{ClipText, ClipTextConfig};
use super::euler_ancestral::{EulerAncestral, EulerAncestralConfig};
use super::hub::ModelFiles;
use super::read_json;
use super::unet::{Unet, UnetConfig};
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
    #[serde(default)]
    force_zeros_for_empty_prompt: Option<bool>,
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
    /// diffusers upcasts a half-precision VAE to float32 for SDXL pipelines when this is set (SDXL's VAE overflows
    /// in float16).
    #[serde(default = "yes")]
    force_upcast: bool,
}

#[derive(Deserialize)]
struct SchedulerJson {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
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
fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn thirty_two() -> usize {
    32
}
fn thousand() -> usize {
    1000
}
fn yes() -> bool {
    true
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
fn linear() -> String {
    "linear".into()
}
fn epsilon() -> String {
    "epsilon".into()
}
fn leading() -> String {
    "leading".into()
}

/// How one image is generated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub steps: usize,
    pub guidance: f64,
    /// What the guidance steers away from (diffusers' `negative_prompt`); `None` or empty: the empty prompt (or
    /// zeros, for SDXL pipelines that force them).
    pub negative_prompt: Option<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            steps: DEFAULT_STEPS,
            guidance: DEFAULT_GUIDANCE,
            negative_prompt: None,
        }
    }
}

/// How a pipeline samples: the scheduler its `scheduler_config.json` names where vlmdb has it, else DDIM over the
/// pipeline's noise schedule.
#[derive(Debug, Clone, Copy)]
pub enum Sampler {
    Ddim(DDIMSchedulerConfig),
    EulerAncestral(EulerAncestralConfig),
}

impl Sampler {
    /// diffusers' class name of the scheduler used.
    pub fn name(&self) -> &'static str {
        match self {
            Sampler::Ddim(_) => "DDIMScheduler",
            Sampler::EulerAncestral(_) => "EulerAncestralDiscreteScheduler",
        }
    }

    /// DDIM (η = 0) over the same noise schedule.
    pub fn as_ddim(&self) -> Sampler {
        match *self {
            Sampler::Ddim(c) => Sampler::Ddim(c),
            Sampler::EulerAncestral(c) => Sampler::Ddim(DDIMSchedulerConfig {
                beta_start: c.beta_start,
                beta_end: c.beta_end,
                beta_schedule: c.beta_schedule,
                eta: 0.0,
                steps_offset: c.steps_offset,
                prediction_type: c.prediction_type,
                train_timesteps: c.train_timesteps,
                timestep_spacing: c.timestep_spacing,
            }),
        }
    }

    fn train_timesteps(&self) -> usize {
        match self {
            Sampler::Ddim(c) => c.train_timesteps,
            Sampler::EulerAncestral(c) => c.train_timesteps,
        }
    }
}

/// One CLIP text encoder with its tokenizer.
struct Encoder {
    model: ClipText,
    tokenizer: Tokenizer,
    pad_id: u32,
}

/// What the UNet is conditioned on for a batch of prompts.
pub struct Conditioning {
    /// `batch × 77 × cross_attention_dim`.
    pub context: Tensor,
    /// SDXL: the second encoder's projected pooled output, `batch × P`.
    pub pooled: Option<Tensor>,
}

/// A loaded Stable Diffusion pipeline.
pub struct Generator {
    pub files: ModelFiles,
    pub device: Device,
    encoders: Vec<Encoder>,
    /// SDXL: penultimate hidden states of both encoders, pooled output, size/crop conditioning.
    xl: bool,
    force_zeros_for_empty_prompt: bool,
    unet: Unet,
    vae: AutoEncoderKL,
    /// How it samples.
    pub sampler: Sampler,
    /// The UNet's dtype: float16 on CUDA, float32 on the CPU.
    pub unet_dtype: DType,
    /// The VAE's: the UNet's, or float32 for an SDXL VAE that must be upcast.
    pub vae_dtype: DType,
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
            .field("xl", &self.xl)
            .field("height", &self.height)
            .field("width", &self.width)
            .finish()
    }
}

impl Generator {
    /// Load a Stable Diffusion pipeline from its files onto `device`.
    pub fn load(files: ModelFiles, device: Device) -> Result<Generator> {
        let dtype = if device.is_cuda() {
            DType::F16
        } else {
            DType::F32
        };
        Generator::load_in(files, device, dtype)
    }

    /// Load the pipeline with its UNet and VAE computing in `dtype` (the text encoders stay in float32: the prompt
    /// embeddings are computed once; an SDXL pipeline's VAE too when its config sets `force_upcast`, as diffusers
    /// does, since SDXL's VAE overflows in float16).
    pub fn load_in(mut files: ModelFiles, device: Device, dtype: DType) -> Result<Generator> {
        let spec = files.spec.clone();
        let bad = |message: String| Error::Model {
            model: spec.clone(),
            message,
        };
        let index: ModelIndex = read_json(&mut files, "model_index.json")?;
        let xl = match index.class_name.as_deref() {
            Some("StableDiffusionPipeline") => false,
            Some("StableDiffusionXLPipeline") => true,
            other => {
                return Err(bad(format!(
                    "model_index.json _class_name {other:?} is not a StableDiffusionPipeline or                      StableDiffusionXLPipeline"
                )));
            }
        };
        let unet_config: UnetConfig = read_json(&mut files, "unet/config.json")?;
        let vae_config: VaeConfig = read_json(&mut files, "vae/config.json")?;
        let scheduler_config: SchedulerJson =
            read_json(&mut files, "scheduler/scheduler_config.json")?;
        let sampler = sampler(&scheduler_config).map_err(&bad)?;
        if vae_config.block_out_channels.is_empty() {
            return Err(bad("vae/config.json has no block_out_channels".into()));
        }
        if xl != unet_config.addition_embed_type.is_some() {
            return Err(bad(format!(
                "a {} whose UNet has addition_embed_type {:?}",
                if xl { "SDXL pipeline" } else { "SD pipeline" },
                unet_config.addition_embed_type
            )));
        }
        let vae_scale = 1usize << (vae_config.block_out_channels.len() - 1);
        let sample = unet_config.sample_size.unwrap_or(64);
        let candle = |source| Error::Candle {
            model: spec.clone(),
            source,
        };

        let mut encoders = Vec::new();
        for (model_dir, tokenizer_dir) in [
            ("text_encoder", "tokenizer"),
            ("text_encoder_2", "tokenizer_2"),
        ]
        .into_iter()
        .take(if xl { 2 } else { 1 })
        {
            let config: ClipTextConfig =
                read_json(&mut files, &format!("{model_dir}/config.json"))?;
            let vb = component_weights(&mut files, model_dir, &device, DType::F32)?;
            let model = ClipText::new(config, vb).map_err(|e| bad(format!("{model_dir}: {e}")))?;
            let (tokenizer, pad_id) = tokenizer(&mut files, tokenizer_dir)?;
            encoders.push(Encoder {
                model,
                tokenizer,
                pad_id,
            });
        }
        let unet_vb = component_weights(&mut files, "unet", &device, dtype)?;
        let unet = Unet::new(unet_config, unet_vb).map_err(&bad)?;
        let vae_dtype = if xl && vae_config.force_upcast {
            DType::F32
        } else {
            dtype
        };
        let vae_vb = component_weights(&mut files, "vae", &device, vae_dtype)?;
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
        Ok(Generator {
            files,
            device,
            unet_dtype: dtype,
            vae_dtype,
            encoders,
            xl,
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(xl),
            unet,
            vae,
            sampler,
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

    /// Token ids of a prompt as the pipeline feeds the first text encoder: bos, tokens, eos, truncated and padded
    /// to the encoder's length with the tokenizer's pad token.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>> {
        ids_for(&self.encoders[0], prompt)
    }

    /// The UNet's conditioning for `prompts`.
    pub fn encode(&self, prompts: &[&str]) -> Result<Conditioning> {
        let mut contexts = Vec::new();
        let mut pooled = None;
        for encoder in &self.encoders {
            let len = encoder.model.max_len();
            let mut ids = Vec::with_capacity(prompts.len() * len);
            for prompt in prompts {
                ids.extend(ids_for(encoder, prompt)?);
            }
            let ids = Tensor::from_vec(ids, (prompts.len(), len), &self.device)
                .map_err(|e| self.candle(e))?;
            let out = encoder.model.forward(&ids).map_err(|e| self.candle(e))?;
            if self.xl {
                let penultimate = out
                    .hidden
                    .len()
                    .checked_sub(2)
                    .ok_or_else(|| Error::Model {
                        model: self.files.spec.clone(),
                        message: "an SDXL text encoder needs at least 2 layers".into(),
                    })?;
                contexts.push(out.hidden[penultimate].clone());
                pooled = out.pooled;
            } else {
                contexts.push(out.last);
            }
        }
        let context = Tensor::cat(&contexts, 2).map_err(|e| self.candle(e))?;
        if self.xl && pooled.is_none() {
            return Err(Error::Model {
                model: self.files.spec.clone(),
                message: "text_encoder_2 has no text_projection (CLIPTextModelWithProjection)"
                    .into(),
            });
        }
        Ok(Conditioning { context, pooled })
    }

    /// The first (SD: only) text encoder's conditioning of `prompts`: `n × 77 × cross_attention_dim`.
    pub fn prompt_embeds(&self, prompts: &[&str]) -> Result<Tensor> {
        Ok(self.encode(prompts)?.context)
    }

    /// The seeded initial latent: `1 × C × H/f × W/f` standard normals from vlmdb's RNG, row-major.
    pub fn initial_latent(&self, seed: u64) -> Result<Tensor> {
        self.normal(&mut Rng::new(seed))
    }

    /// Standard normal values of the latent's shape from `rng`.
    fn normal(&self, rng: &mut Rng) -> Result<Tensor> {
        let (h, w) = (self.height / self.vae_scale, self.width / self.vae_scale);
        let n = self.latent_channels * h * w;
        let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        Tensor::from_vec(values, (1, self.latent_channels, h, w), &self.device)
            .map_err(|e| self.candle(e))
    }

    /// Sample from `latent` under `prompt` with the pipeline's sampler (guided against the negative prompt's
    /// embeddings, or the unconditional ones, when `guidance > 1`): the final latent. `noise` gives the standard
    /// normal noise an ancestral sampler adds at each step (a tensor of the latent's shape; DDIM draws none).
    pub fn denoise(
        &self,
        prompt: &str,
        latent: &Tensor,
        options: &GenerateOptions,
        noise: &mut dyn FnMut() -> candle_core::Result<Tensor>,
    ) -> Result<Tensor> {
        let limit = self.sampler.train_timesteps();
        if options.steps == 0 || options.steps > limit {
            return Err(Error::Usage(format!(
                "steps must be between 1 and {limit}, not {}",
                options.steps
            )));
        }
        let guided = options.guidance > 1.0;
        let cond = self.encode(&[prompt])?;
        let negative = options.negative_prompt.as_deref().filter(|n| !n.is_empty());
        let uncond = match negative {
            Some(text) if guided => Some(self.encode(&[text])?),
            _ if guided && !(self.xl && self.force_zeros_for_empty_prompt) => {
                Some(self.encode(&[""])?)
            }
            _ => None,
        };
        let mut run = || -> candle_core::Result<Tensor> {
            let (context, pooled) = if guided {
                // diffusers zeroes the negative side only when no negative prompt is given.
                let (context, pooled) = match &uncond {
                    Some(u) => (u.context.clone(), u.pooled.clone()),
                    None => (
                        cond.context.zeros_like()?,
                        cond.pooled.as_ref().map(Tensor::zeros_like).transpose()?,
                    ),
                };
                let both = |u: &Tensor, c: &Tensor| Tensor::cat(&[u, c], 0);
                (
                    both(&context, &cond.context)?,
                    match (&pooled, &cond.pooled) {
                        (Some(u), Some(c)) => Some(both(u, c)?),
                        _ => None,
                    },
                )
            } else {
                (cond.context.clone(), cond.pooled.clone())
            };
            let batch = context.dim(0)?;
            let time_ids = if self.xl {
                let (h, w) = (self.height as f32, self.width as f32);
                let row = [h, w, 0.0, 0.0, h, w];
                let values: Vec<f32> = (0..batch).flat_map(|_| row).collect();
                Some(Tensor::from_vec(values, (batch, 6), &self.device)?)
            } else {
                None
            };
            // The UNet computes in its dtype; the latents and the scheduler's arithmetic stay in float32.
            let half = |x: &Tensor| x.to_dtype(self.unet_dtype);
            let (context, pooled, time_ids) = (
                half(&context)?,
                pooled.as_ref().map(half).transpose()?,
                time_ids.as_ref().map(half).transpose()?,
            );
            let added = match (&pooled, &time_ids) {
                (Some(p), Some(t)) => Some((p, t)),
                _ => None,
            };
            let predict = |input: &Tensor, t: f64| -> candle_core::Result<Tensor> {
                let input = if guided {
                    Tensor::cat(&[input, input], 0)?
                } else {
                    input.clone()
                };
                let noise = self
                    .unet
                    .forward(&half(&input)?, t, &context, added)?
                    .to_dtype(DType::F32)?;
                if guided {
                    let parts = noise.chunk(2, 0)?;
                    let (uncond, cond) = (&parts[0], &parts[1]);
                    uncond + ((cond - uncond)? * options.guidance)?
                } else {
                    Ok(noise)
                }
            };
            match &self.sampler {
                Sampler::Ddim(config) => {
                    let mut scheduler = config.build(options.steps)?;
                    let mut latents = (latent * scheduler.init_noise_sigma())?;
                    for t in scheduler.timesteps().to_vec() {
                        let input = scheduler.scale_model_input(latents.clone(), t)?;
                        let eps = predict(&input, t as f64)?;
                        latents = scheduler.step(&eps, t, &latents)?;
                    }
                    Ok(latents)
                }
                Sampler::EulerAncestral(config) => {
                    let schedule = EulerAncestral::new(config, options.steps)?;
                    let mut latents = (latent * schedule.init_noise_sigma())?;
                    for (i, &t) in schedule.timesteps().iter().enumerate() {
                        let input = schedule.scale_model_input(&latents, i)?;
                        let eps = predict(&input, t)?;
                        latents = schedule.step(&eps, i, &latents, &noise()?)?;
                    }
                    Ok(latents)
                }
            }
        };
        run().map_err(|e| self.candle(e))
    }

    /// The VAE's image of a latent, as diffusers post-processes it: `(x / 2 + 0.5).clamp(0, 1)`, `1 × 3 × H × W`.
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let run = || -> candle_core::Result<Tensor> {
            let scaled = (latent / self.scaling_factor)?.to_dtype(self.vae_dtype)?;
            let image = self.vae.decode(&scaled)?.to_dtype(DType::F32)?;
            ((image / 2.0)? + 0.5)?.clamp(0f32, 1f32)
        };
        run().map_err(|e| self.candle(e))
    }

    /// One image for `prompt` from `seed`, as PNG bytes (8-bit RGB, `round(x · 255)`): the initial latent and any
    /// ancestral noise come from one RNG seeded by `seed`.
    pub fn generate(&self, prompt: &str, seed: u64, options: &GenerateOptions) -> Result<Vec<u8>> {
        let mut rng = Rng::new(seed);
        let latent = self.normal(&mut rng)?;
        let latent = self.denoise(prompt, &latent, options, &mut || {
            self.normal(&mut rng)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))
        })?;
        let pixels = self.decode(&latent)?;
        png(&pixels).map_err(|e| self.candle(e))
    }
}

/// Token ids of a prompt for one encoder: truncated to its length keeping the final end-of-text token (as
/// transformers' truncation does), padded with its pad token.
fn ids_for(encoder: &Encoder, prompt: &str) -> Result<Vec<u32>> {
    let max_len = encoder.model.max_len();
    let encoded = encoder
        .tokenizer
        .encode(prompt, true)
        .map_err(|source| Error::Tokenizer {
            what: format!("the prompt {prompt:?}"),
            source,
        })?;
    let mut ids = encoded.get_ids().to_vec();
    if ids.len() > max_len {
        let eos = ids[ids.len() - 1];
        ids.truncate(max_len - 1);
        ids.push(eos);
    }
    ids.resize(max_len, encoder.pad_id);
    Ok(ids)
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

/// The sampler of the pipeline's scheduler config: Euler ancestral for `EulerAncestralDiscreteScheduler`, DDIM for
/// `DDIMScheduler` and, over the same noise schedule, for every scheduler vlmdb does not have.
fn sampler(c: &SchedulerJson) -> std::result::Result<Sampler, String> {
    if c.class_name.as_deref() == Some("EulerAncestralDiscreteScheduler") {
        let ddim = schedule(c)?;
        return Ok(Sampler::EulerAncestral(EulerAncestralConfig {
            beta_start: ddim.beta_start,
            beta_end: ddim.beta_end,
            beta_schedule: ddim.beta_schedule,
            prediction_type: ddim.prediction_type,
            train_timesteps: ddim.train_timesteps,
            timestep_spacing: ddim.timestep_spacing,
            steps_offset: ddim.steps_offset,
        }));
    }
    if c.set_alpha_to_one || c.clip_sample || c.thresholding || c.rescale_betas_zero_snr {
        return Err(
            "scheduler/scheduler_config.json: set_alpha_to_one, clip_sample, thresholding and rescale_betas_zero_snr \
             must be false (candle's DDIM)"
                .into(),
        );
    }
    Ok(Sampler::Ddim(schedule(c)?))
}

/// The noise schedule of the pipeline's scheduler config, as candle's DDIM config.
fn schedule(c: &SchedulerJson) -> std::result::Result<DDIMSchedulerConfig, String> {
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

/// A component's weights as f32: `<dir>/diffusion_pytorch_model.safetensors` or `<dir>/model.safetensors`.
fn component_weights(
    files: &mut ModelFiles,
    dir: &str,
    device: &Device,
    dtype: DType,
) -> Result<VarBuilder<'static>> {
    for name in ["diffusion_pytorch_model.safetensors", "model.safetensors"] {
        if let Some(path) = files.optional(&format!("{dir}/{name}"))? {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            return VarBuilder::from_buffered_safetensors(bytes, dtype, device).map_err(|source| {
                Error::Candle {
                    model: files.spec.clone(),
                    source,
                }
            });
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

/// A CLIP tokenizer of the pipeline (`<dir>/tokenizer.json`, or built from OpenAI's `vocab.json` + `merges.txt`
/// as the released pipelines ship it) and its pad id (`pad_token` of `tokenizer_config.json`; SD 1.x pads with
/// `<|endoftext|>`, SD 2.x and SDXL's second tokenizer with `!`).
fn tokenizer(files: &mut ModelFiles, dir: &str) -> Result<(Tokenizer, u32)> {
    let tokenizer = match files.optional(&format!("{dir}/tokenizer.json"))? {
        Some(path) => Tokenizer::from_file(&path).map_err(|e| Error::Input {
            path: path.clone(),
            message: format!("cannot load the tokenizer: {e}"),
        })?,
        None => {
            let vocab = files.require(&format!("{dir}/vocab.json"))?;
            let merges = files.require(&format!("{dir}/merges.txt"))?;
            clip_bpe(&vocab, &merges)?
        }
    };
    let pad = match files.optional(&format!("{dir}/tokenizer_config.json"))? {
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
pub fn clip_bpe(vocab_path: &Path, merges_path: &Path) -> Result<Tokenizer> {
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
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
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
        let err = sampler(&config).expect_err("clip_sample");
        assert!(err.contains("clip_sample"), "{err}");
        let config: SchedulerJson =
            serde_json::from_str(r#"{"prediction_type": "v_prediction", "steps_offset": 1}"#)
                .expect("config");
        let Ok(Sampler::Ddim(ddim)) = sampler(&config) else {
            panic!("DDIM expected");
        };
        assert!(matches!(ddim.prediction_type, PredictionType::VPrediction));
        assert_eq!(ddim.steps_offset, 1);
    }

    #[test]
    fn the_scheduler_class_chooses_the_sampler() {
        let read = |json: &str| {
            let config: SchedulerJson = serde_json::from_str(json).expect("config");
            sampler(&config).expect("sampler").name()
        };
        assert_eq!(
            read(
                r#"{"_class_name": "EulerAncestralDiscreteScheduler", "timestep_spacing": "trailing"}"#
            ),
            "EulerAncestralDiscreteScheduler"
        );
        assert_eq!(read(r#"{"_class_name": "DDIMScheduler"}"#), "DDIMScheduler");
        // Schedulers vlmdb lacks sample with DDIM over their noise schedule.
        assert_eq!(read(r#"{"_class_name": "PNDMScheduler"}"#), "DDIMScheduler");
    }
}
