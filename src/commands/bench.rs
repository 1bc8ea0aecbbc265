//! `vlmdb bench`: speed figures measured side by side with the peer an issue names, on the same machine and the
//! same inputs. Never timing assertions: the numbers are printed for a person to read and report.

pub mod cluster;
pub mod conditions;
pub mod finetune;
pub mod retrieval;
pub mod stored_index;
pub mod train;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{ImageFormat, Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::ingest::{self, IngestOptions, InputFormat, ReadOptions, SplitRule};
use crate::store::Store;

/// The Python peer of the ingest benchmark (PIL decode + pylance `write_dataset`), embedded so the benchmark does
/// not depend on the working directory.
const INGEST_PEER: &str = include_str!("../../tests/peers/ingest_peer.py");

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
            .map_err(|source| Error::Image {
                what: format!("writing {}", path.display()),
                source,
            })?;
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

    // Each run ingests into a fresh store (a second ingest of the same files would skip them all).
    let mut seconds = Vec::new();
    let mut summary = None;
    for run in 0..conditions::runs() {
        let store = Store::open(&work.join(format!("vlmdb_store_{run}"))).await?;
        store.init().await?;
        let options = IngestOptions {
            format: InputFormat::Jsonl,
            path: metadata.clone(),
            dataset: "bench".into(),
            read: ReadOptions::default(),
            split: SplitRule::Source,
            resize: None,
            strict: false,
            chunk: ingest::DEFAULT_CHUNK,
        };
        let started = Instant::now();
        summary = Some(ingest::ingest(&store, options).await?);
        seconds.push(started.elapsed().as_secs_f64());
    }
    let ours = conditions::median(&seconds);
    let images = summary.map_or(0, |s| s.images);
    let ours_rate = images as f64 / ours;
    writeln!(out, "vlmdb        {ours:8.2} s  {ours_rate:9.0} images/s")?;

    if let Some(python) = python {
        let script = work.join("ingest_peer.py");
        std::fs::write(&script, INGEST_PEER).map_err(|e| Error::io(&script, e))?;
        let peer_out = work.join("peer");
        std::fs::create_dir_all(&peer_out).map_err(|e| Error::io(&peer_out, e))?;
        let report = run_peer(
            python,
            &script,
            &[
                metadata.display().to_string(),
                peer_out.display().to_string(),
            ],
            "pip install pillow pylance",
        )?;
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

/// The Python peer of the embedding benchmark (sentence-transformers / transformers CLIP on PyTorch).
const EMBED_PEER: &str = include_str!("../../tests/peers/embed_peer.py");
/// The module the PyTorch peers choose their device with, written beside each peer ([`run_peer`]).
const PEER_DEVICE: &str = include_str!("../../tests/peers/peer_device.py");

/// `count` captions of varied length and wording, deterministic (a small linear congruential generator).
pub fn captions(count: usize) -> Vec<String> {
    const SUBJECTS: &[&str] = &[
        "a dog",
        "two children",
        "an old man",
        "a red bicycle",
        "a group of people",
        "a small bird",
        "a woman in a blue coat",
        "a train",
        "a bowl of soup",
        "three horses",
    ];
    const VERBS: &[&str] = &[
        "standing next to",
        "running across",
        "sitting on",
        "looking at",
        "parked beside",
        "flying over",
        "waiting near",
        "walking through",
    ];
    const PLACES: &[&str] = &[
        "a wooden bench",
        "the beach at sunset",
        "a busy city street",
        "a snowy mountain trail",
        "a kitchen table covered with fruit",
        "the entrance of an old brick building",
        "a field of tall grass",
        "a crowded market with colourful stalls",
    ];
    const EXTRAS: &[&str] = &[
        "",
        " on a cloudy day",
        " while the sun sets behind the hills and the light turns orange",
        " in a photograph taken from far away",
        " with people in the background",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % n
    };
    (0..count)
        .map(|_| {
            format!(
                "{} {} {}{}.",
                SUBJECTS[next(SUBJECTS.len())],
                VERBS[next(VERBS.len())],
                PLACES[next(PLACES.len())],
                EXTRAS[next(EXTRAS.len())]
            )
        })
        .collect()
}

/// Run a Python peer script [`conditions::runs`] times, on its best kernels ([`conditions::peer_env`]), and read
/// the JSON object on the last line of its output: each number is the median over the runs. `install` is the hint
/// printed when it fails.
pub(crate) fn run_peer(
    python: &str,
    script: &Path,
    args: &[String],
    install: &str,
) -> Result<serde_json::Value> {
    // The PyTorch peers share where they run (`--device`) through a module written beside them.
    if let Some(dir) = script.parent() {
        let module = dir.join("peer_device.py");
        std::fs::write(&module, PEER_DEVICE).map_err(|e| Error::io(&module, e))?;
    }
    let mut reports = Vec::new();
    for _ in 0..conditions::runs() {
        let mut command = std::process::Command::new(python);
        command.arg(script).args(args);
        conditions::peer_env(&mut command);
        let output = command.output().map_err(|e| Error::io(python, e))?;
        if !output.status.success() {
            return Err(Error::Usage(format!(
                "the Python peer failed ({install}): {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.lines().last().unwrap_or_default();
        reports.push(serde_json::from_str::<serde_json::Value>(last)?);
    }
    let mut merged = reports
        .last()
        .cloned()
        .ok_or_else(|| Error::Usage("the Python peer ran no times".into()))?;
    if let Some(fields) = merged.as_object_mut() {
        for (key, value) in fields.iter_mut() {
            if value.is_number() {
                let values: Vec<f64> = reports.iter().filter_map(|r| r[key].as_f64()).collect();
                *value = serde_json::json!(conditions::median(&values));
            }
        }
    }
    Ok(merged)
}

/// What `vlmdb bench embed` times.
#[derive(Debug, Clone)]
pub struct EmbedBenchOptions {
    /// The text model (a sentence-transformers directory, alias or hf: id).
    pub text_model: String,
    /// The CLIP model whose image tower is timed (`None`: skipped).
    pub image_model: Option<String>,
    /// How many captions.
    pub texts: usize,
    /// How many images.
    pub images: usize,
    /// Inputs per forward pass.
    pub batch: usize,
    /// The Python that runs the peer.
    pub python: String,
    /// Skip the peer.
    pub no_peer: bool,
}

/// Time the text model on generated captions (and a CLIP image tower on generated images) with vlmdb, then with
/// the PyTorch peer on the same inputs, batch size and thread count; print both rates and their ratios.
pub async fn embed_bench(
    args: &EmbedBenchOptions,
    device: crate::models::DeviceChoice,
    out: &mut dyn Write,
) -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let work = std::env::temp_dir().join(format!("vlmdb-bench-embed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    let script = work.join("embed_peer.py");
    std::fs::write(&script, EMBED_PEER).map_err(|e| Error::io(&script, e))?;

    let texts = captions(args.texts);
    let text_file = work.join("captions.txt");
    std::fs::write(&text_file, texts.join("\n")).map_err(|e| Error::io(&text_file, e))?;
    let model = crate::models::Model::load(&args.text_model, device)?;
    writeln!(
        out,
        "bench embed: {} captions, batch {}, {threads} threads, model {} on {}",
        texts.len(),
        args.batch,
        model.files.id,
        crate::models::device::describe(&model.device)
    )?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed_texts(&refs[..refs.len().min(args.batch)], args.batch)?;
    let (seconds, _) = conditions::timed(|| model.embed_texts(&refs, args.batch))?;
    let ours = texts.len() as f64 / seconds;
    writeln!(out, "text   vlmdb        {ours:9.1} texts/s")?;
    if !args.no_peer {
        let report = run_peer(
            &args.python,
            &script,
            &[
                "--model".into(),
                model.files.id.clone(),
                "--texts".into(),
                text_file.display().to_string(),
                "--batch".into(),
                args.batch.to_string(),
                "--threads".into(),
                threads.to_string(),
            ]
            .into_iter()
            .chain(conditions::peer_device(&model.device))
            .collect::<Vec<String>>(),
            "pip install torch transformers sentence-transformers",
        )?;
        let peer = report["texts_per_s"].as_f64().unwrap_or(f64::NAN);
        writeln!(
            out,
            "text   pytorch peer {peer:9.1} texts/s  (sentence-transformers)"
        )?;
        writeln!(out, "text   ratio        {:9.2}x", ours / peer)?;
    }

    if let Some(image_model) = &args.image_model {
        let model = crate::models::Model::load(image_model, device)?;
        let dir = work.join("images");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut encoded = Vec::with_capacity(args.images);
        for i in 0..args.images {
            let shade = (i % 251) as u8;
            let image = RgbImage::from_fn(320, 240, |x, y| {
                Rgb([(x as u8) ^ shade, y as u8, shade.wrapping_mul(7)])
            });
            let path = dir.join(format!("{i:05}.jpg"));
            image
                .save_with_format(&path, ImageFormat::Jpeg)
                .map_err(|source| Error::Image {
                    what: format!("writing {}", path.display()),
                    source,
                })?;
            encoded.push(std::fs::read(&path).map_err(|e| Error::io(&path, e))?);
        }
        let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        model.embed_images(&slices[..slices.len().min(4)], args.batch)?;
        let (seconds, _) = conditions::timed(|| model.embed_images(&slices, args.batch))?;
        let ours = slices.len() as f64 / seconds;
        writeln!(
            out,
            "image  vlmdb        {ours:9.1} images/s  ({} image tower)",
            model.files.id
        )?;
        if !args.no_peer {
            let report = run_peer(
                &args.python,
                &script,
                &[
                    "--clip-dir".into(),
                    model.files.id.clone(),
                    "--images-dir".into(),
                    dir.display().to_string(),
                    "--batch".into(),
                    args.batch.to_string(),
                    "--threads".into(),
                    threads.to_string(),
                ]
                .into_iter()
                .chain(conditions::peer_device(&model.device))
                .collect::<Vec<String>>(),
                "pip install torch transformers sentence-transformers",
            )?;
            let peer = report["images_per_s"].as_f64().unwrap_or(f64::NAN);
            writeln!(
                out,
                "image  pytorch peer {peer:9.1} images/s  (transformers CLIPModel)"
            )?;
            writeln!(out, "image  ratio        {:9.2}x", ours / peer)?;
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
