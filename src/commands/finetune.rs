//! `vlmdb train --finetune MODEL`: one `train` run that fine-tunes a whole CLIP (seed 001, CLIPSE) on the
//! caption–image pairs of a dataset split, with the losses, batching, optimiser, metrics, validation and
//! checkpoints of head training.
//!
//! Per epoch: the pairs of [`epoch_batches`] (every caption–image pair by default) → the batch's images decoded
//! from the store and preprocessed as `embed_image` does, its captions tokenised as `embed_text` does →
//! [`finetune_step`] (both towers, the projections and `logit_scale`, or what `--freeze` / `--unfreeze-last`
//! leave trainable; the logit scale frozen for the first `--freeze-logit-scale-epochs` epochs) with the warmup +
//! cosine schedule and clipping; at the epoch's end the validation split is embedded by the current weights into
//! `emb_ftval_<run>` and scored by `sql/eval/retrieval.sql`, then the step metrics, the checkpoint (weights, AdamW
//! moments, state) and, when validation R@1 improved, the best weights are written in one commit. A resumed run
//! restarts from its last checkpoint. At the end the best weights are written as a Hugging Face CLIP directory,
//! `<store>/finetuned/ft-<run>/` (config, `model.safetensors`, tokenizer and processor files), which
//! `transformers.CLIPModel.from_pretrained` loads and vlmdb names `ft:<run>`.
//!
//! `--topical CLUSTER_RUN` and `--negatives MINE_RUN` shape the batches as they do for heads.
//!
//! The images of the training split are held in memory as their encoded bytes (decoded per batch), the model once,
//! and the activations of one batch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::StringArray;
use candle_core::{DType, Device, Tensor};
use datafusion::prelude::{col, lit};

use crate::commands::train::{batches_per_epoch, forget_after, mean_r1, score_split};
use crate::error::{Error, Result};
use crate::models::DeviceChoice;
use crate::models::clip_trainable::{Trainable, TrainableClip};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::store::Store;
use crate::store::arrays::{repeated, vectors};
use crate::store::columns::{binaries, strings};
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::{TableSpec, embedding_table};
use crate::store::twins::{Inputs, finished_twin};
use crate::store::write::{batch_for, upsert};
use crate::train::batches::{Order, epoch_batches};
use crate::train::checkpoint::{self, TrainState};
use crate::train::data::{ImageRows, load_clusters, load_negatives};
use crate::train::dead::DeadWatch;
use crate::train::epoch::{self, EpochLine, EpochLog, StepFacts, observe_r1};
use crate::train::fit::Fit;
use crate::train::loss::normalize_rows;
use crate::train::optim::AdamW;
use crate::train::step::finetune_step;

pub use crate::eval::space::FT_PREFIX;

/// Everything a fine-tuning run is: stored as the run's configuration (under `finetune`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FinetuneOptions {
    /// The CLIP to start from (alias, `hf:` repo or directory).
    pub finetune: String,
    pub trainable: Trainable,
    /// Epochs during which `logit_scale` stays frozen (CLIPSE's `freeze_logit_scale_epochs`).
    pub freeze_logit_scale_epochs: usize,
    /// The towers' compute dtype.
    #[serde(default)]
    pub precision: Precision,
    #[serde(flatten)]
    pub fit: Fit,
}

/// How the towers compute: `auto` is bf16 mixed precision on CUDA (bf16 matrix products over f32 master weights,
/// norms and softmaxes in f32; bf16's f32-wide exponent needs no loss scaling) and f32 on the CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Auto,
    F32,
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Precision> {
        match s {
            "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(Error::Usage(format!(
                "--precision {other}: expected auto, f32 or bf16"
            ))),
        }
    }
}

impl Precision {
    /// The compute dtype on `device`.
    pub fn dtype(self, device: &Device) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::Auto if device.is_cuda() => DType::BF16,
            Precision::Auto => DType::F32,
        }
    }
}

/// What a fine-tuning run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FinetuneSummary {
    pub run_id: String,
    /// The Hugging Face directory of the best weights.
    pub export: PathBuf,
    pub steps: u64,
    pub final_loss: Option<f64>,
    pub best_r1: Option<f64>,
    pub dead: Option<String>,
    pub resumed_from: Option<u64>,
    /// The run is an earlier one that did exactly this (nothing was written).
    pub reused: bool,
}

/// The caption–image pairs of one split: the captions' texts, each image's caption indices, the images' bytes.
struct Split {
    image_ids: Vec<String>,
    images: Vec<Vec<u8>>,
    caption_ids: Vec<String>,
    texts: Vec<String>,
    /// Caption indices of each image.
    captions: Vec<Vec<usize>>,
    /// Image row of each caption id.
    image_of_caption: HashMap<String, usize>,
}

impl Split {
    fn rows(&self) -> ImageRows<'_> {
        ImageRows {
            image: self
                .image_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i as u32))
                .collect(),
            of_caption: &self.image_of_caption,
            len: self.image_ids.len(),
        }
    }
}

async fn load_split(store: &Store, dataset: &str, split: &str) -> Result<Split> {
    let filter = col("dataset")
        .eq(lit(dataset.to_string()))
        .and(col("split").eq(lit(split.to_string())));
    let mut image_ids = Vec::new();
    let mut images = Vec::new();
    for batch in store
        .scan("images", &["image_id", "data"], Some(filter.clone()))
        .await?
    {
        for (id, data) in strings(&batch, "image_id")?
            .into_iter()
            .zip(binaries(&batch, "data")?)
        {
            if let (Some(id), Some(data)) = (id, data) {
                image_ids.push(id);
                images.push(data);
            }
        }
    }
    let row: HashMap<String, usize> = image_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for batch in store
        .scan(
            "captions",
            &["caption_id", "image_id", "text"],
            Some(filter),
        )
        .await?
    {
        let ids = strings(&batch, "caption_id")?;
        let of = strings(&batch, "image_id")?;
        let texts = strings(&batch, "text")?;
        for ((id, image), text) in ids.into_iter().zip(of).zip(texts) {
            if let (Some(id), Some(image), Some(text)) = (id, image, text) {
                rows.push((id, image, text));
            }
        }
    }
    rows.sort();
    let mut captions = vec![Vec::new(); image_ids.len()];
    let (mut caption_ids, mut texts) = (Vec::new(), Vec::new());
    let mut image_of_caption = HashMap::new();
    for (id, image, text) in rows {
        if let Some(&i) = row.get(&image) {
            captions[i].push(texts.len());
            image_of_caption.insert(id.clone(), i);
            caption_ids.push(id);
            texts.push(text);
        }
    }
    let paired = captions.iter().filter(|c| !c.is_empty()).count();
    if paired < 2 {
        return Err(Error::Usage(format!(
            "dataset '{dataset}' split '{split}' has {paired} images with captions; fine-tuning needs at least 2 \
             (ingest the dataset first)"
        )));
    }
    Ok(Split {
        image_ids,
        images,
        caption_ids,
        texts,
        captions,
        image_of_caption,
    })
}

/// Preprocessed pixels of the images at `rows` (decoded from their stored bytes), as one batch tensor.
fn pixels(model: &TrainableClip, split: &Split, rows: &[usize], device: &Device) -> Result<Tensor> {
    let (h, w) = model.images.output_size();
    let mut data = Vec::with_capacity(rows.len() * 3 * (h * w) as usize);
    for &r in rows {
        let (image, _) = crate::image::decode(&split.images[r]).map_err(|reason| {
            Error::Usage(format!(
                "image {}: cannot be read ({reason})",
                split.image_ids[r]
            ))
        })?;
        data.extend(model.images.pixels(&image));
    }
    Tensor::from_vec(data, (rows.len(), 3, h as usize, w as usize), device)
        .map_err(Error::tensor("a batch of pixels"))
}

/// The token batch of the captions at `rows`.
fn tokens(
    model: &TrainableClip,
    split: &Split,
    rows: &[usize],
    device: &Device,
) -> Result<crate::models::tokens::TokenBatch> {
    let texts: Vec<&str> = rows.iter().map(|&r| split.texts[r].as_str()).collect();
    let encoded = model.tokenizer.encode(&texts)?;
    model.tokenizer.batch(encoded, device)
}

/// Rows embedded per forward pass when validating.
const EMBED_BATCH: usize = 64;

/// Embed the images and captions of `split` with the current weights into the space of `spec`.
#[allow(clippy::too_many_arguments)]
async fn embed_split(
    store: &Store,
    model: &TrainableClip,
    spec: &TableSpec,
    split: &Split,
    dataset: &str,
    split_name: &str,
    run_id: &str,
    device: &Device,
) -> Result<()> {
    let op = Error::tensor("embedding the validation split");
    for (kind, n) in [
        ("image", split.images.len()),
        ("caption", split.texts.len()),
    ] {
        let rows: Vec<usize> = (0..n).collect();
        for chunk in rows.chunks(EMBED_BATCH) {
            let projected = if kind == "image" {
                model.image_forward(&pixels(model, split, chunk, device)?)?
            } else {
                model.text_forward(&tokens(model, split, chunk, device)?)?
            }
            .projected
            .detach();
            let dim = projected.dim(1).map_err(op)?;
            let values = normalize_rows(&projected)
                .and_then(|z| z.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
                .map_err(op)?;
            let ids = chunk.iter().map(|&r| {
                if kind == "image" {
                    split.image_ids[r].as_str()
                } else {
                    split.caption_ids[r].as_str()
                }
            });
            let n = chunk.len();
            let batch = batch_for(
                spec,
                vec![
                    ("item_id", Arc::new(StringArray::from_iter_values(ids))),
                    ("kind", repeated(kind, n)),
                    ("dataset", repeated(dataset, n)),
                    ("split", repeated(split_name, n)),
                    ("vector", Arc::new(vectors(values, dim)?)),
                    ("run_id", repeated(run_id, n)),
                ],
            )?;
            upsert(store, spec, batch).await?;
        }
    }
    Ok(())
}

fn validate(options: &FinetuneOptions) -> Result<()> {
    options.fit.validate()?;
    if options.trainable.freeze_text && options.trainable.freeze_vision {
        return Err(Error::Usage(
            "--freeze vision --freeze text leaves only the logit scale to train".into(),
        ));
    }
    Ok(())
}

/// Fine-tune under a fresh `train` run.
pub async fn finetune(
    store: &Store,
    options: &FinetuneOptions,
    device: DeviceChoice,
    progress: bool,
    again: bool,
) -> Result<FinetuneSummary> {
    validate(options)?;
    if !again && let Some(summary) = finished(store, options).await? {
        return Ok(summary);
    }
    execute(store, options, Run::new_id(), false, device, progress).await
}

/// A finished fine-tuning run of the same model revision with this configuration over the same images and
/// captions, with its last step and loss.
async fn finished(store: &Store, options: &FinetuneOptions) -> Result<Option<FinetuneSummary>> {
    let mut inputs = Inputs::default();
    inputs.tables(store, &["images", "captions"]).await?;
    let files = crate::models::hub::ModelFiles::resolve(&options.finetune)?;
    inputs.models.insert(files.id, files.revision);
    let config = serde_json::json!({ "finetune": options });
    let Some(run_id) = finished_twin(store, "train", &config, &[], &inputs).await? else {
        return Ok(None);
    };
    let last = crate::store::metrics::series(store, &run_id, "loss")
        .await?
        .last()
        .copied();
    Ok(Some(FinetuneSummary {
        export: store.finetuned_dir(&run_id),
        run_id,
        steps: last.map_or(0, |l| l.0.max(0) as u64),
        final_loss: last.map(|l| l.1),
        best_r1: None,
        dead: None,
        resumed_from: None,
        reused: true,
    }))
}

/// Continue fine-tuning run `run_id` (configured as `options`) from its last checkpoint.
pub async fn resume(
    store: &Store,
    run_id: String,
    options: &FinetuneOptions,
    device: DeviceChoice,
    progress: bool,
) -> Result<FinetuneSummary> {
    validate(options)?;
    execute(store, options, run_id, true, device, progress).await
}

#[allow(clippy::too_many_lines)]
async fn execute(
    store: &Store,
    options: &FinetuneOptions,
    run_id: String,
    resuming: bool,
    device_choice: DeviceChoice,
    progress: bool,
) -> Result<FinetuneSummary> {
    store.ensure_writable("train")?;
    let device = device_choice.device()?;
    // The versions about to be read.
    let mut read = Inputs::default();
    read.tables(store, &["images", "captions"]).await?;
    let set = load_split(store, &options.fit.dataset, &options.fit.split).await?;
    let val = match &options.fit.val_split {
        Some(val) => Some(
            load_split(store, &options.fit.dataset, val)
                .await
                .map_err(|e| Error::Context {
                    context: "validation split (or train with --no-val)".into(),
                    source: Box::new(e),
                })?,
        ),
        None => None,
    };
    let mut model =
        TrainableClip::load(&options.finetune, DType::F32, &device, &options.trainable)?;
    model.set_compute(options.precision.dtype(&device));
    store.ensure_tables(&["metrics", "artifacts"]).await?;
    let config = serde_json::json!({ "finetune": options });
    let spec = RunSpec {
        kind: "train".into(),
        name: format!(
            "fine-tune {} with {} on {}",
            options.finetune,
            options.fit.loss.name(),
            options.fit.dataset
        ),
        config,
        seed: Some(options.fit.seed as i64),
    };
    let mut run = Run::open_with_id(store, run_id.clone(), spec).await?;
    run.record_model(&model.files.id, &model.files.revision);
    for (table, version) in &read.tables {
        run.record_input(table, *version);
    }
    let mut state = TrainState {
        step: 0,
        round: 0,
        epoch: 0,
        round_step: 0,
        rng: Rng::new(options.fit.seed).state(),
        best_r1: None,
        since_best: 0,
        negatives_run: None,
        dead_at: None,
    };
    let mut optimizer = AdamW::new(options.fit.adamw, &model)?;
    let mut resumed_from = None;
    if resuming {
        if let Some((name, bytes)) = store.latest_artifact(&run_id, "checkpoint_").await? {
            let (tensors, saved) = checkpoint::decode(&bytes, &device)?;
            model.load_tensors(&tensors)?;
            optimizer.load(&model, &tensors, saved.round_step)?;
            forget_after(store, &run_id, saved.step).await?;
            resumed_from = Some(saved.step);
            run.note(
                "resumed_from",
                serde_json::json!({ "step": saved.step, "checkpoint": name }),
            );
            state = saved;
        } else {
            forget_after(store, &run_id, 0).await?;
        }
    }
    let outcome = epochs(
        store,
        options,
        &mut run,
        &set,
        val.as_ref(),
        &model,
        &mut optimizer,
        &mut state,
        device_choice,
        &device,
        progress,
    )
    .await;
    let export = store.finetuned_dir(&run_id);
    let outcome = match outcome {
        Ok(final_loss) => {
            let best = store.latest_artifact(&run_id, "best_").await;
            match best {
                Ok(Some((_, bytes))) => checkpoint::decode(&bytes, &device)
                    .and_then(|(tensors, _)| model.load_tensors(&tensors))
                    .and_then(|()| model.export(&export))
                    .map(|()| final_loss),
                Ok(None) => model.export(&export).map(|()| final_loss),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if let Some(step) = state.dead_at {
        run.note("dead_training", serde_json::json!({ "step": step }));
    }
    run.note(
        "export",
        serde_json::json!({ "dir": export.display().to_string(), "model": format!("{FT_PREFIX}{run_id}") }),
    );
    let final_loss = run.close(store, outcome).await?;
    Ok(FinetuneSummary {
        run_id,
        export,
        steps: state.step,
        final_loss,
        best_r1: state.best_r1,
        dead: state.dead_at.map(|s| format!("flagged at step {s}")),
        resumed_from,
        reused: false,
    })
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
async fn epochs(
    store: &Store,
    options: &FinetuneOptions,
    run: &mut Run,
    set: &Split,
    val: Option<&Split>,
    model: &TrainableClip,
    optimizer: &mut AdamW,
    state: &mut TrainState,
    device_choice: DeviceChoice,
    device: &Device,
    progress: bool,
) -> Result<Option<f64>> {
    let run_id = run.id().to_string();
    let order = match &options.fit.topical {
        Some(cluster_run) => {
            let clusters = load_clusters(store, cluster_run, &set.rows()).await?;
            run.record_current(store, "clusters").await?;
            Order::Topical(clusters)
        }
        None => Order::Random,
    };
    let negatives = match &options.fit.negatives {
        Some(mine_run) => {
            run.record_current(store, "hard_negatives").await?;
            Some(
                load_negatives(
                    store,
                    mine_run,
                    &set.rows(),
                    options.fit.negatives_per_query,
                )
                .await?,
            )
        }
        None => None,
    };
    let per_epoch = batches_per_epoch(
        &set.captions,
        &order,
        options.fit.batch,
        options.fit.one_caption_per_image,
    );
    let schedule = options.fit.schedule(per_epoch);
    let total = schedule.total;
    let bar = progress.then(|| Progress::bar_only(total as u64, "fine-tune"));
    if let Some(bar) = &bar {
        bar.inc(state.step);
    }
    let (started, first_step) = (std::time::Instant::now(), state.step);
    let mut rng = Rng::from_state(state.rng);
    let mut watch = DeadWatch::new(options.fit.dead_steps);
    let mut final_loss = None;
    let space = embedding_table(
        &format!("ftval_{}", crate::models::hub::slug(&run_id)),
        model.dim(),
    )?;
    // Validation embeds into this space and scores it: it is the run's own output.
    run.record_output(&space.name);
    while state.epoch < options.fit.epochs {
        let batches = epoch_batches(
            &set.captions,
            &order,
            negatives.as_ref(),
            options.fit.batch,
            options.fit.one_caption_per_image,
            &mut rng,
        );
        let train_logit_scale = state.epoch >= options.freeze_logit_scale_epochs;
        let mut log = EpochLog::default();
        let epoch_started = std::time::Instant::now();
        for batch in &batches {
            let lr = schedule.lr(state.round_step as usize);
            let image_rows: Vec<usize> = batch.iter().map(|p| p.0).collect();
            let caption_rows: Vec<usize> = batch.iter().map(|p| p.1).collect();
            let done = finetune_step(
                model,
                optimizer,
                &options.fit.loss,
                &tokens(model, set, &caption_rows, device)?,
                &pixels(model, set, &image_rows, device)?,
                lr,
                options.fit.max_grad_norm,
                train_logit_scale,
            )?;
            let scale = model
                .logit_scale()?
                .to_dtype(DType::F64)
                .and_then(|t| t.to_scalar::<f64>())
                .map_err(Error::tensor("the logit scale"))?
                .exp();
            let facts = StepFacts {
                scale,
                lr,
                batch_size: batch.len(),
                round: 0,
            };
            log.step(state, &mut watch, &done, facts, &run_id, bar.as_ref())?;
            final_loss = log.last_loss;
        }
        state.epoch += 1;
        log.metrics.push("epoch", state.epoch as f64, state.step, 0);
        let mut new_best = val.is_none();
        let mut r1_rows = Vec::new();
        if let (Some(val), Some(val_name)) = (val, &options.fit.val_split) {
            embed_split(
                store,
                model,
                &space,
                val,
                &options.fit.dataset,
                val_name,
                &run_id,
                device,
            )
            .await?;
            let width = model.dim();
            r1_rows = score_split(
                store,
                device_choice,
                run,
                &space.name,
                &options.fit.dataset,
                val_name,
                &[width],
                state.step,
                0,
            )
            .await?;
            new_best = observe_r1(state, mean_r1(&r1_rows, width, |d| d != "composed"));
        }
        if let Some(bar) = &bar {
            let done = (state.step - first_step) as f64;
            bar.line(
                &EpochLine {
                    run_id: &run_id,
                    round: 0,
                    rounds: 1,
                    epoch: state.epoch,
                    epochs: options.fit.epochs,
                    loss: log.mean_loss(),
                    lr: log.last_lr,
                    r1: &r1_rows,
                    epoch_seconds: epoch_started.elapsed().as_secs_f64(),
                    eta_seconds: started.elapsed().as_secs_f64() / done.max(1.0)
                        * (total as f64 - state.step as f64).max(0.0),
                }
                .to_string(),
            );
        }
        if options.fit.patience.is_some_and(|p| state.since_best >= p)
            && state.epoch < options.fit.epochs
        {
            log.metrics
                .push("early_stop", state.epoch as f64, state.step, 0);
            state.epoch = options.fit.epochs;
        }
        state.rng = rng.state();
        log.metrics.write(store, &run_id).await?;
        epoch::save(
            store,
            &run_id,
            model.tensors()?,
            optimizer.tensors(model)?,
            state,
            new_best,
        )
        .await?;
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    Ok(final_loss)
}
