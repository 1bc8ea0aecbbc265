//! The rank of every positive of every query among all candidates, computed from score blocks without keeping
//! them.
//!
//! **Definition.** Scores are cosine similarities (dot products of L2-normalised vectors, computed by GEMM in
//! f32). The rank of positive `p` for query `q` is 1 + the number of other candidates `c` with
//! `score(q, c) > score(q, p)`, plus those with an equal score and a smaller item id: ties are broken by item id,
//! ascending, so the order is total and the same on every run. Other positives of the same query count like any
//! candidate (a query with five captions has its captions at five distinct ranks).
//!
//! **How.** Each (query, positive) pair first gets a reference score in f64. While blocks stream by, candidates
//! clearly above it (by more than [`BAND`]) are counted, clearly below are skipped, and the few within the band
//! are kept with their GEMM scores; at the end the positive's own GEMM score decides them exactly, so every
//! comparison is between numbers from the same computation.

use super::scores::{Tally, dot, same_dim, tally};
use super::space::Vectors;
use crate::error::Result;
use crate::simd::scan::{Lows, scan};
use candle_core::Device;

/// Half-width of the band around a reference score inside which GEMM scores are compared exactly at the end. GEMM
/// and f64 scores of unit vectors differ by far less (≈1e-6 at 1,024 dimensions).
const BAND: f32 = 1e-4;

/// A positive's place among the candidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    /// 1-based rank.
    pub rank: u64,
    /// The query–positive score.
    pub score: f32,
}

/// Counts the candidates that beat one positive.
#[derive(Debug, Clone)]
struct Counter {
    positive: u32,
    reference: f32,
    greater: u64,
    band: Vec<(f32, u32)>,
    own: Option<f32>,
}

impl Counter {
    fn new(positive: u32, reference: f32) -> Counter {
        Counter {
            positive,
            reference,
            greater: 0,
            band: Vec::new(),
            own: None,
        }
    }

    /// Scores below this cannot beat the positive.
    fn low(&self) -> f32 {
        self.reference - BAND
    }

    fn observe(&mut self, candidate: u32, score: f32) {
        if candidate == self.positive {
            self.own = Some(score);
        } else if score > self.reference + BAND {
            self.greater += 1;
        } else if score >= self.low() {
            self.band.push((score, candidate));
        }
    }

    fn finish(self) -> Rank {
        let own = self.own.unwrap_or(self.reference);
        let beaten = self
            .band
            .iter()
            .filter(|(s, c)| *s > own || (*s == own && *c < self.positive))
            .count() as u64;
        Rank {
            rank: 1 + self.greater + beaten,
            score: own,
        }
    }
}

impl Tally for Counter {
    fn merge(&mut self, other: Counter) {
        debug_assert_eq!(self.positive, other.positive);
        self.greater += other.greater;
        self.band.extend(other.band);
        self.own = self.own.or(other.own);
    }
}

fn counters(query: &[f32], candidates: &Vectors, positives: &[u32]) -> Vec<Counter> {
    positives
        .iter()
        .map(|&p| Counter::new(p, dot(query, candidates.row(p as usize))))
        .collect()
}

/// The counters of one query's positives, with what they share: a score above every positive's band beats them
/// all and is counted once (`above`) instead of once per counter. A positive's own score is its reference up to
/// GEMM rounding (≪ [`BAND`]), so it never lands above the highest band.
#[derive(Debug, Clone)]
struct Group {
    each: Vec<Counter>,
    low: f32,
    high: f32,
    above: u64,
}

impl Group {
    fn new(each: Vec<Counter>) -> Group {
        let low = each.iter().map(Counter::low).fold(f32::INFINITY, f32::min);
        let high = each
            .iter()
            .map(|c| c.reference + BAND)
            .fold(f32::NEG_INFINITY, f32::max);
        Group {
            each,
            low,
            high,
            above: 0,
        }
    }

    #[inline]
    fn observe(&mut self, candidate: u32, score: f32) {
        if score > self.high {
            self.above += 1;
        } else {
            for c in self.each.iter_mut() {
                c.observe(candidate, score);
            }
        }
    }

    fn finish(self) -> Vec<Rank> {
        let above = self.above;
        self.each
            .into_iter()
            .map(|mut c| {
                c.greater += above;
                c.finish()
            })
            .collect()
    }
}

impl Tally for Group {
    fn merge(&mut self, other: Group) {
        self.above += other.above;
        self.each.merge(other.each);
    }
}

/// For every query, the rank of each of its positives (`positives[q]`, candidate rows) among all candidates
/// except `exclude[q]`.
pub fn ranks(
    queries: &Vectors,
    candidates: &Vectors,
    positives: &[Vec<u32>],
    exclude: &[Option<u32>],
    device: &Device,
) -> Result<Vec<Vec<Rank>>> {
    same_dim("the queries", queries, "the candidates", candidates)?;
    let start: Vec<Group> = positives
        .iter()
        .enumerate()
        .map(|(q, ps)| Group::new(counters(queries.row(q), candidates, ps)))
        .collect();
    let state = tally(queries, candidates, device, start, |groups, stripe| {
        for r in 0..stripe.rows {
            let q = stripe.q0 + r;
            let (group, skip) = (&mut groups[q], exclude[q]);
            scan(stripe.row(r), Lows::One(group.low), |j, score| {
                let candidate = (stripe.c0 + j) as u32;
                if Some(candidate) != skip {
                    group.observe(candidate, score);
                }
            });
        }
    })?;
    Ok(state.into_iter().map(Group::finish).collect())
}

/// Per image, its captions (rows) with their image→text ranks.
pub type CaptionRanks = Vec<Vec<(u32, Rank)>>;

/// Both directions of caption/image retrieval from one pass over the caption × image scores: text→image (each
/// caption's image among all images) and image→text (each of an image's captions among all captions).
/// `image_of[t]` is caption `t`'s image row. Returns (per caption, per image its captions' ranks in
/// `captions_of` order) where `captions_of[i]` lists image `i`'s caption rows.
pub fn both_directions(
    texts: &Vectors,
    images: &Vectors,
    image_of: &[u32],
    device: &Device,
) -> Result<(Vec<Rank>, CaptionRanks)> {
    same_dim("the caption vectors", texts, "the image vectors", images)?;
    let mut captions_of: Vec<Vec<u32>> = vec![Vec::new(); images.len()];
    for (t, &i) in image_of.iter().enumerate() {
        captions_of[i as usize].push(t as u32);
    }
    // Text→image: one counter per caption. Image→text: one counter per (image, caption); the reference score is
    // the same pair's, so both directions compare the same numbers.
    let t2i: Vec<Counter> = image_of
        .iter()
        .enumerate()
        .map(|(t, &i)| Counter::new(i, dot(texts.row(t), images.row(i as usize))))
        .collect();
    let i2t: Vec<Group> = captions_of
        .iter()
        .map(|ts| {
            Group::new(
                ts.iter()
                    .map(|&t| Counter::new(t, t2i[t as usize].reference))
                    .collect(),
            )
        })
        .collect();
    let i2t_lows: Vec<f32> = i2t.iter().map(|g| g.low).collect();
    // Each stripe row is one caption's scores against the stripe's images: compared once with the caption's own
    // threshold (text→image) and once with each image's (image→text).
    let (t2i, i2t) = tally(texts, images, device, (t2i, i2t), |(t2i, i2t), stripe| {
        let columns = stripe.c0..stripe.c0 + stripe.cols;
        let (groups, lows) = (&mut i2t[columns.clone()], &i2t_lows[columns]);
        for r in 0..stripe.rows {
            let (caption, row) = (stripe.q0 + r, stripe.row(r));
            let counter = &mut t2i[caption];
            scan(row, Lows::One(counter.low()), |j, score| {
                counter.observe((stripe.c0 + j) as u32, score)
            });
            scan(row, Lows::Each(lows), |j, score| {
                groups[j].observe(caption as u32, score)
            });
        }
    })?;
    let t2i = t2i.into_iter().map(Counter::finish).collect();
    let i2t = i2t
        .into_iter()
        .zip(&captions_of)
        .map(|(group, ts)| ts.iter().copied().zip(group.finish()).collect())
        .collect();
    Ok((t2i, i2t))
}

/// The rank of `target` among `members` (candidate rows, the target among them or not) by the same rule, with
/// scores computed directly: CIRR's Recall_subset ranks within a pair's small candidate set.
pub fn subset_rank(query: &[f32], candidates: &Vectors, target: u32, members: &[u32]) -> u64 {
    let own = dot(query, candidates.row(target as usize));
    1 + members
        .iter()
        .filter(|&&m| m != target)
        .filter(|&&m| {
            let s = dot(query, candidates.row(m as usize));
            s > own || (s == own && m < target)
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(prefix: &str, rows: &[[f32; 2]]) -> Vectors {
        Vectors::from_rows(
            prefix,
            2,
            rows.iter()
                .enumerate()
                .map(|(i, r)| (format!("{prefix}{i}"), r.to_vec()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn ranks_count_better_candidates_and_break_ties_by_id() {
        let q = vectors("q", &[[1.0, 0.0]]);
        // c0 and c2 are identical; c1 is best.
        let c = vectors("c", &[[1.0, 1.0], [1.0, 0.1], [1.0, 1.0], [0.0, 1.0]]);
        let got = ranks(&q, &c, &[vec![2, 0, 3]], &[None], &Device::Cpu).unwrap();
        let r: Vec<u64> = got[0].iter().map(|r| r.rank).collect();
        assert_eq!(r, [3, 2, 4]);
        let got = ranks(&q, &c, &[vec![2]], &[Some(1)], &Device::Cpu).unwrap();
        assert_eq!(got[0][0].rank, 2);
    }

    #[test]
    fn both_directions_agree_with_the_row_wise_ranks() {
        let texts = vectors(
            "t",
            &[[1.0, 0.0], [0.9, 0.3], [0.0, 1.0], [0.5, 0.5], [0.2, 0.9]],
        );
        let images = vectors("i", &[[1.0, 0.1], [0.1, 1.0], [0.7, 0.7]]);
        let image_of = [0u32, 0, 1, 2, 1];
        let (t2i, i2t) = both_directions(&texts, &images, &image_of, &Device::Cpu).unwrap();
        let positives: Vec<Vec<u32>> = image_of.iter().map(|&i| vec![i]).collect();
        let want = ranks(&texts, &images, &positives, &[None; 5], &Device::Cpu).unwrap();
        for (t, w) in want.iter().enumerate() {
            assert_eq!(t2i[t], w[0]);
        }
        let captions_of = [vec![0u32, 1], vec![2, 4], vec![3]];
        let want = ranks(&images, &texts, &captions_of, &[None; 3], &Device::Cpu).unwrap();
        for (i, w) in want.iter().enumerate() {
            let have: Vec<u64> = i2t[i].iter().map(|(_, r)| r.rank).collect();
            let want: Vec<u64> = w.iter().map(|r| r.rank).collect();
            assert_eq!(have, want, "image {i}");
        }
    }

    #[test]
    fn subset_rank_counts_members_only() {
        let q = [1.0f32, 0.0];
        let c = vectors("c", &[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]);
        assert_eq!(subset_rank(&q, &c, 1, &[1, 2]), 1);
        assert_eq!(subset_rank(&q, &c, 1, &[0, 1, 2]), 2);
    }
}
