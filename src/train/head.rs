//! Projection heads: from a frozen image space and a frozen text space into one shared space of a chosen width,
//! plus CLIP's learnable temperature. A head is linear (`x Wᵀ + b`) or an MLP with one hidden layer
//! (`W₂ gelu(W₁ x + b₁) + b₂`, exact erf GELU as `torch.nn.GELU`). Initial weights come from the run's seeded RNG,
//! drawn as PyTorch's `nn.Linear` draws them: U(−1/√fan_in, 1/√fan_in) for weights and biases.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// CLIP's initial temperature 0.07, as the logit-scale parameter t = ln(1/0.07).
pub const INITIAL_LOGIT_SCALE: f64 = 2.659_260_036_932_778_4;

/// The largest logit scale (CLIP clamps eᵗ at 100).
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_091;

/// The shape of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    Linear,
    Mlp,
}

impl std::str::FromStr for HeadKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<HeadKind> {
        match s {
            "linear" => Ok(HeadKind::Linear),
            "mlp" => Ok(HeadKind::Mlp),
            other => Err(Error::Usage(format!(
                "--head '{other}': expected linear or mlp"
            ))),
        }
    }
}

/// The architecture of both heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeadShape {
    pub kind: HeadKind,
    pub image_dim: usize,
    pub text_dim: usize,
    /// Width of the shared space.
    pub dim: usize,
    /// Hidden width of an MLP head.
    pub hidden: usize,
}

/// One head: its layers as (weight `out × in`, bias `out`).
#[derive(Debug)]
pub struct Head {
    layers: Vec<(Var, Var)>,
}

impl Head {
    fn new(widths: &[usize], rng: &mut Rng, device: &Device) -> Result<Head> {
        let mut layers = Vec::new();
        for pair in widths.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let bound = 1.0 / (fan_in as f64).sqrt();
            let mut uniform = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            };
            let w = uniform(fan_out * fan_in);
            let b = uniform(fan_out);
            let tensor = |v: Vec<f32>, shape: &[usize]| -> Result<Var> {
                Var::from_tensor(
                    &Tensor::from_vec(v, shape, device).map_err(Error::tensor("head weights"))?,
                )
                .map_err(Error::tensor("head weights"))
            };
            layers.push((tensor(w, &[fan_out, fan_in])?, tensor(b, &[fan_out])?));
        }
        Ok(Head { layers })
    }

    /// Project `x` (`n × in`).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            if i > 0 {
                h = h.gelu_erf()?;
            }
            h = h
                .matmul(&w.as_tensor().t()?)?
                .broadcast_add(b.as_tensor())?;
        }
        Ok(h)
    }
}

/// Both heads and the logit scale: everything a training run learns.
#[derive(Debug)]
pub struct Heads {
    pub shape: HeadShape,
    pub image: Head,
    pub text: Head,
    /// t, with logit scale eᵗ.
    pub logit_scale: Var,
}

impl Heads {
    /// Fresh heads drawn from `rng` (image head first, then text head; each layer's weight, then its bias).
    pub fn init(shape: HeadShape, rng: &mut Rng, device: &Device) -> Result<Heads> {
        let widths = |input: usize| match shape.kind {
            HeadKind::Linear => vec![input, shape.dim],
            HeadKind::Mlp => vec![input, shape.hidden, shape.dim],
        };
        let image = Head::new(&widths(shape.image_dim), rng, device)?;
        let text = Head::new(&widths(shape.text_dim), rng, device)?;
        let logit_scale = Var::from_tensor(
            &Tensor::new(INITIAL_LOGIT_SCALE as f32, device)
                .map_err(Error::tensor("logit scale"))?,
        )
        .map_err(Error::tensor("logit scale"))?;
        Ok(Heads {
            shape,
            image,
            text,
            logit_scale,
        })
    }

    /// Every parameter by its checkpoint name, in a fixed order.
    pub fn named(&self) -> Vec<(String, &Var)> {
        crate::train::optim::Parameters::named(self)
    }

    fn named_parameters(&self) -> Vec<(String, &Var)> {
        let mut out = Vec::new();
        for (tower, head) in [("image", &self.image), ("text", &self.text)] {
            for (i, (w, b)) in head.layers.iter().enumerate() {
                out.push((format!("{tower}.{i}.weight"), w));
                out.push((format!("{tower}.{i}.bias"), b));
            }
        }
        out.push(("logit_scale".to_string(), &self.logit_scale));
        out
    }

    /// A snapshot of every parameter, by name (copies: a `Var` is updated in place, so a detached view would
    /// change with the next step).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.named()
            .into_iter()
            .map(|(name, var)| {
                var.as_tensor()
                    .copy()
                    .map(|t| (name, t))
                    .map_err(Error::tensor("head weights"))
            })
            .collect()
    }

    /// Set every parameter from `tensors` (a checkpoint); each must be there with its shape.
    pub fn load(&self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.named() {
            let value = tensors
                .get(&name)
                .ok_or_else(|| Error::Usage(format!("checkpoint has no tensor '{name}'")))?;
            if value.dims() != var.as_tensor().dims() {
                return Err(Error::Usage(format!(
                    "checkpoint tensor '{name}' has shape {:?}, the head needs {:?}",
                    value.dims(),
                    var.as_tensor().dims()
                )));
            }
            var.set(
                &value
                    .to_dtype(DType::F32)
                    .map_err(Error::tensor("checkpoint"))?,
            )
            .map_err(Error::tensor("checkpoint"))?;
        }
        Ok(())
    }

    /// Keep the logit scale at most ln 100, as CLIP does after every step.
    pub fn clamp_logit_scale(&self) -> Result<()> {
        let t = self
            .logit_scale
            .as_tensor()
            .clamp(f32::MIN, MAX_LOGIT_SCALE as f32)
            .map_err(Error::tensor("logit scale"))?;
        self.logit_scale
            .set(&t)
            .map_err(Error::tensor("logit scale"))
    }

    /// The current logit scale eᵗ.
    pub fn scale(&self) -> Result<f64> {
        let t = self
            .logit_scale
            .as_tensor()
            .to_scalar::<f32>()
            .map_err(Error::tensor("logit scale"))?;
        Ok(f64::from(t).exp())
    }
}

impl crate::train::optim::Parameters for Heads {
    fn named(&self) -> Vec<(String, &Var)> {
        self.named_parameters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_and_mlp_has_two_layers() {
        let shape = HeadShape {
            kind: HeadKind::Mlp,
            image_dim: 4,
            text_dim: 3,
            dim: 2,
            hidden: 5,
        };
        let a = Heads::init(shape, &mut Rng::new(1), &Device::Cpu).unwrap();
        let b = Heads::init(shape, &mut Rng::new(1), &Device::Cpu).unwrap();
        let names: Vec<String> = a.named().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 9);
        assert_eq!(names[0], "image.0.weight");
        assert_eq!(names[8], "logit_scale");
        for ((_, x), (_, y)) in a.named().into_iter().zip(b.named()) {
            let x: Vec<f32> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let y: Vec<f32> = y.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(x, y);
        }
        let w: Vec<f32> = a.image.layers[0]
            .0
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(w.iter().all(|v| v.abs() <= 0.5), "U(-1/sqrt(4), 1/sqrt(4))");
        let x = Tensor::ones((7, 4), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(a.image.forward(&x).unwrap().dims(), &[7, 2]);
    }
}
