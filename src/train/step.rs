//! One optimiser step — of projection heads over frozen vectors, or of a whole CLIP — with the same loss,
//! clipping and AdamW: forward, [`batch_loss`], backward, the global gradient norm, clip, update, clamp the
//! logit scale to [0, ln 100] (as CLIP and open_clip do).

use candle_core::{Tensor, backprop::GradStore};

use crate::error::{Error, Result};
use crate::models::clip_trainable::TrainableClip;
use crate::models::tokens::TokenBatch;
use crate::train::composed::{combine, composed_loss};
use crate::train::head::Heads;
use crate::train::loss::{Loss, WeightStats, batch_loss};
use crate::train::optim::{AdamW, Parameters, clip_factor, flat, grad_norm};

/// What one optimiser step did.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    pub loss: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// ‖Δθ‖ / ‖θ‖ of the update.
    pub relative_update: f64,
    /// The SANW statistics (None for InfoNCE).
    pub weights: Option<WeightStats>,
}

impl Parameters for TrainableClip {
    fn named(&self) -> Vec<(String, &candle_core::Var)> {
        TrainableClip::named(self)
    }
}

/// Backward, clip and update: the shared second half of every step. `skip` names parameters that sit this step
/// out (no gradient, no update: the logit scale while `--freeze-logit-scale-epochs` holds it).
fn update(
    params: &dyn Parameters,
    optimizer: &mut AdamW,
    loss: &Tensor,
    weights: Option<WeightStats>,
    lr: f64,
    max_grad_norm: f64,
    skip: &[&str],
) -> Result<StepOutcome> {
    let op = Error::tensor("a training step");
    let value = loss
        .to_dtype(candle_core::DType::F64)
        .and_then(|v| v.to_scalar::<f64>())
        .map_err(op)?;
    let grads: GradStore = loss.backward().map_err(op)?;
    let grads = params
        .named()
        .iter()
        .map(|(name, var)| {
            if skip.contains(&name.as_str()) {
                return Ok(None);
            }
            match grads.get(var.as_tensor()) {
                Some(g) => flat(g).map(Some),
                None => Ok(Some(vec![0.0; var.as_tensor().elem_count()])),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let grad_norm = grad_norm(&grads);
    let relative_update = if value.is_finite() {
        optimizer.step(params, &grads, lr, clip_factor(grad_norm, max_grad_norm))?
    } else {
        0.0
    };
    Ok(StepOutcome {
        loss: value,
        grad_norm,
        relative_update,
        weights,
    })
}

/// One training step of projection heads on a batch of frozen base vectors.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    heads: &Heads,
    optimizer: &mut AdamW,
    loss: &Loss,
    mrl: &[usize],
    x_img: &Tensor,
    x_txt: &Tensor,
    lr: f64,
    max_grad_norm: f64,
) -> Result<StepOutcome> {
    let op = Error::tensor("a training step");
    let img = heads.image.forward(x_img).map_err(op)?;
    let txt = heads.text.forward(x_txt).map_err(op)?;
    // The heads' "pooled outputs before the projection" are their frozen input vectors.
    let out = batch_loss(
        loss,
        &img,
        &txt,
        heads.logit_scale.as_tensor(),
        mrl,
        (x_img, x_txt),
    )
    .map_err(op)?;
    let done = update(
        heads,
        optimizer,
        &out.loss,
        out.weights,
        lr,
        max_grad_norm,
        &[],
    )?;
    if done.loss.is_finite() {
        heads.clamp_logit_scale()?;
    }
    Ok(done)
}

/// One training step of heads on composed queries (seed 004): reference images and modification texts against
/// the batch's target images followed by its mined negative images (see [`crate::train::composed`]).
#[allow(clippy::too_many_arguments)]
pub fn composed_step(
    heads: &Heads,
    optimizer: &mut AdamW,
    mrl: &[usize],
    x_reference: &Tensor,
    x_text: &Tensor,
    x_targets: &Tensor,
    lr: f64,
    max_grad_norm: f64,
) -> Result<StepOutcome> {
    let op = Error::tensor("a composed training step");
    let queries = combine(
        &heads.image.forward(x_reference).map_err(op)?,
        &heads.text.forward(x_text).map_err(op)?,
    )
    .map_err(op)?;
    let targets = heads.image.forward(x_targets).map_err(op)?;
    let loss = composed_loss(&queries, &targets, heads.logit_scale.as_tensor(), mrl).map_err(op)?;
    let done = update(heads, optimizer, &loss, None, lr, max_grad_norm, &[])?;
    if done.loss.is_finite() {
        heads.clamp_logit_scale()?;
    }
    Ok(done)
}

/// One fine-tuning step of a whole CLIP on a batch of token ids and preprocessed pixels (the same pairs, row by
/// row). The SANW weights come from both towers' pooled outputs before the projection. `train_logit_scale`:
/// false while `--freeze-logit-scale-epochs` holds the temperature.
#[allow(clippy::too_many_arguments)]
pub fn finetune_step(
    model: &TrainableClip,
    optimizer: &mut AdamW,
    loss: &Loss,
    tokens: &TokenBatch,
    pixels: &Tensor,
    lr: f64,
    max_grad_norm: f64,
    train_logit_scale: bool,
) -> Result<StepOutcome> {
    let op = Error::tensor("a fine-tuning step");
    let image = model.image_forward(pixels)?;
    let text = model.text_forward(tokens)?;
    let logit_scale = model.logit_scale()?;
    let logit_scale = if train_logit_scale {
        logit_scale.clone()
    } else {
        logit_scale.detach()
    };
    let out = batch_loss(
        loss,
        &image.projected,
        &text.projected,
        &logit_scale,
        &[],
        (&image.pooled, &text.pooled),
    )
    .map_err(op)?;
    let skip: &[&str] = if train_logit_scale {
        &[]
    } else {
        &["logit_scale"]
    };
    let done = update(
        model,
        optimizer,
        &out.loss,
        out.weights,
        lr,
        max_grad_norm,
        skip,
    )?;
    if done.loss.is_finite()
        && let Some(var) = model.logit_scale_var()
    {
        let clamped = var.as_tensor().clamp(0.0, 100f64.ln()).map_err(op)?;
        var.set(&clamped).map_err(op)?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::models::clip_trainable::Trainable;
    use crate::train::optim::AdamWConfig;

    #[derive(serde::Deserialize)]
    struct Reference {
        lr: f64,
        weight_decay: f64,
        max_grad_norm: f64,
        ids: Vec<Vec<u32>>,
        pixels: Vec<f64>,
        pixel_shape: Vec<usize>,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        loss: String,
        params: HashMap<String, f64>,
        value: f64,
        grad_norm: f64,
        stats: HashMap<String, f64>,
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .and_then(|t| t.to_dtype(DType::F64))
            .and_then(|t| t.to_vec1::<f64>())
            .expect("values")
    }

    /// One step of vlmdb's fine-tuning equals one step of transformers' `CLIPModel` + the PyTorch restatement of
    /// the loss + `clip_grad_norm_` + `torch.optim.AdamW` (fixtures/train/make_finetune_reference.py), for
    /// InfoNCE and both SANW losses: the loss to 1e-5, every parameter after the step to 1e-4 of its tensor's
    /// scale, and every parameter's update to 1e-4 of the update's scale.
    #[test]
    fn one_finetuning_step_equals_transformers_and_torch_adamw() {
        let root = env!("CARGO_MANIFEST_DIR");
        let text =
            std::fs::read_to_string(format!("{root}/fixtures/train/finetune/reference.json"))
                .expect("python3 fixtures/train/make_finetune_reference.py");
        let reference: Reference = serde_json::from_str(&text).expect("json");
        let device = Device::Cpu;
        let pixels = Tensor::from_vec(
            reference.pixels.clone(),
            reference.pixel_shape.clone(),
            &device,
        )
        .expect("pixels");
        assert_eq!(reference.cases.len(), 3);
        for case in &reference.cases {
            let model = TrainableClip::load(
                &format!("{root}/fixtures/models/tiny-clip"),
                DType::F64,
                &device,
                &Trainable::default(),
            )
            .expect("tiny clip");
            let before = model.tensors().expect("snapshot");
            let tokens = model
                .tokenizer
                .batch(reference.ids.clone(), &device)
                .expect("tokens");
            let loss = Loss::from_params(&case.loss, &case.params).expect("loss");
            let mut optimizer = AdamW::new(
                AdamWConfig {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: reference.weight_decay,
                },
                &model,
            )
            .expect("adamw");
            let done = finetune_step(
                &model,
                &mut optimizer,
                &loss,
                &tokens,
                &pixels,
                reference.lr,
                reference.max_grad_norm,
                true,
            )
            .expect("step");
            assert!(
                (done.loss - case.value).abs() < 1e-5,
                "{}: loss {} vs {}",
                case.loss,
                done.loss,
                case.value
            );
            assert!(
                (done.grad_norm - case.grad_norm).abs() < 1e-5 * case.grad_norm,
                "{}: grad norm {} vs {}",
                case.loss,
                done.grad_norm,
                case.grad_norm
            );
            let logged: HashMap<&str, f64> = done
                .weights
                .map(|w| w.metrics())
                .unwrap_or_default()
                .into_iter()
                .collect();
            assert_eq!(logged.len(), case.stats.len(), "{}", case.loss);
            for (k, v) in &case.stats {
                assert!((logged[k.as_str()] - v).abs() < 1e-6, "{}: {k}", case.loss);
            }
            let expected = candle_core::safetensors::load(
                format!("{root}/fixtures/train/finetune/{}.safetensors", case.loss),
                &device,
            )
            .expect("reference weights");
            let after = model.tensors().expect("snapshot");
            assert_eq!(after.len(), expected.len(), "{}", case.loss);
            for (name, tensor) in &after {
                let (a, b, b0) = (
                    values(tensor),
                    values(&expected[name]),
                    values(&before[name]),
                );
                let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-12);
                let delta_scale = b
                    .iter()
                    .zip(&b0)
                    .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
                    .max(1e-12);
                let (mut worst, mut worst_delta) = (0.0f64, 0.0f64);
                for ((x, y), z) in a.iter().zip(&b).zip(&b0) {
                    worst = worst.max((x - y).abs());
                    worst_delta = worst_delta.max(((x - z) - (y - z)).abs());
                }
                assert!(
                    worst <= 1e-4 * scale,
                    "{}: {name} differs by {worst:e} (scale {scale:e})",
                    case.loss
                );
                // A gradient that is zero in exact arithmetic (the key bias: softmax ignores a constant shift)
                // is rounding noise in both, and AdamW turns noise into updates of ~1e-12: the floor of 1e-6·lr.
                assert!(
                    worst_delta <= 1e-4 * delta_scale + 1e-6 * reference.lr,
                    "{}: {name}'s update differs by {worst_delta:e} (update scale {delta_scale:e})",
                    case.loss
                );
            }
        }
    }

    /// Mixed precision (bf16 towers over f32 master weights) runs the same step within bf16's precision: the loss
    /// within 2 % of the f32 reference, every parameter finite and moved, the master weights still f32.
    #[test]
    fn a_bf16_step_stays_close_to_f32() {
        let root = env!("CARGO_MANIFEST_DIR");
        let text =
            std::fs::read_to_string(format!("{root}/fixtures/train/finetune/reference.json"))
                .expect("reference");
        let reference: Reference = serde_json::from_str(&text).expect("json");
        let device = Device::Cpu;
        let mut model = TrainableClip::load(
            &format!("{root}/fixtures/models/tiny-clip"),
            DType::F32,
            &device,
            &Trainable::default(),
        )
        .expect("tiny clip");
        model.set_compute(DType::BF16);
        let before = model.tensors().expect("snapshot");
        let pixels = Tensor::from_vec(
            reference
                .pixels
                .iter()
                .map(|&x| x as f32)
                .collect::<Vec<f32>>(),
            reference.pixel_shape.clone(),
            &device,
        )
        .expect("pixels");
        let tokens = model
            .tokenizer
            .batch(reference.ids.clone(), &device)
            .expect("tokens");
        let mut optimizer = AdamW::new(AdamWConfig::default(), &model).expect("adamw");
        let done = finetune_step(
            &model,
            &mut optimizer,
            &Loss::Infonce,
            &tokens,
            &pixels,
            reference.lr,
            reference.max_grad_norm,
            true,
        )
        .expect("bf16 step");
        let expected = reference.cases[0].value;
        assert!(
            (done.loss - expected).abs() < 0.02 * expected,
            "bf16 loss {} vs f32 {expected}",
            done.loss
        );
        for (name, after) in model.tensors().expect("snapshot") {
            assert_eq!(after.dtype(), DType::F32, "{name}");
            let (a, b) = (values(&after), values(&before[&name]));
            assert!(a.iter().all(|x| x.is_finite()), "{name}");
            if name != "text_model.embeddings.token_embedding.weight" {
                assert!(a.iter().zip(&b).any(|(x, y)| x != y), "{name} did not move");
            }
        }
    }
}
