//! The hops of one run: each hop draws the next images from the previous captions (hop 0 is the dataset's images),
//! captions them by the variant's rule, writes both with lineage, their vectors into the measuring spaces, then its
//! similarity metrics — last, in one commit, so a hop counts as done exactly when its metrics are stored.

use std::sync::Arc;
use std::time::Instant;

use super::lineage::{caption_row_id, generation_seed, image_row_id, write_captions, write_images};
use super::resume::{completed_hops, load_hops};
use super::variant::{caption_source, hop_captions};
use super::{HopState, Item, Models, RunConfig, RunReport, similarity, spaces};
use crate::error::{Error, Result};
use crate::models::diffusion::GenerateOptions;
use crate::progress::Progress;
use crate::store::Store;

/// Run the hops of run `run_id` (after the completed ones when `resumed`).
#[allow(clippy::too_many_arguments)]
pub async fn execute(
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
    // The hops' vectors go into the measuring spaces: refuse, before any hop, a table another model made.
    for model in [&models.image_space, &models.text_space] {
        crate::inference::check_space_owner(store, model).await?;
    }
    let done = if resumed {
        completed_hops(store, run_id).await?
    } else {
        None
    };
    let mut report = RunReport {
        run_id: run_id.to_string(),
        variant: config.variant,
        resumed_after_hop: done.filter(|_| resumed),
        finished_before: false,
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
        negative_prompt: options.negative_prompt.clone(),
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
            let generate = generate.clone();
            tokio::task::spawn_blocking(move || {
                jobs.iter()
                    .map(|(prompt, seed)| generator.generate(prompt, *seed, &generate))
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
        spaces::write(
            store,
            models,
            run_id,
            options,
            items,
            &hops[hop],
            hop,
            vectors.at(hop),
        )
        .await?;
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
