//! Cosine scores of many queries against many candidates, a block at a time: each block is one Candle matrix
//! product (GEMM on CPU, cuBLAS on a GPU) of a slice of queries with a slice of candidates, handed to a visitor and
//! dropped. The full queries × candidates matrix never exists in memory; a block holds at most [`BLOCK_SCORES`].
//! On AVX-512 CPUs an optimised build multiplies blocks with vlmdb's own kernel ([`crate::simd::kernel`]) instead, into
//! one reused buffer.

use std::sync::{Mutex, PoisonError};

use candle_core::{Device, Storage, Tensor};
use rayon::prelude::*;

use super::space::Vectors;
use crate::error::{Error, Result};
use crate::simd::kernel::{self, Panels};

/// Most scores in one block (16 MiB of f32). Kept under glibc's largest dynamic mmap threshold (32 MiB): a block
/// that size is carved from memory the previous block freed, where a larger one is a fresh mapping whose every page
/// faults on first write (on virtual machines that cost ~40 % of the product's time).
pub const BLOCK_SCORES: usize = 4 << 20;

/// Queries per block (with [`BLOCK_SCORES`], 4,096 candidates per block).
const QUERY_BLOCK: usize = 1024;

/// `n` split into `ceil(n / cap)` spans of near-equal size (5,000 candidates at cap 4,096 are two blocks of 2,500,
/// not 4,096 + 904).
fn spans(n: usize, cap: usize) -> impl Iterator<Item = (usize, usize)> {
    let parts = n.div_ceil(cap.max(1)).max(1);
    let size = n.div_ceil(parts);
    (0..n)
        .step_by(size.max(1))
        .map(move |start| (start, size.min(n - start)))
}

/// Fail unless `a` and `b` have the same width, naming both.
pub fn same_dim(a_name: &str, a: &Vectors, b_name: &str, b: &Vectors) -> Result<()> {
    if a.dim != b.dim {
        return Err(Error::DimensionMismatch {
            left: a_name.to_string(),
            left_dim: a.dim,
            right: b_name.to_string(),
            right_dim: b.dim,
        });
    }
    Ok(())
}

pub use crate::simd::kernel::Block;

/// Rows of f32 vectors where their blocks are multiplied: a Candle tensor on a device, or host memory for
/// [`kernel`]. Made once and multiplied block by block (k-means multiplies the same points by new centres every step).
pub struct Matrix {
    data: Data,
    rows: usize,
    dim: usize,
}

enum Data {
    Tensor(Tensor),
    Host(Vec<f32>),
}

impl Matrix {
    /// `rows` × `dim` row-major values.
    pub fn new(values: &[f32], rows: usize, dim: usize, device: &Device) -> Result<Matrix> {
        let data = if kernel::runs_on(device) {
            Data::Host(values.to_vec())
        } else {
            Data::Tensor(
                Tensor::from_slice(values, (rows, dim), device)
                    .map_err(Error::tensor("similarity scores"))?,
            )
        };
        Ok(Matrix { data, rows, dim })
    }

    pub fn of(vectors: &Vectors, device: &Device) -> Result<Matrix> {
        Matrix::new(&vectors.data, vectors.len(), vectors.dim, device)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Call `visit` with every block of `queries` × `candidates` scores, queries in the outer loop. `candidate_block`
/// caps the candidates per block (0 = as many as fit in [`BLOCK_SCORES`] with a full query block).
pub fn for_each_block(
    queries: &Vectors,
    candidates: &Vectors,
    device: &Device,
    candidate_block: usize,
    visit: impl FnMut(&Block) -> Result<()>,
) -> Result<()> {
    same_dim("the queries", queries, "the candidates", candidates)?;
    if queries.is_empty() || candidates.is_empty() {
        return Ok(());
    }
    let queries = Matrix::of(queries, device)?;
    let candidates = Matrix::of(candidates, device)?;
    for_each_block_of(&queries, &candidates, candidate_block, visit)
}

/// [`for_each_block`] over matrices already on the device (same width, neither empty).
pub fn for_each_block_of(
    queries: &Matrix,
    candidates: &Matrix,
    candidate_block: usize,
    mut visit: impl FnMut(&Block) -> Result<()>,
) -> Result<()> {
    debug_assert_eq!(queries.dim, candidates.dim);
    let n = candidates.rows;
    let cap = if candidate_block == 0 {
        BLOCK_SCORES / QUERY_BLOCK
    } else {
        candidate_block
    };
    let cols_cap = cap.clamp(1, n);
    // Few candidates (k-means centres) take more queries per block: one tall product is faster than many.
    let rows_cap = (BLOCK_SCORES / cols_cap).max(QUERY_BLOCK);
    let (queries, candidates) = match (&queries.data, &candidates.data) {
        (Data::Host(q), Data::Host(c)) => {
            let shape = (queries.rows, n, queries.dim);
            return host_blocks(q, c, shape, rows_cap, cols_cap, visit);
        }
        (Data::Tensor(q), Data::Tensor(c)) => (q, c),
        _ => unreachable!("both matrices are made for one device"),
    };
    let tensor = Error::tensor("similarity scores");
    // Each candidate block is transposed into a contiguous dim × cols right-hand side once (GEMM multiplies that
    // faster than a transposed view); together they take the memory of the candidates once more.
    let column_blocks = spans(n, cols_cap)
        .map(|(c0, cols)| {
            let t = candidates
                .narrow(0, c0, cols)
                .and_then(|c| c.t())
                .and_then(|t| t.contiguous())?;
            Ok((c0, cols, t))
        })
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(tensor)?;
    for (q0, rows) in spans(queries.dim(0).map_err(tensor)?, rows_cap) {
        let q = queries.narrow(0, q0, rows).map_err(tensor)?;
        for (c0, cols, right) in &column_blocks {
            let (c0, cols) = (*c0, *cols);
            let product = q.matmul(right).map_err(tensor)?;
            // On CPU the block is read where GEMM wrote it; from a GPU it is copied back once.
            let (storage, layout) = product.storage_and_layout();
            let copied;
            let scores: &[f32] = match (&*storage, layout.contiguous_offsets()) {
                (Storage::Cpu(cpu), Some((start, end))) => {
                    &cpu.as_slice::<f32>().map_err(tensor)?[start..end]
                }
                _ => {
                    copied = product
                        .flatten_all()
                        .and_then(|s| s.to_vec1::<f32>())
                        .map_err(tensor)?;
                    &copied
                }
            };
            visit(&Block {
                q0,
                c0,
                rows,
                cols,
                scores,
            })?;
        }
    }
    Ok(())
}

/// The blocks of [`for_each_block_of`] through [`kernel`]: each candidate block packed once, each query block
/// packed when its turn comes, every product written into one reused buffer.
fn host_blocks(
    queries: &[f32],
    candidates: &[f32],
    shape: (usize, usize, usize),
    rows_cap: usize,
    cols_cap: usize,
    mut visit: impl FnMut(&Block) -> Result<()>,
) -> Result<()> {
    let mut scores = Vec::new();
    host_products(
        queries,
        candidates,
        shape,
        rows_cap,
        cols_cap,
        |q0, c0, left, right| {
            scores.resize(left.rows() * right.rows(), 0.0);
            kernel::product(left, right, &mut scores);
            visit(&Block {
                q0,
                c0,
                rows: left.rows(),
                cols: right.rows(),
                scores: &scores,
            })
        },
    )
}

/// `each(q0, c0, queries, candidates)` for every pair of packed query and candidate blocks, candidate blocks packed
/// once and query blocks in turn.
fn host_products(
    queries: &[f32],
    candidates: &[f32],
    (m, n, dim): (usize, usize, usize),
    rows_cap: usize,
    cols_cap: usize,
    mut each: impl FnMut(usize, usize, &Panels, &Panels) -> Result<()>,
) -> Result<()> {
    let column_blocks: Vec<(usize, Panels)> = spans(n, cols_cap)
        .map(|(c0, cols)| {
            (
                c0,
                Panels::candidates(&candidates[c0 * dim..(c0 + cols) * dim], cols, dim),
            )
        })
        .collect();
    for (q0, rows) in spans(m, rows_cap) {
        let packed = Panels::queries(&queries[q0 * dim..(q0 + rows) * dim], rows, dim);
        for (c0, right) in &column_blocks {
            each(q0, *c0, &packed, right)?;
        }
    }
    Ok(())
}

/// What a parallel pass over score stripes ([`tally`]) accumulates. Every worker thread counts into its own copy
/// of the starting value; the copies are merged at the end, and merging adds, so the starting value must hold no
/// counts yet.
pub trait Tally: Clone + Send + Sync {
    fn merge(&mut self, other: Self);
}

impl<T: Tally> Tally for Vec<T> {
    fn merge(&mut self, other: Self) {
        debug_assert_eq!(self.len(), other.len());
        for (mine, theirs) in self.iter_mut().zip(other) {
            mine.merge(theirs);
        }
    }
}

impl<A: Tally, B: Tally> Tally for (A, B) {
    fn merge(&mut self, other: Self) {
        self.0.merge(other.0);
        self.1.merge(other.1);
    }
}

/// Rows of a block handed to one [`tally`] visit on the Candle path.
const STRIPE_ROWS: usize = 16;

/// Every score of `queries` × `candidates`, a stripe (a [`Block`] of a few rows) at a time, counted into `start`:
/// `visit(counts, stripe)` runs on every worker thread at once, each with its own counts (see [`Tally`]), and the
/// merged counts come back. On the kernel's path the stripes are visited as the kernel finishes them, while they
/// are in cache; no block of scores is ever written to memory. Elsewhere blocks from [`for_each_block`] are cut
/// into stripes of rows.
pub fn tally<T: Tally>(
    queries: &Vectors,
    candidates: &Vectors,
    device: &Device,
    start: T,
    visit: impl Fn(&mut T, &Block) + Sync,
) -> Result<T> {
    same_dim("the queries", queries, "the candidates", candidates)?;
    if queries.is_empty() || candidates.is_empty() {
        return Ok(start);
    }
    // One slot per worker thread (and one for a caller outside the pool); each is locked only by its own thread.
    let slots: Vec<Mutex<Option<T>>> = (0..=rayon::current_num_threads())
        .map(|_| Mutex::new(None))
        .collect();
    let each = |stripe: &Block| {
        let slot = rayon::current_thread_index()
            .unwrap_or(usize::MAX)
            .min(slots.len() - 1);
        let mut counts = slots[slot].lock().unwrap_or_else(PoisonError::into_inner);
        visit(counts.get_or_insert_with(|| start.clone()), stripe);
    };
    let left = Matrix::of(queries, device)?;
    let right = Matrix::of(candidates, device)?;
    if let (Data::Host(q), Data::Host(c)) = (&left.data, &right.data) {
        let shape = (left.rows, right.rows, left.dim);
        let cols_cap = (BLOCK_SCORES / QUERY_BLOCK).clamp(1, right.rows);
        host_products(q, c, shape, QUERY_BLOCK, cols_cap, |q0, c0, l, r| {
            kernel::product_stripes(l, r, (q0, c0), each);
            Ok(())
        })?;
    } else {
        for_each_block_of(&left, &right, 0, |block| {
            (0..block.rows)
                .into_par_iter()
                .step_by(STRIPE_ROWS)
                .for_each(|r0| {
                    let rows = STRIPE_ROWS.min(block.rows - r0);
                    each(&Block {
                        q0: block.q0 + r0,
                        c0: block.c0,
                        rows,
                        cols: block.cols,
                        scores: &block.scores[r0 * block.cols..(r0 + rows) * block.cols],
                    });
                });
            Ok(())
        })?;
    }
    let mut counts = slots
        .into_iter()
        .filter_map(|slot| slot.into_inner().unwrap_or_else(PoisonError::into_inner));
    let Some(mut total) = counts.next() else {
        return Ok(start);
    };
    for more in counts {
        total.merge(more);
    }
    Ok(total)
}

/// ‖a − b‖² in f64.
pub fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum()
}

/// `a · b` in f64, rounded to f32: the reference score of one pair, independent of GEMM's summation order.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum::<f64>() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_near_equal_and_cover_everything() {
        let got: Vec<_> = spans(5000, 4096).collect();
        assert_eq!(got, [(0, 2500), (2500, 2500)]);
        let got: Vec<_> = spans(10, 3).collect();
        assert_eq!(got, [(0, 3), (3, 3), (6, 3), (9, 1)]);
        assert_eq!(spans(7, 100).collect::<Vec<_>>(), [(0, 7)]);
        assert_eq!(spans(0, 4).count(), 0);
    }

    #[test]
    fn blocks_cover_every_pair_once() {
        let q = Vectors::from_rows(
            "q",
            2,
            (0..5)
                .map(|i| (format!("q{i}"), vec![1.0, i as f32]))
                .collect(),
        )
        .unwrap();
        let c = Vectors::from_rows(
            "c",
            2,
            (0..7)
                .map(|i| (format!("c{i}"), vec![i as f32, 1.0]))
                .collect(),
        )
        .unwrap();
        let mut seen = [0u32; 35];
        for_each_block(&q, &c, &Device::Cpu, 3, |b| {
            for r in 0..b.rows {
                for (j, s) in b.row(r).iter().enumerate() {
                    let (qi, ci) = (b.q0 + r, b.c0 + j);
                    assert!((s - dot(q.row(qi), c.row(ci))).abs() < 1e-6);
                    seen[qi * 7 + ci] += 1;
                }
            }
            Ok(())
        })
        .unwrap();
        assert!(seen.iter().all(|&n| n == 1));
    }
}
