//! k-means over a space's vectors: greedy k-means++ seeding and Lloyd iterations, every random choice from one seeded
//! [`Rng`] (the same seed gives the same assignments), assignment by Candle matrix products in blocks
//! ([`crate::eval::scores`]), empty clusters re-seeded with the point farthest from its centroid.
//!
//! Metrics: `l2` minimises squared Euclidean distance (scikit-learn's objective; inertia = sum of squared
//! distances); `cosine` is spherical k-means (centroids re-normalised, distance = 1 − cosine similarity, inertia =
//! sum of those). Vectors come L2-normalised from the space.

use candle_core::Device;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::eval::scores::for_each_block;
use crate::eval::space::Vectors;
use crate::rng::Rng;

/// The distance k-means minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    #[default]
    L2,
    Cosine,
}

impl std::str::FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Metric> {
        match s {
            "l2" => Ok(Metric::L2),
            "cosine" => Ok(Metric::Cosine),
            other => Err(Error::Usage(format!(
                "unknown k-means metric '{other}' (use l2 or cosine)"
            ))),
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KMeansOptions {
    pub k: usize,
    /// Most Lloyd iterations (it stops earlier when no assignment changes).
    pub iterations: usize,
    pub seed: u64,
    pub metric: Metric,
    /// Independent k-means++ starts; the one with the lowest inertia is kept.
    pub inits: usize,
}

/// A clustering.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Cluster of each row.
    pub assignment: Vec<u32>,
    /// Each row's distance to its centroid (Euclidean for l2, 1 − cosine for cosine).
    pub distance: Vec<f32>,
    /// k × dim, row-major.
    pub centroids: Vec<f32>,
    pub sizes: Vec<u64>,
    /// The objective after the last iteration.
    pub inertia: f64,
    /// The objective after each Lloyd iteration of the kept start.
    pub history: Vec<f64>,
}

/// Greedy k-means++ (as scikit-learn seeds): the first centre uniformly; then, for each next centre, `2 + ln k`
/// candidates drawn with probability proportional to the squared distance to the nearest centre so far, keeping
/// the candidate that lowers the total of those distances most. Distances come from blocked matrix products.
fn seed_centres(data: &Vectors, k: usize, rng: &mut Rng, device: &Device) -> Result<Vec<f32>> {
    let n = data.len();
    let dim = data.dim;
    let trials = 2 + (k as f64).ln().floor() as usize;
    let row_norms: Vec<f64> = (0..n)
        .map(|i| {
            data.row(i)
                .iter()
                .map(|x| f64::from(*x) * f64::from(*x))
                .sum()
        })
        .collect();
    // Squared distances of every row to `candidates` rows of `data`: n × candidates.len(), row-major.
    let distances = |candidates: &[usize]| -> Result<Vec<f64>> {
        let m = candidates.len();
        let cand = Vectors {
            ids: candidates.iter().map(|c| c.to_string()).collect(),
            dim,
            data: candidates
                .iter()
                .flat_map(|&c| data.row(c).to_vec())
                .collect(),
        };
        let mut out = vec![0f64; n * m];
        for_each_block(data, &cand, device, 0, |block| {
            out[block.q0 * m..(block.q0 + block.rows) * m]
                .par_chunks_mut(m)
                .enumerate()
                .for_each(|(r, slot)| {
                    let i = block.q0 + r;
                    for (j, &dot) in block.row(r).iter().enumerate() {
                        let c = candidates[block.c0 + j];
                        slot[block.c0 + j] =
                            (row_norms[i] - 2.0 * f64::from(dot) + row_norms[c]).max(0.0);
                    }
                });
            Ok(())
        })?;
        Ok(out)
    };
    let first = rng.below(n);
    let mut centres = data.row(first).to_vec();
    let mut nearest = distances(&[first])?;
    for _ in 1..k {
        let total: f64 = nearest.iter().sum();
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                if total <= 0.0 {
                    return rng.below(n);
                }
                let target = rng.next_f64() * total;
                let mut acc = 0.0;
                nearest
                    .iter()
                    .position(|d| {
                        acc += d;
                        acc > target
                    })
                    .unwrap_or(n - 1)
            })
            .collect();
        let d = distances(&candidates)?;
        let m = candidates.len();
        let best = (0..m)
            .map(|j| {
                let potential: f64 = (0..n).map(|i| nearest[i].min(d[i * m + j])).sum();
                (potential, j)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map_or(0, |(_, j)| j);
        for (i, slot) in nearest.iter_mut().enumerate() {
            *slot = slot.min(d[i * m + best]);
        }
        centres.extend_from_slice(data.row(candidates[best]));
    }
    Ok(centres)
}

/// Assign every row to its nearest centre: (cluster, distance as defined by `metric`).
fn assign(
    data: &Vectors,
    centres: &[f32],
    k: usize,
    metric: Metric,
    device: &Device,
) -> Result<Vec<(u32, f64)>> {
    let dim = data.dim;
    let norms: Vec<f64> = (0..k)
        .map(|c| {
            centres[c * dim..(c + 1) * dim]
                .iter()
                .map(|x| f64::from(*x) * f64::from(*x))
                .sum()
        })
        .collect();
    let centre_vectors = Vectors {
        ids: (0..k).map(|c| c.to_string()).collect(),
        dim,
        data: centres.to_vec(),
    };
    let mut best = vec![(0u32, f64::INFINITY); data.len()];
    for_each_block(data, &centre_vectors, device, 0, |block| {
        best[block.q0..block.q0 + block.rows]
            .par_iter_mut()
            .enumerate()
            .for_each(|(r, slot)| {
                let row_norm: f64 = data
                    .row(block.q0 + r)
                    .iter()
                    .map(|x| f64::from(*x) * f64::from(*x))
                    .sum();
                for (j, &dot) in block.row(r).iter().enumerate() {
                    let c = block.c0 + j;
                    let d = match metric {
                        Metric::L2 => (row_norm - 2.0 * f64::from(dot) + norms[c]).max(0.0),
                        Metric::Cosine => 1.0 - f64::from(dot),
                    };
                    if d < slot.1 {
                        *slot = (c as u32, d);
                    }
                }
            });
        Ok(())
    })?;
    Ok(best)
}

fn one_start(
    data: &Vectors,
    options: &KMeansOptions,
    rng: &mut Rng,
    device: &Device,
) -> Result<KMeans> {
    let (n, dim, k) = (data.len(), data.dim, options.k);
    let mut centres = seed_centres(data, k, rng, device)?;
    let mut assigned = assign(data, &centres, k, options.metric, device)?;
    let mut history = Vec::new();
    for _ in 0..options.iterations.max(1) {
        // Update: the mean of each cluster (re-normalised for cosine).
        let mut sums = vec![0f64; k * dim];
        let mut sizes = vec![0u64; k];
        for (i, (c, _)) in assigned.iter().enumerate() {
            let c = *c as usize;
            sizes[c] += 1;
            for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(data.row(i)) {
                *s += f64::from(*x);
            }
        }
        // Empty clusters take the points farthest from their centroids, farthest first (each point once).
        let mut far: Vec<usize> = (0..n).collect();
        far.sort_by(|&a, &b| assigned[b].1.total_cmp(&assigned[a].1).then(a.cmp(&b)));
        let mut far = far.into_iter();
        for c in 0..k {
            let centre = &mut centres[c * dim..(c + 1) * dim];
            if sizes[c] == 0 {
                if let Some(i) = far.next() {
                    centre.copy_from_slice(data.row(i));
                }
                continue;
            }
            for (x, s) in centre.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                *x = (s / sizes[c] as f64) as f32;
            }
            if options.metric == Metric::Cosine {
                let norm = centre
                    .iter()
                    .map(|x| f64::from(*x) * f64::from(*x))
                    .sum::<f64>()
                    .sqrt();
                if norm > 0.0 {
                    centre
                        .iter_mut()
                        .for_each(|x| *x = (f64::from(*x) / norm) as f32);
                }
            }
        }
        let next = assign(data, &centres, k, options.metric, device)?;
        let changed = next.iter().zip(&assigned).any(|(a, b)| a.0 != b.0);
        assigned = next;
        history.push(assigned.iter().map(|(_, d)| d).sum());
        if !changed {
            break;
        }
    }
    let mut sizes = vec![0u64; k];
    for (c, _) in &assigned {
        sizes[*c as usize] += 1;
    }
    let inertia = history.last().copied().unwrap_or(f64::NAN);
    Ok(KMeans {
        assignment: assigned.iter().map(|(c, _)| *c).collect(),
        distance: assigned
            .iter()
            .map(|(_, d)| match options.metric {
                Metric::L2 => d.sqrt() as f32,
                Metric::Cosine => *d as f32,
            })
            .collect(),
        centroids: centres,
        sizes,
        inertia,
        history,
    })
}

/// Cluster the rows of `data`.
pub fn kmeans(data: &Vectors, options: &KMeansOptions, device: &Device) -> Result<KMeans> {
    if options.k == 0 {
        return Err(Error::Usage("k-means needs k >= 1".into()));
    }
    if data.len() < options.k {
        return Err(Error::Usage(format!(
            "k-means with k = {} needs at least {} vectors; the space has {}",
            options.k,
            options.k,
            data.len()
        )));
    }
    let mut rng = Rng::new(options.seed);
    let mut best: Option<KMeans> = None;
    for _ in 0..options.inits.max(1) {
        let run = one_start(data, options, &mut rng, device)?;
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.ok_or_else(|| Error::Usage("k-means ran no start".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight blobs on the axes of a 3-d space.
    fn blobs() -> Vectors {
        let mut rng = Rng::new(3);
        let rows = (0..90)
            .map(|i| {
                let mut v = vec![0.0f32; 3];
                v[i % 3] = 1.0;
                for x in v.iter_mut() {
                    *x += (rng.next_f64() as f32 - 0.5) * 0.1;
                }
                (format!("p{i:03}"), v)
            })
            .collect();
        Vectors::from_rows("blobs", 3, rows).unwrap()
    }

    #[test]
    fn recovers_planted_blobs_and_is_deterministic() {
        let data = blobs();
        for metric in [Metric::L2, Metric::Cosine] {
            let options = KMeansOptions {
                k: 3,
                iterations: 20,
                seed: 11,
                metric,
                inits: 3,
            };
            let a = kmeans(&data, &options, &Device::Cpu).unwrap();
            let b = kmeans(&data, &options, &Device::Cpu).unwrap();
            assert_eq!(a, b, "same seed, same result");
            assert_eq!(a.sizes.iter().sum::<u64>(), 90);
            // Items i and j share a cluster exactly when i ≡ j (mod 3) (ids sort in row order).
            for i in 0..90 {
                for j in 0..90 {
                    assert_eq!(
                        a.assignment[i] == a.assignment[j],
                        i % 3 == j % 3,
                        "{metric:?} {i} {j}"
                    );
                }
            }
            assert!(
                a.history.windows(2).all(|w| w[1] <= w[0] + 1e-9),
                "{:?}",
                a.history
            );
        }
    }

    /// Within 1 % of scikit-learn's inertia (best of 10 k-means++ starts) on the committed reference data of
    /// `fixtures/cluster/make_reference.py`.
    #[test]
    fn inertia_matches_scikit_learn() {
        for (name, case, data) in crate::cluster::reference_cases() {
            let options = KMeansOptions {
                k: case["k"].as_u64().unwrap() as usize,
                iterations: 300,
                seed: 0,
                metric: Metric::L2,
                inits: 10,
            };
            let ours = kmeans(&data, &options, &Device::Cpu).unwrap().inertia;
            let sklearn = case["inertia"].as_f64().unwrap();
            eprintln!("{name}: inertia vlmdb {ours}, scikit-learn {sklearn}");
            assert!(
                ours <= sklearn * 1.01,
                "{name}: vlmdb {ours}, scikit-learn {sklearn}"
            );
            assert!(
                ours >= sklearn * 0.99,
                "{name}: vlmdb {ours} is suspiciously below scikit-learn {sklearn}"
            );
        }
    }

    #[test]
    fn too_few_vectors_is_an_error() {
        let data = blobs();
        let options = KMeansOptions {
            k: 91,
            iterations: 5,
            seed: 0,
            metric: Metric::L2,
            inits: 1,
        };
        let err = kmeans(&data, &options, &Device::Cpu).unwrap_err();
        assert!(
            err.to_string()
                .contains("needs at least 91 vectors; the space has 90"),
            "{err}"
        );
    }
}
