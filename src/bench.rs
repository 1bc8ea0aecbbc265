//! `vlmdb bench`: speed figures measured side by side with the peer an issue names, on the same machine and the
//! same inputs. Never timing assertions: the numbers are printed for a person to read and report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{ImageFormat, Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::ingest::{self, IngestOptions, InputFormat, ReadOptions, SplitRule};
use crate::store::Store;

/// The Python peer of the ingest benchmark (PIL decode + pylance `write_dataset`), embedded so the benchmark does
/// not depend on the working directory.
const INGEST_PEER: &str = include_str!("../tests/peers/ingest_peer.py");

/// Write `count` small JPEGs (96x96 gradients, each different) and a `metadata.jsonl` naming them.
pub fn write_jpegs(dir: &Path, count: usize) -> Result<PathBuf> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| Error::io(&images, e))?;
    let mut lines = String::new();
    for i in 0..count {
        let shade = (i % 251) as u8;
        let image = RgbImage::from_fn(96, 96, |x, y| {
            Rgb([x as u8 ^ shade, y as u8, shade.wrapping_mul(3)])
        });
        let name = format!("images/{i:06}.jpg");
        let path = dir.join(&name);
        image
            .save_with_format(&path, ImageFormat::Jpeg)
            .map_err(|e| Error::Usage(format!("writing {}: {e}", path.display())))?;
        lines.push_str(
            &serde_json::json!({ "file_name": name, "text": format!("gradient number {i}") })
                .to_string(),
        );
        lines.push('\n');
    }
    let metadata = dir.join("metadata.jsonl");
    std::fs::write(&metadata, lines).map_err(|e| Error::io(&metadata, e))?;
    Ok(metadata)
}

/// Ingest `count` generated JPEGs with vlmdb, then with the Python peer (unless `python` is `None`), and print
/// both rates and their ratio to `out`.
pub async fn ingest_bench(count: usize, python: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let work = std::env::temp_dir().join(format!("vlmdb-bench-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let metadata = write_jpegs(&work, count)?;
    writeln!(
        out,
        "bench ingest: {count} JPEGs of 96x96, metadata.jsonl with one caption each"
    )?;

    let store = Store::open(&work.join("vlmdb_store")).await?;
    store.init().await?;
    let options = IngestOptions {
        format: InputFormat::Jsonl,
        path: metadata.clone(),
        dataset: "bench".into(),
        read: ReadOptions::default(),
        split: SplitRule::Source,
        resize: None,
        strict: false,
    };
    let started = Instant::now();
    let summary = ingest::ingest(&store, options).await?;
    let ours = started.elapsed().as_secs_f64();
    let ours_rate = summary.images as f64 / ours;
    writeln!(out, "vlmdb        {ours:8.2} s  {ours_rate:9.0} images/s")?;

    if let Some(python) = python {
        let script = work.join("ingest_peer.py");
        std::fs::write(&script, INGEST_PEER).map_err(|e| Error::io(&script, e))?;
        let peer_out = work.join("peer");
        std::fs::create_dir_all(&peer_out).map_err(|e| Error::io(&peer_out, e))?;
        let output = std::process::Command::new(python)
            .arg(&script)
            .arg(&metadata)
            .arg(&peer_out)
            .output()
            .map_err(|e| Error::Usage(format!("running the Python peer with {python}: {e}")))?;
        if !output.status.success() {
            return Err(Error::Usage(format!(
                "the Python peer failed (pip install pillow pylance): {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            )));
        }
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let peer = report["seconds"].as_f64().unwrap_or(f64::NAN);
        let peer_rate = count as f64 / peer;
        writeln!(
            out,
            "python peer  {peer:8.2} s  {peer_rate:9.0} images/s  (PIL decode + pylance write_dataset)"
        )?;
        writeln!(out, "ratio        {:8.2}x", ours_rate / peer_rate)?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
