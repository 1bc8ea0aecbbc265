//! The optimiser of `vlmdb train`: AdamW written out here (candle-nn's keeps its moment estimates private, and a
//! resumed run needs them from its checkpoint), the learning-rate schedule (linear warmup, then cosine decay) and
//! gradient-norm clipping, each with PyTorch's arithmetic:
//!
//! ```text
//! θ ← θ − lr·wd·θ              (decoupled weight decay; parameters of two or more dimensions only — weight
//!                               matrices, embeddings, convolutions — not biases, norms or the logit scale,
//!                               open_clip's grouping)
//! m ← β₁m + (1 − β₁)g          v ← β₂v + (1 − β₂)g²
//! θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
//! ```

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use candle_core::Var;

use crate::error::{Error, Result};

/// A model's trainable parameters by name, in a fixed order (the order of the optimiser's moments).
pub trait Parameters {
    fn named(&self) -> Vec<(String, &Var)>;
}

/// AdamW's hyper-parameters (defaults as `torch.optim.AdamW`, except the weight decay, which is CLIP-like 0.1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// AdamW's state: the step count and both moment estimates of every parameter (in [`Parameters::named`] order). The
/// update runs as one fused pass per parameter over its values (PyTorch's `fused`/`foreach` AdamW does the same),
/// instead of a dozen whole-tensor operations that each allocate and stream the parameter through memory.
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates taken so far.
    pub steps: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

fn t(context: &'static str) -> impl Fn(candle_core::Error) -> Error + Copy {
    Error::tensor(context)
}

/// A tensor's values, flat.
pub fn flat(x: &Tensor) -> Result<Vec<f32>> {
    x.flatten_all()
        .and_then(|x| x.to_dtype(DType::F32)?.to_vec1::<f32>())
        .map_err(t("reading a tensor"))
}

impl AdamW {
    /// Zero moments for every parameter of `heads`.
    pub fn new(config: AdamWConfig, heads: &dyn Parameters) -> Result<AdamW> {
        let zeros: Vec<Vec<f32>> = heads
            .named()
            .iter()
            .map(|(_, var)| vec![0.0; var.as_tensor().elem_count()])
            .collect();
        Ok(AdamW {
            config,
            steps: 0,
            m: zeros.clone(),
            v: zeros,
        })
    }

    /// One update of every parameter at learning rate `lr` with its gradient (`grads`: flat, in
    /// [`Parameters::named`] order; `None`: the parameter sits this step out, as one without a gradient does in
    /// PyTorch) times `grad_scale` (the clipping factor). Returns the size of the update relative to the
    /// parameters, ‖Δθ‖ / ‖θ‖ (for dead-training detection).
    pub fn step(
        &mut self,
        heads: &dyn Parameters,
        grads: &[Option<Vec<f32>>],
        lr: f64,
        grad_scale: f64,
    ) -> Result<f64> {
        self.steps += 1;
        let c = self.config;
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let correction1 = (1.0 - c.beta1.powi(self.steps as i32)) as f32;
        let correction2 = (1.0 - c.beta2.powi(self.steps as i32)) as f32;
        let (lr32, scale) = (lr as f32, grad_scale as f32);
        let (mut moved, mut size) = (0.0f64, 0.0f64);
        for (i, ((name, var), g)) in heads.named().into_iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            // θ in f64 whatever its dtype: an f32 round trip would swallow updates below its precision (a
            // parameter kept in f64 must move as PyTorch moves it).
            let mut theta = var
                .as_tensor()
                .flatten_all()
                .and_then(|x| x.to_dtype(DType::F64)?.to_vec1::<f64>())
                .map_err(t("reading a tensor"))?;
            if g.len() != theta.len() {
                return Err(Error::Usage(format!(
                    "AdamW: parameter {name} has {} values but its gradient {}",
                    theta.len(),
                    g.len()
                )));
            }
            let decay = if c.weight_decay > 0.0 && var.as_tensor().rank() >= 2 {
                1.0 - lr * c.weight_decay
            } else {
                1.0
            };
            let (m, v) = (&mut self.m[i], &mut self.v[i]);
            for j in 0..theta.len() {
                let old = theta[j];
                let g = g[j] * scale;
                m[j] = b1 * m[j] + (1.0 - b1) * g;
                v[j] = b2 * v[j] + (1.0 - b2) * g * g;
                let update = lr32 * (m[j] / correction1) / ((v[j] / correction2).sqrt() + eps);
                theta[j] = old * decay - f64::from(update);
                moved += (theta[j] - old).powi(2);
                size += old.powi(2);
            }
            let value = Tensor::from_vec(theta, var.as_tensor().shape(), var.as_tensor().device())
                .and_then(|v| v.to_dtype(var.as_tensor().dtype()))
                .map_err(t("AdamW step"))?;
            var.set(&value).map_err(t("AdamW step"))?;
        }
        Ok(moved.sqrt() / size.sqrt().max(1e-30))
    }

    /// The moments by checkpoint name (`adam.m.<param>`, `adam.v.<param>`).
    pub fn tensors(&self, heads: &dyn Parameters) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (i, (name, var)) in heads.named().into_iter().enumerate() {
            let shape = var.as_tensor().shape();
            let device = var.as_tensor().device();
            for (which, values) in [("m", &self.m[i]), ("v", &self.v[i])] {
                let tensor =
                    Tensor::from_slice(values, shape, device).map_err(t("optimiser state"))?;
                out.insert(format!("adam.{which}.{name}"), tensor);
            }
        }
        Ok(out)
    }

    /// Restore the moments and step count from a checkpoint.
    pub fn load(
        &mut self,
        heads: &dyn Parameters,
        tensors: &BTreeMap<String, Tensor>,
        steps: u64,
    ) -> Result<()> {
        for (i, (name, var)) in heads.named().into_iter().enumerate() {
            for (which, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("adam.{which}.{name}");
                let value = tensors
                    .get(&key)
                    .ok_or_else(|| Error::Usage(format!("checkpoint has no tensor '{key}'")))?;
                if value.dims() != var.as_tensor().dims() {
                    return Err(Error::Usage(format!(
                        "checkpoint tensor '{key}' has shape {:?}, expected {:?}",
                        value.dims(),
                        var.as_tensor().dims()
                    )));
                }
                *slot = flat(value)?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Linear warmup to the peak learning rate, then cosine decay to `min_lr` at the last step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub peak: f64,
    pub min_lr: f64,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    /// The learning rate of update `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.min_lr
            + (self.peak - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// The global L2 norm of `grads` (those present).
pub fn grad_norm(grads: &[Option<Vec<f32>>]) -> f64 {
    grads
        .iter()
        .flatten()
        .flatten()
        .map(|g| f64::from(*g).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The factor gradients are scaled by to clip their global norm to `max_norm` (PyTorch's `clip_grad_norm_`:
/// max_norm / (norm + 1e-6), at most 1). `max_norm` ≤ 0 turns clipping off.
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::rng::Rng;
    use crate::train::head::{HeadKind, HeadShape, Heads};

    #[test]
    fn warmup_then_cosine() {
        let s = Schedule {
            peak: 1.0,
            min_lr: 0.0,
            warmup: 4,
            total: 14,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert!((s.lr(4) - 1.0).abs() < 1e-12);
        assert!((s.lr(9) - 0.5).abs() < 1e-12);
        assert!(s.lr(14).abs() < 1e-12);
    }

    #[test]
    fn clipping_scales_to_the_norm() {
        let norm = grad_norm(&[Some(vec![3.0, 0.0]), None, Some(vec![4.0])]);
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((clip_factor(norm, 1.0) - 0.2).abs() < 1e-6);
        assert_eq!(clip_factor(norm, 10.0), 1.0);
        assert_eq!(clip_factor(norm, 0.0), 1.0);
    }

    /// One AdamW step by hand: the first update moves every parameter by lr·sign(g) (m̂/√v̂ = ±1), plus decay.
    #[test]
    fn first_step_moves_by_lr_times_sign() {
        let shape = HeadShape {
            kind: HeadKind::Linear,
            image_dim: 2,
            text_dim: 2,
            dim: 2,
            hidden: 0,
        };
        let heads = Heads::init(shape, &mut Rng::new(3), &Device::Cpu).unwrap();
        let before = heads.tensors().unwrap();
        let config = AdamWConfig {
            weight_decay: 0.5,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(config, &heads).unwrap();
        let grads: Vec<Option<Vec<f32>>> = heads
            .named()
            .iter()
            .map(|(_, v)| Some(vec![-4.0; v.as_tensor().elem_count()]))
            .collect();
        opt.step(&heads, &grads, 0.1, 0.5).unwrap();
        for (name, after) in heads.tensors().unwrap() {
            let b: Vec<f32> = before[&name].flatten_all().unwrap().to_vec1().unwrap();
            let a: Vec<f32> = after.flatten_all().unwrap().to_vec1().unwrap();
            let decay = if name.ends_with(".weight") { 0.5 } else { 0.0 };
            for (x, y) in b.iter().zip(&a) {
                let expected = x * (1.0 - 0.1 * decay) + 0.1;
                assert!((y - expected).abs() < 1e-5, "{name}: {y} vs {expected}");
            }
        }
    }
}
