//! A CLIP whose every weight can be trained: transformers' `CLIPModel` forward (both towers, the projections,
//! `logit_scale`) written with candle's differentiable primitives only. Candle's fused layer-norm and softmax
//! kernels (used by inference) have no backward pass, so this forward spells them out; it computes what
//! `CLIPModel.forward` computes and the fine-tuning parity test holds it to transformers + torch AdamW.
//!
//! Parameters keep their Hugging Face names (`text_model.encoder.layers.0.self_attn.q_proj.weight`, …), so a
//! checkpoint is a `model.safetensors` that `transformers.CLIPModel.from_pretrained` reads. Frozen parameters
//! (`--freeze`, `--unfreeze-last`) are plain tensors, trainable ones [`Var`]s.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{D, DType, Device, IndexOp, Tensor, Var};

use super::clip::{Checkpoint, Layout, Pool};
use super::clip_layer::Act;
use super::clip_text::{causal_mask, eos_positions};
use super::hub::ModelFiles;
use super::preprocess::ImageProcessor;
use super::tokens::{TextTokenizer, TokenBatch};
use crate::error::{Error, Result};

/// Which parameters train.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trainable {
    /// Keep the vision tower (embeddings, layers, norms) frozen.
    pub freeze_vision: bool,
    /// Keep the text tower frozen.
    pub freeze_text: bool,
    /// Train only the last N transformer layers of each unfrozen tower (plus its final norms and the
    /// projections); `None`: every layer.
    pub unfreeze_last: Option<usize>,
}

impl Trainable {
    /// Whether the parameter `name` trains, for towers of `text_layers` / `vision_layers` layers.
    fn trains(&self, name: &str, text_layers: usize, vision_layers: usize) -> bool {
        let (tower, layers, frozen) = if let Some(rest) = name.strip_prefix("text_model.") {
            (rest, text_layers, self.freeze_text)
        } else if let Some(rest) = name.strip_prefix("vision_model.") {
            (rest, vision_layers, self.freeze_vision)
        } else if name.starts_with("text_projection") {
            return !self.freeze_text;
        } else if name.starts_with("visual_projection") {
            return !self.freeze_vision;
        } else {
            return true; // logit_scale (frozen by epochs through --freeze-logit-scale-epochs)
        };
        if frozen {
            return false;
        }
        let Some(n) = self.unfreeze_last else {
            return true;
        };
        if let Some(layer) = tower
            .strip_prefix("encoder.layers.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
        {
            return layer + n >= layers;
        }
        // Embeddings and the pre-norm sit below every layer; the final norms above them.
        tower.starts_with("final_layer_norm") || tower.starts_with("post_layernorm")
    }
}

/// One parameter: its value, and the variable when it trains.
#[derive(Debug, Clone)]
pub struct Param {
    pub tensor: Tensor,
    pub var: Option<Var>,
}

#[derive(Debug, Clone, Copy)]
struct Tower {
    layers: usize,
    heads: usize,
    eps: f64,
    act: Act,
}

/// A trainable CLIP.
pub struct TrainableClip {
    params: BTreeMap<String, Param>,
    text: Tower,
    vision: Tower,
    patch: usize,
    dim: usize,
    /// The parameters' dtype.
    dtype: DType,
    /// The dtype the towers compute in (the parameters' own, or bf16 for mixed precision).
    compute: DType,
    pool: Pool,
    /// The layout the model was read in (an export writes the same one).
    layout: Layout,
    pub tokenizer: TextTokenizer,
    pub images: ImageProcessor,
    pub files: ModelFiles,
}

/// A tower's output: the pooled vector before the projection, and the projection.
#[derive(Debug)]
pub struct TowerOutput {
    pub pooled: Tensor,
    pub projected: Tensor,
}

fn tensor_error(model: &str) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |source| Error::Candle {
        model: model.into(),
        source,
    }
}

impl TrainableClip {
    /// Load the CLIP at `spec` (alias, `hf:` repo or directory; `model.safetensors`) in `dtype` on `device`.
    pub fn load(
        spec: &str,
        dtype: DType,
        device: &Device,
        trainable: &Trainable,
    ) -> Result<TrainableClip> {
        let mut files = ModelFiles::resolve(spec)?;
        let mut checkpoint = Checkpoint::open(&mut files, device)?;
        let tower = |shape: super::clip_layer::LayerShape, layers| Tower {
            layers,
            heads: shape.heads,
            eps: shape.eps,
            act: shape.act,
        };
        let text = tower(
            checkpoint.text_shape(spec)?,
            checkpoint.config.text_config.num_hidden_layers,
        );
        let vision = tower(
            checkpoint.vision_shape(spec)?,
            checkpoint.config.vision_config.num_hidden_layers,
        );
        let loaded = checkpoint.tensors(&mut files, device)?;
        let mut params = BTreeMap::new();
        for (name, tensor) in loaded {
            if !tensor.dtype().is_float() {
                continue; // position_ids buffers of older exports
            }
            let tensor = tensor.to_dtype(dtype).map_err(tensor_error(spec))?;
            let param = if trainable.trains(&name, text.layers, vision.layers) {
                let var = Var::from_tensor(&tensor).map_err(tensor_error(spec))?;
                Param {
                    tensor: var.as_tensor().clone(),
                    var: Some(var),
                }
            } else {
                Param { tensor, var: None }
            };
            params.insert(name, param);
        }
        let model = TrainableClip {
            params,
            text,
            vision,
            patch: checkpoint.config.vision_config.patch_size,
            dim: checkpoint.config.projection_dim,
            dtype,
            compute: dtype,
            pool: checkpoint.pool,
            layout: checkpoint.layout,
            tokenizer: checkpoint.tokenizer,
            images: checkpoint.images,
            files,
        };
        for required in [
            "logit_scale",
            "text_projection.weight",
            "visual_projection.weight",
            "vision_model.embeddings.class_embedding",
            "text_model.embeddings.token_embedding.weight",
        ] {
            model.p(required)?;
        }
        Ok(model)
    }

    fn p(&self, name: &str) -> Result<&Tensor> {
        self.params
            .get(name)
            .map(|p| &p.tensor)
            .ok_or_else(|| Error::Model {
                model: self.files.spec.clone(),
                message: format!("model.safetensors has no tensor '{name}'"),
            })
    }

    /// Compute the towers in `dtype` (mixed precision: bf16 matrix products over f32 master weights, whose
    /// gradients arrive in f32 through the casts). Layer norms, softmaxes and the outputs stay in the parameters'
    /// dtype.
    pub fn set_compute(&mut self, dtype: DType) {
        self.compute = dtype;
    }

    /// Width of the projections (the embedding space).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The trainable parameters by name.
    pub fn named(&self) -> Vec<(String, &Var)> {
        self.params
            .iter()
            .filter_map(|(name, p)| p.var.as_ref().map(|v| (name.clone(), v)))
            .collect()
    }

    /// A snapshot of every parameter (trained or frozen) by its Hugging Face name, as a checkpoint or export
    /// holds it (copies: a `Var` is updated in place).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.params
            .iter()
            .map(|(name, p)| Ok((name.clone(), p.tensor.copy()?)))
            .collect::<candle_core::Result<_>>()
            .map_err(Error::tensor("a snapshot of the model"))
    }

    /// Load trainable and frozen values from a checkpoint (names and shapes must match).
    pub fn load_tensors(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        for (name, param) in self.params.iter_mut() {
            let value = tensors
                .get(name)
                .ok_or_else(|| Error::Usage(format!("checkpoint has no tensor '{name}'")))?;
            if value.dims() != param.tensor.dims() {
                return Err(Error::Usage(format!(
                    "checkpoint tensor '{name}' has shape {:?}, expected {:?}",
                    value.dims(),
                    param.tensor.dims()
                )));
            }
            let value = value
                .to_dtype(param.tensor.dtype())
                .and_then(|v| v.to_device(param.tensor.device()))
                .map_err(Error::tensor("loading a checkpoint"))?;
            match &param.var {
                Some(var) => var
                    .set(&value)
                    .map_err(Error::tensor("loading a checkpoint"))?,
                None => param.tensor = value,
            }
        }
        Ok(())
    }

    /// Whether `logit_scale` trains at all.
    pub fn logit_scale_var(&self) -> Option<&Var> {
        self.params.get("logit_scale").and_then(|p| p.var.as_ref())
    }

    pub fn logit_scale(&self) -> Result<&Tensor> {
        self.p("logit_scale")
    }

    /// The text tower on a token batch: pooled at the end-of-text token, then projected.
    pub fn text_forward(&self, batch: &TokenBatch) -> Result<TowerOutput> {
        self.text_inner(batch)
            .map_err(tensor_error(&self.files.spec))
    }

    /// The vision tower on preprocessed pixels (B × 3 × H × W): the class token after the last norm, then
    /// projected.
    pub fn image_forward(&self, pixels: &Tensor) -> Result<TowerOutput> {
        self.image_inner(pixels)
            .map_err(tensor_error(&self.files.spec))
    }

    /// A parameter as stored (the master copy).
    fn master(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.params
            .get(name)
            .map(|p| &p.tensor)
            .ok_or_else(|| candle_core::Error::Msg(format!("no tensor '{name}'")))
    }

    /// A parameter in the compute dtype (a differentiable cast when that is not the stored one).
    fn get(&self, name: &str) -> candle_core::Result<Tensor> {
        self.master(name)?.to_dtype(self.compute)
    }

    /// `x · wᵀ (+ b)` over the last dimension, as one matrix product over every leading row (a broadcast batched
    /// product would multiply many small matrices and, backwards, materialise a weight gradient per batch row).
    fn linear(&self, x: &Tensor, prefix: &str, bias: bool) -> candle_core::Result<Tensor> {
        let w = self.get(&format!("{prefix}.weight"))?;
        let mut dims = x.dims().to_vec();
        let width = dims.pop().unwrap_or(1);
        let rows: usize = dims.iter().product();
        dims.push(w.dim(0)?);
        let y = x.reshape((rows, width))?.matmul(&w.t()?)?.reshape(dims)?;
        if bias {
            y.broadcast_add(&self.get(&format!("{prefix}.bias"))?)
        } else {
            Ok(y)
        }
    }

    /// Layer norm in the master dtype (statistics in bf16 lose too much), returned in the compute dtype.
    fn layer_norm(&self, x: &Tensor, prefix: &str, eps: f64) -> candle_core::Result<Tensor> {
        let weight = self.master(&format!("{prefix}.weight"))?;
        let x = x.to_dtype(weight.dtype())?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
        normed
            .broadcast_mul(weight)?
            .broadcast_add(self.master(&format!("{prefix}.bias"))?)?
            .to_dtype(self.compute)
    }

    fn layer(
        &self,
        x: &Tensor,
        prefix: &str,
        tower: Tower,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (b, t, width) = x.dims3()?;
        let head = width / tower.heads;
        let h = self.layer_norm(x, &format!("{prefix}.layer_norm1"), tower.eps)?;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, tower.heads, head))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(
            (self.linear(&h, &format!("{prefix}.self_attn.q_proj"), true)?
                * (head as f64).powf(-0.5))?,
        )?;
        let k = split(self.linear(&h, &format!("{prefix}.self_attn.k_proj"), true)?)?;
        let v = split(self.linear(&h, &format!("{prefix}.self_attn.v_proj"), true)?)?;
        let mut scores = q.matmul(&k.t()?.contiguous()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        // Softmax in the master dtype.
        let scores = scores.to_dtype(self.dtype)?;
        let max = scores.max_keepdim(D::Minus1)?.detach();
        let e = scores.broadcast_sub(&max)?.exp()?;
        let p = e
            .broadcast_div(&e.sum_keepdim(D::Minus1)?)?
            .to_dtype(self.compute)?;
        let attended = p
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, width))?;
        let x = (x + self.linear(&attended, &format!("{prefix}.self_attn.out_proj"), true)?)?;
        let h = self.layer_norm(&x, &format!("{prefix}.layer_norm2"), tower.eps)?;
        let h = self.linear(&h, &format!("{prefix}.mlp.fc1"), true)?;
        let h = tower.act.forward(&h)?;
        let h = self.linear(&h, &format!("{prefix}.mlp.fc2"), true)?;
        x + h
    }

    fn text_inner(&self, batch: &TokenBatch) -> candle_core::Result<TowerOutput> {
        let (b, t) = batch.ids.dims2()?;
        let tokens = self
            .get("text_model.embeddings.token_embedding.weight")?
            .index_select(&batch.ids.flatten_all()?, 0)?
            .reshape((b, t, ()))?;
        let positions = self
            .get("text_model.embeddings.position_embedding.weight")?
            .narrow(0, 0, t)?;
        let mut x = tokens.broadcast_add(&positions)?;
        let dtype = x.dtype();
        let mask = causal_mask(t, x.device())?.to_dtype(dtype)?;
        for i in 0..self.text.layers {
            x = self.layer(
                &x,
                &format!("text_model.encoder.layers.{i}"),
                self.text,
                Some(&mask),
            )?;
        }
        let x = self.layer_norm(&x, "text_model.final_layer_norm", self.text.eps)?;
        let width = x.dim(2)?;
        let index = Tensor::new(eos_positions(self.pool, &batch.rows, t), x.device())?;
        let pooled = x.reshape((b * t, width))?.index_select(&index, 0)?;
        let projected = self.linear(&pooled, "text_projection", false)?;
        Ok(TowerOutput {
            pooled: pooled.to_dtype(self.dtype)?,
            projected: projected.to_dtype(self.dtype)?,
        })
    }

    fn image_inner(&self, pixels: &Tensor) -> candle_core::Result<TowerOutput> {
        // The patch embedding is a convolution whose stride is its kernel: patches cut out and multiplied by the
        // flattened kernel, the same numbers as the convolution at the cost of one matrix product.
        let pixels = pixels.to_dtype(self.compute)?;
        let (b, channels, h, w) = pixels.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        let kernel = self.get("vision_model.embeddings.patch_embedding.weight")?;
        let width = kernel.dim(0)?;
        let patches = pixels
            .narrow(2, 0, gh * p)?
            .narrow(3, 0, gw * p)?
            .reshape(vec![b, channels, gh, p, gw, p])?
            .permute(vec![0, 2, 4, 1, 3, 5])?
            .contiguous()?
            .reshape((b * gh * gw, channels * p * p))?
            .matmul(&kernel.reshape((width, channels * p * p))?.t()?)?
            .reshape((b, gh * gw, width))?;
        let class = self
            .get("vision_model.embeddings.class_embedding")?
            .reshape((1, 1, width))?
            .broadcast_as((b, 1, width))?;
        let x = Tensor::cat(&[&class, &patches], 1)?;
        let x = x.broadcast_add(&self.get("vision_model.embeddings.position_embedding.weight")?)?;
        let mut x = self.layer_norm(&x, "vision_model.pre_layrnorm", self.vision.eps)?;
        for i in 0..self.vision.layers {
            x = self.layer(
                &x,
                &format!("vision_model.encoder.layers.{i}"),
                self.vision,
                None,
            )?;
        }
        let class = x.i((.., 0, ..))?;
        let pooled = self.layer_norm(&class, "vision_model.post_layernorm", self.vision.eps)?;
        let projected = self.linear(&pooled, "visual_projection", false)?;
        Ok(TowerOutput {
            pooled: pooled.to_dtype(self.dtype)?,
            projected: projected.to_dtype(self.dtype)?,
        })
    }

    /// Write the weights into `dir` in the layout the model was read in: a Hugging Face CLIP directory
    /// (`model.safetensors` with the source's config, tokenizer and processor files), or an OpenCLIP checkpoint.
    pub fn export(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if self.layout == Layout::OpenClip {
            let tensors = self.tensors()?;
            return super::open_clip::export(&mut self.files, &tensors, dir);
        }
        for name in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "merges.txt",
            "special_tokens_map.json",
            "preprocessor_config.json",
            "processor_config.json",
        ] {
            if let Some(from) = self.files.optional(name)? {
                let to = dir.join(name);
                std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
            }
        }
        let tensors: std::collections::HashMap<String, Tensor> = self
            .tensors()?
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?)))
            .collect::<candle_core::Result<_>>()
            .map_err(Error::tensor("exporting the model"))?;
        let path = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors, &path).map_err(tensor_error(&self.files.spec))
    }
}
