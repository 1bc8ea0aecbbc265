//! The scores of a row at or above a threshold, found sixteen at a time: the rank counters of [`crate::eval::ranks`]
//! look at every score of every block, and all but a few fall below the threshold. On AVX-512 CPUs one compare
//! tests sixteen scores and only the set bits of its mask are visited; elsewhere a plain loop does the same.

/// The threshold of each score: one for the whole row, or one per column.
#[derive(Clone, Copy)]
pub enum Lows<'a> {
    One(f32),
    Each(&'a [f32]),
}

impl Lows<'_> {
    #[inline(always)]
    fn at(&self, j: usize) -> f32 {
        match self {
            Lows::One(low) => *low,
            Lows::Each(lows) => lows[j],
        }
    }
}

/// `hit(j, scores[j])` for every `j` with `scores[j] >= lows[j]`, in increasing `j` (NaN never hits).
pub fn scan(scores: &[f32], lows: Lows, hit: impl FnMut(usize, f32)) {
    if let Lows::Each(lows) = lows {
        assert_eq!(lows.len(), scores.len(), "one threshold per score");
    }
    #[cfg(target_arch = "x86_64")]
    if super::kernel::available() {
        // SAFETY: AVX-512F is present (checked just above).
        unsafe { scan_avx512(scores, lows, hit) };
        return;
    }
    scan_plain(scores, lows, hit)
}

fn scan_plain(scores: &[f32], lows: Lows, mut hit: impl FnMut(usize, f32)) {
    for (j, &s) in scores.iter().enumerate() {
        if s >= lows.at(j) {
            hit(j, s);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn scan_avx512(scores: &[f32], lows: Lows, mut hit: impl FnMut(usize, f32)) {
    use std::arch::x86_64::*;
    for start in (0..scores.len()).step_by(16) {
        let n = (scores.len() - start).min(16);
        let lanes: __mmask16 = if n == 16 { 0xffff } else { (1u16 << n) - 1 };
        // SAFETY: AVX-512F is enabled; the masked loads read lanes `start..start + n` only, which lie inside
        // `scores` (and `lows`, which has the same length, asserted in `scan`).
        let mask = unsafe {
            let s = _mm512_maskz_loadu_ps(lanes, scores.as_ptr().add(start));
            let l = match lows {
                Lows::One(low) => _mm512_set1_ps(low),
                Lows::Each(lows) => _mm512_maskz_loadu_ps(lanes, lows.as_ptr().add(start)),
            };
            _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(lanes, s, l)
        };
        let mut bits = mask;
        while bits != 0 {
            let j = start + bits.trailing_zeros() as usize;
            hit(j, scores[j]);
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_exactly_the_scores_at_or_above_the_threshold() {
        let scores: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 37) as f32 / 37.0)
            .chain([f32::NAN])
            .collect();
        let lows: Vec<f32> = (0..scores.len()).map(|i| (i % 5) as f32 / 5.0).collect();
        for lows in [Lows::One(0.5), Lows::Each(&lows)] {
            let want: Vec<usize> = (0..scores.len())
                .filter(|&j| scores[j] >= lows.at(j))
                .collect();
            for plain in [false, true] {
                let mut got = Vec::new();
                let hit = |j: usize, s: f32| {
                    assert_eq!(s.to_bits(), scores[j].to_bits());
                    got.push(j);
                };
                if plain {
                    scan_plain(&scores, lows, hit);
                } else {
                    scan(&scores, lows, hit);
                }
                assert_eq!(got, want, "plain loop: {plain}");
            }
        }
    }
}
