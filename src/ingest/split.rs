//! Split assignment for split-less inputs: `--split S` tags everything, `--split-ratio train=0.9,val=0.1 --seed S`
//! assigns each image by a seeded hash of its id, so the same id always lands in the same split for a seed,
//! whatever the order or size of the input.

use crate::error::{Error, Result};

/// How images without a split in the source get one.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitRule {
    /// Keep what the source says (NULL when it says nothing).
    Source,
    /// Tag every split-less image with this split.
    Fixed(String),
    /// Assign by seeded hash: (split, cumulative upper bound) in order.
    Ratio {
        buckets: Vec<(String, f64)>,
        seed: u64,
    },
}

impl SplitRule {
    /// Parse `train=0.9,val=0.1` (ratios must be positive and sum to 1).
    pub fn ratio(spec: &str, seed: u64) -> Result<SplitRule> {
        let bad = |m: String| Error::Usage(format!("--split-ratio '{spec}': {m}"));
        let mut buckets = Vec::new();
        let mut total = 0.0;
        for part in spec.split(',') {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("'{part}' is not name=ratio")))?;
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| bad(format!("'{value}' is not a number")))?;
            if value.is_nan() || value <= 0.0 {
                return Err(bad(format!("ratio of '{name}' must be positive")));
            }
            total += value;
            buckets.push((name.trim().to_string(), total));
        }
        if (total - 1.0).abs() > 1e-6 {
            return Err(bad(format!("ratios sum to {total}, not 1")));
        }
        Ok(SplitRule::Ratio { buckets, seed })
    }

    /// The split of an image with `key` whose source says `source`.
    pub fn assign(&self, key: &str, source: Option<String>) -> Option<String> {
        match self {
            SplitRule::Source => source,
            SplitRule::Fixed(s) => source.or_else(|| Some(s.clone())),
            SplitRule::Ratio { buckets, seed } => {
                let u = unit_hash(*seed, key);
                buckets
                    .iter()
                    .find(|(_, bound)| u < *bound)
                    .or(buckets.last())
                    .map(|(name, _)| name.clone())
            }
        }
    }
}

/// A uniform number in [0, 1) from (seed, key): FNV-1a then a SplitMix64 finaliser (stable across platforms
/// and releases, unlike `std`'s hasher).
fn unit_hash(seed: u64, key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_deterministic_and_close() {
        let rule = SplitRule::ratio("train=0.9,val=0.1", 42).expect("rule");
        let keys: Vec<String> = (0..10_000).map(|i| format!("img{i}")).collect();
        let a: Vec<_> = keys.iter().map(|k| rule.assign(k, None)).collect();
        let b: Vec<_> = keys
            .iter()
            .rev()
            .map(|k| rule.assign(k, None))
            .rev()
            .collect();
        assert_eq!(a, b, "order does not matter");
        let val = a.iter().filter(|s| s.as_deref() == Some("val")).count();
        assert!((900..1100).contains(&val), "val share {val} of 10000");
        let other = SplitRule::ratio("train=0.9,val=0.1", 43).expect("rule");
        assert_ne!(
            a,
            keys.iter()
                .map(|k| other.assign(k, None))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_ratios_are_named() {
        let e = SplitRule::ratio("train=0.9,val=0.2", 1).unwrap_err();
        assert!(e.to_string().contains("sum to"), "{e}");
        assert!(SplitRule::ratio("train", 1).is_err());
        assert!(SplitRule::ratio("train=x", 1).is_err());
    }

    #[test]
    fn fixed_keeps_source_splits() {
        let rule = SplitRule::Fixed("train".into());
        assert_eq!(rule.assign("a", None).as_deref(), Some("train"));
        assert_eq!(
            rule.assign("a", Some("test".into())).as_deref(),
            Some("test")
        );
    }
}
