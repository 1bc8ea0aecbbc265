//! Candle models behind vlmdb's embedding spaces. Each family (one file each: [`bert`], [`clip`], [`siglip`]) has the
//! same constructor shape, [`Encoder::load`] from resolved files ([`hub`]) onto a device ([`device`]); [`Model`] adds
//! what every family shares: batching texts by length, decoding and preprocessing images ([`preprocess`]),
//! L2 normalisation, checks that outputs are finite, and the key under which results are cached.
//! [`shared`] loads each model once per process. Models know nothing of the store: the model cache and trained
//! heads are put around them from above ([`crate::inference`], [`crate::train::head_model`]).

pub mod bert;
pub mod bert_encoder;
pub mod blip;
pub mod captioner;
pub mod clip;
pub mod clip_layer;
pub mod clip_text;
pub mod clip_trainable;
pub mod clip_vision;
pub mod dense;
pub mod device;
pub mod diffusion;
pub mod euler_ancestral;
pub mod host_layers;
pub mod hub;
pub mod llava;
pub mod open_clip;
pub mod preprocess;
pub mod siglip;
pub mod tokens;
pub mod unet;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::DynamicImage;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
pub use device::DeviceChoice;
pub use hub::ModelFiles;
use preprocess::ImageProcessor;
use tokens::{TextTokenizer, TokenBatch, length_sorted_batches};

/// What every model family implements.
pub trait Encoder: Send + Sync {
    /// Load the model from its files onto `device`.
    fn load(files: &mut ModelFiles, device: &Device) -> Result<Self>
    where
        Self: Sized;
    /// Width of the output vectors.
    fn dim(&self) -> usize;
    /// The text tokenizer, when the model has a text tower.
    fn tokenizer(&self) -> Option<&TextTokenizer>;
    /// Raw (not normalised) text features of a padded batch: `batch × dim`.
    fn text_features(&self, batch: &TokenBatch) -> candle_core::Result<Tensor>;
    /// The image preprocessing, when the model has an image tower.
    fn image_processor(&self) -> Option<&ImageProcessor>;
    /// Raw (not normalised) image features of preprocessed pixels (`batch × 3 × H × W`): `batch × dim`.
    fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor>;
    /// The text preprocessing, for the cache key (truncation, padding, pooling).
    fn text_key(&self) -> String;
}

/// Which input a vector was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    Text,
    Image,
}

/// A loaded model.
pub struct Model {
    /// Where it came from: id, resolved revision, space name.
    pub files: ModelFiles,
    /// `bert`, `clip` or `siglip`.
    pub family: &'static str,
    pub device: Device,
    encoder: Box<dyn Encoder>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("id", &self.files.id)
            .field("revision", &self.files.revision)
            .field("family", &self.family)
            .finish()
    }
}

/// Default number of inputs per forward pass.
pub const DEFAULT_BATCH: usize = 64;

impl Model {
    /// Resolve `spec` (alias, `hf:org/repo[@rev]` or directory) and load it on `device`.
    pub fn load(spec: &str, device: DeviceChoice) -> Result<Model> {
        let mut files = ModelFiles::resolve(spec)?;
        let device = device.device()?;
        #[derive(serde::Deserialize)]
        struct Kind {
            model_type: Option<String>,
        }
        let kind: Kind = if files.optional("config.json")?.is_none()
            && files.optional(open_clip::CONFIG)?.is_some()
        {
            Kind {
                model_type: Some("clip".into()),
            }
        } else {
            read_json(&mut files, "config.json")?
        };
        let (family, encoder): (&'static str, Box<dyn Encoder>) = match kind.model_type.as_deref() {
            Some("bert") => (
                "bert",
                Box::new(bert::SentenceBert::load(&mut files, &device)?),
            ),
            Some("clip") => ("clip", Box::new(clip::Clip::load(&mut files, &device)?)),
            Some("siglip") => (
                "siglip",
                Box::new(siglip::Siglip::load(&mut files, &device)?),
            ),
            other => {
                return Err(Error::Model {
                    model: spec.into(),
                    message: format!(
                        "config.json model_type {other:?} is not supported (bert, clip or siglip)"
                    ),
                });
            }
        };
        Ok(Model {
            files,
            family,
            device,
            encoder,
        })
    }

    /// A model from an encoder assembled by the caller (a trained head over base models), under `family`.
    pub fn new(
        files: ModelFiles,
        family: &'static str,
        device: Device,
        encoder: Box<dyn Encoder>,
    ) -> Model {
        Model {
            files,
            family,
            device,
            encoder,
        }
    }

    /// The family's encoder, for models that wrap this one.
    pub fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    /// Width of the vectors.
    pub fn dim(&self) -> usize {
        self.encoder.dim()
    }

    /// The space name (`emb_<space>` holds its vectors).
    pub fn space(&self) -> String {
        self.files.space()
    }

    /// True when the model embeds this modality.
    pub fn supports(&self, modality: Modality) -> bool {
        match modality {
            Modality::Text => self.encoder.tokenizer().is_some(),
            Modality::Image => self.encoder.image_processor().is_some(),
        }
    }

    /// The key results are cached under: model id, revision and the preprocessing of `modality`.
    pub fn cache_key(&self, modality: Modality) -> String {
        let preprocessing = match modality {
            Modality::Text => self.encoder.text_key(),
            Modality::Image => self
                .encoder
                .image_processor()
                .map(ImageProcessor::key)
                .unwrap_or_default(),
        };
        format!(
            "{}@{}|{}",
            self.files.id, self.files.revision, preprocessing
        )
    }

    fn candle(&self, source: candle_core::Error) -> Error {
        Error::Candle {
            model: self.files.spec.clone(),
            source,
        }
    }

    fn unsupported(&self, what: &str) -> Error {
        Error::Model {
            model: self.files.spec.clone(),
            message: format!("this {} model has no {what} tower", self.family),
        }
    }

    /// Raw text features (not normalised), in input order; batches of `batch_size` texts of similar length.
    pub fn text_features(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let tokenizer = self
            .encoder
            .tokenizer()
            .ok_or_else(|| self.unsupported("text"))?;
        let mut encoded = tokenizer.encode(texts)?;
        let lengths: Vec<usize> = encoded.iter().map(Vec::len).collect();
        let mut out = vec![Vec::new(); texts.len()];
        for indices in length_sorted_batches(&lengths, batch_size) {
            let rows = indices
                .iter()
                .map(|&i| std::mem::take(&mut encoded[i]))
                .collect();
            let batch = tokenizer.batch(rows, &self.device)?;
            let features = self
                .encoder
                .text_features(&batch)
                .and_then(|t| t.to_dtype(DType::F32)?.to_vec2::<f32>())
                .map_err(|e| self.candle(e))?;
            for (i, vector) in indices.into_iter().zip(features) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    /// Preprocessed pixels of one image (channel-first, `3 × H × W`).
    pub fn pixels(&self, image: &DynamicImage) -> Result<Vec<f32>> {
        let processor = self
            .encoder
            .image_processor()
            .ok_or_else(|| self.unsupported("image"))?;
        Ok(processor.pixels(image))
    }

    /// Raw image features (not normalised) of encoded images, in input order. Images are decoded and preprocessed
    /// one batch at a time, in parallel, each decoded image dropped once it is pixels: memory is bounded by the
    /// batch of model inputs, not by the images' size times their number. An image that cannot be decoded is an
    /// error naming its position.
    pub fn image_features(&self, images: &[&[u8]], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        use rayon::prelude::*;
        let processor = self
            .encoder
            .image_processor()
            .ok_or_else(|| self.unsupported("image"))?;
        let (h, w) = processor.output_size();
        let batch = batch_size.max(1);
        let spec = &self.files.spec;
        let mut out = Vec::with_capacity(images.len());
        for (b, chunk) in images.chunks(batch).enumerate() {
            let pixels: Vec<Vec<f32>> = chunk
                .par_iter()
                .enumerate()
                .map(|(i, bytes)| {
                    crate::image::decode(bytes)
                        .map(|(image, _)| processor.pixels(&image))
                        .map_err(|reason| Error::ModelInput {
                            model: spec.clone(),
                            input: b * batch + i,
                            message: format!("the image cannot be read: {reason}"),
                        })
                })
                .collect::<Result<_>>()?;
            let tensor = Tensor::from_vec(
                pixels.concat(),
                (chunk.len(), 3, h as usize, w as usize),
                &self.device,
            )
            .map_err(|e| self.candle(e))?;
            let features = self
                .encoder
                .image_features(&tensor)
                .and_then(|t| t.to_dtype(DType::F32)?.to_vec2::<f32>())
                .map_err(|e| self.candle(e))?;
            out.extend(features);
        }
        Ok(out)
    }

    /// L2-normalised text embeddings. A non-finite output is an error naming the input's position.
    pub fn embed_texts(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let features = self.text_features(texts, batch_size)?;
        normalize_all(&self.files.spec, features)
    }

    /// L2-normalised image embeddings of encoded images (PNG, JPEG, …). An image that cannot be decoded, or a
    /// non-finite output, is an error naming the input's position.
    pub fn embed_images(&self, images: &[&[u8]], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        let features = self.image_features(images, batch_size)?;
        normalize_all(&self.files.spec, features)
    }
}

fn normalize_all(model: &str, vectors: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
    vectors
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::ModelInput {
                    model: model.into(),
                    input: i,
                    message: "the model produced a non-finite value".into(),
                });
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
            Ok(v)
        })
        .collect()
}

/// Models loaded by this process, by (spec, device).
type Loaded<T> = Mutex<HashMap<(String, DeviceChoice), Arc<T>>>;

static LOADED: LazyLock<Loaded<Model>> = LazyLock::new(|| Mutex::new(HashMap::new()));
static CAPTIONERS: LazyLock<Loaded<captioner::Captioner>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static GENERATORS: LazyLock<Loaded<diffusion::Generator>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The entry of `cache` for (spec, device), loaded with `load` the first time.
fn cached<T>(
    cache: &Loaded<T>,
    spec: &str,
    device: DeviceChoice,
    load: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    let mut loaded = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(model) = loaded.get(&(spec.to_string(), device)) {
        return Ok(model.clone());
    }
    let model = Arc::new(load()?);
    loaded.insert((spec.to_string(), device), model.clone());
    Ok(model)
}

/// The model for `spec` on `device`, loaded at most once per process.
pub fn shared(spec: &str, device: DeviceChoice) -> Result<Arc<Model>> {
    cached(&LOADED, spec, device, || Model::load(spec, device))
}

/// Run a (blocking) model load on a blocking thread.
async fn blocking<T: Send + 'static>(
    load: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(load)
        .await
        .map_err(Error::task("loading the model"))?
}

/// The captioner (BLIP or LLaVA) for `spec` on `device`, loaded at most once per process (on a blocking thread).
pub async fn load_captioner(spec: &str, device: DeviceChoice) -> Result<Arc<captioner::Captioner>> {
    let spec = spec.to_string();
    blocking(move || {
        cached(&CAPTIONERS, &spec, device, || {
            captioner::Captioner::load(ModelFiles::resolve(&spec)?, device.device()?)
        })
    })
    .await
}

/// The Stable Diffusion pipeline for `spec` on `device`, loaded at most once per process (on a blocking thread).
pub async fn load_generator(spec: &str, device: DeviceChoice) -> Result<Arc<diffusion::Generator>> {
    let spec = spec.to_string();
    blocking(move || {
        cached(&GENERATORS, &spec, device, || {
            diffusion::Generator::load(ModelFiles::resolve(&spec)?, device.device()?)
        })
    })
    .await
}

/// [`shared`] from async code: the load (file reads, weight conversion) runs on a blocking thread.
pub async fn load_shared(spec: &str, device: DeviceChoice) -> Result<Arc<Model>> {
    let spec = spec.to_string();
    blocking(move || shared(&spec, device)).await
}

/// The model this process already holds for (spec, device), if any.
pub fn loaded(spec: &str, device: DeviceChoice) -> Option<Arc<Model>> {
    LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&(spec.to_string(), device))
        .cloned()
}

/// Keep `model` as this process's model for (spec, device), for a model assembled outside this module (a trained
/// head over base models); the one kept first wins.
pub fn keep(spec: &str, device: DeviceChoice, model: Model) -> Arc<Model> {
    LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry((spec.to_string(), device))
        .or_insert_with(|| Arc::new(model))
        .clone()
}

/// Parse a JSON file of the model.
fn read_json<T: DeserializeOwned>(files: &mut ModelFiles, name: &str) -> Result<T> {
    let path = files.require(name)?;
    read_json_path(&files.spec, &path)
}

/// Parse a JSON file of the model. `null` values are dropped first: Hugging Face configs write `null` for "the
/// default", which serde would otherwise reject for plain fields.
fn read_json_path<T: DeserializeOwned>(model: &str, path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: serde_json::Error| Error::Model {
        model: model.into(),
        message: format!("{}: {e}", path.display()),
    };
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
    drop_nulls(&mut value);
    serde_json::from_value(value).map_err(bad)
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The model's image preprocessing: `preprocessor_config.json` (or, as transformers 5 writes it, the
/// `image_processor` object of `processor_config.json`) over the family's defaults.
fn image_processor(files: &mut ModelFiles, defaults: ImageProcessor) -> Result<ImageProcessor> {
    let (path, text) = if let Some(path) = files.optional("preprocessor_config.json")? {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        (path, text)
    } else if let Some(path) = files.optional("processor_config.json")? {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Model {
            model: files.spec.clone(),
            message: format!("{}: {e}", path.display()),
        })?;
        match value.get("image_processor") {
            Some(inner) => (path, inner.to_string()),
            None => return Ok(defaults),
        }
    } else {
        return Ok(defaults);
    };
    ImageProcessor::from_config(&text, defaults).map_err(|e| Error::Context {
        context: format!("model {}: {}", files.spec, path.display()),
        source: Box::new(e),
    })
}

/// The weights as f32 on `device`: `model.safetensors`, else the shards `model.safetensors.index.json` names, else
/// `pytorch_model.bin`.
fn weights(files: &mut ModelFiles, device: &Device) -> Result<VarBuilder<'static>> {
    let spec = files.spec.clone();
    let candle = |source| Error::Candle {
        model: spec.clone(),
        source,
    };
    if let Some(path) = files.optional("model.safetensors")? {
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        return VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(candle);
    }
    if let Some(index) = files.optional("model.safetensors.index.json")? {
        // Sharded checkpoints (the large LLaVA and CLIP repos): every shard the index names.
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let index: Index = read_json_path(&files.spec, &index)?;
        let mut shards: Vec<&String> = index.weight_map.values().collect();
        shards.sort();
        shards.dedup();
        let mut tensors = HashMap::new();
        for shard in shards {
            let path = files.require(shard)?;
            tensors.extend(candle_core::safetensors::load(&path, device).map_err(candle)?);
        }
        return Ok(VarBuilder::from_tensors(tensors, DType::F32, device));
    }
    if let Some(path) = files.optional("pytorch_model.bin")? {
        return VarBuilder::from_pth(&path, DType::F32, device).map_err(candle);
    }
    Err(Error::ModelFile {
        repo: files.id.clone(),
        revision: files.revision.clone(),
        file: "model.safetensors".into(),
        message: "the model has neither model.safetensors nor pytorch_model.bin".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_length_and_non_finite_output_names_the_input() {
        let out = normalize_all("m", vec![vec![3.0, 4.0], vec![0.0, 0.0]]).expect("finite");
        assert_eq!(out[0], vec![0.6, 0.8]);
        assert_eq!(out[1], vec![0.0, 0.0]);
        let err = normalize_all("m", vec![vec![1.0], vec![f32::NAN]]).expect_err("NaN");
        assert!(matches!(err, Error::ModelInput { input: 1, .. }), "{err}");
    }
}
