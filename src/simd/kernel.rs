//! The CPU kernel behind score blocks on AVX-512 machines: `C = Q · Kᵀ` for row-major queries `Q` (m × d) and
//! candidates `K` (n × d), written row-major (m × n).
//!
//! It is the BLIS scheme specialised to this one shape. Candidates are packed into panels of [`NR`] = 32 vectors,
//! dimension-major (`panel[k][0..32]`, 64-byte aligned), and queries into panels of [`MR`] = 12. One call of the
//! micro-kernel keeps a 12 × 32 tile of scores in 24 of the 32 vector registers: per dimension it loads two vectors of
//! candidate values and broadcasts twelve query values, 24 fused multiply-adds. A query panel (12 × 512 floats, 24 KiB)
//! stays in L1 while the candidate panels of one sub-block (256 × 512 floats, 512 KiB) stream from L2; the dimension
//! is cut into chunks of [`KC`] so that holds for any width. Work is split over the thread pool by candidate
//! sub-block (and query chunk when there are few candidates, as for k-means centres).
//!
//! The `gemm` crate reaches about a third of these cores' peak on score blocks (its 64 × 6 tile streams the query
//! side from L2); this kernel is the one that runs where AVX-512 is present. Elsewhere (and on GPUs) blocks go
//! through Candle's matrix product.

use std::ops::Range;

use rayon::prelude::*;

/// One block of scores: queries `q0..q0 + rows`, candidates `c0..c0 + cols`, row-major.
pub struct Block<'a> {
    pub q0: usize,
    pub c0: usize,
    pub rows: usize,
    pub cols: usize,
    pub scores: &'a [f32],
}

impl Block<'_> {
    /// The scores of query `q0 + r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.scores[r * self.cols..(r + 1) * self.cols]
    }
}

/// Query rows per tile (broadcast operand).
pub const MR: usize = 12;
/// Candidates per tile (two 16-lane vectors).
pub const NR: usize = 32;
/// Dimensions per pass: a query panel of `MR × KC` floats (24 KiB) stays in L1.
pub const KC: usize = 512;
/// Bytes of candidate panels one thread streams from L2 per pass.
const L2_BYTES: usize = 512 << 10;

/// Whether this CPU runs the kernel (AVX-512F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether products on `device` go through this kernel: a CPU with AVX-512F. The same in every build, so the path
/// tests and `cargo run` take is the one optimised builds take (only its speed differs).
pub fn runs_on(device: &candle_core::Device) -> bool {
    device.is_cpu() && available()
}

/// 64 bytes of floats: the unit of packed storage, so every candidate-panel load is one aligned cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// Rows packed into panels of `width` rows, dimension-major inside a panel, the last panel zero-padded.
pub struct Panels {
    lines: Vec<Line>,
    rows: usize,
    dim: usize,
    width: usize,
}

impl Panels {
    /// Pack `rows` × `dim` row-major `values` into panels of `width` rows (`MR` or `NR`).
    fn pack(values: &[f32], rows: usize, dim: usize, width: usize) -> Panels {
        assert_eq!(values.len(), rows * dim, "packed values must be rows × dim");
        let panels = rows.div_ceil(width);
        let floats = panels * dim * width;
        let mut lines = vec![Line([0.0; 16]); floats.div_ceil(16)];
        // SAFETY: `Line` is 16 f32 with no padding (repr(C)), so the lines are `16 × len` contiguous floats.
        let flat = unsafe {
            std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<f32>(), lines.len() * 16)
        };
        // With no dimensions `flat` is empty and there is nothing to pack (rayon refuses a chunk size of 0).
        flat.par_chunks_mut((dim * width).max(1))
            .take(panels)
            .enumerate()
            .for_each(|(p, panel)| {
                let first = p * width;
                let rows_here = width.min(rows - first);
                let source = &values[first * dim..(first + rows_here) * dim];
                match width {
                    MR => pack_panel::<MR>(source, rows_here, dim, panel),
                    NR => pack_panel::<NR>(source, rows_here, dim, panel),
                    _ => unreachable!("panels are MR or NR wide"),
                }
            });
        Panels {
            lines,
            rows,
            dim,
            width,
        }
    }

    /// Candidates: panels of [`NR`].
    pub fn candidates(values: &[f32], rows: usize, dim: usize) -> Panels {
        Panels::pack(values, rows, dim, NR)
    }

    /// Queries: panels of [`MR`].
    pub fn queries(values: &[f32], rows: usize, dim: usize) -> Panels {
        Panels::pack(values, rows, dim, MR)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    fn panels(&self) -> usize {
        self.rows.div_ceil(self.width)
    }

    /// Start of panel `p` at dimension `k`.
    fn at(&self, p: usize, k: usize) -> *const f32 {
        debug_assert!(p < self.panels() && k <= self.dim);
        // SAFETY (of the arithmetic): within the allocation, as p < panels and k ≤ dim.
        unsafe {
            self.lines
                .as_ptr()
                .cast::<f32>()
                .add((p * self.dim + k) * self.width)
        }
    }
}

/// Transpose `rows` (≤ `W`) row-major rows of `dim` values into one dimension-major panel (`panel[k · W + r]`),
/// the rows side by side: each dimension's `W` values are written together, so the stores run contiguously.
fn pack_panel<const W: usize>(source: &[f32], rows: usize, dim: usize, panel: &mut [f32]) {
    if rows == W {
        let rows: [&[f32]; W] = std::array::from_fn(|r| &source[r * dim..(r + 1) * dim]);
        for (k, column) in panel.chunks_exact_mut(W).enumerate() {
            for (value, row) in column.iter_mut().zip(&rows) {
                *value = row[k];
            }
        }
    } else {
        for (r, row) in source.chunks_exact(dim).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                panel[k * W + r] = v;
            }
        }
    }
}

/// A raw pointer to the output, shared by the workers; each writes only its own tiles.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: workers write disjoint tiles (distinct query rows × candidate columns) of one buffer that outlives them.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method, so closures capture the whole `Send` wrapper rather than its raw field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `out = queries · candidatesᵀ`, `out` row-major `queries.rows() × candidates.rows()`.
///
/// Panics unless both are packed for their roles with the same width and `out` has the right length, and unless
/// [`available`] (callers check it once).
pub fn product(queries: &Panels, candidates: &Panels, out: &mut [f32]) {
    assert_eq!(out.len(), queries.rows * candidates.rows);
    if queries.dim == 0 {
        out.fill(0.0);
        return;
    }
    let n = candidates.rows;
    let out = Out(out.as_mut_ptr());
    jobs(queries, candidates, |quers, cands| {
        // SAFETY: tile (qp, cp) of `out` (m × n, row stride n) lies inside it and belongs to this job alone.
        let at = |qp: usize, cp: usize| (unsafe { out.get().add(qp * MR * n + cp * NR) }, n);
        job(queries, candidates, quers, cands, at, |_| {});
    });
}

/// The same product handed out a stripe at a time instead of written: `visit` sees the scores of one query panel
/// (up to [`MR`] rows) against one candidate sub-block (up to 256 candidates) as soon as they are final, while they
/// are still in this core's cache, so that counting over them costs no trip to memory. Stripes cover every
/// (query, candidate) pair once and come from every worker thread at once. `origin` is added to the stripes'
/// query and candidate offsets (the place of these panels in a larger product).
///
/// Same panics as [`product`].
pub fn product_stripes(
    queries: &Panels,
    candidates: &Panels,
    origin: (usize, usize),
    visit: impl Fn(&Block) + Sync,
) {
    let (m, n, dim) = (queries.rows, candidates.rows, queries.dim);
    let passes = dim.div_ceil(KC).max(1);
    jobs(queries, candidates, |quers, cands| {
        let (q_first, c_first) = (quers.start, cands.start);
        let first = c_first * NR;
        let cols = (cands.end * NR).min(n) - first;
        // One pass over the dimensions: each query panel's stripe is final after its pass, so one stripe of
        // scratch serves them all. Several passes: the job's stripes accumulate until the last one.
        let held = if passes == 1 { 1 } else { quers.len() };
        let mut scratch = vec![0.0f32; held * MR * cols];
        let base = Out(scratch.as_mut_ptr());
        let slot = |qp: usize| if passes == 1 { 0 } else { qp - q_first };
        let at = |qp: usize, cp: usize| {
            // SAFETY: stripe `slot(qp)` holds MR rows of `cols`; tile cp starts (cp − first panel) · NR into it.
            let row = unsafe { base.get().add(slot(qp) * MR * cols) };
            (unsafe { row.add((cp - c_first) * NR) }, cols)
        };
        let done = |qp: usize| {
            let rows = MR.min(m - qp * MR);
            // SAFETY: the stripe's `rows` rows were written by this job's tiles (no writes are in flight).
            let scores = unsafe {
                std::slice::from_raw_parts(base.get().add(slot(qp) * MR * cols), rows * cols)
            };
            visit(&Block {
                q0: origin.0 + qp * MR,
                c0: origin.1 + first,
                rows,
                cols,
                scores,
            });
        };
        if dim == 0 {
            for qp in quers {
                done(qp);
            }
        } else {
            job(queries, candidates, quers, cands, at, done);
        }
    });
}

/// Split the product into jobs (candidate sub-blocks that stream from L2, and query chunks when there are few
/// candidates, as for k-means centres) and run `each(query panels, candidate panels)` over the thread pool.
fn jobs(queries: &Panels, candidates: &Panels, each: impl Fn(Range<usize>, Range<usize>) + Sync) {
    assert!(queries.width == MR && candidates.width == NR && queries.dim == candidates.dim);
    assert!(available(), "the score kernel needs AVX-512F");
    if queries.rows == 0 || candidates.rows == 0 {
        return;
    }
    let kc = KC.min(queries.dim).max(1);
    let per_block = (L2_BYTES / (kc * 4 * NR)).max(1); // candidate panels per sub-block
    let blocks = candidates.panels().div_ceil(per_block);
    let threads = rayon::current_num_threads();
    let query_chunks = (4 * threads).div_ceil(blocks).min(queries.panels()).max(1);
    let per_chunk = queries.panels().div_ceil(query_chunks);
    (0..blocks * query_chunks).into_par_iter().for_each(|job| {
        let (block, chunk) = (job / query_chunks, job % query_chunks);
        let cands = block * per_block..((block + 1) * per_block).min(candidates.panels());
        let quers = chunk * per_chunk..((chunk + 1) * per_chunk).min(queries.panels());
        if !quers.is_empty() {
            each(quers, cands);
        }
    });
}

/// One job's tiles: every query panel of `quers` against every candidate panel of `cands`, the dimensions in
/// passes of [`KC`]. `at(qp, cp)` is where tile (qp, cp) goes and its row stride; `done(qp)` is called once the
/// last pass has finished query panel `qp`'s tiles. `dim` must be above 0.
fn job(
    queries: &Panels,
    candidates: &Panels,
    quers: Range<usize>,
    cands: Range<usize>,
    at: impl Fn(usize, usize) -> (*mut f32, usize),
    mut done: impl FnMut(usize),
) {
    let (m, n, dim) = (queries.rows, candidates.rows, queries.dim);
    let kc = KC.min(dim);
    for k0 in (0..dim).step_by(kc) {
        let len = kc.min(dim - k0);
        let last = k0 + len == dim;
        for qp in quers.clone() {
            let rows = MR.min(m - qp * MR);
            for cp in cands.clone() {
                let cols = NR.min(n - cp * NR);
                let (dst, ld) = at(qp, cp);
                // SAFETY: AVX-512F is available (checked in `jobs`); the panels hold `len` dimensions from k0;
                // `at` gives a rows × cols tile with stride `ld` that is this job's own.
                unsafe {
                    tile(
                        queries.at(qp, k0),
                        candidates.at(cp, k0),
                        len,
                        dst,
                        ld,
                        rows,
                        cols,
                        k0 > 0,
                    );
                }
            }
            if last {
                done(qp);
            }
        }
    }
}

/// One `rows × cols` (≤ 12 × 32) tile over `len` dimensions; adds to `dst` when `accumulate`, else overwrites it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    q: *const f32,
    c: *const f32,
    len: usize,
    dst: *mut f32,
    ld: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees AVX-512F, `len` packed dimensions behind `q` (MR floats each) and `c` (NR
    // floats each, 64-byte aligned), and a rows × cols tile at `dst` with row stride `ld`.
    unsafe {
        // Twelve named pairs of accumulators (an array of them is spilled to the stack by LLVM).
        macro_rules! tile_body {
            ($($r:literal => $lo:ident $hi:ident),*) => {{
                $(let mut $lo = _mm512_setzero_ps(); let mut $hi = _mm512_setzero_ps();)*
                for k in 0..len {
                    let b0 = _mm512_load_ps(c.add(k * NR));
                    let b1 = _mm512_load_ps(c.add(k * NR + 16));
                    let a = q.add(k * MR);
                    $(
                        let x = _mm512_set1_ps(*a.add($r));
                        $lo = _mm512_fmadd_ps(x, b0, $lo);
                        $hi = _mm512_fmadd_ps(x, b1, $hi);
                    )*
                }
                [$([$lo, $hi]),*]
            }};
        }
        let acc: [[__m512; 2]; MR] = tile_body!(
            0 => a0 b0_, 1 => a1 b1_, 2 => a2 b2_, 3 => a3 b3_, 4 => a4 b4_, 5 => a5 b5_,
            6 => a6 b6_, 7 => a7 b7_, 8 => a8 b8_, 9 => a9 b9_, 10 => a10 b10_, 11 => a11 b11_
        );
        let lanes = |from: usize| -> __mmask16 {
            let valid = cols.saturating_sub(from).min(16);
            ((1u32 << valid) - 1) as __mmask16
        };
        let (m0, m1) = (lanes(0), lanes(16));
        for (r, acc) in acc.iter().enumerate().take(rows) {
            let row = dst.add(r * ld);
            let (mut v0, mut v1) = (acc[0], acc[1]);
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row.add(16)));
            }
            _mm512_mask_storeu_ps(row, m0, v0);
            _mm512_mask_storeu_ps(row.add(16), m1, v1);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    _: *const f32,
    _: *const f32,
    _: usize,
    _: *mut f32,
    _: usize,
    _: usize,
    _: usize,
    _: bool,
) {
    unreachable!("the score kernel is only used where `available()` is true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Run `check(m, n, dim, queries, candidates)` on seeded values for each (m, n, dim) shape, where the CPU
    /// has the kernel.
    fn on_shapes(
        shapes: &[(usize, usize, usize)],
        check: impl Fn(usize, usize, usize, &[f32], &[f32]),
    ) {
        if !available() {
            // CI must test the path optimised builds run: a CI machine without AVX-512F is a failure, not a pass.
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but this CPU has no AVX-512F: the score kernel cannot be tested here"
            );
            eprintln!("no AVX-512F on this CPU: the kernel is not used here");
            return;
        }
        for &(m, n, dim) in shapes {
            let q = values(m * dim, m as u64 * 31 + dim as u64);
            let c = values(n * dim, n as u64 * 17 + 5);
            check(m, n, dim, &q, &c);
        }
    }

    /// Every edge case of the tiling: partial tiles on both sides, several dimension passes (dim > KC), one panel.
    #[test]
    fn equals_the_plain_product() {
        let shapes = [
            (1, 1, 1),
            (13, 33, 7),
            (12, 32, 16),
            (50, 700, 64),
            (25, 40, KC + 77),
            (3, 300, 2 * KC),
        ];
        on_shapes(&shapes, |m, n, dim, q, c| {
            let mut out = vec![f32::NAN; m * n];
            product(
                &Panels::queries(q, m, dim),
                &Panels::candidates(c, n, dim),
                &mut out,
            );
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..dim)
                        .map(|k| f64::from(q[i * dim + k]) * f64::from(c[j * dim + k]))
                        .sum();
                    let got = f64::from(out[i * n + j]);
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "({m},{n},{dim}) [{i},{j}]: {got} vs {want}"
                    );
                }
            }
        });
    }

    /// Stripes cover every pair once, with the product's scores, on the same edge cases (dim > KC included).
    #[test]
    fn stripes_cover_every_pair_once_with_the_products_scores() {
        let shapes = [
            (1, 1, 1),
            (13, 33, 7),
            (50, 700, 64),
            (25, 40, KC + 77),
            (3, 300, 0),
        ];
        on_shapes(&shapes, |m, n, dim, q, c| {
            let (q, c) = (Panels::queries(q, m, dim), Panels::candidates(c, n, dim));
            let mut want = vec![f32::NAN; m * n];
            product(&q, &c, &mut want);
            let seen = std::sync::Mutex::new(vec![0u32; m * n]);
            product_stripes(&q, &c, (100, 1000), |stripe| {
                let mut seen = seen.lock().unwrap();
                assert!(stripe.rows <= MR && stripe.scores.len() == stripe.rows * stripe.cols);
                for r in 0..stripe.rows {
                    for (j, &score) in stripe.row(r).iter().enumerate() {
                        let (i, k) = (stripe.q0 - 100 + r, stripe.c0 - 1000 + j);
                        assert_eq!(
                            score.to_bits(),
                            want[i * n + k].to_bits(),
                            "({m},{n},{dim}) [{i},{k}]"
                        );
                        seen[i * n + k] += 1;
                    }
                }
            });
            assert!(
                seen.into_inner().unwrap().iter().all(|&s| s == 1),
                "({m},{n},{dim})"
            );
        });
    }
}
