//! The conditions a benchmark ratio is honest under (issue 26): the peer on its best kernels (OpenBLAS misdetects
//! these CPUs and falls back to its generic kernels unless `OPENBLAS_CORETYPE` names the AVX-512 ones, so the peer
//! runs with `OPENBLAS_CORETYPE=SkylakeX` where the CPU has AVX-512, whatever the environment says), what threadpoolctl
//! reports the peer's libraries to be, a warning when the machine is busy before the bench starts (a peer's
//! OpenMP threads spin and collapse beside another process), and every timing the median of several runs.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};

static RUNS: AtomicUsize = AtomicUsize::new(3);

/// How many times each timing is taken (`vlmdb bench --runs N`, default 3); the median is reported.
pub fn set_runs(runs: usize) {
    RUNS.store(runs.max(1), Ordering::SeqCst);
}

pub fn runs() -> usize {
    RUNS.load(Ordering::SeqCst)
}

/// The median of `values` (the mean of the middle two for an even count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Run `work` [`runs`] times: the median of its wall times in seconds, and the last run's result.
pub fn timed<T>(mut work: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut seconds = Vec::new();
    let mut last = None;
    for _ in 0..runs() {
        let started = Instant::now();
        last = Some(work()?);
        seconds.push(started.elapsed().as_secs_f64());
    }
    let last = last.ok_or_else(|| Error::Usage("a benchmark ran no times".into()))?;
    Ok((median(&seconds), last))
}

/// The arguments that put a peer on vlmdb's device: `--device cuda` (the PyTorch peers then run there, under
/// AMP where the issue's peer is PyTorch AMP) when vlmdb runs on a GPU, none on the CPU.
pub fn peer_device(device: &candle_core::Device) -> Vec<String> {
    if device.is_cuda() {
        vec!["--device".into(), "cuda".into()]
    } else {
        Vec::new()
    }
}

/// [`timed`] for async work.
pub async fn timed_async<T, F, Fut>(mut work: F) -> Result<(f64, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut seconds = Vec::new();
    let mut last = None;
    for _ in 0..runs() {
        let started = Instant::now();
        last = Some(work().await?);
        seconds.push(started.elapsed().as_secs_f64());
    }
    let last = last.ok_or_else(|| Error::Usage("a benchmark ran no times".into()))?;
    Ok((median(&seconds), last))
}

/// True when the CPU has AVX-512 (the kernels OpenBLAS should pick are then its SkylakeX ones).
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The environment a peer process runs with: `OPENBLAS_CORETYPE=SkylakeX` on AVX-512 CPUs (OpenBLAS's own
/// detection picks generic kernels there, and a value inherited from the environment may name older ones).
pub fn peer_env(command: &mut std::process::Command) {
    if has_avx512() {
        command.env("OPENBLAS_CORETYPE", "SkylakeX");
    }
}

/// What threadpoolctl reports for the peer's numeric libraries (numpy, and torch, faiss, scikit-learn where
/// installed), run under [`peer_env`]: one line per library with its architecture, e.g.
/// `openblas 0.3.29 SkylakeX, 2 threads (numpy)`.
const KERNELS_PROBE: &str = r#"
import json, importlib
loaded = []
for name in ["numpy", "torch", "faiss", "sklearn"]:
    try:
        importlib.import_module(name)
        loaded.append(name)
    except Exception:
        pass
try:
    from threadpoolctl import threadpool_info
    info = threadpool_info()
except Exception as e:
    info = [{"error": "threadpoolctl: " + str(e)}]
print(json.dumps({"modules": loaded, "pools": info}))
"#;

pub fn kernels(python: &str) -> String {
    let mut command = std::process::Command::new(python);
    command.arg("-c").arg(KERNELS_PROBE);
    peer_env(&mut command);
    let Ok(output) = command.output() else {
        return format!("{python} cannot be run");
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(report) = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    else {
        return "threadpoolctl gave no report".into();
    };
    let pools: Vec<String> = report["pools"]
        .as_array()
        .map(|pools| {
            pools
                .iter()
                .map(|p| {
                    if let Some(error) = p["error"].as_str() {
                        return error.to_string();
                    }
                    let file = p["filepath"].as_str().unwrap_or_default();
                    let owner = ["numpy", "torch", "faiss", "sklearn", "scipy"]
                        .into_iter()
                        .find(|m| file.contains(m))
                        .unwrap_or("?");
                    let words: Vec<&str> = ["internal_api", "version", "architecture"]
                        .into_iter()
                        .filter_map(|k| p[k].as_str())
                        .collect();
                    format!(
                        "{}, {} threads ({owner})",
                        words.join(" "),
                        p["num_threads"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    pools.join("; ")
}

/// The share of the CPUs busy over half a second (from /proc/stat), `None` where it cannot be read.
pub fn busy_share() -> Option<f64> {
    let sample = || -> Option<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = text
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some((fields.iter().sum(), idle))
    };
    let (total_a, idle_a) = sample()?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (total_b, idle_b) = sample()?;
    let total = total_b.saturating_sub(total_a);
    (total > 0).then(|| 1.0 - idle_b.saturating_sub(idle_a) as f64 / total as f64)
}

/// The lines every bench starts with: runs per timing, a warning when the machine is busy, and the peer's kernels.
pub fn preamble(out: &mut dyn Write, python: Option<&str>) -> Result<()> {
    writeln!(
        out,
        "conditions: median of {} runs per timing{}",
        runs(),
        match (has_avx512(), std::env::var("OPENBLAS_CORETYPE")) {
            (true, Ok(inherited)) if inherited != "SkylakeX" => format!(
                "; peers run with OPENBLAS_CORETYPE=SkylakeX (AVX-512), not the environment's {inherited}"
            ),
            (true, _) => "; peers run with OPENBLAS_CORETYPE=SkylakeX (AVX-512)".to_string(),
            (false, _) => String::new(),
        }
    )?;
    if let Some(busy) = busy_share()
        && busy > 0.15
    {
        writeln!(
            out,
            "warning: the machine is not idle ({:.0} % of the CPUs busy before the bench): ratios measured now are \
             not comparable",
            busy * 100.0
        )?;
    }
    if let Some(python) = python {
        writeln!(out, "peer kernels: {}", kernels(python))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
