//! t-SNE 2-D views of a space (seed S3), exact (every pair; no Barnes–Hut), so for up to [`MAX_POINTS`] items:
//! conditional probabilities with a per-point bandwidth found by binary search on the perplexity, symmetrised;
//! a start drawn from the run's seeded [`Rng`]; gradient descent with early exaggeration (12 for the first 250
//! iterations), momentum 0.5 then 0.8, per-coordinate gains, and scikit-learn's automatic learning rate
//! (max(n / 12 / 4, 50)). The same seed gives the same coordinates.
//! [`trustworthiness`] measures how well a view keeps neighbourhoods (scikit-learn's definition).

use crate::error::{Error, Result};
use crate::eval::space::Vectors;
use crate::rng::Rng;

/// Largest number of items the exact method accepts (it holds n² pair weights).
pub const MAX_POINTS: usize = 5000;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TsneOptions {
    pub perplexity: f64,
    pub iterations: usize,
    pub seed: u64,
}

impl Default for TsneOptions {
    fn default() -> Self {
        TsneOptions {
            perplexity: 30.0,
            iterations: 1000,
            seed: 0,
        }
    }
}

fn squared_distances(data: &Vectors) -> Vec<f64> {
    let n = data.len();
    let mut d = vec![0f64; n * n];
    for i in 0..n {
        for j in (i + 1)..n {
            let v: f64 = data
                .row(i)
                .iter()
                .zip(data.row(j))
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum();
            d[i * n + j] = v;
            d[j * n + i] = v;
        }
    }
    d
}

/// Symmetrised joint probabilities P (n × n) for the target perplexity.
fn joint_probabilities(d: &[f64], n: usize, perplexity: f64) -> Vec<f64> {
    let target = perplexity.ln();
    let mut p = vec![0f64; n * n];
    for i in 0..n {
        let row = &d[i * n..(i + 1) * n];
        let (mut beta, mut lo, mut hi) = (1.0f64, f64::NEG_INFINITY, f64::INFINITY);
        let mut probs = vec![0f64; n];
        for _ in 0..100 {
            let mut sum = 0.0;
            for j in 0..n {
                probs[j] = if j == i { 0.0 } else { (-row[j] * beta).exp() };
                sum += probs[j];
            }
            if sum <= 0.0 {
                sum = f64::MIN_POSITIVE;
            }
            // Entropy H = log(sum) + beta * Σ p_j d_j.
            let mut weighted = 0.0;
            for j in 0..n {
                probs[j] /= sum;
                weighted += probs[j] * row[j];
            }
            let entropy = sum.ln() + beta * weighted;
            let diff = entropy - target;
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
        p[i * n..(i + 1) * n].copy_from_slice(&probs);
    }
    let mut joint = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            joint[i * n + j] = ((p[i * n + j] + p[j * n + i]) / (2.0 * n as f64)).max(1e-12);
        }
    }
    joint
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// 2-D coordinates of every row of `data`.
pub fn tsne(data: &Vectors, options: &TsneOptions) -> Result<Vec<[f64; 2]>> {
    let n = data.len();
    if n > MAX_POINTS {
        return Err(Error::Usage(format!(
            "t-SNE here is exact and takes at most {MAX_POINTS} items; there are {n} (narrow by dataset/split)"
        )));
    }
    if n < 2 {
        return Err(Error::Usage(format!(
            "t-SNE needs at least 2 items; there are {n}"
        )));
    }
    if options.perplexity.is_nan() || options.perplexity <= 0.0 || options.perplexity >= n as f64 {
        return Err(Error::Usage(format!(
            "t-SNE perplexity must be above 0 and below the number of items ({n}), got {}",
            options.perplexity
        )));
    }
    let d = squared_distances(data);
    let p = joint_probabilities(&d, n, options.perplexity);
    let mut rng = Rng::new(options.seed);
    let mut y: Vec<f64> = (0..2 * n).map(|_| normal(&mut rng) * 1e-4).collect();
    let mut velocity = vec![0f64; 2 * n];
    let mut gains = vec![1f64; 2 * n];
    let learning_rate = (n as f64 / 12.0 / 4.0).max(50.0);
    let mut num = vec![0f64; n * n];
    let mut grad = vec![0f64; 2 * n];
    for it in 0..options.iterations {
        let (exaggeration, momentum) = if it < 250 { (12.0, 0.5) } else { (1.0, 0.8) };
        let mut total = 0.0;
        for i in 0..n {
            for j in (i + 1)..n {
                let dx = y[2 * i] - y[2 * j];
                let dy = y[2 * i + 1] - y[2 * j + 1];
                let w = 1.0 / (1.0 + dx * dx + dy * dy);
                num[i * n + j] = w;
                num[j * n + i] = w;
                total += 2.0 * w;
            }
        }
        grad.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..n {
            let (mut gx, mut gy) = (0.0, 0.0);
            for j in 0..n {
                if i == j {
                    continue;
                }
                let w = num[i * n + j];
                let q = (w / total).max(1e-12);
                let f = (exaggeration * p[i * n + j] - q) * w;
                gx += f * (y[2 * i] - y[2 * j]);
                gy += f * (y[2 * i + 1] - y[2 * j + 1]);
            }
            grad[2 * i] = 4.0 * gx;
            grad[2 * i + 1] = 4.0 * gy;
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
        let mut rng = Rng::new(9);
        let centres: Vec<Vec<f32>> = (0..5)
            .map(|_| (0..16).map(|_| normal(&mut rng) as f32).collect())
            .collect();
        let rows = (0..120)
            .map(|i| {
                let v = centres[i % 5]
                    .iter()
                    .map(|c| c + 0.3 * normal(&mut rng) as f32)
                    .collect();
                (format!("p{i:03}"), v)
            })
            .collect();
        Vectors::from_rows("planted", 16, rows).unwrap()
    }

    #[test]
    fn keeps_planted_neighbourhoods_and_is_deterministic() {
        let data = planted();
        let options = TsneOptions {
            perplexity: 15.0,
            iterations: 500,
            seed: 4,
        };
        let a = tsne(&data, &options).unwrap();
        let t = trustworthiness(&data, &a, 5);
        assert!(t >= 0.9, "trustworthiness {t}");
        assert_eq!(a, tsne(&data, &options).unwrap(), "same seed, same view");
        let b = tsne(&data, &TsneOptions { seed: 5, ..options }).unwrap();
        assert_ne!(a, b);
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
    fn bad_arguments_are_errors() {
        let data = planted();
        let err = tsne(
            &data,
            &TsneOptions {
                perplexity: 500.0,
                ..TsneOptions::default()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("perplexity must be above 0 and below the number of items (120)"),
            "{err}"
        );
    }
}
