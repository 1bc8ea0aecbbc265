//! k-means over a space's vectors: greedy k-means++ seeding (from a sample on large sets,
//! [`SEED_POINTS_PER_CLUSTER`]) and Lloyd iterations, every random choice from one seeded [`Rng`] (the same seed
//! gives the same assignments), assignment by Candle matrix products in blocks ([`crate::eval::scores`]) with
//! Hamerly's bounds so that rows which cannot have changed cluster are not recomputed (the result is plain
//! Lloyd's), cluster sums updated by the rows that moved, empty clusters re-seeded with the point farthest from
//! its centroid.
//!
//! Metrics: `l2` minimises squared Euclidean distance (scikit-learn's objective; inertia = sum of squared
//! distances); `cosine` is spherical k-means (centroids re-normalised, distance = 1 − cosine similarity, inertia =
//! sum of those). Vectors come L2-normalised from the space.

use candle_core::Device;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::eval::scores::{Matrix, dot, for_each_block_of, squared_distance};
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

/// The most Lloyd iterations and k-means++ starts one clustering runs.
pub const MAX_ITERATIONS: usize = 100_000;
pub const MAX_INITS: usize = 1_000;

/// The defaults `vlmdb cluster` and `kmeans(...)` share: 20 Lloyd iterations, seed 0, squared Euclidean distance,
/// one k-means++ start; `k` has no default (both require it).
impl Default for KMeansOptions {
    fn default() -> Self {
        KMeansOptions {
            k: 0,
            iterations: 20,
            seed: 0,
            metric: Metric::default(),
            inits: 1,
        }
    }
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

/// The points being clustered, once on the device, with their squared norms.
struct Points<'a> {
    data: &'a Vectors,
    matrix: Matrix,
    norms: Vec<f64>,
    device: &'a Device,
}

impl<'a> Points<'a> {
    fn new(data: &'a Vectors, device: &'a Device) -> Result<Points<'a>> {
        Ok(Points {
            data,
            matrix: Matrix::of(data, device)?,
            norms: (0..data.len()).map(|i| squared_norm(data.row(i))).collect(),
            device,
        })
    }

    /// For every row `i`, `visit(i, scores of row i against every centre, slot i of out)`, where `out` holds
    /// an equal slot per row; the rows of a block run in parallel.
    fn against<T: Send>(
        &self,
        centres: &[f32],
        out: &mut [T],
        visit: impl Fn(usize, &[f32], &mut [T]) + Sync,
    ) -> Result<()> {
        rows_against(
            &self.matrix,
            self.data.dim,
            centres,
            self.device,
            out,
            visit,
        )
    }
}

/// [`Points::against`] for the rows of any matrix.
fn rows_against<T: Send>(
    rows: &Matrix,
    dim: usize,
    centres: &[f32],
    device: &Device,
    out: &mut [T],
    visit: impl Fn(usize, &[f32], &mut [T]) + Sync,
) -> Result<()> {
    let width = out.len() / rows.rows().max(1);
    let centres = Matrix::new(centres, centres.len() / dim, dim, device)?;
    for_each_block_of(rows, &centres, usize::MAX, |block| {
        out[block.q0 * width..(block.q0 + block.rows) * width]
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(r, slot)| visit(block.q0 + r, block.row(r), slot));
        Ok(())
    })
}

fn squared_norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum()
}

/// Above this many points per cluster, the k-means++ seeding runs on a uniform sample of `k` × this many points;
/// the Lloyd iterations always use every point. Seeding is sequential — one pass over its points per centre — so
/// on large sets it would otherwise cost more than all the Lloyd iterations together (scikit-learn's own seeding
/// is ~90 % of its `KMeans` time on 100,000 × 512, k = 100). On that set, seeds from samples of 64, 128, 256 per
/// cluster and from every point end at the same inertia after the iterations (the spread between RNG seeds is
/// larger than any difference between sample sizes; `tests/peers/kmeans_seed_sample.py` measures it).
/// scikit-learn's MiniBatchKMeans also seeds from a sample.
pub const SEED_POINTS_PER_CLUSTER: usize = 64;

/// Greedy k-means++ (as scikit-learn seeds): the first centre uniformly; then, for each next centre, `2 + ln k`
/// candidates drawn with probability proportional to the squared distance to the nearest centre so far, keeping
/// the candidate that lowers the total of those distances most. Distances come from blocked matrix products.
fn seed_centres(points: &Points, k: usize, rng: &mut Rng) -> Result<Vec<f32>> {
    let data = points.data;
    let n = data.len();
    let trials = 2 + (k as f64).ln().floor() as usize;
    let norms = &points.norms;
    // Squared distances of every row to `candidates` rows of `data`: n × candidates.len(), row-major.
    let distances = |candidates: &[usize]| -> Result<Vec<f64>> {
        let m = candidates.len();
        let mut chosen = Vec::with_capacity(m * data.dim);
        candidates
            .iter()
            .for_each(|&c| chosen.extend_from_slice(data.row(c)));
        let mut out = vec![0f64; n * m];
        points.against(&chosen, &mut out, |i, scores, slot| {
            for ((d, &dot), &c) in slot.iter_mut().zip(scores).zip(candidates) {
                *d = (norms[i] - 2.0 * f64::from(dot) + norms[c]).max(0.0);
            }
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

/// The rows the seeding looks at: all of them, or (above [`SEED_POINTS_PER_CLUSTER`] · k) a uniform sample of
/// that many, drawn from `rng` (partial Fisher–Yates) and kept in row order.
fn seeding_sample(data: &Vectors, k: usize, rng: &mut Rng) -> Option<Vectors> {
    let n = data.len();
    let size = SEED_POINTS_PER_CLUSTER.saturating_mul(k);
    if n <= size {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..size {
        let j = i + rng.below(n - i);
        order.swap(i, j);
    }
    let mut rows = order[..size].to_vec();
    rows.sort_unstable();
    Some(Vectors {
        ids: rows.iter().map(|&i| data.ids[i].clone()).collect(),
        dim: data.dim,
        data: rows
            .iter()
            .fold(Vec::with_capacity(size * data.dim), |mut all, &i| {
                all.extend_from_slice(data.row(i));
                all
            }),
    })
}

/// Each row's nearest centre and its bounds (Hamerly 2010): `upper` ≥ the Euclidean distance to the assigned
/// centre, `lower` ≤ the distance to every other centre. A row whose upper bound is below both its lower bound
/// and half the distance from its centre to the nearest other centre cannot have changed cluster, so its
/// distances are not recomputed. The result is that of plain Lloyd iterations, for a fraction of the products.
struct Assignment {
    owner: Vec<u32>,
    upper: Vec<f64>,
    lower: Vec<f64>,
}

/// A row that changed cluster.
struct Move {
    row: usize,
    from: u32,
    to: u32,
}

/// Rounding slack of the bound tests: GEMM distances are f32 products.
const BOUND_SLACK: f64 = 1e-5;

/// Nearest and second-nearest centre of `rows` (all rows when `None`), by Euclidean distance: (centre, distance,
/// distance to the runner-up).
fn nearest_two(
    points: &Points,
    rows: Option<&[usize]>,
    centres: &[f32],
) -> Result<Vec<(u32, f64, f64)>> {
    let dim = points.data.dim;
    let centre_norms: Vec<f64> = centres.chunks_exact(dim).map(squared_norm).collect();
    let row_of = |r: usize| rows.map_or(r, |rows| rows[r]);
    let visit = |r: usize, scores: &[f32], slot: &mut [(u32, f64, f64)]| {
        let norm = points.norms[row_of(r)];
        let (mut best, mut first, mut second) = (0u32, f64::INFINITY, f64::INFINITY);
        for (c, &dot) in scores.iter().enumerate() {
            let d = (norm - 2.0 * f64::from(dot) + centre_norms[c]).max(0.0);
            if d < first {
                second = first;
                (best, first) = (c as u32, d);
            } else if d < second {
                second = d;
            }
        }
        slot[0] = (best, first.sqrt(), second.sqrt());
    };
    match rows {
        None => {
            let mut out = vec![(0, 0.0, 0.0); points.data.len()];
            points.against(centres, &mut out, visit)?;
            Ok(out)
        }
        Some([]) => Ok(Vec::new()),
        Some(rows) => {
            let mut gathered = Vec::with_capacity(rows.len() * dim);
            rows.iter()
                .for_each(|&i| gathered.extend_from_slice(points.data.row(i)));
            let matrix = Matrix::new(&gathered, rows.len(), dim, points.device)?;
            let mut out = vec![(0, 0.0, 0.0); rows.len()];
            rows_against(&matrix, dim, centres, points.device, &mut out, visit)?;
            Ok(out)
        }
    }
}

impl Assignment {
    fn new(points: &Points, centres: &[f32]) -> Result<Assignment> {
        let found = nearest_two(points, None, centres)?;
        Ok(Assignment {
            owner: found.iter().map(|f| f.0).collect(),
            upper: found.iter().map(|f| f.1).collect(),
            lower: found.iter().map(|f| f.2).collect(),
        })
    }

    /// Re-assign after the centres moved from `old` to `new`: the rows that changed cluster.
    fn update(&mut self, points: &Points, old: &[f32], new: &[f32]) -> Result<Vec<Move>> {
        let dim = points.data.dim;
        let k = new.len() / dim;
        fn centre(c: &[f32], dim: usize, j: usize) -> &[f32] {
            &c[j * dim..(j + 1) * dim]
        }
        let moved: Vec<f64> = (0..k)
            .map(|j| squared_distance(centre(old, dim, j), centre(new, dim, j)).sqrt())
            .collect();
        // The largest move, and the largest of the others (a row's own centre is not among its rivals).
        let (mut top, mut runner_up, mut top_at) = (0f64, 0f64, usize::MAX);
        for (j, &m) in moved.iter().enumerate() {
            if m > top {
                (runner_up, top, top_at) = (top, m, j);
            } else if m > runner_up {
                runner_up = m;
            }
        }
        // Half the distance from each centre to its nearest other centre.
        let half_gap: Vec<f64> = (0..k)
            .into_par_iter()
            .map(|j| {
                (0..k)
                    .filter(|&o| o != j)
                    .map(|o| squared_distance(centre(new, dim, j), centre(new, dim, o)))
                    .fold(f64::INFINITY, f64::min)
                    .sqrt()
                    / 2.0
            })
            .collect();
        let data = points.data;
        // Move the bounds and test them.
        let bound = |i: usize, lower: f64| lower.max(half_gap[self.owner[i] as usize]);
        let failing: Vec<usize> = self
            .owner
            .par_iter()
            .zip(self.upper.par_iter_mut())
            .zip(self.lower.par_iter_mut())
            .enumerate()
            .filter_map(|(i, ((&a, upper), lower))| {
                let a = a as usize;
                *upper += moved[a];
                *lower -= if a == top_at { runner_up } else { top };
                (*upper + BOUND_SLACK > lower.max(half_gap[a])).then_some(i)
            })
            .collect();
        // While most rows fail (the first iterations), one product over all rows is cheapest; later the failing
        // rows' upper bounds are made exact first, and only rows that still fail are searched.
        let rows: Option<Vec<usize>> = if 2 * failing.len() > data.len() {
            None
        } else {
            let exact: Vec<f64> = failing
                .par_iter()
                .map(|&i| {
                    squared_distance(data.row(i), centre(new, dim, self.owner[i] as usize)).sqrt()
                })
                .collect();
            let mut search = Vec::new();
            for (&i, upper) in failing.iter().zip(exact) {
                self.upper[i] = upper;
                if upper + BOUND_SLACK > bound(i, self.lower[i]) {
                    search.push(i);
                }
            }
            Some(search)
        };
        let found = nearest_two(points, rows.as_deref(), new)?;
        let rows: Vec<usize> = rows.unwrap_or_else(|| (0..data.len()).collect());
        let mut moves = Vec::new();
        for (&i, &(c, first, second)) in rows.iter().zip(&found) {
            if self.owner[i] != c {
                moves.push(Move {
                    row: i,
                    from: self.owner[i],
                    to: c,
                });
            }
            self.owner[i] = c;
            self.upper[i] = first;
            self.lower[i] = second;
        }
        Ok(moves)
    }
}

/// Rows per partial sum of the update step: fixed, so the centroids do not depend on the number of threads.
const UPDATE_CHUNK: usize = 4096;

/// The sum of each cluster's rows (k × dim, f64) and its size.
fn cluster_sums(data: &Vectors, owner: &[u32], k: usize) -> (Vec<f64>, Vec<u64>) {
    let dim = data.dim;
    let partial = |chunk: usize| {
        let mut sums = vec![0f64; k * dim];
        let mut sizes = vec![0u64; k];
        let rows = chunk * UPDATE_CHUNK..((chunk + 1) * UPDATE_CHUNK).min(data.len());
        for i in rows {
            let c = owner[i] as usize;
            sizes[c] += 1;
            for (s, x) in sums[c * dim..(c + 1) * dim].iter_mut().zip(data.row(i)) {
                *s += f64::from(*x);
            }
        }
        (sums, sizes)
    };
    let parts: Vec<(Vec<f64>, Vec<u64>)> = (0..data.len().div_ceil(UPDATE_CHUNK))
        .into_par_iter()
        .map(partial)
        .collect();
    let mut sums = vec![0f64; k * dim];
    let mut sizes = vec![0u64; k];
    for (part_sums, part_sizes) in parts {
        sums.iter_mut().zip(part_sums).for_each(|(s, p)| *s += p);
        sizes.iter_mut().zip(part_sizes).for_each(|(s, p)| *s += p);
    }
    (sums, sizes)
}

/// The objective of an assignment from its cluster sums, without another pass over the rows: Σ‖x − c‖² =
/// Σ‖x‖² − 2 Σ_c c · S_c + Σ_c n_c ‖c‖² (l2), Σ (1 − x · c) = n − Σ_c c · S_c (cosine).
fn objective(points: &Points, centres: &[f32], sums: &[f64], sizes: &[u64], metric: Metric) -> f64 {
    let dim = points.data.dim;
    let cross: f64 = centres
        .chunks_exact(dim)
        .zip(sums.chunks_exact(dim))
        .map(|(c, s)| c.iter().zip(s).map(|(x, y)| f64::from(*x) * y).sum::<f64>())
        .sum();
    match metric {
        Metric::L2 => {
            let spread: f64 = centres
                .chunks_exact(dim)
                .zip(sizes)
                .map(|(c, &n)| n as f64 * squared_norm(c))
                .sum();
            (points.norms.iter().sum::<f64>() - 2.0 * cross + spread).max(0.0)
        }
        Metric::Cosine => (points.data.len() as f64 - cross).max(0.0),
    }
}

/// The k-means++ seeds of one start: from every point, or from a sample on large sets.
fn initial_centres(points: &Points, k: usize, rng: &mut Rng) -> Result<Vec<f32>> {
    match seeding_sample(points.data, k, rng) {
        Some(sample) => seed_centres(&Points::new(&sample, points.device)?, k, rng),
        None => seed_centres(points, k, rng),
    }
}

fn one_start(points: &Points, options: &KMeansOptions, rng: &mut Rng) -> Result<KMeans> {
    let data = points.data;
    let (n, dim, k) = (data.len(), data.dim, options.k);
    let mut centres = initial_centres(points, k, rng)?;
    let mut assigned = Assignment::new(points, &centres)?;
    let (mut sums, mut sizes) = cluster_sums(data, &assigned.owner, k);
    let mut history = Vec::new();
    for _ in 0..options.iterations.max(1) {
        // Update: the mean of each cluster (re-normalised for cosine).
        let old = centres.clone();
        // Empty clusters take the points farthest from their centroids, farthest first (each point once).
        let mut far = Vec::new().into_iter();
        if sizes.contains(&0) {
            let distance: Vec<f64> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let a = assigned.owner[i] as usize;
                    squared_distance(data.row(i), &old[a * dim..(a + 1) * dim])
                })
                .collect();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| distance[b].total_cmp(&distance[a]).then(a.cmp(&b)));
            far = order.into_iter();
        }
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
                let norm = squared_norm(centre).sqrt();
                if norm > 0.0 {
                    centre
                        .iter_mut()
                        .for_each(|x| *x = (f64::from(*x) / norm) as f32);
                }
            }
        }
        let moves = assigned.update(points, &old, &centres)?;
        // The sums follow the rows that moved (late iterations move few rows).
        for m in &moves {
            let (from, to) = (m.from as usize, m.to as usize);
            sizes[from] -= 1;
            sizes[to] += 1;
            for (j, x) in data.row(m.row).iter().enumerate() {
                sums[from * dim + j] -= f64::from(*x);
                sums[to * dim + j] += f64::from(*x);
            }
        }
        history.push(objective(points, &centres, &sums, &sizes, options.metric));
        if moves.is_empty() {
            break;
        }
    }
    // Each row's exact distance to its centre.
    let distance: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| {
            let a = assigned.owner[i] as usize;
            let centre = &centres[a * dim..(a + 1) * dim];
            match options.metric {
                Metric::L2 => squared_distance(data.row(i), centre).sqrt() as f32,
                Metric::Cosine => (1.0 - f64::from(dot(data.row(i), centre))) as f32,
            }
        })
        .collect();
    let inertia = history.last().copied().unwrap_or(f64::NAN);
    Ok(KMeans {
        assignment: assigned.owner,
        distance,
        centroids: centres,
        sizes,
        inertia,
        history,
    })
}

/// Cluster the rows of `data`.
pub fn kmeans(data: &Vectors, options: &KMeansOptions, device: &Device) -> Result<KMeans> {
    if options.iterations > MAX_ITERATIONS || options.inits > MAX_INITS {
        return Err(Error::Usage(format!(
            "k-means iterations must be at most {MAX_ITERATIONS} and starts at most {MAX_INITS}, got {} and {}",
            options.iterations, options.inits
        )));
    }
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
    let points = Points::new(data, device)?;
    let mut best: Option<KMeans> = None;
    for _ in 0..options.inits.max(1) {
        let run = one_start(&points, options, &mut rng)?;
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

    /// Plain Lloyd iterations with exact f64 distances, from the given centres (no empty clusters expected).
    fn plain_lloyd(data: &Vectors, mut centres: Vec<f32>, k: usize, iterations: usize) -> Vec<u32> {
        let dim = data.dim;
        let nearest = |centres: &[f32]| -> Vec<u32> {
            (0..data.len())
                .map(|i| {
                    (0..k)
                        .map(|c| {
                            (
                                squared_distance(data.row(i), &centres[c * dim..(c + 1) * dim]),
                                c,
                            )
                        })
                        .min_by(|a, b| a.0.total_cmp(&b.0))
                        .unwrap()
                        .1 as u32
                })
                .collect()
        };
        let mut owner = nearest(&centres);
        for _ in 0..iterations {
            let (sums, sizes) = cluster_sums(data, &owner, k);
            assert!(
                !sizes.contains(&0),
                "the reference expects no empty cluster"
            );
            for (c, centre) in centres.chunks_exact_mut(dim).enumerate() {
                for (x, s) in centre.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *x = (s / sizes[c] as f64) as f32;
                }
            }
            let next = nearest(&centres);
            if next == owner {
                break;
            }
            owner = next;
        }
        owner
    }

    /// Noisy clusters (noise as large as the centres, as `vlmdb bench kmeans` draws them): many rows change
    /// cluster over many iterations, so the bounds are exercised.
    fn noisy(n: usize, dim: usize, k: usize) -> Vectors {
        let mut rng = Rng::new(21);
        let centres: Vec<Vec<f32>> = (0..k)
            .map(|_| (0..dim).map(|_| rng.normal() as f32).collect())
            .collect();
        let rows = (0..n)
            .map(|i| {
                let v = centres[i % k]
                    .iter()
                    .map(|c| c + rng.normal() as f32)
                    .collect();
                (format!("x{i:05}"), v)
            })
            .collect();
        Vectors::from_rows("noisy", dim, rows).unwrap()
    }

    /// The bounds skip work, never change the result: the same assignment as plain Lloyd from the same seeds.
    #[test]
    fn bounded_iterations_equal_plain_lloyd() {
        let data = noisy(1500, 24, 12);
        let (k, seed, iterations) = (12, 7, 100);
        let points = Points::new(&data, &Device::Cpu).unwrap();
        let centres = initial_centres(&points, k, &mut Rng::new(seed)).unwrap();
        let expected = plain_lloyd(&data, centres, k, iterations);
        let options = KMeansOptions {
            k,
            iterations,
            seed,
            metric: Metric::L2,
            inits: 1,
        };
        let ours = kmeans(&data, &options, &Device::Cpu).unwrap();
        assert!(ours.history.len() > 3, "{:?}", ours.history);
        assert_eq!(ours.assignment, expected);
        // The objective from the cluster sums equals the sum of the rows' own distances.
        let direct: f64 = ours.distance.iter().map(|d| f64::from(*d).powi(2)).sum();
        assert!(
            (ours.inertia - direct).abs() < 1e-6 * direct,
            "{} vs {direct}",
            ours.inertia
        );
    }

    /// Above 256 points per cluster the seeding looks at a sample; the iterations still use every point.
    #[test]
    fn large_sets_seed_from_a_sample() {
        let data = noisy(SEED_POINTS_PER_CLUSTER * 2 + 50, 8, 2);
        let sample = seeding_sample(&data, 2, &mut Rng::new(1)).unwrap();
        assert_eq!(sample.len(), SEED_POINTS_PER_CLUSTER * 2);
        assert!(
            sample.ids.windows(2).all(|w| w[0] < w[1]),
            "in row order, no repeats"
        );
        assert!(seeding_sample(&data, 3, &mut Rng::new(1)).is_none());
        let options = KMeansOptions {
            k: 2,
            iterations: 20,
            seed: 1,
            metric: Metric::L2,
            inits: 1,
        };
        let result = kmeans(&data, &options, &Device::Cpu).unwrap();
        assert_eq!(result.sizes.iter().sum::<u64>(), data.len() as u64);
        assert_eq!(result, kmeans(&data, &options, &Device::Cpu).unwrap());
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
