//! `vlmdb bench kmeans`: k-means of N × d vectors into k clusters for a fixed number of Lloyd iterations, beside
//! scikit-learn and faiss (every point used) on the same vectors and threads, with the inertia of each.

use std::io::Write;

use candle_core::Device;

use super::retrieval::{Noise, threads, work_dir, write_f32};
use super::run_peer;
use crate::cluster::kmeans::{KMeansOptions, Metric, kmeans};
use crate::error::{Error, Result};
use crate::eval::space::Vectors;

const PEER: &str = include_str!("../../../tests/peers/kmeans_peer.py");

/// The problem `vlmdb bench kmeans` times.
#[derive(Debug, Clone, Copy)]
pub struct KmeansBench {
    pub n: usize,
    pub dim: usize,
    pub k: usize,
    pub iterations: usize,
    pub seed: u64,
}

/// `vlmdb bench kmeans`.
pub fn kmeans_bench(
    bench: KmeansBench,
    device: &Device,
    python: Option<&str>,
    skip_sklearn: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let KmeansBench {
        n,
        dim,
        k,
        iterations,
        seed,
    } = bench;
    // k planted clusters: a random unit centre each, points = centre + noise of the same size, normalised.
    let mut noise = Noise(0xA0761D6478BD642F);
    let centres: Vec<Vec<f32>> = (0..k)
        .map(|_| (0..dim).map(|_| noise.next()).collect())
        .collect();
    let rows = (0..n)
        .map(|i| {
            let c = &centres[i % k];
            let v = c.iter().map(|x| x + noise.next()).collect();
            (format!("x{i:08}"), v)
        })
        .collect();
    let data = Vectors::from_rows("x", dim, rows)?;
    writeln!(
        out,
        "bench kmeans: {n} x {dim}, k = {k}, {iterations} iterations, seed {seed}, {} threads, on {}",
        threads(),
        crate::models::device::describe(device)
    )?;
    let options = KMeansOptions {
        k,
        iterations,
        seed,
        metric: Metric::L2,
        inits: 1,
    };
    let (ours, result) = super::conditions::timed(|| kmeans(&data, &options, device))?;
    writeln!(
        out,
        "vlmdb (k-means++, blocked GEMM)  {ours:8.2} s   inertia {:.2} after {} steps",
        result.inertia,
        result.history.len()
    )?;
    let Some(python) = python else {
        return Ok(());
    };
    let work = work_dir("kmeans")?;
    let file = work.join("x.f32");
    write_f32(&file, &data.data)?;
    let script = work.join("kmeans_peer.py");
    std::fs::write(&script, PEER).map_err(|e| Error::io(&script, e))?;
    let mut args = vec![
        "--data".to_string(),
        file.display().to_string(),
        "--dim".into(),
        dim.to_string(),
        "--k".into(),
        k.to_string(),
        "--iterations".into(),
        iterations.to_string(),
        "--threads".into(),
        threads().to_string(),
        "--seed".into(),
        seed.to_string(),
    ];
    if skip_sklearn {
        args.push("--skip-sklearn".into());
    }
    let report = run_peer(
        python,
        &script,
        &args,
        "pip install numpy scikit-learn faiss-cpu",
    )?;
    let faiss = report["faiss_seconds"].as_f64().unwrap_or(f64::NAN);
    writeln!(
        out,
        "faiss Kmeans (all points)        {faiss:8.2} s   inertia {:.2}",
        report["faiss_inertia"].as_f64().unwrap_or(f64::NAN)
    )?;
    writeln!(
        out,
        "vlmdb speed / faiss              {:8.2}x",
        faiss / ours
    )?;
    if let Some(sk) = report["sklearn_seconds"].as_f64() {
        writeln!(
            out,
            "scikit-learn KMeans (n_init 1)   {sk:8.2} s   inertia {:.2}",
            report["sklearn_inertia"].as_f64().unwrap_or(f64::NAN)
        )?;
        writeln!(out, "vlmdb speed / scikit-learn       {:8.2}x", sk / ours)?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
