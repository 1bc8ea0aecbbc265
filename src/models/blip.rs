//! BLIP image captioning (`BlipForConditionalGeneration`, e.g. Salesforce/blip-image-captioning-base/-large):
//! candle's vision transformer and text decoder, built from the model's own `config.json` (candle's config has no
//! defaults and a large preset only), with generation as transformers' `generate` does it: the decoder starts from
//! the bos token (`[DEC]`) followed by the prompt's tokens without `[CLS]`/`[SEP]`, and greedily appends the
//! highest-scoring token until `[SEP]` or `max_new_tokens`. The caption is the decoded ids with special tokens
//! skipped, so a conditional prompt ("an engraving depicting") starts the caption, as in transformers.
//!
//! Images: the processor's exact resize to `size` (384 for the released models; bicubic), OpenAI mean/std.
//! transformers ties the LM head to the word embeddings and leaves `cls.predictions.decoder.weight` out of the
//! checkpoint; the loader puts it back.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Activation, VarBuilder};
use candle_transformers::models::{blip, blip_text};
use image::DynamicImage;
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::hub::ModelFiles;
use super::preprocess::{CLIP_MEAN, CLIP_STD, ImageProcessor};
use super::read_json;
use crate::error::{Error, Result};

/// Tokens generated after the prompt when the model's generation config sets no limit (transformers' default).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 20;

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    text_config: TextConfig,
    #[serde(default)]
    vision_config: VisionConfig,
    #[serde(default)]
    model_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(default)]
struct TextConfig {
    vocab_size: usize,
    hidden_size: usize,
    encoder_hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: Activation,
    layer_norm_eps: f64,
    bos_token_id: u32,
    sep_token_id: u32,
    pad_token_id: u32,
}

/// transformers' `BlipTextConfig` defaults.
impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            bos_token_id: 30522,
            sep_token_id: 102,
            pad_token_id: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct VisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: Activation,
    layer_norm_eps: f64,
}

/// transformers' `BlipVisionConfig` defaults.
impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
        }
    }
}

#[derive(Deserialize, Default)]
struct GenerationConfig {
    max_new_tokens: Option<usize>,
}

/// A loaded BLIP captioner.
pub struct Blip {
    pub files: ModelFiles,
    pub device: Device,
    /// The decoder keeps a key/value cache, so one caption is generated at a time.
    model: Mutex<blip::BlipForConditionalGeneration>,
    tokenizer: Tokenizer,
    pub(crate) processor: ImageProcessor,
    bos: u32,
    sep: u32,
    special: Vec<u32>,
    pub max_new_tokens: usize,
}

impl std::fmt::Debug for Blip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blip").field("id", &self.files.id).finish()
    }
}

impl Blip {
    /// Load a BLIP captioning model from its files onto `device`.
    pub fn load(mut files: ModelFiles, device: Device) -> Result<Blip> {
        let config: Config = read_json(&mut files, "config.json")?;
        if config.model_type.as_deref() != Some("blip") {
            return Err(Error::Model {
                model: files.spec.clone(),
                message: format!(
                    "config.json model_type {:?} is not a captioner (blip)",
                    config.model_type
                ),
            });
        }
        let t = &config.text_config;
        let v = &config.vision_config;
        let candle_config = blip::Config {
            text_config: blip_text::Config {
                vocab_size: t.vocab_size,
                hidden_size: t.hidden_size,
                encoder_hidden_size: t.encoder_hidden_size,
                intermediate_size: t.intermediate_size,
                projection_dim: t.hidden_size,
                num_hidden_layers: t.num_hidden_layers,
                num_attention_heads: t.num_attention_heads,
                max_position_embeddings: t.max_position_embeddings,
                hidden_act: t.hidden_act,
                layer_norm_eps: t.layer_norm_eps,
                is_decoder: true,
            },
            vision_config: blip::VisionConfig {
                hidden_size: v.hidden_size,
                intermediate_size: v.intermediate_size,
                projection_dim: v.hidden_size,
                num_hidden_layers: v.num_hidden_layers,
                num_attention_heads: v.num_attention_heads,
                image_size: v.image_size,
                patch_size: v.patch_size,
                hidden_act: v.hidden_act,
                layer_norm_eps: v.layer_norm_eps,
            },
            projection_dim: t.hidden_size,
            image_text_hidden_size: t.hidden_size,
        };
        let vb = tied_weights(&mut files, &device)?;
        let model =
            blip::BlipForConditionalGeneration::new(&candle_config, vb).map_err(|source| {
                Error::Candle {
                    model: files.spec.clone(),
                    source,
                }
            })?;
        let tokenizer_path = files.require("tokenizer.json")?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::Input {
            path: tokenizer_path.clone(),
            message: format!("cannot load the tokenizer: {e}"),
        })?;
        let size = v.image_size as u32;
        // SigLIP's squash to size × size, with OpenAI's mean/std.
        let defaults = ImageProcessor {
            mean: CLIP_MEAN,
            std: CLIP_STD,
            ..ImageProcessor::siglip(size)
        };
        let processor = super::image_processor(&mut files, defaults)?;
        if processor.output_size() != (size, size) {
            return Err(Error::Model {
                model: files.spec.clone(),
                message: format!(
                    "the image processor makes {:?} images, the vision model takes {size}×{size}",
                    processor.output_size()
                ),
            });
        }
        let generation: GenerationConfig = match files.optional("generation_config.json")? {
            Some(path) => super::read_json_path(&files.spec, &path)?,
            None => GenerationConfig::default(),
        };
        let special = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]",
        ]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .chain([t.bos_token_id, t.sep_token_id, t.pad_token_id])
        .collect();
        Ok(Blip {
            files,
            device,
            model: Mutex::new(model),
            tokenizer,
            processor,
            bos: t.bos_token_id,
            sep: t.sep_token_id,
            special,
            max_new_tokens: generation.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
        })
    }

    fn candle(&self, source: candle_core::Error) -> Error {
        Error::Candle {
            model: self.files.spec.clone(),
            source,
        }
    }

    /// The decoder's starting ids: bos, then the prompt's tokens without `[CLS]` and the final `[SEP]`.
    pub fn start_ids(&self, prompt: Option<&str>) -> Result<Vec<u32>> {
        let mut ids = vec![self.bos];
        if let Some(prompt) = prompt.filter(|p| !p.is_empty()) {
            let encoded =
                self.tokenizer
                    .encode(prompt, true)
                    .map_err(|source| Error::Tokenizer {
                        what: format!("the prompt {prompt:?}"),
                        source,
                    })?;
            let tokens = encoded.get_ids();
            let inner = tokens.get(1..tokens.len().saturating_sub(1)).unwrap_or(&[]);
            ids.extend_from_slice(inner);
        }
        Ok(ids)
    }

    /// Preprocessed pixels of one image as a `1 × 3 × H × W` tensor.
    pub fn pixels(&self, image: &DynamicImage) -> Result<Tensor> {
        let (h, w) = self.processor.output_size();
        Tensor::from_vec(
            self.processor.pixels(image),
            (1, 3, h as usize, w as usize),
            &self.device,
        )
        .map_err(|e| self.candle(e))
    }

    /// Greedy caption ids of one image: the starting ids, then the generated ones (ending in `[SEP]` unless
    /// `max_new_tokens` ran out first).
    pub fn caption_ids(
        &self,
        image: &DynamicImage,
        prompt: Option<&str>,
        max_new_tokens: usize,
    ) -> Result<Vec<u32>> {
        let pixels = self.pixels(image)?;
        let mut ids = self.start_ids(prompt)?;
        let mut model = self
            .model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let run = |model: &mut blip::BlipForConditionalGeneration,
                   ids: &mut Vec<u32>|
         -> candle_core::Result<()> {
            model.reset_kv_cache();
            let embeds = model.vision_model().forward(&pixels)?;
            let mut input = ids.clone();
            for _ in 0..max_new_tokens {
                let tokens = Tensor::new(input.as_slice(), &self.device)?.unsqueeze(0)?;
                let logits = model.text_decoder().forward(&tokens, &embeds)?;
                let last = logits.i((0, input.len() - 1))?.to_dtype(DType::F32)?;
                let next = first_argmax(&last.to_vec1::<f32>()?);
                ids.push(next);
                if next == self.sep {
                    break;
                }
                input = vec![next];
            }
            model.reset_kv_cache();
            Ok(())
        };
        run(&mut model, &mut ids).map_err(|e| self.candle(e))?;
        Ok(ids)
    }

    /// The caption text of ids: special tokens skipped, word pieces joined.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let kept: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| !self.special.contains(id))
            .collect();
        self.tokenizer
            .decode(&kept, true)
            .map(|text| text.trim().to_string())
            .map_err(|e| Error::Model {
                model: self.files.spec.clone(),
                message: format!("cannot decode the caption ids: {e}"),
            })
    }
}

/// The first index of the largest value (torch's argmax on CPU).
fn first_argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// The weights, with the LM head's decoder tied back to the word embeddings when the checkpoint leaves it out
/// (`model.safetensors`; an older `pytorch_model.bin` carries the head itself).
fn tied_weights(files: &mut ModelFiles, device: &Device) -> Result<VarBuilder<'static>> {
    let Some(path) = files.optional("model.safetensors")? else {
        return super::weights(files, device);
    };
    let spec = files.spec.clone();
    let candle = |source| Error::Candle {
        model: spec.clone(),
        source,
    };
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(&path, device).map_err(candle)?;
    for tensor in tensors.values_mut() {
        *tensor = tensor.to_dtype(DType::F32).map_err(candle)?;
    }
    let head = "text_decoder.cls.predictions.decoder.weight";
    if !tensors.contains_key(head) {
        let embeddings = tensors
            .get("text_decoder.bert.embeddings.word_embeddings.weight")
            .cloned()
            .ok_or_else(|| Error::ModelFile {
                repo: files.id.clone(),
                revision: files.revision.clone(),
                file: "model.safetensors".into(),
                message: "has neither the LM head nor the word embeddings it is tied to".into(),
            })?;
        tensors.insert(head.to_string(), embeddings);
    }
    Ok(VarBuilder::from_tensors(tensors, DType::F32, device))
}

#[cfg(test)]
mod tests {
    use super::first_argmax;

    #[test]
    fn argmax_takes_the_first_of_equal_maxima() {
        assert_eq!(first_argmax(&[0.5, 2.0, 2.0, -1.0]), 1);
        assert_eq!(first_argmax(&[3.0]), 0);
    }
}
