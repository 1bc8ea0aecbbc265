//! SigLIP (base and kin): candle's SigLIP with the model's own preprocessing. Texts are padded to the model's
//! position count (64) with the pad token and pooled at the last position, exactly as the reference processor and
//! model do (SigLIP was trained that way, so a shorter pad changes the vector); images are squashed to
//! size × size with bicubic resampling and normalised with mean = std = 0.5.

use candle_core::{Device, Tensor};
use candle_transformers::models::siglip::{Config, Model};

use super::hub::ModelFiles;
use super::preprocess::ImageProcessor;
use super::tokens::{Padding, TextTokenizer, TokenBatch};
use super::{Encoder, image_processor, read_json, weights};
use crate::error::{Error, Result};

/// A SigLIP image–text model.
pub struct Siglip {
    model: Model,
    tokenizer: TextTokenizer,
    images: ImageProcessor,
    dim: usize,
}

impl Encoder for Siglip {
    fn load(files: &mut ModelFiles, device: &Device) -> Result<Self> {
        let config: Config = read_json(files, "config.json")?;
        let text = &config.text_config;
        let tokenizer = TextTokenizer::load(
            &files.require("tokenizer.json")?,
            text.max_position_embeddings,
            text.pad_token_id,
            Padding::Fixed(text.max_position_embeddings),
        )?;
        let size = config.vision_config.image_size as u32;
        let images = image_processor(files, ImageProcessor::siglip(size))?;
        let vb = weights(files, device)?;
        let model = Model::new(&config, vb).map_err(|source| Error::Candle {
            model: files.spec.clone(),
            source,
        })?;
        Ok(Siglip {
            model,
            tokenizer,
            images,
            dim: config.text_config.hidden_size,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn tokenizer(&self) -> Option<&TextTokenizer> {
        Some(&self.tokenizer)
    }

    fn text_features(&self, batch: &TokenBatch) -> candle_core::Result<Tensor> {
        self.model.get_text_features(&batch.ids)
    }

    fn image_processor(&self) -> Option<&ImageProcessor> {
        Some(&self.images)
    }

    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.model.get_image_features(pixels)
    }

    fn text_key(&self) -> String {
        format!("siglip:pad={}", self.tokenizer.max_len)
    }
}
