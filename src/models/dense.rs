//! A dense (fully connected) layer, `y = x Wᵀ + b`, whose product runs through vlmdb's AVX-512 kernel
//! ([`crate::eval::kernel`]) where that kernel runs, with the weights packed once at load; elsewhere (GPUs, other
//! CPUs, unoptimised builds) it is Candle's `Linear`. The kernel's shape, rows times packed rows, is exactly a
//! linear layer's: the weight matrix is stored `out × in`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use rayon::prelude::*;

use crate::eval::kernel::{self, Panels};

pub struct Dense {
    linear: Linear,
    /// The weights packed for the kernel, and the bias as host values.
    packed: Option<(Panels, Vec<f32>)>,
    inputs: usize,
    outputs: usize,
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
        let (outputs, inputs) = weight.dims2()?;
        let packed = if kernel::runs_on(weight.device()) {
            let values = weight.flatten_all()?.to_vec1::<f32>()?;
            Some((
                Panels::candidates(&values, outputs, inputs),
                bias.to_vec1::<f32>()?,
            ))
        } else {
            None
        };
        Ok(Dense {
            linear: Linear::new(weight, Some(bias)),
            packed,
            inputs,
            outputs,
        })
    }

    /// `act(x Wᵀ + b)`: on the kernel, the activation is applied with the bias, row by row on the thread pool
    /// (Candle's element-wise maps run on one thread); elsewhere `fallback` applies it to Candle's output.
    pub fn forward_then(
        &self,
        x: &Tensor,
        act: impl Fn(f32) -> f32 + Sync,
        fallback: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        match &self.packed {
            None => fallback(&self.linear.forward(x)?),
            Some(packed) => self.on_kernel(packed, x, act),
        }
    }

    fn on_kernel(
        &self,
        (weights, bias): &(Panels, Vec<f32>),
        x: &Tensor,
        act: impl Fn(f32) -> f32 + Sync,
    ) -> Result<Tensor> {
        let mut shape = x.dims().to_vec();
        match shape.last_mut() {
            Some(last) if *last == self.inputs => *last = self.outputs,
            _ => candle_core::bail!(
                "dense layer: input {:?} does not end in {}",
                x.dims(),
                self.inputs
            ),
        }
        let values = x.flatten_all()?.to_vec1::<f32>()?;
        let rows = values.len() / self.inputs;
        let mut out = vec![0.0f32; rows * self.outputs];
        kernel::product(
            &Panels::queries(&values, rows, self.inputs),
            weights,
            &mut out,
        );
        out.par_chunks_mut(self.outputs).for_each(|row| {
            for (y, b) in row.iter_mut().zip(bias) {
                *y = act(*y + b);
            }
        });
        Tensor::from_vec(out, shape, x.device())
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.packed {
            None => self.linear.forward(x),
            Some(packed) => self.on_kernel(packed, x, |y| y),
        }
    }
}
