//! OpenCLIP's own checkpoint layout (`open_clip_config.json` + `open_clip_model.safetensors` or
//! `open_clip_pytorch_model.bin`, as `open_clip.push_to_hf_hub` writes it), read into the shape of transformers'
//! `CLIPModel`: the config is translated into a [`Config`], the weights renamed to transformers' names (the fused
//! attention `in_proj` split into `q/k/v_proj`, the `text_projection` and `visual.proj` matrices transposed into
//! linear weights), and the preprocessing built from `preprocess_cfg` (mean/std, `resize_mode`, interpolation,
//! torchvision's centre-crop rounding). [`to_native`] is the inverse, so a fine-tuned OpenCLIP model is exported in
//! the layout it came in.
//!
//! What is read: OpenCLIP's ViT CLIPs (`CLIP` and `CustomTextCLIP` with the built-in text transformer), exact or
//! quick GELU, any width, depth and layer-norm epsilon, text pooling `argmax` or `eos`. What is refused, by name:
//! timm or Hugging Face towers, ModifiedResNet, layer scale, attentional pooling, the custom attention blocks, and
//! every other option transformers' `CLIPModel` cannot express.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::clip::{Config, Pool, TextConfig, VisionConfig};
use super::hub::ModelFiles;
use super::preprocess::{CLIP_MEAN, CLIP_STD, CropRound, Filter, ImageProcessor, Resize};
use super::read_json;
use super::tokens::{Padding, TextTokenizer};
use crate::error::{Error, Result};

/// The config file that marks an OpenCLIP checkpoint.
pub const CONFIG: &str = "open_clip_config.json";
/// The weights file an OpenCLIP checkpoint (and an export of one) holds.
pub const SAFETENSORS: &str = "open_clip_model.safetensors";
const PICKLE: &str = "open_clip_pytorch_model.bin";
/// The tokenizer files an export carries along.
const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
];

#[derive(Deserialize)]
struct File {
    model_cfg: ModelCfg,
    #[serde(default)]
    preprocess_cfg: PreprocessCfg,
}

#[derive(Deserialize)]
struct ModelCfg {
    embed_dim: usize,
    #[serde(default)]
    quick_gelu: bool,
    #[serde(default)]
    custom_text: bool,
    vision_cfg: VisionCfg,
    text_cfg: TextCfg,
}

fn twelve() -> serde_json::Value {
    serde_json::json!(12)
}
fn size_224() -> serde_json::Value {
    serde_json::json!(224)
}
fn width_768() -> usize {
    768
}
fn width_512() -> usize {
    512
}
fn sixty_four() -> usize {
    64
}
fn four() -> f64 {
    4.0
}
fn sixteen() -> usize {
    16
}
fn eight() -> usize {
    8
}
fn twelve_layers() -> usize {
    12
}
fn seventy_seven() -> usize {
    77
}
fn vocab() -> usize {
    49408
}
fn two() -> u32 {
    2
}
fn learnable() -> String {
    "learnable".into()
}
fn tok() -> String {
    "tok".into()
}
fn argmax() -> String {
    "argmax".into()
}
fn linear() -> String {
    "linear".into()
}

/// `norm_kwargs`: only the epsilon is read.
#[derive(Deserialize, Default)]
struct NormKwargs {
    eps: Option<f64>,
}

/// The options of OpenCLIP's attention blocks that transformers' CLIP cannot express (shared by both towers).
#[derive(Deserialize, Default)]
struct BlockOptions {
    #[serde(default)]
    ls_init_value: Option<f64>,
    #[serde(default)]
    block_type: Option<String>,
    #[serde(default)]
    qk_norm: bool,
    #[serde(default)]
    scaled_cosine_attn: bool,
    #[serde(default)]
    scale_heads: bool,
    #[serde(default)]
    scale_attn_inner: bool,
    #[serde(default)]
    scale_attn: bool,
    #[serde(default)]
    scale_fc: bool,
    #[serde(default)]
    act_kwargs: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    norm_kwargs: Option<NormKwargs>,
    #[serde(default)]
    final_ln_after_pool: bool,
}

#[derive(Deserialize)]
struct VisionCfg {
    #[serde(default = "twelve")]
    layers: serde_json::Value,
    #[serde(default = "width_768")]
    width: usize,
    #[serde(default = "sixty_four")]
    head_width: usize,
    #[serde(default = "four")]
    mlp_ratio: f64,
    #[serde(default = "sixteen")]
    patch_size: usize,
    #[serde(default = "size_224")]
    image_size: serde_json::Value,
    #[serde(default)]
    attentional_pool: bool,
    #[serde(default)]
    no_ln_pre: bool,
    #[serde(default = "learnable")]
    pos_embed_type: String,
    #[serde(default = "tok")]
    pool_type: String,
    #[serde(default)]
    timm_model_name: Option<String>,
    #[serde(flatten)]
    block: BlockOptions,
}

#[derive(Deserialize)]
struct TextCfg {
    #[serde(default = "seventy_seven")]
    context_length: usize,
    #[serde(default = "vocab")]
    vocab_size: usize,
    #[serde(default)]
    hf_tokenizer_name: Option<String>,
    #[serde(default)]
    tokenizer_mode: Option<String>,
    #[serde(default = "width_512")]
    width: usize,
    #[serde(default = "eight")]
    heads: usize,
    #[serde(default = "twelve_layers")]
    layers: usize,
    #[serde(default = "four")]
    mlp_ratio: f64,
    #[serde(default)]
    embed_cls: bool,
    #[serde(default)]
    pad_id: u32,
    #[serde(default = "two")]
    eos_id: u32,
    #[serde(default)]
    no_causal_mask: bool,
    #[serde(default = "argmax")]
    pool_type: String,
    #[serde(default)]
    proj_bias: bool,
    #[serde(default = "linear")]
    proj_type: String,
    #[serde(default)]
    hf_model_name: Option<String>,
    #[serde(flatten)]
    block: BlockOptions,
}

#[derive(Deserialize, Default)]
struct PreprocessCfg {
    mean: Option<Channels>,
    std: Option<Channels>,
    interpolation: Option<String>,
    resize_mode: Option<String>,
    fill_color: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Channels {
    One(f32),
    Three([f32; 3]),
}

impl Channels {
    fn three(&self) -> [f32; 3] {
        match self {
            Channels::One(v) => [*v; 3],
            Channels::Three(v) => *v,
        }
    }
}

/// An OpenCLIP checkpoint read into transformers' shape.
pub(crate) struct Native {
    pub(crate) config: Config,
    pub(crate) tokenizer: TextTokenizer,
    pub(crate) pool: Pool,
    pub(crate) images: ImageProcessor,
    /// The weights under transformers' names, in f32.
    pub(crate) tensors: HashMap<String, Tensor>,
}

/// Refuse every option of `block` (in `tower`) that transformers' CLIP layer cannot express.
fn check_block(tower: &str, block: &BlockOptions) -> std::result::Result<f64, String> {
    let unsupported = [
        ("ls_init_value (layer scale)", block.ls_init_value.is_some()),
        (
            "block_type",
            block.block_type.as_deref().is_some_and(|t| t != "default"),
        ),
        ("qk_norm", block.qk_norm),
        ("scaled_cosine_attn", block.scaled_cosine_attn),
        ("scale_heads", block.scale_heads),
        ("scale_attn_inner", block.scale_attn_inner),
        ("scale_attn", block.scale_attn),
        ("scale_fc", block.scale_fc),
        ("final_ln_after_pool", block.final_ln_after_pool),
        (
            "act_kwargs",
            block.act_kwargs.as_ref().is_some_and(|m| !m.is_empty()),
        ),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(format!("{tower}.{name} is not supported"));
    }
    Ok(block
        .norm_kwargs
        .as_ref()
        .and_then(|n| n.eps)
        .unwrap_or(1e-5))
}

fn whole(
    tower: &str,
    field: &str,
    value: &serde_json::Value,
) -> std::result::Result<usize, String> {
    let side = |v: &serde_json::Value| v.as_u64().map(|n| n as usize);
    match value {
        serde_json::Value::Array(items) if items.len() == 2 && items[0] == items[1] => {
            side(&items[0])
        }
        other => side(other),
    }
    .ok_or_else(|| {
        format!("{tower}.{field} = {value} is not supported (one whole number, or a square [n, n])")
    })
}

/// Translate OpenCLIP's model config into transformers' `CLIPConfig`, refusing what it cannot express.
fn translate(model: &ModelCfg) -> std::result::Result<(Config, Pool), String> {
    let (v, t) = (&model.vision_cfg, &model.text_cfg);
    if let Some(name) = &v.timm_model_name {
        return Err(format!(
            "vision_cfg.timm_model_name = {name:?}: timm image towers are not supported (OpenCLIP ViTs only)"
        ));
    }
    if let Some(name) = &t.hf_model_name {
        return Err(format!(
            "text_cfg.hf_model_name = {name:?}: Hugging Face text towers are not supported (OpenCLIP's text \
             transformer only)"
        ));
    }
    let vision_layers = whole("vision_cfg", "layers", &v.layers).map_err(|e| {
        format!("{e}; a list of layer counts is a ModifiedResNet, which is not supported")
    })?;
    let image_size = whole("vision_cfg", "image_size", &v.image_size)?;
    let vision_eps = check_block("vision_cfg", &v.block)?;
    let text_eps = check_block("text_cfg", &t.block)?;
    let refused = [
        ("vision_cfg.attentional_pool", v.attentional_pool),
        ("vision_cfg.no_ln_pre", v.no_ln_pre),
        (
            "vision_cfg.pos_embed_type (other than learnable)",
            v.pos_embed_type != "learnable",
        ),
        (
            "vision_cfg.pool_type (other than tok)",
            v.pool_type != "tok",
        ),
        ("text_cfg.embed_cls", t.embed_cls),
        ("text_cfg.no_causal_mask", t.no_causal_mask),
        ("text_cfg.proj_bias", t.proj_bias),
        (
            "text_cfg.proj_type (other than linear)",
            t.proj_type != "linear",
        ),
        (
            "text_cfg.tokenizer_mode",
            t.tokenizer_mode.as_deref().is_some_and(|m| m != "default"),
        ),
    ];
    if let Some((name, _)) = refused.iter().find(|(_, set)| *set) {
        return Err(format!("{name} is not supported"));
    }
    let pool = match t.pool_type.as_str() {
        "argmax" => Pool::LargestId,
        "eos" => Pool::FirstOf(t.eos_id),
        other => {
            return Err(format!(
                "text_cfg.pool_type = {other:?} is not supported (argmax or eos)"
            ));
        }
    };
    if v.head_width == 0 || !v.width.is_multiple_of(v.head_width) {
        return Err(format!(
            "vision_cfg.width {} is not a multiple of head_width {}",
            v.width, v.head_width
        ));
    }
    let act = if model.quick_gelu {
        "quick_gelu"
    } else {
        "gelu"
    };
    let config = Config {
        text_config: TextConfig {
            vocab_size: t.vocab_size,
            hidden_size: t.width,
            intermediate_size: (t.width as f64 * t.mlp_ratio) as usize,
            num_hidden_layers: t.layers,
            num_attention_heads: t.heads,
            max_position_embeddings: t.context_length,
            hidden_act: act.into(),
            layer_norm_eps: text_eps,
            eos_token_id: Some(match pool {
                Pool::FirstOf(id) => id,
                Pool::LargestId => 2,
            }),
            pad_token_id: Some(t.pad_id),
        },
        vision_config: VisionConfig {
            hidden_size: v.width,
            intermediate_size: (v.width as f64 * v.mlp_ratio) as usize,
            num_hidden_layers: vision_layers,
            num_attention_heads: v.width / v.head_width,
            num_channels: 3,
            image_size,
            patch_size: v.patch_size,
            hidden_act: act.into(),
            layer_norm_eps: vision_eps,
        },
        projection_dim: model.embed_dim,
    };
    Ok((config, pool))
}

/// OpenCLIP's inference preprocessing (`image_transform(..., is_train=False)`) as an [`ImageProcessor`].
fn processor(size: u32, cfg: &PreprocessCfg) -> std::result::Result<ImageProcessor, String> {
    let filter = match cfg.interpolation.as_deref() {
        None | Some("bicubic") | Some("random") => Filter::Bicubic,
        Some("bilinear") => Filter::Bilinear,
        Some(other) => {
            return Err(format!(
                "preprocess_cfg.interpolation = {other:?} is not supported (bicubic or bilinear)"
            ));
        }
    };
    let (resize, crop) = match cfg.resize_mode.as_deref() {
        None | Some("shortest") => (Resize::ShortestEdge(size), Some((size, size))),
        Some("longest") => (Resize::LongestEdge(size), Some((size, size))),
        Some("squash") => (
            Resize::Exact {
                height: size,
                width: size,
            },
            None,
        ),
        Some(other) => {
            return Err(format!(
                "preprocess_cfg.resize_mode = {other:?} is not supported (shortest, longest or squash)"
            ));
        }
    };
    if cfg.fill_color.is_some_and(|f| f != 0.0) {
        return Err("preprocess_cfg.fill_color other than 0 is not supported".into());
    }
    Ok(ImageProcessor {
        resize,
        filter,
        crop,
        crop_round: CropRound::HalfEven,
        rescale: 1.0 / 255.0,
        mean: cfg.mean.as_ref().map_or(CLIP_MEAN, Channels::three),
        std: cfg.std.as_ref().map_or(CLIP_STD, Channels::three),
    })
}

/// The tokenizer: the checkpoint's own `tokenizer.json` (what `push_to_hf_hub` saves), else the repo its config
/// names in `hf_tokenizer_name`, else OpenAI's CLIP BPE (OpenCLIP's default `SimpleTokenizer`), read from the
/// pinned `clip-vit-b32` repo.
fn tokenizer(files: &mut ModelFiles, text: &TextCfg) -> Result<TextTokenizer> {
    let path = match files.optional("tokenizer.json")? {
        Some(path) => path,
        None => {
            let source = match &text.hf_tokenizer_name {
                Some(name) => format!("hf:{name}"),
                None => "clip-vit-b32".into(),
            };
            ModelFiles::resolve(&source)
                .and_then(|mut other| other.require("tokenizer.json"))
                .map_err(|e| Error::Context {
                    context: format!(
                        "model {}: {CONFIG} has no tokenizer.json beside it; its tokenizer comes from {source}",
                        files.spec
                    ),
                    source: Box::new(e),
                })?
        }
    };
    TextTokenizer::load(&path, text.context_length, text.pad_id, Padding::Longest)
}

/// Read the OpenCLIP checkpoint in `files`.
pub(crate) fn read(files: &mut ModelFiles, device: &Device) -> Result<Native> {
    let file: File = read_json(files, CONFIG)?;
    let bad = |message: String| Error::Model {
        model: files.spec.clone(),
        message: format!("{CONFIG}: {message}"),
    };
    let (config, pool) = translate(&file.model_cfg).map_err(bad)?;
    let images =
        processor(config.vision_config.image_size as u32, &file.preprocess_cfg).map_err(bad)?;
    let tokenizer = tokenizer(files, &file.model_cfg.text_cfg)?;
    let spec = files.spec.clone();
    let candle = |source| Error::Candle {
        model: spec.clone(),
        source,
    };
    let loaded: HashMap<String, Tensor> = if let Some(path) = files.optional(SAFETENSORS)? {
        candle_core::safetensors::load(&path, device).map_err(candle)?
    } else if let Some(path) = files.optional(PICKLE)? {
        candle_core::pickle::read_all(&path)
            .map_err(candle)?
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_device(device)?)))
            .collect::<candle_core::Result<_>>()
            .map_err(candle)?
    } else {
        return Err(Error::ModelFile {
            repo: files.id.clone(),
            revision: files.revision.clone(),
            file: SAFETENSORS.into(),
            message: format!("the OpenCLIP checkpoint has neither {SAFETENSORS} nor {PICKLE}"),
        });
    };
    let tensors = to_transformers(loaded).map_err(|message| Error::Model {
        model: files.spec.clone(),
        message,
    })?;
    Ok(Native {
        config,
        tokenizer,
        pool,
        images,
        tensors,
    })
}

/// Names that are the same tensor in both layouts (OpenCLIP's, transformers').
const RENAMES: [(&str, &str); 12] = [
    ("logit_scale", "logit_scale"),
    (
        "token_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
    ),
    (
        "positional_embedding",
        "text_model.embeddings.position_embedding.weight",
    ),
    ("ln_final.weight", "text_model.final_layer_norm.weight"),
    ("ln_final.bias", "text_model.final_layer_norm.bias"),
    (
        "visual.class_embedding",
        "vision_model.embeddings.class_embedding",
    ),
    (
        "visual.positional_embedding",
        "vision_model.embeddings.position_embedding.weight",
    ),
    (
        "visual.conv1.weight",
        "vision_model.embeddings.patch_embedding.weight",
    ),
    ("visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"),
    ("visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"),
    (
        "visual.ln_post.weight",
        "vision_model.post_layernorm.weight",
    ),
    ("visual.ln_post.bias", "vision_model.post_layernorm.bias"),
];

/// OpenCLIP's `width × embed_dim` projection matrices and the linear layers transformers holds them in.
const TRANSPOSED: [(&str, &str); 2] = [
    ("text_projection", "text_projection.weight"),
    ("visual.proj", "visual_projection.weight"),
];

/// Where each tower's layers live.
const LAYERS: [(&str, &str); 2] = [
    ("transformer.resblocks.", "text_model.encoder.layers."),
    (
        "visual.transformer.resblocks.",
        "vision_model.encoder.layers.",
    ),
];

/// Names inside one layer.
const LAYER_RENAMES: [(&str, &str); 10] = [
    ("ln_1.weight", "layer_norm1.weight"),
    ("ln_1.bias", "layer_norm1.bias"),
    ("ln_2.weight", "layer_norm2.weight"),
    ("ln_2.bias", "layer_norm2.bias"),
    ("attn.out_proj.weight", "self_attn.out_proj.weight"),
    ("attn.out_proj.bias", "self_attn.out_proj.bias"),
    ("mlp.c_fc.weight", "mlp.fc1.weight"),
    ("mlp.c_fc.bias", "mlp.fc1.bias"),
    ("mlp.c_proj.weight", "mlp.fc2.weight"),
    ("mlp.c_proj.bias", "mlp.fc2.bias"),
];

/// Buffers OpenCLIP may save that carry no weights (the causal mask) or that embeddings never use (SigLIP-style
/// `logit_bias`).
const IGNORED: [&str; 2] = ["attn_mask", "logit_bias"];

/// A name inside one transformer layer.
struct InLayer<'a> {
    /// The layers' prefix in the name's own layout.
    from: &'static str,
    /// The same prefix in the other layout.
    to: &'static str,
    index: &'a str,
    /// The rest of the name, below the layer.
    inner: &'a str,
}

/// Where `name` (OpenCLIP's when `native`, else transformers') sits inside a layer.
fn in_layer(name: &str, native: bool) -> Option<InLayer<'_>> {
    LAYERS.iter().find_map(|(n, h)| {
        let (from, to) = if native { (*n, *h) } else { (*h, *n) };
        let (index, inner) = name.strip_prefix(from)?.split_once('.')?;
        index.parse::<usize>().ok()?;
        Some(InLayer {
            from,
            to,
            index,
            inner,
        })
    })
}

/// Rename OpenCLIP's weights to transformers' (in f32), splitting each fused `in_proj` into q, k and v.
fn to_transformers(
    loaded: HashMap<String, Tensor>,
) -> std::result::Result<HashMap<String, Tensor>, String> {
    let mut out = HashMap::new();
    let mut unknown = Vec::new();
    let err = |name: &str, e: candle_core::Error| format!("{CONFIG}: weight {name}: {e}");
    for (full, tensor) in loaded {
        // CustomTextCLIP keeps the text tower under `text.`.
        let name = full.strip_prefix("text.").unwrap_or(&full);
        if IGNORED.contains(&name) {
            continue;
        }
        let tensor = tensor.to_dtype(DType::F32).map_err(|e| err(&full, e))?;
        if let Some((_, hf)) = RENAMES.iter().find(|(n, _)| *n == name) {
            out.insert(hf.to_string(), tensor);
        } else if let Some((_, hf)) = TRANSPOSED.iter().find(|(n, _)| *n == name) {
            let t = tensor
                .t()
                .and_then(|t| t.contiguous())
                .map_err(|e| err(&full, e))?;
            out.insert(hf.to_string(), t);
        } else if let Some(InLayer {
            to, index, inner, ..
        }) = in_layer(name, true)
        {
            let layer = format!("{to}{index}");
            if let Some((_, hf)) = LAYER_RENAMES.iter().find(|(n, _)| *n == inner) {
                out.insert(format!("{layer}.{hf}"), tensor);
            } else if let Some(kind) = inner.strip_prefix("attn.in_proj_") {
                let rows = tensor.dim(0).map_err(|e| err(&full, e))?;
                if rows % 3 != 0 {
                    return Err(format!("{full} has {rows} rows, not three equal parts"));
                }
                for (i, part) in ["q", "k", "v"].iter().enumerate() {
                    let piece = tensor
                        .narrow(0, i * rows / 3, rows / 3)
                        .and_then(|t| t.contiguous())
                        .map_err(|e| err(&full, e))?;
                    out.insert(format!("{layer}.self_attn.{part}_proj.{kind}"), piece);
                }
            } else {
                unknown.push(full.clone());
            }
        } else {
            unknown.push(full.clone());
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        let shown: Vec<&str> = unknown.iter().take(5).map(String::as_str).collect();
        return Err(format!(
            "{} weight(s) of a kind vlmdb does not read (e.g. layer scale or attentional pooling): {}",
            unknown.len(),
            shown.join(", ")
        ));
    }
    Ok(out)
}

/// The inverse of the renaming: transformers' names back to OpenCLIP's (q, k and v joined into `in_proj`),
/// the text tower under `text.` when the config is a `custom_text` one.
pub(crate) fn to_native(
    tensors: &BTreeMap<String, Tensor>,
    custom_text: bool,
) -> std::result::Result<HashMap<String, Tensor>, String> {
    let mut out = HashMap::new();
    let err = |name: &str, e: candle_core::Error| format!("weight {name}: {e}");
    let text = |name: &str| -> String {
        let is_text = !name.starts_with("visual") && name != "logit_scale";
        if custom_text && is_text {
            format!("text.{name}")
        } else {
            name.to_string()
        }
    };
    for (name, tensor) in tensors {
        let tensor = tensor.to_dtype(DType::F32).map_err(|e| err(name, e))?;
        if let Some((native, _)) = RENAMES.iter().find(|(_, h)| h == name) {
            out.insert(text(native), tensor);
        } else if let Some((native, _)) = TRANSPOSED.iter().find(|(_, h)| h == name) {
            let t = tensor
                .t()
                .and_then(|t| t.contiguous())
                .map_err(|e| err(name, e))?;
            out.insert(text(native), t);
        } else if let Some(InLayer {
            from,
            to,
            index,
            inner,
        }) = in_layer(name, false)
        {
            let layer = text(&format!("{to}{index}"));
            if let Some((native, _)) = LAYER_RENAMES.iter().find(|(_, h)| *h == inner) {
                out.insert(format!("{layer}.{native}"), tensor);
            } else if let Some(kind) = inner.strip_prefix("self_attn.q_proj.") {
                let hf = |part: &str| format!("{from}{index}.self_attn.{part}_proj.{kind}");
                let parts = ["q", "k", "v"]
                    .iter()
                    .map(|p| {
                        tensors
                            .get(&hf(p))
                            .ok_or_else(|| format!("{} is missing", hf(p)))
                            .and_then(|t| t.to_dtype(DType::F32).map_err(|e| err(&hf(p), e)))
                    })
                    .collect::<std::result::Result<Vec<_>, String>>()?;
                let fused = Tensor::cat(&parts, 0).map_err(|e| err(name, e))?;
                out.insert(format!("{layer}.attn.in_proj_{kind}"), fused);
            } else if inner.starts_with("self_attn.k_proj.")
                || inner.starts_with("self_attn.v_proj.")
            {
                // joined with q above
            } else {
                return Err(format!("weight {name} has no OpenCLIP name"));
            }
        } else {
            return Err(format!("weight {name} has no OpenCLIP name"));
        }
    }
    Ok(out)
}

/// Write `tensors` (transformers' names) as an OpenCLIP checkpoint in `dir`: the source's `open_clip_config.json`
/// and tokenizer files, and `open_clip_model.safetensors` — what `open_clip.create_model("local-dir:DIR")` reads.
pub(crate) fn export(
    files: &mut ModelFiles,
    tensors: &BTreeMap<String, Tensor>,
    dir: &Path,
) -> Result<()> {
    let file: File = read_json(files, CONFIG)?;
    let native =
        to_native(tensors, file.model_cfg.custom_text).map_err(|message| Error::Model {
            model: files.spec.clone(),
            message,
        })?;
    for name in std::iter::once(CONFIG).chain(TOKENIZER_FILES) {
        if let Some(from) = files.optional(name)? {
            let to = dir.join(name);
            std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
        }
    }
    let path = dir.join(SAFETENSORS);
    candle_core::safetensors::save(&native, &path).map_err(|source| Error::Candle {
        model: files.spec.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(path)
    }

    fn config(text: &str) -> std::result::Result<(Config, Pool), String> {
        let model: ModelCfg = serde_json::from_str(text).map_err(|e| e.to_string())?;
        translate(&model)
    }

    #[test]
    fn every_preprocessing_mode_matches_open_clip() {
        let text = std::fs::read_to_string(fixture("models/reference/tiny-openclip.json"))
            .expect("reference");
        let reference: serde_json::Value = serde_json::from_str(&text).expect("json");
        let variants = reference["preprocess_variants"]
            .as_array()
            .expect("variants");
        assert!(variants.len() >= 8, "{}", variants.len());
        for v in variants {
            let cfg = PreprocessCfg {
                mean: Some(Channels::One(0.5)),
                std: Some(Channels::Three([0.5; 3])),
                interpolation: v["interpolation"].as_str().map(String::from),
                resize_mode: v["resize_mode"].as_str().map(String::from),
                fill_color: None,
            };
            let processor = processor(OPENCLIP_SIZE, &cfg).expect("processor");
            let image = image::open(fixture(v["file"].as_str().expect("file"))).expect("image");
            let got = processor.pixels(&image);
            let expected: Vec<f32> = v["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect();
            assert_eq!(got.len(), expected.len(), "{v:?}");
            let diff = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff <= 1e-5,
                "{} {} {}: pixels differ by {diff}",
                v["file"],
                v["resize_mode"],
                v["interpolation"]
            );
        }
    }

    const OPENCLIP_SIZE: u32 = 33;

    #[test]
    fn options_transformers_cannot_express_are_refused_by_name() {
        let base = r#"{"embed_dim": 8, "vision_cfg": {"width": 32, "head_width": 8, "layers": 1, "patch_size": 8,
            "image_size": 32 VISION}, "text_cfg": {"width": 32, "heads": 4, "layers": 1 TEXT}}"#;
        let with = |vision: &str, text: &str| base.replace("VISION", vision).replace("TEXT", text);
        let (ok, pool) = config(&with("", "")).expect("plain ViT");
        assert_eq!(pool, Pool::LargestId);
        assert_eq!(ok.vision_config.num_attention_heads, 4);
        assert_eq!(ok.vision_config.hidden_act, "gelu");
        assert_eq!(ok.text_config.intermediate_size, 128);
        let (_, pool) = config(&with("", r#", "pool_type": "eos", "eos_id": 7"#)).expect("eos");
        assert_eq!(pool, Pool::FirstOf(7));
        for (vision, text, named) in [
            (r#", "ls_init_value": 0.1"#, "", "vision_cfg.ls_init_value"),
            ("", r#", "qk_norm": true"#, "text_cfg.qk_norm"),
            (
                r#", "attentional_pool": true"#,
                "",
                "vision_cfg.attentional_pool",
            ),
            (r#", "pool_type": "avg""#, "", "vision_cfg.pool_type"),
            ("", r#", "pool_type": "last""#, "text_cfg.pool_type"),
            ("", r#", "proj_bias": true"#, "text_cfg.proj_bias"),
            (
                "",
                r#", "hf_model_name": "roberta-base""#,
                "text_cfg.hf_model_name",
            ),
            (
                r#", "timm_model_name": "vit_base""#,
                "",
                "vision_cfg.timm_model_name",
            ),
            (
                r#", "act_kwargs": {"approximate": "tanh"}"#,
                "",
                "vision_cfg.act_kwargs",
            ),
        ] {
            let err = config(&with(vision, text)).expect_err(named);
            assert!(err.contains(named), "{named}: {err}");
        }
        let resnet = base.replace(
            r#""layers": 1, "patch_size""#,
            r#""layers": [3, 4, 6, 3], "patch_size""#,
        );
        let err = config(&resnet.replace("VISION", "").replace("TEXT", "")).expect_err("resnet");
        assert!(err.contains("ModifiedResNet"), "{err}");
    }

    #[test]
    fn renaming_to_transformers_and_back_is_exact() {
        let device = Device::Cpu;
        let native = candle_core::safetensors::load(
            fixture("models/tiny-openclip/open_clip_model.safetensors"),
            &device,
        )
        .expect("weights");
        let hf = to_transformers(native.clone()).expect("to transformers");
        assert!(hf.contains_key("text_model.encoder.layers.1.self_attn.v_proj.bias"));
        assert!(hf.contains_key("vision_model.pre_layrnorm.weight"));
        let sorted: BTreeMap<String, Tensor> = hf.into_iter().collect();
        let back = to_native(&sorted, false).expect("to native");
        let kept: Vec<&String> = native
            .keys()
            .filter(|k| !IGNORED.contains(&k.as_str()))
            .collect();
        assert_eq!(back.len(), kept.len());
        for name in kept {
            let a = native[name]
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("a");
            let b = back[name]
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect(name);
            assert_eq!(a, b, "{name}");
        }
        let mut extra = native.clone();
        extra.insert(
            "transformer.resblocks.0.ls_1.gamma".into(),
            Tensor::zeros(4, DType::F32, &device).expect("t"),
        );
        let err = to_transformers(extra).expect_err("layer scale");
        assert!(err.contains("ls_1.gamma"), "{err}");
    }
}
