//! The captioners behind `caption(...)`, `vlmdb caption` and the loop: BLIP ([`super::blip`]) and LLaVA
//! ([`super::llava`]), chosen by `config.json`'s `model_type`, behind one interface — greedy caption ids of an
//! image under an optional prompt with a limit on new tokens, their text, and the key captions are cached under.
//! For BLIP the prompt is a conditional prefix the caption starts with; for LLaVA it is the instruction
//! (default: [`super::llava::DEFAULT_INSTRUCTION`]) and the caption is the answer.

use candle_core::Device;
use image::DynamicImage;

use super::blip::Blip;
use super::hub::ModelFiles;
use super::llava::Llava;
use super::read_json;
use crate::error::{Error, Result};

enum Family {
    Blip(Blip),
    Llava(Llava),
}

/// A loaded captioner.
pub struct Captioner {
    pub files: ModelFiles,
    pub device: Device,
    model: Family,
}

impl std::fmt::Debug for Captioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Captioner")
            .field("id", &self.files.id)
            .field("family", &self.family())
            .finish()
    }
}

impl Captioner {
    /// Load the captioner in `files` onto `device`: BLIP (`model_type` "blip") or LLaVA ("llava").
    pub fn load(mut files: ModelFiles, device: Device) -> Result<Captioner> {
        #[derive(serde::Deserialize)]
        struct Kind {
            model_type: Option<String>,
        }
        let kind: Kind = read_json(&mut files, "config.json")?;
        let model = match kind.model_type.as_deref() {
            Some("blip") => Family::Blip(Blip::load(files.clone(), device.clone())?),
            Some("llava") => Family::Llava(Llava::load(&mut files, &device)?),
            other => {
                return Err(Error::Model {
                    model: files.spec.clone(),
                    message: format!(
                        "config.json model_type {other:?} is not a captioner (blip or llava)"
                    ),
                });
            }
        };
        Ok(Captioner {
            files,
            device,
            model,
        })
    }

    /// `blip` or `llava`.
    pub fn family(&self) -> &'static str {
        match self.model {
            Family::Blip(_) => "blip",
            Family::Llava(_) => "llava",
        }
    }

    /// New tokens when the caller sets no limit: the model's `generation_config.json`, else 20.
    pub fn default_max_new_tokens(&self) -> usize {
        match &self.model {
            Family::Blip(m) => m.max_new_tokens,
            Family::Llava(m) => m.default_max_new_tokens,
        }
    }

    fn limit(&self, max_new_tokens: Option<usize>) -> usize {
        max_new_tokens.unwrap_or_else(|| self.default_max_new_tokens())
    }

    /// Greedy ids of one image's caption: BLIP's starting ids (bos and the prompt) then the generated ones;
    /// LLaVA's generated ones.
    pub fn caption_ids(
        &self,
        image: &DynamicImage,
        prompt: Option<&str>,
        max_new_tokens: Option<usize>,
    ) -> Result<Vec<u32>> {
        let limit = self.limit(max_new_tokens);
        match &self.model {
            Family::Blip(m) => m.caption_ids(image, prompt, limit),
            Family::Llava(m) => m.generate(image, prompt, limit),
        }
    }

    /// The caption text of ids, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.model {
            Family::Blip(m) => m.decode(ids),
            Family::Llava(m) => m.decode(ids),
        }
    }

    /// The caption of one image.
    pub fn caption(
        &self,
        image: &DynamicImage,
        prompt: Option<&str>,
        max_new_tokens: Option<usize>,
    ) -> Result<String> {
        let ids = self.caption_ids(image, prompt, max_new_tokens)?;
        self.decode(&ids)
    }

    /// The key captions are cached under: model id, revision, preprocessing, generation length and prompt.
    pub fn cache_key(&self, prompt: Option<&str>, max_new_tokens: Option<usize>) -> String {
        let processor = match &self.model {
            Family::Blip(m) => m.processor.key(),
            Family::Llava(m) => m.processor().key(),
        };
        format!(
            "{}@{}|caption|{}|max_new_tokens={}|prompt={:?}",
            self.files.id,
            self.files.revision,
            processor,
            self.limit(max_new_tokens),
            prompt.unwrap_or("")
        )
    }
}
