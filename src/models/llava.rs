//! LLaVA-1.5 captioning (`LlavaForConditionalGeneration` in the Hugging Face layout, e.g. llava-hf/llava-1.5-7b-hf):
//! the CLIP vision tower ([`super::clip_vision`]) read at `vision_feature_layer` (−2: the penultimate layer) with the
//! class token dropped (`vision_feature_select_strategy` "default"), the two-layer projector, and candle's Llama
//! fed the prompt's embeddings with the image's features in place of its `<image>` tokens — one per patch, as the
//! LlavaProcessor expands them. Greedy decoding with a key/value cache until the end-of-sequence token or
//! `max_new_tokens`, as transformers' `generate(do_sample=False)` does; the caption is the generated tokens,
//! special ones skipped.
//!
//! The prompt is llava-1.5's conversation format, `USER: <image>\n{instruction} ASSISTANT:`; a prompt that already
//! holds `<image>` is used as written. Config fields left out take transformers' defaults (llava-hf's configs leave
//! most of the Llama and CLIP sizes out). Weights in both of transformers' layouts (`language_model.model.…` as
//! llava-hf ships them, `model.language_model.…` as transformers ≥ 4.52 holds them in memory).

use candle_core::{D, DType, Device, IndexOp, Module, Tensor};
use candle_nn::Linear;
use candle_transformers::models::llama::{Cache, Config as LlamaRuntime, Llama};
use image::DynamicImage;
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::clip::VisionConfig;
use super::clip_layer::{Act, LayerShape};
use super::clip_vision::{ClipVision, VisionShape};
use super::hub::ModelFiles;
use super::preprocess::ImageProcessor;
use super::{image_processor, read_json, read_json_path};
use crate::error::{Error, Result};

/// The instruction when a caption is asked for without a prompt.
pub const DEFAULT_INSTRUCTION: &str = "Describe the image in one sentence.";

fn thirty_two_thousand() -> u32 {
    32000
}
fn gelu() -> String {
    "gelu".into()
}
fn minus_two() -> serde_json::Value {
    serde_json::json!(-2)
}
fn default_strategy() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
pub(crate) struct Config {
    #[serde(default)]
    vision_config: VisionConfig,
    #[serde(default)]
    text_config: TextConfig,
    #[serde(default = "thirty_two_thousand")]
    image_token_index: u32,
    #[serde(default = "gelu")]
    projector_hidden_act: String,
    #[serde(default = "minus_two")]
    vision_feature_layer: serde_json::Value,
    #[serde(default = "default_strategy")]
    vision_feature_select_strategy: String,
    #[serde(default = "yes")]
    multimodal_projector_bias: bool,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

/// transformers' `LlamaConfig` with its defaults.
#[derive(Deserialize)]
#[serde(default)]
struct TextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    hidden_act: String,
    max_position_embeddings: usize,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    rope_scaling: Option<serde_json::Value>,
    attention_bias: bool,
    mlp_bias: bool,
    tie_word_embeddings: bool,
    eos_token_id: Option<serde_json::Value>,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            hidden_act: "silu".into(),
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: None,
            rope_parameters: None,
            rope_scaling: None,
            attention_bias: false,
            mlp_bias: false,
            tie_word_embeddings: false,
            eos_token_id: None,
        }
    }
}

#[derive(Deserialize, Default)]
struct GenerationConfig {
    max_new_tokens: Option<usize>,
    eos_token_id: Option<serde_json::Value>,
}

/// The first id of an `eos_token_id` that is an id or a list of ids.
fn first_id(value: &Option<serde_json::Value>) -> Option<u32> {
    match value.as_ref()? {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::Array(items) => items.first()?.as_u64().map(|n| n as u32),
        _ => None,
    }
}

/// A loaded LLaVA model.
pub struct Llava {
    vision: ClipVision,
    /// transformers' `hidden_states` index the features are read at.
    feature_layer: usize,
    /// Drop the class token ("default") or keep it ("full").
    drop_class: bool,
    projector: (Linear, Linear),
    projector_act: Act,
    llama: Llama,
    runtime: LlamaRuntime,
    tokenizer: Tokenizer,
    processor: ImageProcessor,
    image_token: u32,
    /// `<image>` tokens (image features) per image.
    image_tokens: usize,
    eos: u32,
    special: Vec<u32>,
    pub default_max_new_tokens: usize,
    device: Device,
    spec: String,
}

impl Llava {
    /// Load the LLaVA model in `files` onto `device`.
    pub fn load(files: &mut ModelFiles, device: &Device) -> Result<Llava> {
        let config: Config = read_json(files, "config.json")?;
        let spec = files.spec.clone();
        let bad = |message: String| Error::Model {
            model: spec.clone(),
            message,
        };
        let (t, v) = (&config.text_config, &config.vision_config);
        let heads = t.num_attention_heads.max(1);
        if t.hidden_act != "silu" {
            return Err(bad(format!(
                "text_config.hidden_act {:?} is not supported (silu)",
                t.hidden_act
            )));
        }
        if t.attention_bias || t.mlp_bias {
            return Err(bad(
                "text_config.attention_bias / mlp_bias are not supported".into(),
            ));
        }
        if t.head_dim.is_some_and(|d| d * heads != t.hidden_size) {
            return Err(bad(
                "text_config.head_dim other than hidden_size / num_attention_heads is not supported".into(),
            ));
        }
        let rope_type = t
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_type.as_deref());
        if t.rope_scaling.as_ref().is_some_and(|r| !r.is_null())
            || rope_type.is_some_and(|r| r != "default")
        {
            return Err(bad(
                "rope scaling is not supported (default rotary positions only)".into(),
            ));
        }
        let rope_theta = t
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .or(t.rope_theta)
            .unwrap_or(10000.0);
        let layers = v.num_hidden_layers as i64;
        let feature_layer = match config.vision_feature_layer.as_i64() {
            Some(n) if n < 0 && n >= -(layers + 1) => (layers + 1 + n) as usize,
            Some(n) if n >= 0 && n <= layers => n as usize,
            _ => {
                return Err(bad(format!(
                    "vision_feature_layer {} is not supported (one layer of the {layers}-layer vision tower)",
                    config.vision_feature_layer
                )));
            }
        };
        let drop_class = match config.vision_feature_select_strategy.as_str() {
            "default" => true,
            "full" => false,
            other => {
                return Err(bad(format!(
                    "vision_feature_select_strategy {other:?} is not supported (default or full)"
                )));
            }
        };
        let projector_act = Act::parse(&config.projector_hidden_act).map_err(&bad)?;
        let vision_shape = VisionShape {
            layer: LayerShape {
                hidden: v.hidden_size,
                intermediate: v.intermediate_size,
                heads: v.num_attention_heads,
                eps: v.layer_norm_eps,
                act: Act::parse(&v.hidden_act).map_err(&bad)?,
            },
            layers: v.num_hidden_layers,
            channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        };
        let side = v.image_size / v.patch_size.max(1);
        let image_tokens = side * side + usize::from(!drop_class);

        let vb = super::weights(files, device)?;
        let candle = |source| Error::Candle {
            model: spec.clone(),
            source,
        };
        let under = |prefixes: &[&str], probe: &str| -> Result<String> {
            prefixes
                .iter()
                .find(|p| vb.contains_tensor(&format!("{p}{probe}")))
                .map(|p| p.to_string())
                .ok_or_else(|| {
                    bad(format!(
                        "the weights have no {probe} (under {})",
                        prefixes.join(" or ")
                    ))
                })
        };
        let vision_prefix = under(
            &[
                "vision_tower.vision_model.",
                "vision_tower.",
                "model.vision_tower.vision_model.",
                "model.vision_tower.",
            ],
            "embeddings.class_embedding",
        )?;
        let vision = ClipVision::new(vision_shape, vb.pp(vision_prefix.trim_end_matches('.')))
            .map_err(&bad)?;
        let projector_prefix = under(
            &["multi_modal_projector.", "model.multi_modal_projector."],
            "linear_1.weight",
        )?;
        let pvb = vb.pp(projector_prefix.trim_end_matches('.'));
        let linear = |input: usize, output: usize, name: &str| {
            if config.multimodal_projector_bias {
                candle_nn::linear(input, output, pvb.pp(name))
            } else {
                candle_nn::linear_no_bias(input, output, pvb.pp(name))
            }
        };
        let projector = (
            linear(v.hidden_size, t.hidden_size, "linear_1").map_err(candle)?,
            linear(t.hidden_size, t.hidden_size, "linear_2").map_err(candle)?,
        );
        // candle's Llama reads `model.…` and `lm_head`.
        let lm = if vb.contains_tensor("language_model.model.embed_tokens.weight") {
            vb.pp("language_model")
        } else if vb.contains_tensor("model.language_model.embed_tokens.weight") {
            vb.clone()
                .rename_f(|name: &str| match name.strip_prefix("model.") {
                    Some(rest) => format!("model.language_model.{rest}"),
                    None => name.to_string(),
                })
        } else {
            return Err(bad(
                "the weights have no language model (language_model.model.… or model.language_model.…)".into(),
            ));
        };
        // candle's Llama unwraps a missing layer weight; every one is checked first.
        let per_layer = [
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
            "input_layernorm.weight",
            "post_attention_layernorm.weight",
        ];
        for i in 0..t.num_hidden_layers {
            for name in per_layer {
                let full = format!("model.layers.{i}.{name}");
                if !lm.contains_tensor(&full) {
                    return Err(bad(format!("the language model has no weight {full}")));
                }
            }
        }
        if !t.tie_word_embeddings && !lm.contains_tensor("lm_head.weight") {
            return Err(bad("the language model has no lm_head.weight".into()));
        }
        let runtime = LlamaRuntime {
            hidden_size: t.hidden_size,
            intermediate_size: t.intermediate_size,
            vocab_size: t.vocab_size,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            num_key_value_heads: t.num_key_value_heads.unwrap_or(t.num_attention_heads),
            use_flash_attn: false,
            rms_norm_eps: t.rms_norm_eps,
            rope_theta: rope_theta as f32,
            bos_token_id: None,
            eos_token_id: None,
            rope_scaling: None,
            max_position_embeddings: t.max_position_embeddings,
            tie_word_embeddings: t.tie_word_embeddings,
        };
        let llama = Llama::load(lm, &runtime).map_err(candle)?;
        let tokenizer_path = files.require("tokenizer.json")?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::Input {
            path: tokenizer_path.clone(),
            message: format!("cannot load the tokenizer: {e}"),
        })?;
        let processor = image_processor(files, ImageProcessor::clip(v.image_size as u32))?;
        if processor.output_size() != (v.image_size as u32, v.image_size as u32) {
            return Err(bad(format!(
                "the image processor makes {:?} images, the vision tower takes {}×{}",
                processor.output_size(),
                v.image_size,
                v.image_size
            )));
        }
        let generation: GenerationConfig = match files.optional("generation_config.json")? {
            Some(path) => read_json_path(&files.spec, &path)?,
            None => GenerationConfig::default(),
        };
        let eos = first_id(&generation.eos_token_id)
            .or(first_id(&t.eos_token_id))
            .or_else(|| tokenizer.token_to_id("</s>"))
            .ok_or_else(
                || bad("no eos_token_id in generation_config.json or config.json".into()),
            )?;
        let special = tokenizer
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| *id)
            .collect();
        Ok(Llava {
            vision,
            feature_layer,
            drop_class,
            projector,
            projector_act,
            llama,
            runtime,
            tokenizer,
            processor,
            image_token: config.image_token_index,
            image_tokens,
            eos,
            special,
            default_max_new_tokens: generation
                .max_new_tokens
                .unwrap_or(super::blip::DEFAULT_MAX_NEW_TOKENS),
            device: device.clone(),
            spec,
        })
    }

    /// The image processor (for the cache key).
    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    /// The full prompt of an instruction: llava-1.5's conversation format, or the prompt itself when it already
    /// holds `<image>`.
    pub fn prompt(instruction: Option<&str>) -> String {
        let instruction = instruction
            .filter(|p| !p.trim().is_empty())
            .unwrap_or(DEFAULT_INSTRUCTION);
        if instruction.contains("<image>") {
            instruction.to_string()
        } else {
            format!("USER: <image>\n{instruction} ASSISTANT:")
        }
    }

    /// The prompt's token ids with its one `<image>` token expanded to one per image feature (the processor's ids).
    pub fn input_ids(&self, instruction: Option<&str>) -> Result<Vec<u32>> {
        let prompt = Self::prompt(instruction);
        let encoded = self
            .tokenizer
            .encode(prompt.as_str(), true)
            .map_err(|source| Error::Tokenizer {
                what: format!("the prompt {prompt:?}"),
                source,
            })?;
        let ids = encoded.get_ids();
        let images = ids.iter().filter(|&&id| id == self.image_token).count();
        if images != 1 {
            return Err(Error::Usage(format!(
                "a LLaVA prompt holds one <image>, this one {images}: {prompt:?}"
            )));
        }
        Ok(ids
            .iter()
            .flat_map(|&id| {
                let n = if id == self.image_token {
                    self.image_tokens
                } else {
                    1
                };
                std::iter::repeat_n(id, n)
            })
            .collect())
    }

    /// The image's features in the language model's space: `patches × hidden`.
    fn image_features(&self, image: &DynamicImage) -> candle_core::Result<Tensor> {
        let (h, w) = self.processor.output_size();
        let pixels = Tensor::from_vec(
            self.processor.pixels(image),
            (1, 3, h as usize, w as usize),
            &self.device,
        )?;
        let hidden = self.vision.hidden_state(&pixels, self.feature_layer)?;
        let hidden = if self.drop_class {
            hidden.narrow(1, 1, hidden.dim(1)? - 1)?
        } else {
            hidden
        };
        let x = self.projector.0.forward(&hidden)?;
        let x = self.projector_act.forward(&x)?;
        self.projector.1.forward(&x)?.squeeze(0)
    }

    /// Greedy ids generated for `image` under `instruction` (ending in the end-of-sequence token unless
    /// `max_new_tokens` ran out first).
    pub fn generate(
        &self,
        image: &DynamicImage,
        instruction: Option<&str>,
        max_new_tokens: usize,
    ) -> Result<Vec<u32>> {
        let ids = self.input_ids(instruction)?;
        let run = || -> candle_core::Result<Vec<u32>> {
            let features = self.image_features(image)?;
            let tokens = Tensor::new(ids.as_slice(), &self.device)?;
            let text = self.llama.embed(&tokens)?;
            // The prompt's embeddings with the image's features in place of its <image> run.
            let start = ids
                .iter()
                .position(|&id| id == self.image_token)
                .unwrap_or(0);
            let end = start + self.image_tokens;
            let mut parts = Vec::new();
            if start > 0 {
                parts.push(text.narrow(0, 0, start)?);
            }
            parts.push(features.to_dtype(text.dtype())?);
            if end < ids.len() {
                parts.push(text.narrow(0, end, ids.len() - end)?);
            }
            let embeds = Tensor::cat(&parts, 0)?.unsqueeze(0)?;
            let mut cache = Cache::new(true, DType::F32, &self.runtime, &self.device)?;
            let mut logits = self.llama.forward_input_embed(&embeds, 0, &mut cache)?;
            let mut out = Vec::new();
            for position in (ids.len()..).take(max_new_tokens) {
                let next = logits.i(0)?.argmax(D::Minus1)?.to_scalar::<u32>()?;
                out.push(next);
                if next == self.eos || position + 1 >= self.runtime.max_position_embeddings {
                    break;
                }
                let embed = self
                    .llama
                    .embed(&Tensor::new(&[next], &self.device)?)?
                    .unsqueeze(0)?;
                logits = self
                    .llama
                    .forward_input_embed(&embed, position, &mut cache)?;
            }
            Ok(out)
        };
        if ids.len() >= self.runtime.max_position_embeddings {
            return Err(Error::Usage(format!(
                "the prompt is {} tokens with the image, the model's limit is {}",
                ids.len(),
                self.runtime.max_position_embeddings
            )));
        }
        run().map_err(|source| Error::Candle {
            model: self.spec.clone(),
            source,
        })
    }

    /// The caption text of generated ids: special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !self.special.contains(id) && *id != self.eos)
            .collect();
        self.tokenizer
            .decode(&kept, true)
            .map(|text| text.trim().to_string())
            .map_err(|e| Error::Usage(format!("cannot decode the caption ids: {e}")))
    }
}
