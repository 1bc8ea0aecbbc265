//! A dense (fully connected) layer, `y = x Wᵀ + b`, whose product runs through vlmdb's AVX-512 kernel
//! ([`crate::simd::kernel`]) where that kernel runs, with the weights packed once at load; elsewhere (GPUs, other
//! CPUs, unoptimised builds) it is Candle's `Linear`. The kernel's shape, rows times packed rows, is exactly a
//! linear layer's: the weight matrix is stored `out × in`. A layer holds one form of its weights, never both.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use rayon::prelude::*;

use crate::simd::fastmath::{avx512_dispatch, gelu, gelu_tanh};
use crate::simd::kernel::{self, Panels};

pub enum Dense {
    /// The weights packed for the kernel, and the bias as host values.
    Packed {
        weights: Panels,
        bias: Vec<f32>,
        inputs: usize,
    },
    Candle(Linear),
}

impl Dense {
    /// `weight` (`outputs × inputs`) and `bias` (`outputs`) under `vb`.
    pub fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<Dense> {
        let weight = vb.get((outputs, inputs), "weight")?;
        let bias = vb.get(outputs, "bias")?;
        Dense::new(weight, bias)
    }

    /// Several layers over the same input as one (the query, key and value projections): outputs concatenated.
    pub fn fused(vbs: &[VarBuilder], inputs: usize, outputs: usize) -> Result<Dense> {
        let weights = vbs
            .iter()
            .map(|vb| vb.get((outputs, inputs), "weight"))
            .collect::<Result<Vec<_>>>()?;
        let biases = vbs
            .iter()
            .map(|vb| vb.get(outputs, "bias"))
            .collect::<Result<Vec<_>>>()?;
        Dense::new(Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?)
    }

    fn new(weight: Tensor, bias: Tensor) -> Result<Dense> {
        if !kernel::runs_on(weight.device()) {
            return Ok(Dense::Candle(Linear::new(weight, Some(bias))));
        }
        let (outputs, inputs) = weight.dims2()?;
        let values = weight.flatten_all()?.to_vec1::<f32>()?;
        Ok(Dense::Packed {
            weights: Panels::candidates(&values, outputs, inputs),
            bias: bias.to_vec1::<f32>()?,
            inputs,
        })
    }

    /// Whether the layer runs on the kernel, i.e. [`Dense::rows`] can be used.
    pub fn on_host(&self) -> bool {
        matches!(self, Dense::Packed { .. })
    }

    /// `act(x Wᵀ + b)`: on the kernel, the activation is applied with the bias, row by row on the thread pool
    /// (Candle's element-wise maps run on one thread); elsewhere `fallback` applies it to Candle's output.
    pub fn forward_then(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        match self {
            Dense::Candle(linear) => act.tensor(&linear.forward(x)?),
            Dense::Packed { inputs, .. } => {
                let mut shape = x.dims().to_vec();
                let rows = match shape.last_mut() {
                    Some(last) if *last == *inputs => {
                        *last = self.outputs();
                        x.elem_count() / inputs
                    }
                    _ => candle_core::bail!(
                        "dense layer: input {:?} does not end in {inputs}",
                        x.dims()
                    ),
                };
                let values = x.flatten_all()?.to_vec1::<f32>()?;
                Tensor::from_vec(self.rows(&values, rows, act)?, shape, x.device())
            }
        }
    }

    /// `act(x Wᵀ + b)` of `rows` row-major host rows, on the kernel (the layer must be [`Dense::on_host`]).
    pub fn rows(&self, x: &[f32], rows: usize, act: Activation) -> Result<Vec<f32>> {
        let Dense::Packed {
            weights,
            bias,
            inputs,
        } = self
        else {
            candle_core::bail!("dense layer: host rows need the packed (kernel) form")
        };
        if x.len() != rows * inputs {
            candle_core::bail!(
                "dense layer: {} values are not {rows} rows of {inputs}",
                x.len()
            );
        }
        let outputs = bias.len();
        let mut out = vec![0.0f32; rows * outputs];
        if rows == 0 {
            return Ok(out);
        }
        kernel::product(&Panels::queries(x, rows, *inputs), weights, &mut out);
        out.par_chunks_mut(outputs)
            .for_each(|row| apply_with_bias(act, row, bias));
        Ok(out)
    }

    fn outputs(&self) -> usize {
        match self {
            Dense::Packed { bias, .. } => bias.len(),
            Dense::Candle(linear) => linear.weight().dims()[0],
        }
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_then(x, Activation::Identity)
    }
}

/// What a dense layer applies after the bias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Identity,
    /// The exact GELU, `x · Φ(x)` (HF's `gelu`).
    Gelu,
    /// GELU's tanh approximation (HF's `gelu_new`).
    GeluTanh,
    Relu,
}

impl Activation {
    /// Candle's form, on a tensor (GPUs and CPUs without the kernel).
    fn tensor(self, t: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(t.clone()),
            Activation::Gelu => t.gelu_erf(),
            Activation::GeluTanh => t.gelu(),
            Activation::Relu => t.relu(),
        }
    }
}

avx512_dispatch! {
    /// `row[i] ← act(row[i] + bias[i])`, each activation's loop vectorised.
    fn apply_with_bias => apply(act: Activation, row: &mut [f32], bias: &[f32])
}

#[inline(always)]
fn apply(act: Activation, row: &mut [f32], bias: &[f32]) {
    let pairs = row.iter_mut().zip(bias);
    match act {
        Activation::Identity => pairs.for_each(|(y, b)| *y += b),
        Activation::Gelu => pairs.for_each(|(y, b)| *y = gelu(*y + b)),
        Activation::GeluTanh => pairs.for_each(|(y, b)| *y = gelu_tanh(*y + b)),
        Activation::Relu => pairs.for_each(|(y, b)| *y = (*y + b).max(0.0)),
    }
}
