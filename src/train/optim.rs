//! The optimiser of `vlmdb train`: AdamW written out here (candle-nn's keeps its moment estimates private, and a
//! resumed run needs them from its checkpoint), the learning-rate schedule (linear warmup, then cosine decay) and
//! gradient-norm clipping, each with PyTorch's arithmetic:
//!
//! ```text
//! θ ← θ − lr·wd·θ              (decoupled weight decay; weight matrices only, not biases or the logit scale)
//! m ← β₁m + (1 − β₁)g          v ← β₂v + (1 − β₂)g²
//! θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
//! ```

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use super::head::Heads;
use crate::error::{Error, Result};

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

/// AdamW's state: the step count and both moment estimates of every parameter (in [`Heads::named`] order).
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates taken so far.
    pub steps: u64,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

fn t(context: &'static str) -> impl Fn(candle_core::Error) -> Error + Copy {
    Error::tensor(context)
}

impl AdamW {
    /// Zero moments for every parameter of `heads`.
    pub fn new(config: AdamWConfig, heads: &Heads) -> Result<AdamW> {
        let zeros = heads
            .named()
            .iter()
            .map(|(_, var)| var.as_tensor().zeros_like().map_err(t("optimiser state")))
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            config,
            steps: 0,
            m: zeros.clone(),
            v: zeros,
        })
    }

    /// One update of every parameter with its gradient (`grads` in [`Heads::named`] order) at learning rate `lr`.
    /// Returns the size of the update relative to the parameters, ‖Δθ‖ / ‖θ‖ (for dead-training detection).
    pub fn step(&mut self, heads: &Heads, grads: &[Tensor], lr: f64) -> Result<f64> {
        let (mut moved, mut size) = (0.0f64, 0.0f64);
        self.steps += 1;
        let c = self.config;
        let correction1 = 1.0 - c.beta1.powi(self.steps as i32);
        let correction2 = 1.0 - c.beta2.powi(self.steps as i32);
        for (i, ((name, var), g)) in heads.named().into_iter().zip(grads).enumerate() {
            let op = t("AdamW step");
            let mut theta = var.as_tensor().detach();
            if c.weight_decay > 0.0 && name.ends_with(".weight") {
                theta = theta.affine(1.0 - lr * c.weight_decay, 0.0).map_err(op)?;
            }
            self.m[i] = ((&self.m[i] * c.beta1).map_err(op)?
                + (g * (1.0 - c.beta1)).map_err(op)?)
            .map_err(op)?;
            self.v[i] = ((&self.v[i] * c.beta2).map_err(op)?
                + (g.sqr().map_err(op)? * (1.0 - c.beta2)).map_err(op)?)
            .map_err(op)?;
            let m_hat = (&self.m[i] / correction1).map_err(op)?;
            let denominator = ((&self.v[i] / correction2).map_err(op)?.sqrt().map_err(op)? + c.eps)
                .map_err(op)?;
            let update = ((m_hat / denominator).map_err(op)? * lr).map_err(op)?;
            let new = (theta - update).map_err(op)?;
            let squared = |x: &Tensor| -> Result<f64> {
                Ok(f64::from(
                    x.sqr()
                        .and_then(|x| x.sum_all()?.to_scalar::<f32>())
                        .map_err(op)?,
                ))
            };
            moved += squared(&(&new - var.as_tensor()).map_err(op)?)?;
            size += squared(var.as_tensor())?;
            // `set` writes into the parameter's storage: every value above was computed before it.
            var.set(&new).map_err(op)?;
        }
        Ok(moved.sqrt() / size.sqrt().max(1e-30))
    }

    /// The moments by checkpoint name (`adam.m.<param>`, `adam.v.<param>`).
    pub fn tensors(&self, heads: &Heads) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (i, (name, _)) in heads.named().into_iter().enumerate() {
            out.insert(format!("adam.m.{name}"), self.m[i].clone());
            out.insert(format!("adam.v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restore the moments and step count from a checkpoint.
    pub fn load(
        &mut self,
        heads: &Heads,
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
                *slot = value.to_dtype(DType::F32).map_err(t("checkpoint"))?;
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

/// The global L2 norm of `grads`, and the gradients scaled down to norm `max_norm` when they exceed it (PyTorch's
/// `clip_grad_norm_`: factor max_norm / (norm + 1e-6), at most 1). `max_norm` ≤ 0 turns clipping off.
pub fn clip(grads: Vec<Tensor>, max_norm: f64) -> Result<(f64, Vec<Tensor>)> {
    let op = t("gradient norm");
    let mut sum = 0.0f64;
    for g in &grads {
        let s = g
            .to_dtype(DType::F64)
            .and_then(|g| g.sqr()?.sum_all()?.to_scalar::<f64>())
            .map_err(op)?;
        sum += s;
    }
    let norm = sum.sqrt();
    if max_norm <= 0.0 || norm <= max_norm {
        return Ok((norm, grads));
    }
    let factor = (max_norm / (norm + 1e-6)).min(1.0);
    let scaled = grads
        .into_iter()
        .map(|g| (g * factor).map_err(op))
        .collect::<Result<Vec<_>>>()?;
    Ok((norm, scaled))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::rng::Rng;
    use crate::train::head::{HeadKind, HeadShape};

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
        let g = vec![Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap()];
        let (norm, clipped) = clip(g, 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9);
        let v: Vec<f32> = clipped[0].to_vec1().unwrap();
        assert!((v[0] - 0.6).abs() < 1e-5 && (v[1] - 0.8).abs() < 1e-5);
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
        let grads: Vec<Tensor> = heads
            .named()
            .iter()
            .map(|(_, v)| (v.as_tensor().ones_like().unwrap() * -2.0).unwrap())
            .collect();
        opt.step(&heads, &grads, 0.1).unwrap();
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
