//! How approximate an approximate search was: its recall@k against exact search ([`super::topk`]) on a sample of
//! its own queries, so every approximate answer comes with a measured figure.

use candle_core::Device;

use super::space::Vectors;
use super::topk::{Hit, top_k};
use crate::error::Result;

/// recall@k of `approximate` against the exact top-k of the same queries: the share of exact neighbours found.
pub fn recall(approximate: &[Vec<Hit>], exact: &[Vec<Hit>]) -> f64 {
    let (mut found, mut total) = (0usize, 0usize);
    for (a, e) in approximate.iter().zip(exact) {
        total += e.len();
        found += e
            .iter()
            .filter(|h| a.iter().any(|x| x.index == h.index))
            .count();
    }
    if total == 0 {
        1.0
    } else {
        found as f64 / total as f64
    }
}

/// recall@k of `hits` (the approximate top-k of every query, leaving out `exclude[q]`), measured on (up to)
/// `sample` evenly spaced queries whose exact top-k is computed.
pub fn sampled_recall(
    queries: &Vectors,
    corpus: &Vectors,
    k: usize,
    exclude: Option<&[Option<u32>]>,
    hits: &[Vec<Hit>],
    sample: usize,
    device: &Device,
) -> Result<f64> {
    if queries.is_empty() || corpus.is_empty() || k == 0 {
        return Ok(1.0);
    }
    let step = (queries.len() / sample.max(1)).max(1);
    let picked: Vec<usize> = (0..queries.len())
        .step_by(step)
        .take(sample.max(1))
        .collect();
    let subset = Vectors {
        ids: picked.iter().map(|&q| queries.ids[q].clone()).collect(),
        dim: queries.dim,
        data: picked
            .iter()
            .flat_map(|&q| queries.row(q).to_vec())
            .collect(),
    };
    let sub_exclude: Option<Vec<Option<u32>>> =
        exclude.map(|e| picked.iter().map(|&q| e[q]).collect());
    let exact = top_k(&subset, corpus, k, sub_exclude.as_deref(), device)?;
    let approx: Vec<Vec<Hit>> = picked.iter().map(|&q| hits[q].clone()).collect();
    Ok(recall(&approx, &exact))
}
