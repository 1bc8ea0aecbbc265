//! The caption→image→caption loop (`vlmdb loop`, seed S0): hop 0 is a dataset's images; each hop captions the
//! previous image with a captioner (BLIP) and draws the next image from that caption with a generator (Stable
//! Diffusion). Everything a hop makes lands in the store with full lineage: generated images in `images`
//! (run_id, iteration = hop, parent_id = the caption it was drawn from), captions in `captions` (run_id, iteration,
//! image_id = the image they describe), and per-item and per-hop similarities in `metrics` ([`similarity`]).
//!
//! **Baselines** ([`Variant`]) are runs of their own, linked to the loop run by `baseline_of` in their config:
//! generator-only (every hop draws from the item's original caption), random captions (each hop's caption is a
//! human caption of another image, drawn with the seed), and fixed caption (one caption for every item and hop).
//! All variants use the same generation seed for the same (item, hop), so they differ only in their captions.
//!
//! **Resume**: re-running the same command continues the newest unfinished run with the same configuration, and a
//! finished loop run whose baselines did not all finish is kept, so its baselines resume under it. A hop counts as
//! done once its per-hop metrics (written last, in one commit) are stored; the rows of an unfinished hop are
//! replaced (images and captions have stable ids and are upserted, its metrics are deleted first), so nothing is
//! duplicated. Once the loop and all its baselines finished, the same command starts new runs.
//!
//! Generated rows carry dataset `<dataset>/loop` (so the dataset's own evaluation never sees them) and the split
//! of the item they descend from.

pub mod similarity;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Int32Array, LargeBinaryArray, StringArray};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::blip::Captioner;
use crate::models::diffusion::{GenerateOptions, Generator};
use crate::models::{DeviceChoice, load_captioner, load_generator};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::sql::{Engine, ParamValue, Params};
use crate::store::Store;
use crate::store::columns::{binaries, integers, strings};
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::fixed_table;
use crate::store::write::{batch_for, upsert};

/// What produces each hop's caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The captioner captions the previous hop's image (the loop itself).
    Loop,
    /// Every hop draws from the item's original (first human) caption.
    GeneratorOnly,
    /// Each hop's caption is a human caption of another image, drawn with the seed.
    RandomCaptions,
    /// One caption for every item and hop.
    FixedCaption,
}

impl Variant {
    pub const BASELINES: [Variant; 3] = [
        Variant::GeneratorOnly,
        Variant::RandomCaptions,
        Variant::FixedCaption,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Loop => "loop",
            Variant::GeneratorOnly => "generator_only",
            Variant::RandomCaptions => "random_captions",
            Variant::FixedCaption => "fixed_caption",
        }
    }
}

/// What `vlmdb loop` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopOptions {
    pub captioner: String,
    pub generator: String,
    pub dataset: String,
    pub split: Option<String>,
    /// Items: the dataset's first images by image_id (those with a human caption).
    pub images: usize,
    /// Hops after hop 0: generated images per item.
    pub iterations: usize,
    pub seed: u64,
    pub baselines: bool,
    /// The model whose image (and text) tower measures image–image and image–caption similarity.
    pub image_space: String,
    /// The model whose text tower measures caption–caption similarity.
    pub text_space: String,
    pub steps: usize,
    pub guidance: f64,
    /// The captioner's conditional prefix.
    pub prompt: Option<String>,
    /// The fixed-caption baseline's caption (default: the first item's original caption).
    pub fixed_caption: Option<String>,
}

/// The stored configuration of one run of the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunConfig {
    #[serde(flatten)]
    options: LoopOptions,
    variant: Variant,
    /// The loop run a baseline belongs to.
    baseline_of: Option<String>,
}

/// What one run of the loop did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub variant: Variant,
    /// The last hop that was already complete when this invocation started, when it resumed a run.
    pub resumed_after_hop: Option<usize>,
    pub images_written: usize,
    pub captions_written: usize,
    pub metrics_written: usize,
}

/// What `vlmdb loop` did: the loop run first, then its baselines.
#[derive(Debug, Clone, Serialize)]
pub struct LoopSummary {
    pub runs: Vec<RunReport>,
    pub items: usize,
    pub iterations: usize,
}

/// One selected dataset image.
#[derive(Debug, Clone)]
struct Item {
    image_id: String,
    split: Option<String>,
    data: Vec<u8>,
    /// Its first human caption: (caption_id, text).
    caption: (String, String),
}

/// The image and caption of one item at one hop.
#[derive(Debug, Clone)]
struct HopState {
    image_id: String,
    image: Vec<u8>,
    caption_id: String,
    caption: String,
}

/// The models every variant shares.
struct Models {
    captioner: Arc<Captioner>,
    generator: Arc<Generator>,
    image_space: Arc<crate::models::Model>,
    text_space: Arc<crate::models::Model>,
}

/// Run the loop (and its baselines), resuming unfinished runs of the same configuration.
pub async fn run(
    store: &Store,
    options: &LoopOptions,
    device: DeviceChoice,
    progress: bool,
) -> Result<LoopSummary> {
    store.ensure_writable("loop")?;
    validate(options)?;
    let (items, pool) = select_items(store, options).await?;
    let models = Models {
        captioner: load_captioner(&options.captioner, device).await?,
        generator: load_generator(&options.generator, device).await?,
        image_space: crate::inference::load_model(Some(store), &options.image_space, device)
            .await?,
        text_space: crate::inference::load_model(Some(store), &options.text_space, device).await?,
    };
    for (model, what, modality) in [
        (
            &models.image_space,
            "--image-space",
            crate::models::Modality::Image,
        ),
        (
            &models.text_space,
            "--text-space",
            crate::models::Modality::Text,
        ),
    ] {
        if !model.supports(modality) {
            return Err(Error::Usage(format!(
                "{what} {}: this {} model has no {} tower",
                model.files.spec,
                model.family,
                if modality == crate::models::Modality::Image {
                    "image"
                } else {
                    "text"
                }
            )));
        }
    }
    let variants: Vec<Variant> = std::iter::once(Variant::Loop)
        .chain(
            options
                .baselines
                .then_some(Variant::BASELINES)
                .into_iter()
                .flatten(),
        )
        .collect();
    let total = (variants.len() * items.len() * (options.iterations + 1)) as u64;
    let bar = progress.then(|| Progress::new(total, "loop"));
    let mut reports = Vec::new();
    let mut main_id: Option<String> = None;
    for variant in variants {
        let config = RunConfig {
            options: options.clone(),
            variant,
            baseline_of: main_id.clone(),
        };
        let report = run_variant(store, &models, &items, &pool, &config, bar.as_ref()).await?;
        if variant == Variant::Loop {
            main_id = Some(report.run_id.clone());
        }
        reports.push(report);
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    Ok(LoopSummary {
        runs: reports,
        items: items.len(),
        iterations: options.iterations,
    })
}

fn validate(options: &LoopOptions) -> Result<()> {
    if options.images == 0 {
        return Err(Error::Usage("--images must be at least 1".into()));
    }
    if options.iterations == 0 {
        return Err(Error::Usage("--iterations must be at least 1".into()));
    }
    if options.steps == 0 {
        return Err(Error::Usage("--steps must be at least 1".into()));
    }
    if !options.guidance.is_finite() || options.guidance < 0.0 {
        return Err(Error::Usage(format!(
            "--guidance must be a finite number ≥ 0, not {}",
            options.guidance
        )));
    }
    Ok(())
}

/// The first `images` images of the dataset (by image_id) that have a human caption, and the pool of every human
/// caption of the dataset as (image_id, text) for the random-captions baseline.
async fn select_items(
    store: &Store,
    options: &LoopOptions,
) -> Result<(Vec<Item>, Vec<(String, String)>)> {
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    params.set("dataset", ParamValue::Text(options.dataset.clone()))?;
    let results = engine
        .execute_sql(
            "SELECT caption_id, image_id, text FROM captions \
             WHERE dataset = $dataset AND source = 'human' ORDER BY image_id, caption_id",
            &params,
        )
        .await?;
    let mut pool = Vec::new();
    let mut first: BTreeMap<String, (String, String)> = BTreeMap::new();
    for batch in results.iter().flat_map(|r| &r.batches) {
        let ids = strings(batch, "caption_id")?;
        let images = strings(batch, "image_id")?;
        let texts = strings(batch, "text")?;
        for ((id, image), text) in ids.into_iter().zip(images).zip(texts) {
            let (Some(id), Some(image), Some(text)) = (id, image, text) else {
                continue;
            };
            first
                .entry(image.clone())
                .or_insert_with(|| (id.clone(), text.clone()));
            pool.push((image, text));
        }
    }
    let results = engine
        .execute_sql(
            "SELECT image_id, split FROM images WHERE dataset = $dataset ORDER BY image_id",
            &params,
        )
        .await?;
    let mut chosen: Vec<(String, Option<String>)> = Vec::new();
    for batch in results.iter().flat_map(|r| &r.batches) {
        let ids = strings(batch, "image_id")?;
        let splits = strings(batch, "split")?;
        for (id, split) in ids.into_iter().zip(splits) {
            let Some(id) = id else { continue };
            if options.split.is_some() && split != options.split {
                continue;
            }
            if first.contains_key(&id) && chosen.len() < options.images {
                chosen.push((id, split));
            }
        }
    }
    if chosen.is_empty() {
        return Err(crate::commands::caption::no_images(
            &options.dataset,
            options.split.as_deref(),
            "images with a human caption",
        ));
    }
    if chosen.len() < options.images {
        crate::progress::warn(&format!(
            "loop: dataset '{}' has only {} captioned images; using them all (--images {})",
            options.dataset,
            chosen.len(),
            options.images
        ));
    }
    let mut items = Vec::with_capacity(chosen.len());
    for (image_id, split) in chosen {
        let mut params = Params::default();
        params.set("id", ParamValue::Text(image_id.clone()))?;
        let results = engine
            .execute_sql("SELECT data FROM images WHERE image_id = $id", &params)
            .await?;
        let data = results
            .iter()
            .flat_map(|r| &r.batches)
            .map(|b| binaries(b, "data"))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .flatten()
            .next()
            .ok_or_else(|| Error::Usage(format!("image '{image_id}' has no bytes")))?;
        let caption = first.get(&image_id).cloned().unwrap_or_default();
        items.push(Item {
            image_id,
            split,
            data,
            caption,
        });
    }
    Ok((items, pool))
}

/// The seed of the generation of `item` at `hop` (the same in every variant).
fn generation_seed(seed: u64, item: usize, hop: usize) -> u64 {
    let mut rng = Rng::new(seed ^ ((item as u64) << 32) ^ (hop as u64).rotate_left(16));
    rng.next_u64()
}

fn image_row_id(run_id: &str, item: &Item, hop: usize) -> String {
    format!("{run_id}/{}/hop{hop}", item.image_id)
}

fn caption_row_id(run_id: &str, item: &Item, hop: usize) -> String {
    format!("{run_id}/{}/hop{hop}/caption", item.image_id)
}

fn run_spec(config: &RunConfig) -> Result<RunSpec> {
    let name = match config.variant {
        Variant::Loop => format!("loop {}", config.options.dataset),
        other => format!("loop {} baseline {}", config.options.dataset, other.name()),
    };
    Ok(RunSpec {
        kind: "loop".into(),
        name,
        config: serde_json::to_value(config)?,
        seed: Some(config.options.seed as i64),
    })
}

/// The newest `loop` run whose configuration (notes aside) is `config`, with its status.
async fn latest_run(store: &Store, config: &RunConfig) -> Result<Option<(String, String)>> {
    if !store.table_names().await?.iter().any(|t| t == "runs") {
        return Ok(None);
    }
    let wanted = serde_json::to_value(config)?;
    let engine = Engine::for_reads(store.clone()).await?;
    let results = engine
        .execute_sql(
            "SELECT run_id, config, status FROM runs WHERE kind = 'loop' \
             ORDER BY started_at DESC, run_id DESC",
            &Params::default(),
        )
        .await?;
    for batch in results.iter().flat_map(|r| &r.batches) {
        let ids = strings(batch, "run_id")?;
        let configs = strings(batch, "config")?;
        let statuses = strings(batch, "status")?;
        for ((id, stored), status) in ids.into_iter().zip(configs).zip(statuses) {
            let (Some(id), Some(stored)) = (id, stored) else {
                continue;
            };
            let mut stored: serde_json::Value = serde_json::from_str(&stored)?;
            if let Some(map) = stored.as_object_mut() {
                map.remove("notes");
            }
            if stored == wanted {
                return Ok(Some((id, status.unwrap_or_default())));
            }
        }
    }
    Ok(None)
}

/// True when every baseline of the loop run `main` has a finished run.
async fn baselines_finished(store: &Store, config: &RunConfig, main: &str) -> Result<bool> {
    for variant in Variant::BASELINES {
        let baseline = RunConfig {
            options: config.options.clone(),
            variant,
            baseline_of: Some(main.to_string()),
        };
        match latest_run(store, &baseline).await? {
            Some((_, status)) if status == "finished" => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Run one variant: resume the newest unfinished run of its configuration, or start a new one. A finished loop run
/// whose baselines did not all finish is taken as done, so that its baselines resume under it.
async fn run_variant(
    store: &Store,
    models: &Models,
    items: &[Item],
    pool: &[(String, String)],
    config: &RunConfig,
    bar: Option<&Progress>,
) -> Result<RunReport> {
    let latest = latest_run(store, config).await?;
    let existing = match latest {
        Some((id, status)) if status != "finished" => Some(id),
        Some((id, _))
            if config.variant == Variant::Loop
                && config.options.baselines
                && !baselines_finished(store, config, &id).await? =>
        {
            if let Some(bar) = bar {
                bar.inc((items.len() * (config.options.iterations + 1)) as u64);
            }
            return Ok(RunReport {
                run_id: id,
                variant: config.variant,
                resumed_after_hop: Some(config.options.iterations),
                images_written: 0,
                captions_written: 0,
                metrics_written: 0,
            });
        }
        _ => None,
    };
    let resumed = existing.is_some();
    let spec = run_spec(config)?;
    let mut run = match existing {
        Some(id) => Run::open_with_id(store, id, spec).await?,
        None => Run::open(store, spec).await?,
    };
    for model in [
        &models.captioner.files,
        &models.generator.files,
        &models.image_space.files,
        &models.text_space.files,
    ] {
        run.record_model(&model.id, &model.revision);
    }
    for table in ["images", "captions"] {
        run.record_input(table, store.open_table(table).await?.version().await?);
    }
    if let Some(main) = &config.baseline_of {
        run.note("baseline_of", serde_json::json!(main));
    }
    let run_id = run.id().to_string();
    let outcome = execute(store, models, items, pool, config, &run_id, resumed, bar).await;
    if let Ok(report) = &outcome
        && let Some(after) = report.resumed_after_hop
    {
        run.note("resumed_after_hop", serde_json::json!(after));
    }
    run.close(store, outcome).await
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    store: &Store,
    models: &Models,
    items: &[Item],
    pool: &[(String, String)],
    config: &RunConfig,
    run_id: &str,
    resumed: bool,
    bar: Option<&Progress>,
) -> Result<RunReport> {
    let options = &config.options;
    let done = if resumed {
        completed_hops(store, run_id).await?
    } else {
        None
    };
    let mut report = RunReport {
        run_id: run_id.to_string(),
        variant: config.variant,
        resumed_after_hop: done.filter(|_| resumed),
        images_written: 0,
        captions_written: 0,
        metrics_written: 0,
    };
    let first_hop = done.map_or(0, |h| h + 1);
    // Metrics of hops that did not complete go; images and captions are replaced by id.
    crate::store::metrics::forget(store, run_id, &format!("iteration >= {first_hop}")).await?;
    let mut hops: Vec<Vec<HopState>> = if first_hop > 0 {
        load_hops(store, run_id, items, first_hop - 1).await?
    } else {
        Vec::new()
    };
    if let Some(bar) = bar {
        bar.inc((first_hop * items.len()) as u64);
    }
    let generate = GenerateOptions {
        steps: options.steps,
        guidance: options.guidance,
    };
    let mut vectors = similarity::HopVectors::default();
    for hop in first_hop..=options.iterations {
        let started = Instant::now();
        if let Some(bar) = bar {
            bar.label(&format!(
                "{} hop {hop}/{}",
                config.variant.name(),
                options.iterations
            ));
        }
        let images: Vec<Vec<u8>> = if hop == 0 {
            items.iter().map(|i| i.data.clone()).collect()
        } else {
            let previous = &hops[hop - 1];
            let jobs: Vec<(String, u64)> = previous
                .iter()
                .enumerate()
                .map(|(k, state)| (state.caption.clone(), generation_seed(options.seed, k, hop)))
                .collect();
            let generator = Arc::clone(&models.generator);
            tokio::task::spawn_blocking(move || {
                jobs.iter()
                    .map(|(prompt, seed)| generator.generate(prompt, *seed, generate))
                    .collect::<Result<Vec<_>>>()
            })
            .await
            .map_err(Error::task("generating images"))??
        };
        let captions = hop_captions(store, models, items, pool, config, hop, &images).await?;
        let states: Vec<HopState> = items
            .iter()
            .zip(images)
            .zip(captions)
            .map(|((item, image), caption)| HopState {
                image_id: if hop == 0 {
                    item.image_id.clone()
                } else {
                    image_row_id(run_id, item, hop)
                },
                image,
                caption_id: caption_row_id(run_id, item, hop),
                caption,
            })
            .collect();
        if hop > 0 {
            report.images_written +=
                write_images(store, run_id, options, items, &hops[hop - 1], &states, hop).await?;
        }
        report.captions_written += write_captions(
            store,
            run_id,
            options,
            items,
            &states,
            hop,
            caption_source(models, config),
        )
        .await?;
        hops.push(states);
        let metrics =
            similarity::hop_metrics(store, models, items, &hops, hop, &mut vectors).await?;
        crate::store::metrics::write(store, run_id, &metrics).await?;
        report.metrics_written += metrics.len();
        if let Some(bar) = bar {
            bar.inc(items.len() as u64);
        }
        let seconds = started.elapsed().as_secs_f64();
        let line = format!(
            "loop {run_id} ({}): hop {hop}/{} done ({} items, {:.2} images/s)",
            config.variant.name(),
            options.iterations,
            items.len(),
            items.len() as f64 / seconds.max(1e-9)
        );
        match bar {
            Some(bar) => bar.note(&line),
            None => crate::progress::note(&line),
        }
    }
    Ok(report)
}

/// The `source` of the captions a variant writes.
fn caption_source(models: &Models, config: &RunConfig) -> String {
    match config.variant {
        Variant::Loop => models.captioner.files.id.clone(),
        other => format!("baseline:{}", other.name()),
    }
}

/// Each item's caption at `hop`, by the variant's rule.
async fn hop_captions(
    store: &Store,
    models: &Models,
    items: &[Item],
    pool: &[(String, String)],
    config: &RunConfig,
    hop: usize,
    images: &[Vec<u8>],
) -> Result<Vec<String>> {
    let options = &config.options;
    Ok(match config.variant {
        Variant::Loop => {
            let inputs: Vec<Option<&[u8]>> = images.iter().map(|i| Some(i.as_slice())).collect();
            crate::inference::captions::captions(
                Some(store),
                &models.captioner,
                &inputs,
                options.prompt.as_deref(),
            )
            .await?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()
        }
        Variant::GeneratorOnly => items.iter().map(|i| i.caption.1.clone()).collect(),
        Variant::FixedCaption => {
            let fixed = options
                .fixed_caption
                .clone()
                .unwrap_or_else(|| items[0].caption.1.clone());
            vec![fixed; items.len()]
        }
        Variant::RandomCaptions => items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                let others: Vec<&(String, String)> = pool
                    .iter()
                    .filter(|(image, _)| *image != item.image_id)
                    .collect();
                if others.is_empty() {
                    return item.caption.1.clone();
                }
                let mut rng = Rng::new(generation_seed(options.seed, k, hop) ^ 0x5eed_ca97);
                others[rng.below(others.len())].1.clone()
            })
            .collect(),
    })
}

/// The columns every generated row shares: dataset `<dataset>/loop`, the item's split, the run and the hop.
fn lineage_columns(
    run_id: &str,
    options: &LoopOptions,
    items: &[Item],
    hop: usize,
) -> Vec<(&'static str, ArrayRef)> {
    let n = items.len();
    let dataset = format!("{}/loop", options.dataset);
    vec![
        (
            "dataset",
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                dataset, n,
            ))),
        ),
        (
            "split",
            Arc::new(StringArray::from(
                items.iter().map(|i| i.split.clone()).collect::<Vec<_>>(),
            )),
        ),
        (
            "run_id",
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                run_id, n,
            ))),
        ),
        ("iteration", Arc::new(Int32Array::from(vec![hop as i32; n]))),
    ]
}

#[allow(clippy::too_many_arguments)]
async fn write_images(
    store: &Store,
    run_id: &str,
    options: &LoopOptions,
    items: &[Item],
    previous: &[HopState],
    states: &[HopState],
    hop: usize,
) -> Result<usize> {
    let spec = fixed_table("images")?.ok_or_else(|| Error::UnknownTable {
        name: "images".into(),
    })?;
    let mut widths = Vec::new();
    let mut heights = Vec::new();
    let mut formats = Vec::new();
    for state in states {
        let (_, info) = crate::image::decode(&state.image).map_err(|reason| {
            Error::Usage(format!("generated image {}: {reason}", state.image_id))
        })?;
        widths.push(info.width as i32);
        heights.push(info.height as i32);
        formats.push(crate::image::format_name(info.format));
    }
    let n = states.len();
    let mut columns: Vec<(&str, ArrayRef)> = lineage_columns(run_id, options, items, hop);
    columns.extend::<Vec<(&str, ArrayRef)>>(vec![
        (
            "image_id",
            Arc::new(StringArray::from_iter_values(
                states.iter().map(|s| s.image_id.as_str()),
            )),
        ),
        (
            "data",
            Arc::new(LargeBinaryArray::from_iter_values(
                states.iter().map(|s| s.image.as_slice()),
            )),
        ),
        ("width", Arc::new(Int32Array::from(widths))),
        ("height", Arc::new(Int32Array::from(heights))),
        ("format", Arc::new(StringArray::from(formats))),
        (
            "sha256",
            Arc::new(StringArray::from_iter_values(
                states
                    .iter()
                    .map(|s| crate::store::model_cache::sha256(&s.image)),
            )),
        ),
        (
            "parent_id",
            Arc::new(StringArray::from_iter_values(
                previous.iter().map(|p| p.caption_id.as_str()),
            )),
        ),
    ]);
    upsert(store, &spec, batch_for(&spec, columns)?).await?;
    Ok(n)
}

async fn write_captions(
    store: &Store,
    run_id: &str,
    options: &LoopOptions,
    items: &[Item],
    states: &[HopState],
    hop: usize,
    source: String,
) -> Result<usize> {
    let spec = fixed_table("captions")?.ok_or_else(|| Error::UnknownTable {
        name: "captions".into(),
    })?;
    let n = states.len();
    let mut columns: Vec<(&str, ArrayRef)> = lineage_columns(run_id, options, items, hop);
    columns.extend::<Vec<(&str, ArrayRef)>>(vec![
        (
            "caption_id",
            Arc::new(StringArray::from_iter_values(
                states.iter().map(|s| s.caption_id.as_str()),
            )),
        ),
        (
            "image_id",
            Arc::new(StringArray::from_iter_values(
                states.iter().map(|s| s.image_id.as_str()),
            )),
        ),
        (
            "text",
            Arc::new(StringArray::from_iter_values(
                states.iter().map(|s| s.caption.as_str()),
            )),
        ),
        (
            "source",
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                source.as_str(),
                n,
            ))),
        ),
    ]);
    upsert(store, &spec, batch_for(&spec, columns)?).await?;
    Ok(n)
}

/// The last hop whose per-hop metrics (the last thing a hop writes) are stored.
async fn completed_hops(store: &Store, run_id: &str) -> Result<Option<usize>> {
    if !store.table_names().await?.iter().any(|t| t == "metrics") {
        return Ok(None);
    }
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    params.set("run", ParamValue::Text(run_id.to_string()))?;
    let results = engine
        .execute_sql(
            "SELECT max(iteration) AS hop FROM metrics \
             WHERE run_id = $run AND item_id IS NULL AND name = 'image_caption_sim'",
            &params,
        )
        .await?;
    for batch in results.iter().flat_map(|r| &r.batches) {
        if let Some(Some(hop)) = integers(batch, "hop")?.into_iter().next() {
            return Ok(Some(hop as usize));
        }
    }
    Ok(None)
}

/// The stored images and captions of hops `0..=last` of a run, per hop in item order.
async fn load_hops(
    store: &Store,
    run_id: &str,
    items: &[Item],
    last: usize,
) -> Result<Vec<Vec<HopState>>> {
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    params.set("run", ParamValue::Text(run_id.to_string()))?;
    let captions = engine
        .execute_sql(
            "SELECT caption_id, text FROM captions WHERE run_id = $run",
            &params,
        )
        .await?;
    let mut texts: HashMap<String, String> = HashMap::new();
    for batch in captions.iter().flat_map(|r| &r.batches) {
        for (id, text) in strings(batch, "caption_id")?
            .into_iter()
            .zip(strings(batch, "text")?)
        {
            if let (Some(id), Some(text)) = (id, text) {
                texts.insert(id, text);
            }
        }
    }
    let images = engine
        .execute_sql(
            "SELECT image_id, data FROM images WHERE run_id = $run",
            &params,
        )
        .await?;
    let mut bytes: HashMap<String, Vec<u8>> = HashMap::new();
    for batch in images.iter().flat_map(|r| &r.batches) {
        for (id, data) in strings(batch, "image_id")?
            .into_iter()
            .zip(binaries(batch, "data")?)
        {
            if let (Some(id), Some(data)) = (id, data) {
                bytes.insert(id, data);
            }
        }
    }
    let mut hops = Vec::with_capacity(last + 1);
    for hop in 0..=last {
        let mut states = Vec::with_capacity(items.len());
        for item in items {
            let image_id = if hop == 0 {
                item.image_id.clone()
            } else {
                image_row_id(run_id, item, hop)
            };
            let image = if hop == 0 {
                item.data.clone()
            } else {
                bytes.remove(&image_id).ok_or_else(|| {
                    Error::Usage(format!(
                        "resuming loop run {run_id}: hop {hop} is recorded as done but image {image_id} is missing"
                    ))
                })?
            };
            let caption_id = caption_row_id(run_id, item, hop);
            let caption = texts.remove(&caption_id).ok_or_else(|| {
                Error::Usage(format!(
                    "resuming loop run {run_id}: hop {hop} is recorded as done but caption {caption_id} is missing"
                ))
            })?;
            states.push(HopState {
                image_id,
                image,
                caption_id,
                caption,
            });
        }
        hops.push(states);
    }
    Ok(hops)
}

/// The shipped `sql/loop/drift.sql`: per-hop similarity means of a loop run and its baselines.
pub const DRIFT_SQL: &str = include_str!("../../sql/loop/drift.sql");

/// A loop run and its baselines, the loop first: the runs `sql/loop/drift.sql` reports on.
pub async fn linked_runs(store: &Store, run_id: &str) -> Result<Vec<(String, String)>> {
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    params.set("run", ParamValue::Text(run_id.to_string()))?;
    let results = engine.execute_sql(DRIFT_SQL, &params).await?;
    let mut runs: Vec<(String, String)> = Vec::new();
    for batch in results.iter().flat_map(|r| &r.batches) {
        for (id, variant) in strings(batch, "run_id")?
            .into_iter()
            .zip(strings(batch, "variant")?)
        {
            if let (Some(id), Some(variant)) = (id, variant)
                && !runs.iter().any(|(known, _)| *known == id)
            {
                runs.push((id, variant));
            }
        }
    }
    runs.sort_by_key(|(_, variant)| variant != "loop");
    if runs.is_empty() {
        return Err(Error::UnknownRun {
            id: format!("{run_id} (no loop run with metrics has this id)"),
        });
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_seeds_differ_by_item_and_hop_and_repeat() {
        let a = generation_seed(0, 0, 1);
        assert_eq!(a, generation_seed(0, 0, 1));
        assert_ne!(a, generation_seed(0, 1, 1));
        assert_ne!(a, generation_seed(0, 0, 2));
        assert_ne!(a, generation_seed(1, 0, 1));
    }
}
