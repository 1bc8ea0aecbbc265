//! Exact k nearest neighbours by cosine similarity: score blocks from [`super::scores`] feed a running top-k per
//! query, so memory is one block plus k entries per query.
//!
//! Order: higher score first; equal scores by candidate id, ascending (candidates are sorted by id, so the earlier
//! row wins). The result is the same for any block size and on any device up to floating-point rounding.

use candle_core::Device;
use rayon::prelude::*;

use super::scores::{for_each_block, same_dim};
use super::space::Vectors;
use crate::error::Result;

/// One neighbour: candidate row and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub index: u32,
    pub score: f32,
}

/// A running top-k, worst entry first once full, so a new score is compared with one number.
#[derive(Debug, Clone, Default)]
struct Running {
    k: usize,
    /// Min-heap on (score, then larger index = worse) kept as a vector with heap discipline.
    heap: Vec<Hit>,
}

/// True when `a` ranks below `b`.
fn worse(a: &Hit, b: &Hit) -> bool {
    a.score < b.score || (a.score == b.score && a.index > b.index)
}

impl Running {
    fn new(k: usize) -> Running {
        Running {
            k,
            heap: Vec::with_capacity(k),
        }
    }

    fn offer(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(hit);
            self.sift_up(self.heap.len() - 1);
        } else if worse(&self.heap[0], &hit) {
            self.heap[0] = hit;
            self.sift_down(0);
        }
    }

    /// The score a candidate must beat to enter (candidates arrive in index order, so a tie never enters).
    fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap[0].score
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if worse(&self.heap[i], &self.heap[parent]) {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && worse(&self.heap[l], &self.heap[m]) {
                m = l;
            }
            if r < n && worse(&self.heap[r], &self.heap[m]) {
                m = r;
            }
            if m == i {
                break;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }

    fn into_sorted(self) -> Vec<Hit> {
        let mut hits = self.heap;
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        hits
    }
}

/// The `k` best candidates of every query, best first. `exclude[q]`, when given, is a candidate query `q` may
/// not return (a composed query's reference image).
pub fn top_k(
    queries: &Vectors,
    candidates: &Vectors,
    k: usize,
    exclude: Option<&[Option<u32>]>,
    device: &Device,
) -> Result<Vec<Vec<Hit>>> {
    same_dim("the queries", queries, "the corpus", candidates)?;
    let mut running: Vec<Running> = (0..queries.len()).map(|_| Running::new(k)).collect();
    if k == 0 {
        return Ok(vec![Vec::new(); queries.len()]);
    }
    for_each_block(queries, candidates, device, 0, |block| {
        running[block.q0..block.q0 + block.rows]
            .par_iter_mut()
            .enumerate()
            .for_each(|(r, top)| {
                let skip = exclude.and_then(|e| e[block.q0 + r]);
                for (j, &score) in block.row(r).iter().enumerate() {
                    if score > top.threshold() {
                        let index = (block.c0 + j) as u32;
                        if Some(index) != skip {
                            top.offer(Hit { index, score });
                        }
                    }
                }
            });
        Ok(())
    })?;
    Ok(running.into_iter().map(Running::into_sorted).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::scores::dot;

    fn random(n: usize, dim: usize, seed: u64, prefix: &str) -> Vectors {
        let mut state = seed;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2001) as f32 / 1000.0 - 1.0
        };
        let rows = (0..n)
            .map(|i| {
                (
                    format!("{prefix}{i:04}"),
                    (0..dim).map(|_| next()).collect(),
                )
            })
            .collect();
        Vectors::from_rows(prefix, dim, rows).unwrap()
    }

    #[test]
    fn equals_brute_force() {
        let q = random(37, 8, 7, "q");
        let c = random(301, 8, 11, "c");
        let got = top_k(&q, &c, 10, None, &Device::Cpu).unwrap();
        for (qi, hits) in got.iter().enumerate() {
            let mut all: Vec<(f32, u32)> = (0..c.len())
                .map(|ci| (dot(q.row(qi), c.row(ci)), ci as u32))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let want: Vec<u32> = all.iter().take(10).map(|x| x.1).collect();
            let have: Vec<u32> = hits.iter().map(|h| h.index).collect();
            assert_eq!(have, want, "query {qi}");
        }
    }

    #[test]
    fn ties_go_to_the_smaller_id_and_k_caps_at_the_corpus() {
        let q = Vectors::from_rows("q", 2, vec![("q".into(), vec![1.0, 0.0])]).unwrap();
        let c = Vectors::from_rows(
            "c",
            2,
            vec![
                ("c".into(), vec![1.0, 0.0]),
                ("a".into(), vec![1.0, 0.0]),
                ("b".into(), vec![0.0, 1.0]),
            ],
        )
        .unwrap();
        let got = top_k(&q, &c, 5, None, &Device::Cpu).unwrap();
        let ids: Vec<&str> = got[0]
            .iter()
            .map(|h| c.ids[h.index as usize].as_str())
            .collect();
        assert_eq!(ids, ["a", "c", "b"]);
        let got = top_k(&q, &c, 2, Some(&[Some(0)]), &Device::Cpu).unwrap();
        let ids: Vec<&str> = got[0]
            .iter()
            .map(|h| c.ids[h.index as usize].as_str())
            .collect();
        assert_eq!(ids, ["c", "b"]);
    }
}
