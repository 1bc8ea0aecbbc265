//! `vlmdb bench train`: steps/s of one training configuration — two linear heads, symmetric InfoNCE, AdamW with
//! gradient clipping — beside the same head and loss in PyTorch (`tests/peers/train_peer.py`) on the same vectors
//! and threads. Both sides take step k's batch as the window of B rows starting at (k·B) mod N and time S steps
//! after 3 untimed warm-up steps.

use std::io::Write;

use candle_core::{Device, Tensor};

use super::retrieval::{Noise, random, threads, work_dir, write_f32};
use super::run_peer;
use crate::error::{Error, Result};
use crate::eval::space::Vectors;
use crate::rng::Rng;
use crate::train::head::{HeadKind, HeadShape, Heads};
use crate::train::loss::Loss;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::step::train_step;

const PEER: &str = include_str!("../../../tests/peers/train_peer.py");

/// Untimed steps before the clock starts (both sides).
const WARMUP: usize = 3;

/// `vlmdb bench train`.
pub fn train_bench(
    n: usize,
    dim: usize,
    batch: usize,
    steps: usize,
    device: &Device,
    python: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    if batch < 2 || n < batch {
        return Err(Error::Usage(format!(
            "--batch {batch} must be at least 2 and at most --n {n}"
        )));
    }
    let mut noise = Noise(0x51_7CC1_B727_220A);
    let images = random("i", n, dim, &mut noise)?;
    let texts = random("t", n, dim, &mut noise)?;
    let lr = 1e-3;
    let weight_decay = 0.1;
    writeln!(
        out,
        "bench train: {n} pairs x {dim}, linear heads {dim} -> {dim}, batch {batch}, symmetric InfoNCE, AdamW, \
         {steps} timed steps, {} threads, on {}",
        threads(),
        crate::models::device::describe(device)
    )?;
    let shape = HeadShape {
        kind: HeadKind::Linear,
        image_dim: dim,
        text_dim: dim,
        dim,
        hidden: 0,
    };
    let heads = Heads::init(shape, &mut Rng::new(0), device)?;
    let config = AdamWConfig {
        weight_decay,
        ..AdamWConfig::default()
    };
    let mut optimizer = AdamW::new(config, &heads)?;
    let window = |v: &Vectors, k: usize| -> Result<Tensor> {
        let mut data = Vec::with_capacity(batch * dim);
        for j in 0..batch {
            data.extend_from_slice(v.row((k * batch + j) % n));
        }
        Tensor::from_vec(data, (batch, dim), device).map_err(Error::tensor("a benchmark batch"))
    };
    let mut last = f64::NAN;
    let mut step = |k: usize| -> Result<f64> {
        Ok(train_step(
            &heads,
            &mut optimizer,
            &Loss::Infonce,
            &[],
            &window(&images, k)?,
            &window(&texts, k)?,
            lr,
            1.0,
        )?
        .loss)
    };
    for k in 0..WARMUP {
        last = step(k)?;
    }
    let (ours, _) = super::conditions::timed(|| {
        for k in WARMUP..WARMUP + steps {
            last = step(k)?;
        }
        Ok(())
    })?;
    let ours_rate = steps as f64 / ours;
    writeln!(
        out,
        "vlmdb (Candle autograd)   {ours_rate:8.2} steps/s   ({ours:.2} s, final loss {last:.4})"
    )?;
    let Some(python) = python else {
        return Ok(());
    };
    let work = work_dir("train")?;
    let (x, y) = (work.join("img.f32"), work.join("txt.f32"));
    write_f32(&x, &images.data)?;
    write_f32(&y, &texts.data)?;
    let script = work.join("train_peer.py");
    std::fs::write(&script, PEER).map_err(|e| Error::io(&script, e))?;
    let args: Vec<String> = [
        ("--data-img", x.display().to_string()),
        ("--data-txt", y.display().to_string()),
        ("--n", n.to_string()),
        ("--dim-in", dim.to_string()),
        ("--dim-out", dim.to_string()),
        ("--batch", batch.to_string()),
        ("--steps", steps.to_string()),
        ("--threads", threads().to_string()),
        ("--lr", lr.to_string()),
        ("--weight-decay", weight_decay.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect();
    let args: Vec<String> = args
        .into_iter()
        .chain(super::conditions::peer_device(device))
        .collect();
    let report = run_peer(python, &script, &args, "pip install numpy torch")?;
    let theirs = report["steps_per_second"].as_f64().unwrap_or(f64::NAN);
    writeln!(
        out,
        "PyTorch {:<16} {theirs:8.2} steps/s   (final loss {:.4})",
        report["torch"].as_str().unwrap_or("?"),
        report["final_loss"].as_f64().unwrap_or(f64::NAN)
    )?;
    writeln!(out, "vlmdb speed / PyTorch     {:8.2}x", ours_rate / theirs)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
