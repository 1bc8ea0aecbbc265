//! The memory DataFusion may hold for a query's operators (sorts, joins, aggregations): a pool with a limit, so a
//! query that needs more spills to disk where the operator can, or fails with "Resources exhausted" naming the
//! limit, instead of the process running out of memory. `--memory-limit` (or `VLMDB_MEMORY_LIMIT`) sets it for the
//! process; the default is three quarters of the machine's memory.

use std::sync::OnceLock;

use crate::error::{Error, Result};

static LIMIT: OnceLock<usize> = OnceLock::new();

/// Set the process's limit (the first call wins; sessions made before it keep theirs).
pub fn set_limit(bytes: usize) {
    let _ = LIMIT.set(bytes);
}

/// The limit sessions are made with.
pub fn limit() -> usize {
    *LIMIT.get_or_init(default_limit)
}

/// Three quarters of the machine's memory (`MemTotal` of /proc/meminfo), else 8 GiB.
fn default_limit() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .map(|kb| kb * 1024)
        });
    total.map_or(8 << 30, |bytes| bytes / 4 * 3)
}

/// A size such as `512M`, `4G`, `1.5G`, `100000` (bytes; K, M, G, T in powers of 1024, an optional `B`/`iB`).
pub fn parse_size(text: &str) -> Result<usize> {
    let bad = || {
        Error::Usage(format!(
            "--memory-limit '{text}': expected a size such as 512M, 4G or 1.5G"
        ))
    };
    let t = text.trim().to_ascii_uppercase();
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (number, scale) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < (1 << 20) as f64 || bytes > usize::MAX as f64 {
        return Err(Error::Usage(format!(
            "--memory-limit '{text}': at least 1M, and a number"
        )));
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("512M").expect("512M"), 512 << 20);
        assert_eq!(parse_size("4g").expect("4g"), 4 << 30);
        assert_eq!(parse_size("1.5GiB").expect("1.5GiB"), 3 << 29);
        assert_eq!(parse_size("2097152").expect("bytes"), 2 << 20);
        for bad in ["", "lots", "-1G", "10K", "NaNG"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(default_limit() > 0);
    }
}
