//! `vlmdb bench finetune`: steps/s and peak memory of CLIP fine-tuning — both towers, the projections and
//! `logit_scale` trained, AdamW with clipping — beside the same model, loss and optimiser in PyTorch +
//! transformers (`tests/peers/finetune_peer.py`) on the same batch and threads. Both sides train on one fixed
//! batch (captions tokenised by the model's tokenizer, random pixels), 2 untimed warm-up steps, then S timed steps.

use std::io::Write;

use candle_core::{DType, Device, Tensor};

use super::retrieval::{Noise, threads, work_dir, write_f32};
use super::run_peer;
use crate::error::{Error, Result};
use crate::models::clip_trainable::{Trainable, TrainableClip};
use crate::train::loss::Loss;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::step::finetune_step;

const PEER: &str = include_str!("../../../tests/peers/finetune_peer.py");

/// Untimed steps before the clock starts (both sides).
const WARMUP: usize = 2;

/// The captions of the benchmark batch (cycled).
const CAPTIONS: [&str; 4] = [
    "a dog runs across the grass in the park",
    "two children play with a ball on the beach",
    "a man in a red jacket rides a bicycle down the street",
    "people walk past a shop at night",
];

/// Peak resident memory of this process in MB (Linux's VmHWM), if known.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `vlmdb bench finetune`.
pub fn finetune_bench(
    model_spec: &str,
    loss_name: &str,
    batch: usize,
    steps: usize,
    device: &Device,
    python: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    if batch < 2 {
        return Err(Error::Usage(format!("--batch {batch} must be at least 2")));
    }
    let loss = Loss::new(loss_name, None, None, None, (None, None), None)?;
    let device = device.clone();
    let mut model = TrainableClip::load(model_spec, DType::F32, &device, &Trainable::default())?;
    // As `vlmdb train --finetune` computes: bf16 on a GPU (PyTorch AMP's peer), f32 on the CPU.
    model.set_compute(crate::commands::finetune::Precision::Auto.dtype(&device));
    let texts: Vec<&str> = (0..batch).map(|i| CAPTIONS[i % CAPTIONS.len()]).collect();
    let encoded = model.tokenizer.encode(&texts)?;
    let tokens = model.tokenizer.batch(encoded, &device)?;
    let (h, w) = model.images.output_size();
    let mut noise = Noise(0x5EED_F1E7);
    let pixel_values: Vec<f32> = (0..batch * 3 * (h * w) as usize)
        .map(|_| noise.next())
        .collect();
    let pixels = Tensor::from_vec(
        pixel_values.clone(),
        (batch, 3, h as usize, w as usize),
        &device,
    )
    .map_err(Error::tensor("benchmark pixels"))?;
    let (lr, weight_decay) = (1e-5, 0.01);
    let mut optimizer = AdamW::new(
        AdamWConfig {
            weight_decay,
            ..AdamWConfig::default()
        },
        &model,
    )?;
    writeln!(
        out,
        "bench finetune: {model_spec}, batch {batch} ({h}x{w} images), {} loss, AdamW, {steps} timed steps, {} \
         threads",
        loss.name(),
        threads()
    )?;
    let mut last = f64::NAN;
    let mut step = || -> Result<f64> {
        Ok(finetune_step(
            &model,
            &mut optimizer,
            &loss,
            &tokens,
            &pixels,
            lr,
            1.0,
            true,
        )?
        .loss)
    };
    for _ in 0..WARMUP {
        last = step()?;
    }
    let (ours, _) = super::conditions::timed(|| {
        for _ in 0..steps {
            last = step()?;
        }
        Ok(())
    })?;
    let ours_rate = steps as f64 / ours;
    let rss = peak_rss_mb().map_or("?".into(), |m| format!("{m:.0} MB"));
    writeln!(
        out,
        "vlmdb (Candle autograd)   {ours_rate:8.3} steps/s   ({ours:.2} s, final loss {last:.4}, peak RSS {rss})"
    )?;
    let Some(python) = python else {
        return Ok(());
    };
    let work = work_dir("finetune")?;
    let (ids, pixel_file) = (work.join("ids.json"), work.join("pixels.f32"));
    write_f32(&pixel_file, &pixel_values)?;
    let script = work.join("finetune_peer.py");
    std::fs::write(&script, PEER).map_err(|e| Error::io(&script, e))?;
    let model_dir = model.files.optional("config.json").ok().flatten();
    let model_dir = model_dir
        .as_deref()
        .and_then(std::path::Path::parent)
        .ok_or_else(|| Error::Usage(format!("{model_spec}: no local directory for the peer")))?;
    let padded: Vec<Vec<u32>> = tokens
        .ids
        .to_vec2::<u32>()
        .map_err(Error::tensor("benchmark token ids"))?;
    std::fs::write(&ids, serde_json::to_vec(&padded)?).map_err(|e| Error::io(&ids, e))?;
    let args: Vec<String> = [
        ("--model", model_dir.display().to_string()),
        ("--ids", ids.display().to_string()),
        ("--pixels", pixel_file.display().to_string()),
        ("--batch", batch.to_string()),
        ("--steps", steps.to_string()),
        ("--threads", threads().to_string()),
        ("--loss", loss.name().to_string()),
        ("--lr", lr.to_string()),
        ("--weight-decay", weight_decay.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect();
    let args: Vec<String> = args
        .into_iter()
        .chain(super::conditions::peer_device(&device))
        .collect();
    let report = run_peer(
        python,
        &script,
        &args,
        "pip install numpy torch transformers",
    )?;
    let theirs = report["steps_per_second"].as_f64().unwrap_or(f64::NAN);
    writeln!(
        out,
        "PyTorch {:<16} {theirs:8.3} steps/s   (final loss {:.4}, peak RSS {:.0} MB)",
        report["torch"].as_str().unwrap_or("?"),
        report["final_loss"].as_f64().unwrap_or(f64::NAN),
        report["peak_rss_mb"].as_f64().unwrap_or(f64::NAN)
    )?;
    writeln!(out, "vlmdb speed / PyTorch     {:8.3}x", ours_rate / theirs)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
