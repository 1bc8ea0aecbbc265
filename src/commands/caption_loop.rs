//! `vlmdb loop`: the caption→image→caption loop of seed S0 and its baselines ([`crate::caption_loop`]), each a run
//! of its own, resuming unfinished runs of the same configuration; and the runs `sql/loop/drift.sql` reports on.

use serde::Serialize;

use crate::caption_loop::hop::execute;
use crate::caption_loop::items::select_items;
use crate::caption_loop::resume::{baselines_finished, latest_run};
use crate::caption_loop::variant::Variant;
use crate::caption_loop::{Item, LoopOptions, Models, RunConfig, RunReport};
use crate::error::{Error, Result};
use crate::models::{DeviceChoice, load_captioner, load_generator};
use crate::progress::Progress;
use crate::sql::{Engine, ParamValue, Params};
use crate::store::Store;
use crate::store::columns::strings;
use crate::store::runs::{Run, RunSpec};
use crate::store::twins::Inputs;

/// What `vlmdb loop` did: the loop run first, then its baselines.
#[derive(Debug, Clone, Serialize)]
pub struct LoopSummary {
    pub runs: Vec<RunReport>,
    pub items: usize,
    pub iterations: usize,
}

/// Run the loop (and its baselines), resuming unfinished runs of the same configuration; a finished run of the
/// same configuration is reported and not repeated unless `again`.
pub async fn run(
    store: &Store,
    options: &LoopOptions,
    device: DeviceChoice,
    progress: bool,
    again: bool,
) -> Result<LoopSummary> {
    store.ensure_writable("loop")?;
    validate(options)?;
    // Every variant starts from the items read here, before the first of them writes its own images and captions.
    let mut read = Inputs::default();
    read.tables(store, &["images", "captions"]).await?;
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
        let report = run_variant(
            store,
            &models,
            &items,
            &pool,
            &read,
            &config,
            again,
            bar.as_ref(),
        )
        .await?;
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

/// Run one variant: resume the newest unfinished run of its configuration, or start a new one. A finished loop run
/// whose baselines did not all finish is taken as done, so that its baselines resume under it. Its inputs are
/// `read`: the versions the items and the caption pool were read from.
#[allow(clippy::too_many_arguments)]
async fn run_variant(
    store: &Store,
    models: &Models,
    items: &[Item],
    pool: &[(String, String)],
    read: &Inputs,
    config: &RunConfig,
    again: bool,
    bar: Option<&Progress>,
) -> Result<RunReport> {
    let latest = latest_run(store, config).await?;
    // A finished loop run whose baselines did not all finish is kept, so that its baselines resume under it.
    let baselines_pending = match &latest {
        Some((id, status)) if status == "finished" => {
            config.variant == Variant::Loop
                && config.options.baselines
                && !baselines_finished(store, config, id).await?
        }
        _ => false,
    };
    let existing = match latest {
        Some((id, status)) if status != "finished" => Some(id),
        // A finished run of the same configuration is the same experiment (same seed, same bytes): it is
        // reported, not repeated, unless `--again` asks for a replicate.
        Some((id, _)) if !again || baselines_pending => {
            if let Some(bar) = bar {
                bar.inc((items.len() * (config.options.iterations + 1)) as u64);
            }
            return Ok(RunReport {
                run_id: id,
                variant: config.variant,
                resumed_after_hop: Some(config.options.iterations),
                finished_before: !baselines_pending,
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
    for (table, version) in &read.tables {
        run.record_input(table, *version);
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
