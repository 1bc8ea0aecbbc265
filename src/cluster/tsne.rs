//! t-SNE 2-D views of a space (seed S3): conditional probabilities with a per-point bandwidth found by binary
//! search on the perplexity, symmetrised; a start drawn from the run's seeded [`Rng`]; gradient descent with early
//! exaggeration (12 for the first 250 iterations), momentum 0.5 then 0.8, per-coordinate gains, and scikit-learn's
//! automatic learning rate (max(n / 12 / 4, 50)). The same seed gives the same coordinates.
//!
//! Two methods, as scikit-learn's `TSNE(method=…)`:
//! - **exact**: affinities between every pair and the exact gradient (n² memory, so at most [`MAX_EXACT_POINTS`]).
//! - **Barnes–Hut** (van der Maaten 2014): affinities only to each item's ⌊3 · perplexity + 1⌋ nearest neighbours
//!   (exact neighbours from blocked matrix products, [`crate::eval::topk`]), attraction over those sparse pairs,
//!   repulsion from a [`quadtree`] rebuilt every step with the criterion width / distance < [`THETA`]. n log n per
//!   step, so any number of items.
//!
//! [`Method::Auto`] takes the exact method up to [`AUTO_EXACT_MAX`] items and Barnes–Hut above.
//! [`trustworthiness`] measures how well a view keeps neighbourhoods (scikit-learn's definition).

mod quadtree;

use candle_core::Device;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::eval::scores::squared_distance;
use crate::eval::space::Vectors;
use crate::eval::topk::top_k;
use crate::rng::Rng;
use quadtree::QuadTree;

/// Largest number of items the exact method accepts (it holds n² pair weights).
pub const MAX_EXACT_POINTS: usize = 5000;
/// Largest number of items [`Method::Auto`] gives to the exact method.
pub const AUTO_EXACT_MAX: usize = 1000;
/// The Barnes–Hut criterion (scikit-learn's default `angle`).
pub const THETA: f64 = 0.5;

/// How the gradient is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    Auto,
    Exact,
    BarnesHut,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Method> {
        match s {
            "auto" => Ok(Method::Auto),
            "exact" => Ok(Method::Exact),
            "barnes_hut" => Ok(Method::BarnesHut),
            other => Err(Error::Usage(format!(
                "unknown t-SNE method '{other}' (use auto, exact or barnes_hut)"
            ))),
        }
    }
}

/// The perplexity when none is given: scikit-learn's 30, lowered on small sets to (n − 1) / 3 (at least 1) so that
/// every item has 3 · perplexity neighbours to calibrate against (30 items: 9.67).
pub fn auto_perplexity(n: usize) -> f64 {
    30f64.min((n.saturating_sub(1) as f64 / 3.0).max(1.0))
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TsneOptions {
    /// Effective neighbours per item; `None`: [`auto_perplexity`] of the item count.
    pub perplexity: Option<f64>,
    pub iterations: usize,
    pub seed: u64,
    pub method: Method,
}

impl Default for TsneOptions {
    fn default() -> Self {
        TsneOptions {
            perplexity: None,
            iterations: 1000,
            seed: 0,
            method: Method::Auto,
        }
    }
}

fn squared_distances(data: &Vectors) -> Vec<f64> {
    let n = data.len();
    let mut d = vec![0f64; n * n];
    d.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for (j, slot) in row.iter_mut().enumerate() {
            if j != i {
                *slot = squared_distance(data.row(i), data.row(j));
            }
        }
    });
    d
}

/// The conditional probabilities p_{j|i} of one item over `distances` (squared, to the candidates j; `skip` is the
/// item itself when it is among them), with the bandwidth whose perplexity is exp(`target`).
fn conditional_row(distances: &[f64], skip: Option<usize>, target: f64) -> Vec<f64> {
    let (mut beta, mut lo, mut hi) = (1.0f64, f64::NEG_INFINITY, f64::INFINITY);
    let mut probs = vec![0f64; distances.len()];
    for _ in 0..100 {
        let mut sum = 0.0;
        for (j, (p, d)) in probs.iter_mut().zip(distances).enumerate() {
            *p = if Some(j) == skip {
                0.0
            } else {
                (-d * beta).exp()
            };
            sum += *p;
        }
        if sum <= 0.0 {
            sum = f64::MIN_POSITIVE;
        }
        // Entropy H = log(sum) + beta * Σ p_j d_j.
        let mut weighted = 0.0;
        for (p, d) in probs.iter_mut().zip(distances) {
            *p /= sum;
            weighted += *p * d;
        }
        let diff = sum.ln() + beta * weighted - target;
        if diff.abs() < 1e-5 {
            break;
        }
        if diff > 0.0 {
            lo = beta;
            beta = if hi.is_finite() {
                (beta + hi) / 2.0
            } else {
                beta * 2.0
            };
        } else {
            hi = beta;
            beta = if lo.is_finite() {
                (beta + lo) / 2.0
            } else {
                beta / 2.0
            };
        }
    }
    probs
}

/// Symmetrised joint probabilities P (n × n) for the target perplexity, over every pair.
fn dense_affinities(data: &Vectors, perplexity: f64) -> Vec<f64> {
    let n = data.len();
    let d = squared_distances(data);
    let target = perplexity.ln();
    let mut p = vec![0f64; n * n];
    p.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        row.copy_from_slice(&conditional_row(&d[i * n..(i + 1) * n], Some(i), target));
    });
    let mut joint = vec![0f64; n * n];
    joint.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for (j, slot) in row.iter_mut().enumerate() {
            *slot = ((p[i * n + j] + p[j * n + i]) / (2.0 * n as f64)).max(1e-12);
        }
    });
    joint
}

/// Symmetric sparse joint probabilities, row by row (compressed rows; columns ascending within a row).
#[derive(Debug, Clone, PartialEq)]
struct Sparse {
    offsets: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f64>,
}

impl Sparse {
    fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let span = self.offsets[i]..self.offsets[i + 1];
        self.columns[span.clone()]
            .iter()
            .zip(&self.values[span])
            .map(|(j, p)| (*j as usize, *p))
    }
}

/// P over each item's ⌊3 · perplexity + 1⌋ nearest neighbours (as scikit-learn's Barnes–Hut t-SNE):
/// conditional rows over the neighbours, then (P + Pᵀ) / Σ.
fn sparse_affinities(data: &Vectors, perplexity: f64) -> Result<Sparse> {
    let n = data.len();
    let k = ((3.0 * perplexity + 1.0).floor() as usize).min(n - 1);
    let itself: Vec<Option<u32>> = (0..n as u32).map(Some).collect();
    let neighbours = top_k(data, data, k, Some(&itself), &Device::Cpu)?;
    let target = perplexity.ln();
    let rows: Vec<Vec<(u32, f64)>> = neighbours
        .par_iter()
        .enumerate()
        .map(|(i, hits)| {
            let d: Vec<f64> = hits
                .iter()
                .map(|h| squared_distance(data.row(i), data.row(h.index as usize)))
                .collect();
            let p = conditional_row(&d, None, target);
            hits.iter().map(|h| h.index).zip(p).collect()
        })
        .collect();
    let mut entries: Vec<(u32, u32, f64)> = Vec::with_capacity(2 * n * k);
    for (i, row) in rows.iter().enumerate() {
        for &(j, p) in row {
            entries.push((i as u32, j, p));
            entries.push((j, i as u32, p));
        }
    }
    entries.par_sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let total: f64 = entries.iter().map(|e| e.2).sum::<f64>().max(f64::EPSILON);
    let mut sparse = Sparse {
        offsets: vec![0; n + 1],
        columns: Vec::with_capacity(entries.len()),
        values: Vec::with_capacity(entries.len()),
    };
    let mut entries = entries.into_iter().peekable();
    while let Some((i, j, mut p)) = entries.next() {
        while let Some(&(_, _, q)) = entries.peek().filter(|e| e.0 == i && e.1 == j) {
            p += q;
            entries.next();
        }
        sparse.columns.push(j);
        sparse.values.push(p / total);
        sparse.offsets[i as usize + 1] = sparse.columns.len();
    }
    for i in 1..=n {
        sparse.offsets[i] = sparse.offsets[i].max(sparse.offsets[i - 1]);
    }
    Ok(sparse)
}

/// The KL gradient over every pair: 4 Σ_j (e·p_ij − q_ij) w_ij (y_i − y_j), w = 1 / (1 + d²).
fn exact_gradient(y: &[f64], p: &[f64], exaggeration: f64, grad: &mut [f64]) {
    let n = y.len() / 2;
    let weight = |i: usize, j: usize| {
        let (dx, dy) = (y[2 * i] - y[2 * j], y[2 * i + 1] - y[2 * j + 1]);
        1.0 / (1.0 + dx * dx + dy * dy)
    };
    let total: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            (0..n)
                .filter(|&j| j != i)
                .map(|j| weight(i, j))
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    grad.par_chunks_mut(2).enumerate().for_each(|(i, g)| {
        let (mut gx, mut gy) = (0.0, 0.0);
        for j in (0..n).filter(|&j| j != i) {
            let w = weight(i, j);
            let q = (w / total).max(1e-12);
            let f = (exaggeration * p[i * n + j] - q) * w;
            gx += f * (y[2 * i] - y[2 * j]);
            gy += f * (y[2 * i + 1] - y[2 * j + 1]);
        }
        g[0] = 4.0 * gx;
        g[1] = 4.0 * gy;
    });
}

/// The Barnes–Hut gradient: exact attraction over the sparse pairs, quadtree repulsion normalised by its Z.
fn barnes_hut_gradient(y: &[f64], p: &Sparse, exaggeration: f64, grad: &mut [f64]) {
    let n = y.len() / 2;
    let tree = QuadTree::new(y);
    let repulsion: Vec<quadtree::Repulsion> = (0..n)
        .into_par_iter()
        .map(|i| tree.repulsion(i, THETA))
        .collect();
    let z = repulsion
        .iter()
        .map(|r| r.z)
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    grad.par_chunks_mut(2).enumerate().for_each(|(i, g)| {
        let (mut ax, mut ay) = (0.0, 0.0);
        for (j, pij) in p.row(i) {
            let (dx, dy) = (y[2 * i] - y[2 * j], y[2 * i + 1] - y[2 * j + 1]);
            let f = pij / (1.0 + dx * dx + dy * dy);
            ax += f * dx;
            ay += f * dy;
        }
        g[0] = 4.0 * (exaggeration * ax - repulsion[i].fx / z);
        g[1] = 4.0 * (exaggeration * ay - repulsion[i].fy / z);
    });
}

enum Affinities {
    Dense(Vec<f64>),
    Sparse(Sparse),
}

/// 2-D coordinates of every row of `data`.
/// The most gradient steps a t-SNE runs (sklearn's default is 1,000).
pub const MAX_ITERATIONS: usize = 100_000;

pub fn tsne(data: &Vectors, options: &TsneOptions) -> Result<Vec<[f64; 2]>> {
    if options.iterations > MAX_ITERATIONS {
        return Err(Error::Usage(format!(
            "t-SNE iterations must be at most {MAX_ITERATIONS}, got {}",
            options.iterations
        )));
    }
    let n = data.len();
    if n < 2 {
        return Err(Error::Usage(format!(
            "t-SNE needs at least 2 items; there are {n}"
        )));
    }
    let perplexity = options.perplexity.unwrap_or_else(|| auto_perplexity(n));
    if perplexity.is_nan() || perplexity <= 0.0 || perplexity >= n as f64 {
        return Err(Error::Usage(format!(
            "t-SNE perplexity must be above 0 and below the number of items ({n}), got {perplexity}"
        )));
    }
    let exact = match options.method {
        Method::Exact => true,
        Method::BarnesHut => false,
        Method::Auto => n <= AUTO_EXACT_MAX,
    };
    if exact && n > MAX_EXACT_POINTS {
        return Err(Error::Usage(format!(
            "exact t-SNE takes at most {MAX_EXACT_POINTS} items; there are {n} (use method barnes_hut or auto, \
             or narrow by dataset/split)"
        )));
    }
    let p = if exact {
        Affinities::Dense(dense_affinities(data, perplexity))
    } else {
        Affinities::Sparse(sparse_affinities(data, perplexity)?)
    };
    let mut rng = Rng::new(options.seed);
    let mut y: Vec<f64> = (0..2 * n).map(|_| rng.normal() * 1e-4).collect();
    let mut velocity = vec![0f64; 2 * n];
    let mut gains = vec![1f64; 2 * n];
    let learning_rate = (n as f64 / 12.0 / 4.0).max(50.0);
    let mut grad = vec![0f64; 2 * n];
    for it in 0..options.iterations {
        let (exaggeration, momentum) = if it < 250 { (12.0, 0.5) } else { (1.0, 0.8) };
        match &p {
            Affinities::Dense(p) => exact_gradient(&y, p, exaggeration, &mut grad),
            Affinities::Sparse(p) => barnes_hut_gradient(&y, p, exaggeration, &mut grad),
        }
        for c in 0..2 * n {
            gains[c] = if (grad[c] > 0.0) != (velocity[c] > 0.0) {
                gains[c] + 0.2
            } else {
                (gains[c] * 0.8).max(0.01)
            };
            velocity[c] = momentum * velocity[c] - learning_rate * gains[c] * grad[c];
            y[c] += velocity[c];
        }
        // Keep the view centred.
        for axis in 0..2 {
            let mean = (0..n).map(|i| y[2 * i + axis]).sum::<f64>() / n as f64;
            (0..n).for_each(|i| y[2 * i + axis] -= mean);
        }
    }
    Ok((0..n).map(|i| [y[2 * i], y[2 * i + 1]]).collect())
}

/// How well `embedded` keeps the `k` nearest neighbours of `original` (1 = perfectly), as scikit-learn's
/// `trustworthiness`: 1 − 2 / (n k (2n − 3k − 1)) Σᵢ Σ_{j new among i's k nearest in the view} (rank of j among i's
/// neighbours in the original space − k).
pub fn trustworthiness(original: &Vectors, embedded: &[[f64; 2]], k: usize) -> f64 {
    let n = original.len();
    let d = squared_distances(original);
    let mut penalty = 0.0;
    for i in 0..n {
        // Ranks in the original space (1 = nearest other point), ties by index.
        let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        order.sort_by(|&a, &b| d[i * n + a].total_cmp(&d[i * n + b]).then(a.cmp(&b)));
        let mut rank = vec![0usize; n];
        for (r, &j) in order.iter().enumerate() {
            rank[j] = r + 1;
        }
        let mut view: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        let dist = |j: usize| {
            (embedded[i][0] - embedded[j][0]).powi(2) + (embedded[i][1] - embedded[j][1]).powi(2)
        };
        view.sort_by(|&a, &b| dist(a).total_cmp(&dist(b)).then(a.cmp(&b)));
        for &j in view.iter().take(k) {
            if rank[j] > k {
                penalty += (rank[j] - k) as f64;
            }
        }
    }
    let (n, k) = (n as f64, k as f64);
    1.0 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)) * penalty
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five planted clusters of 24 points in 16 dimensions.
    fn planted() -> Vectors {
        planted_n(120)
    }

    /// Five planted clusters of `n / 5` points each in 16 dimensions.
    fn planted_n(n: usize) -> Vectors {
        let mut rng = Rng::new(9);
        let centres: Vec<Vec<f32>> = (0..5)
            .map(|_| (0..16).map(|_| rng.normal() as f32).collect())
            .collect();
        let rows = (0..n)
            .map(|i| {
                let v = centres[i % 5]
                    .iter()
                    .map(|c| c + 0.3 * rng.normal() as f32)
                    .collect();
                (format!("p{i:03}"), v)
            })
            .collect();
        Vectors::from_rows("planted", 16, rows).unwrap()
    }

    #[test]
    fn keeps_planted_neighbourhoods_and_is_deterministic() {
        let data = planted();
        for method in [Method::Exact, Method::BarnesHut] {
            let options = TsneOptions {
                perplexity: Some(15.0),
                iterations: 500,
                seed: 4,
                method,
            };
            let a = tsne(&data, &options).unwrap();
            let t = trustworthiness(&data, &a, 5);
            assert!(t >= 0.9, "{method:?}: trustworthiness {t}");
            assert_eq!(a, tsne(&data, &options).unwrap(), "same seed, same view");
            let b = tsne(&data, &TsneOptions { seed: 5, ..options }).unwrap();
            assert_ne!(a, b);
        }
    }

    /// Barnes–Hut on more items than the exact method takes.
    #[test]
    fn barnes_hut_scales_past_the_exact_limit() {
        let data = planted_n(MAX_EXACT_POINTS + 5);
        let options = TsneOptions {
            perplexity: Some(10.0),
            iterations: 300,
            seed: 1,
            method: Method::Exact,
        };
        let err = tsne(&data, &options).unwrap_err();
        assert!(
            err.to_string()
                .contains("exact t-SNE takes at most 5000 items; there are 5005"),
            "{err}"
        );
        let view = tsne(
            &data,
            &TsneOptions {
                method: Method::Auto,
                ..options
            },
        )
        .unwrap();
        assert_eq!(view.len(), MAX_EXACT_POINTS + 5);
        assert!(view.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
        // Trustworthiness (n² to compute) on a subset: every 10th item, against its own neighbours.
        let keep: Vec<usize> = (0..data.len()).step_by(10).collect();
        let subset = Vectors::from_rows(
            "subset",
            16,
            keep.iter()
                .map(|&i| (data.ids[i].clone(), data.row(i).to_vec()))
                .collect(),
        )
        .unwrap();
        let sub_view: Vec<[f64; 2]> = keep.iter().map(|&i| view[i]).collect();
        let t = trustworthiness(&subset, &sub_view, 5);
        assert!(t >= 0.9, "trustworthiness {t}");
    }

    /// With every other item a neighbour (k = n − 1), the sparse affinities are the dense ones.
    #[test]
    fn sparse_affinities_equal_dense_ones_when_all_items_are_neighbours() {
        let data = planted_n(20);
        let dense = dense_affinities(&data, 7.0);
        let sparse = sparse_affinities(&data, 7.0).unwrap();
        let n = data.len();
        let mut total = 0.0;
        for i in 0..n {
            let row: Vec<(usize, f64)> = sparse.row(i).collect();
            assert_eq!(row.len(), n - 1, "row {i}");
            for (j, p) in row {
                assert!(
                    (p - dense[i * n + j]).abs() < 1e-12,
                    "({i}, {j}): {p} vs {}",
                    dense[i * n + j]
                );
                assert!(
                    (p - sparse.row(j).find(|e| e.0 == i).unwrap().1).abs() < 1e-15,
                    "symmetric"
                );
                total += p;
            }
        }
        assert!((total - 1.0).abs() < 1e-12, "sums to {total}");
    }

    #[test]
    fn trustworthiness_of_the_identity_view_is_one() {
        let rows = (0..20)
            .map(|i| (format!("{i:02}"), vec![i as f32 + 1.0, 1.0]))
            .collect();
        let data = Vectors::from_rows("line", 2, rows).unwrap();
        // The normalised points lie on an arc; their angle orders them as the original distances do.
        let view: Vec<[f64; 2]> = (0..20)
            .map(|i| [data.row(i)[0] as f64, data.row(i)[1] as f64])
            .collect();
        assert!((trustworthiness(&data, &view, 3) - 1.0).abs() < 1e-12);
    }

    /// scikit-learn's `trustworthiness(X, Y, n_neighbors=3)` for the same points gives 0.4100529100529101.
    #[test]
    fn trustworthiness_matches_scikit_learn() {
        let rows = (0..14)
            .map(|i| {
                let v = (0..4)
                    .map(|k| ((i as f64 * 1.7 + k as f64 * 0.9).sin() + 1.5) as f32)
                    .collect();
                (format!("{i:02}"), v)
            })
            .collect();
        let data = Vectors::from_rows("x", 4, rows).unwrap();
        let view: Vec<[f64; 2]> = (0..14)
            .map(|i| [(i as f64 * 1.3).cos(), (i as f64 * 0.7).sin() * 2.0])
            .collect();
        assert!((trustworthiness(&data, &view, 3) - 0.4100529100529101).abs() < 1e-12);
    }

    #[test]
    fn the_automatic_perplexity_fits_small_sets() {
        assert_eq!(auto_perplexity(30), 29.0 / 3.0);
        assert_eq!(auto_perplexity(1000), 30.0);
        assert_eq!(auto_perplexity(2), 1.0);
        assert!(auto_perplexity(2) < 2.0);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let data = planted();
        let err = tsne(
            &data,
            &TsneOptions {
                perplexity: Some(500.0),
                ..TsneOptions::default()
            },
        )
        .unwrap_err();
        assert!("barnes-hut".parse::<Method>().is_err());
        assert!(
            err.to_string()
                .contains("perplexity must be above 0 and below the number of items (120)"),
            "{err}"
        );
    }
}
