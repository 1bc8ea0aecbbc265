//! `vlmdb bench eval` and `vlmdb bench knn`: retrieval speed beside the Python peers on the same random unit
//! vectors, same machine, same thread count.
//!
//! - eval: rank every positive both ways and compute R@1/5/10 for T texts × I images (vs the CLIP_benchmark
//!   formula in PyTorch), next to the floor, the bare T × d × I matrix product.
//! - knn: exact top-k of N queries in N items (vs faiss `IndexFlatIP`), and an HNSW graph (hnsw_rs vs faiss
//!   HNSW32) compared at equal recall@k.

use super::conditions::timed;
use std::io::Write;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::run_peer;
use crate::error::{Error, Result};
use crate::eval::hnsw::{Graph, HnswParams};
use crate::eval::ranks::both_directions;
use crate::eval::recall::recall;
use crate::eval::scores::for_each_block;
use crate::eval::space::Vectors;
use crate::eval::topk::top_k;

const PEER: &str = include_str!("../../../tests/peers/retrieval_peer.py");
const INSTALL: &str = "pip install numpy torch faiss-cpu";

/// Seeded uniform noise in [-1, 1) (xorshift64*): the same vectors on every run.
pub(super) struct Noise(pub(super) u64);

impl Noise {
    pub(super) fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 40;
        (x as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The recall@k both HNSW implementations are tuned to reach.
const TARGET_RECALL: f64 = 0.95;

/// Intrinsic dimension of the "embedding-like" vectors.
const INTRINSIC: usize = 24;

/// `n` unit vectors that span only a random 24-dimensional subspace (a fixed mixing matrix applied to random
/// 24-dimensional points), like real embeddings, whose intrinsic dimension is far below their width.
fn embedded(prefix: &str, n: usize, dim: usize, noise: &mut Noise) -> Result<Vectors> {
    let mut mixing = Noise(0x5851F42D4C957F2D);
    let a: Vec<f32> = (0..dim * INTRINSIC).map(|_| mixing.next()).collect();
    let rows = (0..n)
        .map(|i| {
            let z: Vec<f32> = (0..INTRINSIC).map(|_| noise.next()).collect();
            let v = (0..dim)
                .map(|r| (0..INTRINSIC).map(|c| a[r * INTRINSIC + c] * z[c]).sum())
                .collect();
            (format!("{prefix}{i:08}"), v)
        })
        .collect();
    Vectors::from_rows(prefix, dim, rows)
}

/// `n` random unit vectors named `<prefix><index>` (zero-padded, so id order is row order).
pub(super) fn random(prefix: &str, n: usize, dim: usize, noise: &mut Noise) -> Result<Vectors> {
    let rows = (0..n)
        .map(|i| {
            (
                format!("{prefix}{i:08}"),
                (0..dim).map(|_| noise.next()).collect(),
            )
        })
        .collect();
    Vectors::from_rows(prefix, dim, rows)
}

pub(super) fn write_f32(path: &Path, data: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

pub(super) fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub(super) fn work_dir(name: &str) -> Result<std::path::PathBuf> {
    let work = std::env::temp_dir().join(format!("vlmdb-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    Ok(work)
}

/// `vlmdb bench eval`.
pub fn eval_bench(
    images: usize,
    per_image: usize,
    dim: usize,
    device: &Device,
    python: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut noise = Noise(0x9E3779B97F4A7C15);
    let image_vectors = random("i", images, dim, &mut noise)?;
    // Each caption is its image plus as much noise again, so ranks spread out the way real ones do.
    let rows = (0..images * per_image)
        .map(|t| {
            let base = image_vectors.row(t / per_image);
            let v: Vec<f32> = base.iter().map(|x| x + 0.6 * noise.next()).collect();
            (format!("t{t:08}"), v)
        })
        .collect();
    let texts = Vectors::from_rows("t", dim, rows)?;
    let image_of: Vec<u32> = (0..texts.len()).map(|t| (t / per_image) as u32).collect();
    writeln!(
        out,
        "bench eval: {} captions x {} images x {dim} dims, {} threads, on {}",
        texts.len(),
        images,
        threads(),
        crate::models::device::describe(device)
    )?;

    // The floor: the same product, once as one matrix, once in the blocks the ranking streams.
    let t = Tensor::from_slice(&texts.data, (texts.len(), dim), device)
        .map_err(Error::tensor("benchmark"))?;
    let i = Tensor::from_slice(&image_vectors.data, (images, dim), device)
        .map_err(Error::tensor("benchmark"))?;
    let (floor, _) = timed(|| {
        t.matmul(&i.t().map_err(Error::tensor("benchmark"))?)
            .map_err(Error::tensor("benchmark"))
            .map(drop)
    })?;
    let (floor_blocks, _) =
        timed(|| for_each_block(&texts, &image_vectors, device, 0, |_| Ok(())))?;

    let (ours, (t2i, i2t)) = timed(|| both_directions(&texts, &image_vectors, &image_of, device))?;
    let mut ours_metrics = Vec::new();
    for k in [1u64, 5, 10] {
        let t2i_hit = t2i.iter().filter(|r| r.rank <= k).count() as f64 / t2i.len() as f64;
        let i2t_hit = i2t
            .iter()
            .filter(|ranks| ranks.iter().map(|(_, r)| r.rank).min().unwrap_or(u64::MAX) <= k)
            .count() as f64
            / i2t.len() as f64;
        ours_metrics.push((k, t2i_hit, i2t_hit));
    }
    writeln!(out, "matmul floor (candle, one product)   {floor:8.3} s")?;
    writeln!(
        out,
        "matmul floor (candle, in blocks)     {floor_blocks:8.3} s"
    )?;
    writeln!(
        out,
        "vlmdb ranks + R@K, both directions   {ours:8.3} s   ({:.2}x the faster floor)",
        ours / floor.min(floor_blocks)
    )?;
    for (k, a, b) in &ours_metrics {
        writeln!(out, "  vlmdb  R@{k:<2} t2i {a:.4}  i2t {b:.4}")?;
    }
    let Some(python) = python else {
        return Ok(());
    };
    let work = work_dir("eval")?;
    let (tf, imf) = (work.join("texts.f32"), work.join("images.f32"));
    write_f32(&tf, &texts.data)?;
    write_f32(&imf, &image_vectors.data)?;
    let script = work.join("retrieval_peer.py");
    std::fs::write(&script, PEER).map_err(|e| Error::io(&script, e))?;
    let mut args: Vec<String> = vec![
        "eval".into(),
        "--texts".into(),
        tf.display().to_string(),
        "--images".into(),
        imf.display().to_string(),
        "--dim".into(),
        dim.to_string(),
        "--per-image".into(),
        per_image.to_string(),
        "--threads".into(),
        threads().to_string(),
    ];
    args.extend(super::conditions::peer_device(device));
    let report = run_peer(python, &script, &args, INSTALL)?;
    let peer = report["seconds"].as_f64().unwrap_or(f64::NAN);
    let torch_mm = report["matmul_seconds"].as_f64().unwrap_or(f64::NAN);
    writeln!(out, "matmul (PyTorch)                     {torch_mm:8.3} s")?;
    writeln!(out, "CLIP_benchmark formula (PyTorch)     {peer:8.3} s")?;
    for k in [1, 5, 10] {
        writeln!(
            out,
            "  peer   R@{k:<2} t2i {:.4}  i2t {:.4}",
            report["metrics"][format!("t2i_r_at_{k}")]
                .as_f64()
                .unwrap_or(f64::NAN),
            report["metrics"][format!("i2t_r_at_{k}")]
                .as_f64()
                .unwrap_or(f64::NAN)
        )?;
    }
    writeln!(
        out,
        "speed-up over the peer               {:8.1}x",
        peer / ours
    )?;
    writeln!(
        out,
        "vlmdb / PyTorch matmul               {:8.2}x",
        ours / torch_mm
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// `vlmdb bench knn`.
pub async fn knn_bench(
    n: usize,
    hnsw_n: usize,
    dim: usize,
    k: usize,
    device: &Device,
    python: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let mut noise = Noise(0xD1B54A32D192ED03);
    let queries = random("q", n, dim, &mut noise)?;
    let corpus = random("c", n, dim, &mut noise)?;
    writeln!(
        out,
        "bench knn: {n} queries x {n} items x {dim} dims, k = {k}, {} threads, exact search on {} (hnsw and the \
         stored index on the CPU)",
        threads(),
        crate::models::device::describe(device)
    )?;
    let (ours, _) = timed(|| top_k(&queries, &corpus, k, None, device).map(drop))?;
    writeln!(
        out,
        "exact  vlmdb (blocked GEMM + running top-k)  {ours:8.3} s"
    )?;

    // HNSW on a smaller corpus with the low intrinsic dimension real embeddings have (uniform random 512-d
    // vectors are the worst case for any graph index): 1,000 queries, efSearch raised until recall@k >= 0.95.
    let hq = embedded("h", 1000.min(hnsw_n), dim, &mut noise)?;
    let hc = embedded("d", hnsw_n, dim, &mut noise)?;
    let truth = top_k(&hq, &hc, k, None, device)?;
    let mut params = HnswParams::default();
    let (build, graph) = timed(|| Graph::build(&hc, params))?;
    let (mut ours_recall, mut ours_qps) = (0.0, 0.0);
    for ef in [16, 32, 64, 128, 256, 512] {
        params.ef_search = ef;
        let (search, found) = timed(|| Ok(graph.search_with(&hq, k, None, ef)))?;
        ours_recall = recall(&found, &truth);
        ours_qps = hq.len() as f64 / search;
        if ours_recall >= TARGET_RECALL {
            break;
        }
    }
    writeln!(
        out,
        "hnsw   vlmdb (hnsw_rs, M 32, efC 200, ef {}) on {hnsw_n} items: build {build:.2} s, recall@{k} {ours_recall:.4}, {ours_qps:.0} queries/s",
        params.ef_search
    )?;
    let work = work_dir("knn")?;
    let stored = super::stored_index::measure(&work, &hc, &hq, &truth, k).await?;
    writeln!(
        out,
        "ann    vlmdb stored index (Lance IVF_HNSW_SQ, knn(…, 'ann')) on {hnsw_n} items: build {:.2} s, recall@{k} {:.4}, {:.0} queries/s",
        stored.build, stored.recall, stored.qps
    )?;
    let Some(python) = python else {
        let _ = std::fs::remove_dir_all(&work);
        return Ok(());
    };
    let paths: Vec<std::path::PathBuf> = ["q.f32", "c.f32", "hq.f32", "hc.f32", "exact.i64"]
        .iter()
        .map(|f| work.join(f))
        .collect();
    write_f32(&paths[0], &queries.data)?;
    write_f32(&paths[1], &corpus.data)?;
    write_f32(&paths[2], &hq.data)?;
    write_f32(&paths[3], &hc.data)?;
    let ids: Vec<u8> = truth
        .iter()
        .flat_map(|hits| hits.iter().map(|h| i64::from(h.index)))
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&paths[4], ids).map_err(|e| Error::io(&paths[4], e))?;
    let script = work.join("retrieval_peer.py");
    std::fs::write(&script, PEER).map_err(|e| Error::io(&script, e))?;
    let arg = |p: &std::path::PathBuf| p.display().to_string();
    let report = run_peer(
        python,
        &script,
        &[
            "knn".into(),
            "--queries".into(),
            arg(&paths[0]),
            "--corpus".into(),
            arg(&paths[1]),
            "--dim".into(),
            dim.to_string(),
            "--k".into(),
            k.to_string(),
            "--threads".into(),
            threads().to_string(),
            "--hnsw-queries".into(),
            arg(&paths[2]),
            "--hnsw-corpus".into(),
            arg(&paths[3]),
            "--exact-ids".into(),
            arg(&paths[4]),
            "--target-recall".into(),
            TARGET_RECALL.to_string(),
        ],
        INSTALL,
    )?;
    let flat = report["flat_seconds"].as_f64().unwrap_or(f64::NAN);
    writeln!(
        out,
        "exact  faiss IndexFlatIP                     {flat:8.3} s"
    )?;
    writeln!(
        out,
        "exact  vlmdb speed / faiss                   {:8.2}x",
        flat / ours
    )?;
    let qps = report["hnsw_qps"].as_f64().unwrap_or(f64::NAN);
    writeln!(
        out,
        "hnsw   faiss HNSW32 (efC 200, ef {}): build {:.2} s, recall@{k} {:.4}, {qps:.0} queries/s",
        report["hnsw_ef_search"],
        report["hnsw_build_seconds"].as_f64().unwrap_or(f64::NAN),
        report["hnsw_recall"].as_f64().unwrap_or(f64::NAN)
    )?;
    writeln!(
        out,
        "hnsw   vlmdb queries/s / faiss, both at recall >= {TARGET_RECALL}  {:.2}x",
        ours_qps / qps
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
