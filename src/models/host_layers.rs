//! Transformer building blocks on host memory, for encoders whose dense products run on vlmdb's kernel
//! ([`super::dense::Dense::rows`]): multi-head self-attention over ragged sequences and layer norm after a
//! residual add, both row-parallel on the thread pool. Sequences are packed back to back without padding: row `r`
//! of a matrix is one real token, so no product or attention score is spent on padded positions (for a padded
//! batch, masking a key with `f32::MIN` before the softmax gives it weight exactly 0, which is what skipping it does).

use candle_core::{Result, Tensor};
use candle_nn::LayerNorm;
use rayon::prelude::*;

use crate::simd::fastmath::{avx512_dispatch, exp};

/// Layer norm's scale, shift and epsilon as host values.
pub struct HostNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl HostNorm {
    pub fn of(norm: &LayerNorm) -> Result<HostNorm> {
        let gamma = norm.weight().to_vec1::<f32>()?;
        let beta = match norm.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; gamma.len()],
        };
        Ok(HostNorm {
            gamma,
            beta,
            eps: norm.eps() as f32,
        })
    }

    /// `x ← LayerNorm(x + residual)`, row by row (rows of the norm's width).
    pub fn add_and_norm(&self, x: &mut [f32], residual: &[f32]) {
        let width = self.gamma.len();
        x.par_chunks_mut(width)
            .zip(residual.par_chunks(width))
            .for_each(|(row, res)| add_norm(row, res, &self.gamma, &self.beta, self.eps));
    }
}

avx512_dispatch! {
    /// `row ← LayerNorm(row + residual)`.
    fn add_norm => add_norm_row(row: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32)
}

#[inline(always)]
fn add_norm_row(row: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for (v, r) in row.iter_mut().zip(residual) {
        *v += r;
    }
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let mut lanes = [0.0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|v| (v - mean) * (v - mean))
        .sum();
    for c in chunks {
        for l in 0..8 {
            lanes[l] += (c[l] - mean) * (c[l] - mean);
        }
    }
    let var = (lanes.iter().sum::<f32>() + tail) / n;
    let inv = (var + eps).sqrt().recip();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// The first `lens[b]` positions of each sequence of a padded `batch × seq × width` tensor, packed into rows.
pub fn unpad(x: &Tensor, lens: &[usize]) -> Result<Vec<f32>> {
    let (_, seq, width) = x.dims3()?;
    let values = x.flatten_all()?.to_vec1::<f32>()?;
    let mut rows = Vec::with_capacity(lens.iter().sum::<usize>() * width);
    for (b, &len) in lens.iter().enumerate() {
        rows.extend_from_slice(&values[b * seq * width..(b * seq + len) * width]);
    }
    Ok(rows)
}

/// Packed rows back into a `batch × seq × width` tensor, zeros at the padded positions.
pub fn pad(
    rows: &[f32],
    lens: &[usize],
    seq: usize,
    width: usize,
    like: &Tensor,
) -> Result<Tensor> {
    let mut out = vec![0.0f32; lens.len() * seq * width];
    let mut at = 0;
    for (b, &len) in lens.iter().enumerate() {
        out[b * seq * width..(b * seq + len) * width]
            .copy_from_slice(&rows[at * width..(at + len) * width]);
        at += len;
    }
    Tensor::from_vec(out, (lens.len(), seq, width), like.device())
}

/// The length of each row of a right-padded attention mask (`batch × seq`, 1 = token): the number of leading ones.
/// A mask that is not of that shape (a token after padding) is an error.
pub fn lengths(mask: &Tensor) -> Result<Vec<usize>> {
    let rows = mask.to_dtype(candle_core::DType::U32)?.to_vec2::<u32>()?;
    rows.iter()
        .enumerate()
        .map(|(b, row)| {
            let len = row.iter().take_while(|&&m| m != 0).count();
            if row[len..].iter().any(|&m| m != 0) {
                candle_core::bail!("attention mask row {b} has a token after padding");
            }
            Ok(len)
        })
        .collect()
}

/// Scaled dot-product self-attention of every sequence with itself, all heads: `qkv` holds per row the query,
/// key and value projections side by side (`3 × heads × head` values, head-major within each), `lens` the length
/// of each packed sequence. Returns the context rows (`heads × head` values each).
pub fn self_attention(qkv: &[f32], lens: &[usize], heads: usize, head: usize) -> Vec<f32> {
    let hidden = heads * head;
    let mut context = vec![0.0f32; lens.iter().sum::<usize>() * hidden];
    let mut sequences = Vec::with_capacity(lens.len());
    let (mut rest, mut start) = (context.as_mut_slice(), 0);
    for &len in lens {
        let (this, after) = rest.split_at_mut(len * hidden);
        sequences.push((start, this));
        (rest, start) = (after, start + len);
    }
    sequences
        .into_par_iter()
        .for_each(|(start, out)| attend(qkv, start, out, heads, head));
    context
}

avx512_dispatch! {
    /// The context rows `out` of the sequence whose first row is `start`.
    fn attend => attend_sequence(qkv: &[f32], start: usize, out: &mut [f32], heads: usize, head: usize)
}

/// MiniLM's 32-wide heads take [`attend_32`], whose query, score and context vectors live in registers.
#[inline(always)]
fn attend_sequence(qkv: &[f32], start: usize, out: &mut [f32], heads: usize, head: usize) {
    if out.is_empty() {
        return; // an empty sequence has no context rows
    }
    #[cfg(target_arch = "x86_64")]
    if head == 32 && crate::simd::kernel::available() {
        // SAFETY: AVX-512F is present (checked just above).
        unsafe { attend_32(qkv, start, out, heads) };
        return;
    }
    attend_any(qkv, start, out, heads, head)
}

/// [`attend_any`] for heads of 32 values (two 16-lane vectors).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn attend_32(qkv: &[f32], start: usize, out: &mut [f32], heads: usize) {
    use std::arch::x86_64::*;
    let hidden = heads * 32;
    let width = 3 * hidden;
    let len = out.len() / hidden;
    assert!(
        qkv.len() >= (start + len) * width,
        "qkv holds every row of the sequence"
    );
    let scale = _mm512_set1_ps(32f32.sqrt().recip());
    let mut weights = vec![0.0f32; len];
    for h in 0..heads {
        // Rows start..start + len of `qkv` exist (asserted above) and each head's 32 query, key and value values
        // lie inside its row, so every pointer `at` gives has 32 readable values.
        let at = |i: usize, part: usize| -> *const f32 {
            qkv[(start + i) * width + part * hidden + h * 32..][..32].as_ptr()
        };
        for i in 0..len {
            let q = at(i, 0);
            // SAFETY: AVX-512F is enabled; `q`, `k` and `v` each point at 32 readable values (see `at`).
            let (q0, q1) = unsafe {
                (
                    _mm512_mul_ps(_mm512_loadu_ps(q), scale),
                    _mm512_mul_ps(_mm512_loadu_ps(q.add(16)), scale),
                )
            };
            for (j, w) in weights.iter_mut().enumerate() {
                let k = at(j, 1);
                *w = unsafe {
                    let s = _mm512_mul_ps(q0, _mm512_loadu_ps(k));
                    _mm512_reduce_add_ps(_mm512_fmadd_ps(q1, _mm512_loadu_ps(k.add(16)), s))
                };
            }
            softmax(&mut weights);
            let (mut o0, mut o1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for (j, &p) in weights.iter().enumerate() {
                let v = at(j, 2);
                let p = _mm512_set1_ps(p);
                unsafe {
                    o0 = _mm512_fmadd_ps(p, _mm512_loadu_ps(v), o0);
                    o1 = _mm512_fmadd_ps(p, _mm512_loadu_ps(v.add(16)), o1);
                }
            }
            let o = &mut out[i * hidden + h * 32..][..32];
            // SAFETY: `o` holds 32 writable values.
            unsafe {
                _mm512_storeu_ps(o.as_mut_ptr(), o0);
                _mm512_storeu_ps(o.as_mut_ptr().add(16), o1);
            }
        }
    }
}

#[inline(always)]
fn attend_any(qkv: &[f32], start: usize, out: &mut [f32], heads: usize, head: usize) {
    let hidden = heads * head;
    let width = 3 * hidden;
    let scale = (head as f32).sqrt().recip();
    let len = out.len() / hidden;
    let token = |i: usize, part: usize, h: usize| {
        &qkv[(start + i) * width + part * hidden + h * head..][..head]
    };
    // Per head, the keys dimension-major (`keys[d · len + j]`), so a query's scores accumulate over all keys at
    // once (vectorised over keys) instead of one horizontal sum per key.
    let mut keys = vec![0.0f32; head * len];
    let mut weights = vec![0.0f32; len];
    for h in 0..heads {
        for j in 0..len {
            for (d, &k) in token(j, 1, h).iter().enumerate() {
                keys[d * len + j] = k;
            }
        }
        for i in 0..len {
            weights.fill(0.0);
            for (&q, column) in token(i, 0, h).iter().zip(keys.chunks_exact(len)) {
                let q = q * scale;
                for (w, &k) in weights.iter_mut().zip(column) {
                    *w += q * k;
                }
            }
            softmax(&mut weights);
            let o = &mut out[i * hidden + h * head..][..head];
            for (j, &p) in weights.iter().enumerate() {
                for (o, v) in o.iter_mut().zip(token(j, 2, h)) {
                    *o += p * v;
                }
            }
        }
    }
}

#[inline(always)]
fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let total = sum(x).recip();
    for v in x.iter_mut() {
        *v *= total;
    }
}

/// `Σ x` over eight lanes.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    let mut lanes = [0.0f32; 8];
    for c in chunks {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{D, Device};

    /// The packed, unmasked host attention equals Candle's padded, masked attention: heads of 4 (the general
    /// path) and of 32 (MiniLM's, the AVX-512 path where the CPU has it).
    #[test]
    fn self_attention_equals_masked_attention_over_a_padded_batch() {
        for head in [4, 32] {
            attention_case(2, head);
        }
    }

    fn attention_case(heads: usize, head: usize) {
        let seq = 5usize;
        let hidden = heads * head;
        let lens = [5usize, 3, 0, 1];
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let padded: Vec<f32> = (0..lens.len() * seq * 3 * hidden).map(|_| next()).collect();
        let dev = Device::Cpu;
        let x = Tensor::from_vec(padded, (lens.len(), seq, 3 * hidden), &dev).unwrap();
        let packed = unpad(&x, &lens).unwrap();
        let got = self_attention(&packed, &lens, heads, head);
        let got = pad(&got, &lens, seq, hidden, &x).unwrap();

        let parts = x.reshape((lens.len(), seq, 3, heads, head)).unwrap();
        let part = |i: usize| {
            parts
                .narrow(2, i, 1)
                .and_then(|p| p.squeeze(2))
                .and_then(|p| p.transpose(1, 2))
                .and_then(|p| p.contiguous())
                .unwrap()
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let mask: Vec<f32> = lens
            .iter()
            .flat_map(|&l| (0..seq).map(move |j| if j < l { 0.0 } else { f32::MIN }))
            .collect();
        let mask = Tensor::from_vec(mask, (lens.len(), 1, 1, seq), &dev).unwrap();
        let scores = (q.matmul(&k.t().unwrap()).unwrap() / (head as f64).sqrt())
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
        let want = probs
            .matmul(&v)
            .and_then(|c| c.transpose(1, 2))
            .and_then(|c| c.contiguous())
            .and_then(|c| c.reshape((lens.len(), seq, hidden)))
            .unwrap();
        let (got, want) = (
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let mut at = 0;
        for (b, &len) in lens.iter().enumerate() {
            for i in 0..seq {
                for _ in 0..hidden {
                    let (g, w) = (got[at], want[at]);
                    if i < len {
                        assert!((g - w).abs() < 1e-5, "batch {b} position {i}: {g} vs {w}");
                    } else {
                        assert_eq!(g, 0.0, "padding stays zero");
                    }
                    at += 1;
                }
            }
        }
    }

    #[test]
    fn add_and_norm_equals_candle_layer_norm() {
        let dev = Device::Cpu;
        let gamma = Tensor::new(&[1.0f32, 2.0, 0.5, -1.0], &dev).unwrap();
        let beta = Tensor::new(&[0.0f32, 0.1, -0.2, 0.3], &dev).unwrap();
        let norm = LayerNorm::new(gamma, beta, 1e-12);
        let x = [0.3f32, -1.2, 2.5, 0.7, 1.0, 1.0, 1.0, 1.5];
        let residual = [0.1f32, 0.2, -0.3, 0.4, 0.0, 0.5, -0.5, 0.25];
        let sum: Vec<f32> = x.iter().zip(&residual).map(|(a, b)| a + b).collect();
        let want =
            candle_core::Module::forward(&norm, &Tensor::from_vec(sum, (2, 4), &dev).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
        let mut got = x.to_vec();
        HostNorm::of(&norm)
            .unwrap()
            .add_and_norm(&mut got, &residual);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn lengths_read_right_padded_masks_and_refuse_others() {
        let dev = Device::Cpu;
        let mask = Tensor::new(&[[1u32, 1, 0], [1, 1, 1]], &dev).unwrap();
        assert_eq!(lengths(&mask).unwrap(), [2, 3]);
        let bad = Tensor::new(&[[1u32, 0, 1]], &dev).unwrap();
        assert!(lengths(&bad).unwrap_err().to_string().contains("row 0"));
    }
}
