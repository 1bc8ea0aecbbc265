//! Approximate k nearest neighbours with an HNSW graph (hnsw_rs), built in memory over the corpus for one call,
//! with its recall@k measured against the exact search ([`super::topk`]) on a sample of the queries, so every
//! approximate answer comes with how approximate it was.
//!
//! The graph's layer assignment is random (hnsw_rs draws it from its own generator), so two builds can differ in
//! the last neighbours; exact search is the default for that reason.

use anndists::dist::Distance;
use candle_core::Device;
use hnsw_rs::hnsw::Hnsw;

use super::recall::sampled_recall;
use super::space::Vectors;
use super::topk::Hit;
use crate::error::{Error, Result};

/// Graph parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node (faiss's HNSW32 has 32).
    pub m: usize,
    /// Candidate list while building.
    pub ef_construction: usize,
    /// Candidate list while searching (at least k).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 32,
            ef_construction: 200,
            ef_search: 128,
        }
    }
}

/// Cosine distance of unit vectors: 1 - a·b, at least 0 (hnsw_rs's own DistDot asserts a·b <= 1, which rounding
/// breaks).
#[derive(Debug, Clone, Copy, Default)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
        let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
        // Rounding can take a·b of a vector with itself just above 1; hnsw_rs requires distances >= 0.
        (1.0 - (acc.iter().sum::<f32>() + tail)).max(0.0)
    }
}

/// A built graph over a corpus.
pub struct Graph<'a> {
    hnsw: Hnsw<'a, f32, CosineDistance>,
    params: HnswParams,
}

impl<'a> Graph<'a> {
    /// Build over every row of `corpus` (in parallel).
    pub fn build(corpus: &'a Vectors, params: HnswParams) -> Result<Graph<'a>> {
        if corpus.is_empty() {
            return Err(Error::Usage(
                "an HNSW graph needs at least one corpus vector".into(),
            ));
        }
        let layers = 16.min(((corpus.len() as f64).ln().ceil() as usize).max(1));
        let hnsw = Hnsw::new(
            params.m,
            corpus.len(),
            layers,
            params.ef_construction,
            CosineDistance,
        );
        let rows: Vec<(&[f32], usize)> = (0..corpus.len()).map(|i| (corpus.row(i), i)).collect();
        hnsw.parallel_insert_slice(&rows);
        Ok(Graph { hnsw, params })
    }

    /// The approximate top-k of each query, best first (ties by candidate row), leaving out `exclude[q]`.
    pub fn search(
        &self,
        queries: &Vectors,
        k: usize,
        exclude: Option<&[Option<u32>]>,
    ) -> Vec<Vec<Hit>> {
        self.search_with(queries, k, exclude, self.params.ef_search)
    }

    /// As [`Graph::search`], with another search-time candidate list size (efSearch).
    pub fn search_with(
        &self,
        queries: &Vectors,
        k: usize,
        exclude: Option<&[Option<u32>]>,
        ef_search: usize,
    ) -> Vec<Vec<Hit>> {
        let rows: Vec<Vec<f32>> = (0..queries.len())
            .map(|q| queries.row(q).to_vec())
            .collect();
        let extra = usize::from(exclude.is_some());
        let ef = ef_search.max(k + extra);
        let found = self.hnsw.parallel_search(&rows, k + extra, ef);
        found
            .into_iter()
            .enumerate()
            .map(|(q, neighbours)| {
                let skip = exclude.and_then(|e| e[q]);
                let mut hits: Vec<Hit> = neighbours
                    .into_iter()
                    .map(|n| Hit {
                        index: n.d_id as u32,
                        score: 1.0 - n.distance,
                    })
                    .filter(|h| Some(h.index) != skip)
                    .collect();
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
                hits.truncate(k);
                hits
            })
            .collect()
    }
}

/// Approximate top-k with the recall measured on (up to) `sample` evenly spaced queries.
pub fn top_k_measured(
    queries: &Vectors,
    corpus: &Vectors,
    k: usize,
    exclude: Option<&[Option<u32>]>,
    params: HnswParams,
    sample: usize,
    device: &Device,
) -> Result<(Vec<Vec<Hit>>, f64)> {
    super::scores::same_dim("the queries", queries, "the corpus", corpus)?;
    if queries.is_empty() || corpus.is_empty() || k == 0 {
        return Ok((vec![Vec::new(); queries.len()], 1.0));
    }
    let graph = Graph::build(corpus, params)?;
    let hits = graph.search(queries, k, exclude);
    let recall = sampled_recall(queries, corpus, k, exclude, &hits, sample, device)?;
    Ok((hits, recall))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_exact_neighbours_of_a_small_corpus() {
        let mut state = 0x9E3779B97F4A7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2001) as f32 / 1000.0 - 1.0
        };
        let rows = (0..500)
            .map(|i| (format!("c{i:04}"), (0..16).map(|_| next()).collect()))
            .collect();
        let corpus = Vectors::from_rows("c", 16, rows).unwrap();
        let rows = (0..50)
            .map(|i| (format!("q{i:04}"), (0..16).map(|_| next()).collect()))
            .collect();
        let queries = Vectors::from_rows("q", 16, rows).unwrap();
        let (hits, recall) = top_k_measured(
            &queries,
            &corpus,
            10,
            None,
            HnswParams::default(),
            50,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(hits.len(), 50);
        assert!(hits.iter().all(|h| h.len() == 10));
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn distance_is_one_minus_the_dot_product() {
        let a = [0.6f32, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let b = [0.8f32, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert!((CosineDistance.eval(&a, &b) - (1.0 - 0.96)).abs() < 1e-6);
    }
}
