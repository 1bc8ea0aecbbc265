//! The verbs that compute: `embed`, `caption`, `loop`, `search`, `eval`, `mine`, `cluster`, `index`, `plot`,
//! `train`, `bench`. Each turns its arguments into the options of its command ([`crate::commands`]) and prints the
//! report.

use std::io::Write;

use super::args::{
    AugmentArgs, AugmentWhat, BenchArgs, BenchWhat, CaptionArgs, ChartSize, ClusterArgs, EmbedArgs,
    EvalArgs, IndexArgs, LoopArgs, MineArgs, PlotArgs, PlotWhat, SearchArgs, TrainArgs,
};
use super::format::{Format, write_result};
use super::report::{self, ReportFormat};
use crate::commands::embed::{EmbedOptions, Items};
use crate::commands::search::{Query, SearchOptions};
use crate::error::{Error, Result};
use crate::models::DeviceChoice;
use crate::sql::{Params, StatementResult};
use crate::store::Store;

/// `vlmdb embed`: one run that fills the model's space with the dataset's items.
pub async fn embed(
    store: &Store,
    args: EmbedArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let items = if args.images {
        Items::Images
    } else if args.captions {
        Items::Captions
    } else {
        Items::Pairs
    };
    let options = EmbedOptions {
        model: args.model,
        items,
        dataset: args.dataset,
        batch: args.batch as usize,
        device,
        progress: !args.quiet,
    };
    let s = crate::commands::embed::run(store, &options).await?;
    if args.report == ReportFormat::Json {
        return json(out, &s);
    }
    let count = |n: usize| format!("{n} {}", items.noun(n));
    let mut parts = vec![format!("{} computed", s.computed)];
    if s.from_cache > 0 {
        parts.push(format!("{} from the model cache", s.from_cache));
    }
    if s.duplicates > 0 {
        parts.push(format!(
            "{} the same {} as another",
            s.duplicates,
            if items == Items::Images {
                "bytes"
            } else {
                "text"
            }
        ));
    }
    writeln!(
        out,
        "embedded {} into {} (run {}, {} {} dim {}): {}; {} already there{}",
        count(s.embedded),
        s.table,
        s.run_id,
        s.model_id,
        s.revision.chars().take(12).collect::<String>(),
        s.dim,
        parts.join(", "),
        s.already_present,
        if s.no_input > 0 {
            format!("; {} without input (NULL), skipped", count(s.no_input))
        } else {
            String::new()
        }
    )?;
    Ok(0)
}

/// `vlmdb caption`: one run that captions the dataset's images into `captions`.
pub async fn caption(
    store: &Store,
    args: CaptionArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let options = crate::commands::caption::CaptionOptions {
        model: args.model,
        dataset: args.dataset,
        prompt: args.prompt,
        max_new_tokens: args.max_new_tokens,
        split: args.split,
        device,
        progress: !args.quiet,
    };
    let s = crate::commands::caption::run(store, &options).await?;
    report::print(out, args.report, &s, |out| {
        writeln!(
            out,
            "captioned {} images of {} (run {}, {} {})",
            s.captioned,
            options.dataset,
            s.run_id,
            s.model_id,
            s.revision.chars().take(12).collect::<String>()
        )?;
        Ok(())
    })?;
    Ok(0)
}

/// `vlmdb augment pairs`: augmented composed pairs under one run.
pub async fn augment(
    store: &Store,
    args: AugmentArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let format = args.report;
    let AugmentWhat::Pairs {
        captioner,
        dataset,
        split,
        prompts,
        max_new_tokens,
    } = args.what;
    let options = crate::commands::augment::AugmentOptions {
        captioner,
        dataset,
        split,
        prompts: if prompts.is_empty() {
            vec![None]
        } else {
            prompts.into_iter().map(Some).collect()
        },
        max_new_tokens,
        device,
    };
    let s = crate::commands::augment::augment_pairs(store, &options).await?;
    report::print(out, format, &s, |out| {
        writeln!(
            out,
            "augmented {} pairs of {}: {} augmented pairs written (run {})",
            s.pairs, options.dataset, s.written, s.run_id
        )?;
        Ok(())
    })?;
    Ok(0)
}

/// `vlmdb loop`: the loop run and, with --baselines, its baseline runs; one line per run.
pub async fn feedback_loop(
    store: &Store,
    args: LoopArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let options = crate::caption_loop::LoopOptions {
        captioner: args.captioner,
        generator: args.generator,
        dataset: args.dataset,
        split: args.split,
        images: args.images,
        iterations: args.iterations,
        seed: args.seed,
        baselines: args.baselines,
        image_space: args.image_space,
        text_space: args.text_space,
        steps: args.steps,
        guidance: args.guidance,
        prompt: args.prompt,
        fixed_caption: args.fixed_caption,
        negative_prompt: args.negative_prompt,
        max_new_tokens: args.max_new_tokens,
    };
    let summary =
        crate::commands::caption_loop::run(store, &options, device, !args.quiet, args.again)
            .await?;
    if args.report == ReportFormat::Json {
        return json(out, &summary);
    }
    for run in &summary.runs {
        writeln!(
            out,
            "{} run {}: {} items × {} hops{}: {} images, {} captions, {} metrics written",
            run.variant.name(),
            run.run_id,
            summary.items,
            summary.iterations,
            if run.finished_before {
                " (finished before with this configuration; --again runs a replicate)".to_string()
            } else {
                run.resumed_after_hop
                    .map(|h| format!(" (resumed after hop {h})"))
                    .unwrap_or_default()
            },
            run.images_written,
            run.captions_written,
            run.metrics_written
        )?;
    }
    Ok(0)
}

/// `vlmdb search`: the k nearest items of the model's space to a text or an image.
pub async fn search(
    store: &Store,
    args: SearchArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let query = match (args.text, args.image) {
        (Some(text), None) => Query::Text(text),
        (None, Some(path)) => Query::Image(path),
        _ => return Err(Error::Usage("give either --text or --image".into())),
    };
    let options = SearchOptions {
        model: args.model,
        query,
        k: args.k,
        dataset: args.dataset,
        split: args.split,
        kind: args.kind,
        search: if args.ann {
            crate::eval::nearest::Search::Ann
        } else {
            crate::eval::nearest::Search::Exact
        },
        device,
    };
    let batch = crate::commands::search::search(store, &options).await?;
    let result = StatementResult {
        schema: batch.schema(),
        batches: vec![batch],
    };
    write_result(out, args.format, &result)?;
    Ok(0)
}

/// Print a run's summary as one JSON object (`--format json`).
fn json<T: serde::Serialize>(out: &mut dyn Write, summary: &T) -> Result<u8> {
    report::print(out, ReportFormat::Json, summary, |_| Ok(()))?;
    Ok(0)
}

/// What `eval` and `mine` print: their result rows and, in a table, a line naming the run; with `--format json`
/// one object holding the run and its rows.
fn ranked_report(
    out: &mut dyn Write,
    format: Format,
    kind: &str,
    run_id: &str,
    table: &str,
    was_reused: bool,
    result: &StatementResult,
) -> Result<u8> {
    if format == Format::Json {
        return json(
            out,
            &serde_json::json!({
                "run_id": run_id,
                "table": table,
                "reused": was_reused,
                "rows": super::format::json_rows(result)?,
            }),
        );
    }
    write_result(out, format, result)?;
    if format == Format::Table {
        writeln!(out, "{kind} run {run_id} ({table}){}", reused(was_reused))?;
    }
    Ok(0)
}

/// What a report line adds when the run is an earlier one that already did exactly this.
fn reused(reused: bool) -> &'static str {
    if reused {
        ": already finished with this configuration over the same inputs, nothing written (--again runs it anew)"
    } else {
        ""
    }
}

/// `vlmdb eval`: retrieval metrics of a space, written to `metrics` under an `eval` run and printed.
pub async fn eval(
    store: &Store,
    args: EvalArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let options = crate::commands::eval::EvalOptions {
        model: args.on.model,
        dataset: args.on.dataset,
        split: args.on.split,
        dims: args.dims,
        combiner: args.combiner,
        device,
        again: args.again,
    };
    let r = crate::commands::eval::evaluate(store, &options).await?;
    ranked_report(
        out,
        args.format,
        "eval",
        &r.run_id,
        &r.table,
        r.reused,
        &r.result,
    )
}

/// `vlmdb mine`: hard negatives into `hard_negatives` under a `mine` run; prints a summary per direction.
pub async fn mine(
    store: &Store,
    args: MineArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let options = crate::commands::mine::MineOptions {
        model: args.on.model,
        dataset: args.on.dataset,
        split: args.on.split,
        k: args.k,
        depth: args.depth,
        iteration: args.iteration,
        directions: args.directions,
        margin: args.margin,
        max_ratio: args.max_ratio,
        max_positive_similarity: args.max_positive_similarity,
        device,
        again: args.again,
        augmented: args.augmented.parse()?,
    };
    let r = crate::commands::mine::mine(store, &options).await?;
    ranked_report(
        out,
        args.format,
        "mine",
        &r.run_id,
        &r.table,
        r.reused,
        &r.result,
    )
}

/// `vlmdb plot`: draw one plot to `--out` (and into `artifacts`) under a `plot` run.
pub async fn plot(
    store: &Store,
    args: PlotArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    use crate::commands::plot::{Layout, PlotOptions, Request, XAxis};
    // Sheets take their size from their cells.
    let sheet = ChartSize {
        width: 0,
        height: 0,
    };
    let (request, file, size) = match args.what {
        PlotWhat::Metrics {
            file,
            size,
            axes,
            runs,
            metrics,
            x,
        } => (
            Request::Metrics {
                runs,
                metrics,
                x: x.as_deref().map(str::parse::<XAxis>).transpose()?,
                drift_of: None,
                single_axis: axes.single_axis()?,
                log_y: axes.log_y,
            },
            file,
            size,
        ),
        PlotWhat::Drift {
            file,
            size,
            axes,
            run,
            metrics,
        } => (
            Request::Metrics {
                drift_of: Some(run.clone()),
                single_axis: axes.single_axis()?,
                log_y: axes.log_y,
                runs: crate::commands::caption_loop::linked_runs(store, &run)
                    .await?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect(),
                metrics: if metrics.is_empty() {
                    vec!["image_sim_to_hop0".to_string()]
                } else {
                    metrics
                },
                x: Some(XAxis::Iteration),
            },
            file,
            size,
        ),
        PlotWhat::Scatter {
            file,
            size,
            model,
            dataset,
            split,
            run,
            iteration,
            kind,
            method,
            clusters,
            perplexity,
            tsne_iterations,
            seed,
        } => (
            Request::Scatter {
                model,
                dataset,
                split,
                run,
                iteration,
                kind,
                layout: match method.as_str() {
                    "pca" => Layout::Pca,
                    "tsne" => Layout::Tsne {
                        perplexity,
                        iterations: tsne_iterations,
                        seed,
                    },
                    other => {
                        return Err(Error::Usage(format!(
                            "--method '{other}': expected pca or tsne"
                        )));
                    }
                },
                clusters,
            },
            file,
            size,
        ),
        PlotWhat::Similarity {
            file,
            size,
            on,
            negatives,
            seed,
            bins,
        } => (
            Request::Similarity {
                model: on.model,
                dataset: on.dataset,
                split: on.split,
                negatives,
                seed,
                bins,
            },
            file,
            size,
        ),
        PlotWhat::Lineage {
            file,
            run,
            items,
            thumb,
            lines,
        } => (
            Request::Lineage {
                run,
                items,
                thumb,
                lines,
            },
            file,
            sheet,
        ),
        PlotWhat::ContactSheet {
            file,
            clusters,
            per_cluster,
            thumb,
        } => (
            Request::ContactSheet {
                clusters,
                per_cluster,
                thumb,
            },
            file,
            sheet,
        ),
    };
    let options = PlotOptions {
        request,
        out: file.out,
        width: size.width,
        height: size.height,
        query: file.query,
        params: Params::from_args(&file.params)?,
        device,
    };
    let summary = crate::commands::plot::plot(store, &options).await?;
    if args.report == ReportFormat::Json {
        return json(out, &summary);
    }
    writeln!(
        out,
        "wrote {} ({} × {} px; {}), stored in artifacts under run {}",
        summary.out.display(),
        summary.width,
        summary.height,
        summary.description,
        summary.run_id
    )?;
    Ok(0)
}

/// `vlmdb train`: exit code 1 when training was flagged dead (the run records it), else 0.
pub async fn train(
    store: &Store,
    args: TrainArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    use crate::commands::train::Resumable;
    let progress = !args.quiet;
    let (run_id, resumable) = match &args.resume {
        Some(id) => {
            let id = (!id.is_empty()).then_some(id.as_str());
            let (run_id, options) = crate::commands::train::run_to_resume(store, id).await?;
            (Some(run_id), options)
        }
        None => (None, train_options(&args)?),
    };
    let dead = match resumable {
        Resumable::Heads(options) => {
            let summary = match run_id {
                Some(id) => {
                    crate::commands::train::resume(store, id, &options, device, progress).await?
                }
                None => {
                    crate::commands::train::train(store, &options, device, progress, args.again)
                        .await?
                }
            };
            if args.report == ReportFormat::Json {
                json(out, &summary)?;
                return Ok(u8::from(summary.dead.is_some()));
            }
            let number = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
            writeln!(
                out,
                "train run {}{}: {} steps over {} round(s), final loss {}, best validation R@1 {}; heads are space \
                 {} ({} vectors; use --model head:{}){}",
                summary.run_id,
                summary
                    .resumed_from
                    .map(|s| format!(" (resumed after step {s})"))
                    .unwrap_or_default(),
                summary.steps,
                summary.rounds,
                number(summary.final_loss),
                number(summary.best_r1),
                summary.table,
                summary.projected,
                summary.run_id,
                reused(summary.reused)
            )?;
            summary.dead
        }
        Resumable::Finetune(options) => {
            use crate::commands::finetune;
            let summary = match run_id {
                Some(id) => finetune::resume(store, id, &options, device, progress).await?,
                None => finetune::finetune(store, &options, device, progress, args.again).await?,
            };
            if args.report == ReportFormat::Json {
                json(out, &summary)?;
                return Ok(u8::from(summary.dead.is_some()));
            }
            let number = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
            writeln!(
                out,
                "train run {}{}: fine-tuned {} for {} steps, final loss {}, best validation R@1 {}; the best weights \
                 are {} (use --model {}{}){}",
                summary.run_id,
                summary
                    .resumed_from
                    .map(|s| format!(" (resumed after step {s})"))
                    .unwrap_or_default(),
                options.finetune,
                summary.steps,
                number(summary.final_loss),
                number(summary.best_r1),
                summary.export.display(),
                finetune::FT_PREFIX,
                summary.run_id,
                reused(summary.reused)
            )?;
            summary.dead
        }
    };
    if let Some(dead) = &dead {
        writeln!(
            out,
            "training looks dead ({dead}): see the dead_training metric and the run's notes"
        )?;
        return Ok(1);
    }
    Ok(0)
}

/// The configuration of a fresh `vlmdb train` (heads, or fine-tuning with --finetune).
fn train_options(args: &TrainArgs) -> Result<crate::commands::train::Resumable> {
    use crate::commands::train::Resumable;
    let need = |value: &Option<String>, flag: &str| {
        value
            .clone()
            .ok_or_else(|| Error::Usage(format!("train needs {flag} (or --resume)")))
    };
    let loss = crate::train::loss::Loss::new(
        &need(&args.loss, "--loss")?,
        args.alpha,
        args.delta,
        args.lambda,
        (args.m1, args.m2),
        args.gamma,
    )?;
    let finetuning = args.finetune.is_some();
    let fit = crate::train::fit::Fit {
        dataset: need(&args.dataset, "--dataset")?,
        split: args.split.clone(),
        val_split: (!args.no_val).then(|| args.val_split.clone()),
        loss,
        batch: args.batch,
        epochs: args.epochs,
        lr: args.lr.unwrap_or(if finetuning { 1e-5 } else { 1e-3 }),
        min_lr: args.min_lr,
        warmup: args.warmup,
        adamw: crate::train::optim::AdamWConfig {
            beta1: args.beta1,
            beta2: args.beta2,
            eps: args.eps,
            weight_decay: args
                .weight_decay
                .unwrap_or(if finetuning { 0.01 } else { 0.1 }),
        },
        max_grad_norm: args.max_grad_norm,
        seed: args.seed,
        topical: args.topical.clone(),
        negatives: args.negatives.clone(),
        negatives_per_query: args.negatives_per_query,
        patience: args.patience,
        dead_steps: args.dead_steps,
        one_caption_per_image: args.one_caption_per_image,
    };
    if let Some(model) = &args.finetune {
        let mut trainable = crate::models::clip_trainable::Trainable {
            unfreeze_last: args.unfreeze_last,
            ..Default::default()
        };
        for tower in &args.freeze {
            match tower.as_str() {
                "vision" => trainable.freeze_vision = true,
                "text" => trainable.freeze_text = true,
                other => {
                    return Err(Error::Usage(format!(
                        "--freeze {other}: expected vision or text"
                    )));
                }
            }
        }
        return Ok(Resumable::Finetune(
            crate::commands::finetune::FinetuneOptions {
                finetune: model.clone(),
                trainable,
                freeze_logit_scale_epochs: args.freeze_logit_scale_epochs,
                precision: args.precision.parse()?,
                fit,
            },
        ));
    }
    Ok(Resumable::Heads(crate::commands::train::TrainOptions {
        image_model: need(&args.image_model, "--image-model")?,
        text_model: need(&args.text_model, "--text-model")?,
        head: args.head.parse()?,
        dim: args.dim,
        hidden: args.hidden,
        mrl: args.mrl.clone(),
        rounds: args.rounds,
        mine_k: args.mine_k,
        composed: args.composed,
        augmented: args.augmented.parse()?,
        fit,
    }))
}

/// `vlmdb cluster`: k-means over a space.
pub async fn cluster(
    store: &Store,
    args: ClusterArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    if let Some(zero) = args.k.iter().find(|k| **k == 0) {
        return Err(Error::Usage(format!("-k {zero}: k must be at least 1")));
    }
    let metric = args.metric.parse()?;
    let mut runs = Vec::new();
    for &k in &args.k {
        let options = crate::commands::cluster::ClusterOptions {
            model: args.model.clone(),
            dataset: args.dataset.clone(),
            split: args.split.clone(),
            kind: args.kind.clone(),
            k,
            iterations: args.iterations,
            seed: args.seed,
            inits: args.inits,
            metric,
            iteration: args.iteration,
            run: args.run.clone(),
            k_sweep: args.k.clone(),
            device,
            again: args.again,
        };
        let s = crate::commands::cluster::cluster(store, &options).await?;
        if args.report == ReportFormat::Json {
            runs.push(s);
            continue;
        }
        writeln!(
            out,
            "k-means k={} on {} items of {}: inertia {:.6} after {} steps, sizes {:?} (run {}){}",
            s.k,
            s.items,
            s.table,
            s.inertia,
            s.lloyd_steps,
            s.sizes,
            s.run_id,
            reused(s.reused)
        )?;
    }
    if args.report == ReportFormat::Json {
        return json(out, &serde_json::json!({ "runs": runs }));
    }
    Ok(0)
}

/// `vlmdb index`: an approximate-nearest-neighbour index over a space, with its recall against exact search.
pub async fn index(
    store: &Store,
    args: IndexArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let report =
        crate::commands::index::build(store, &args.model, args.kind, &device.device()?).await?;
    if args.report == ReportFormat::Json {
        return json(out, &report);
    }
    writeln!(
        out,
        "{} index on {} ({} vectors): recall@10 {:.4} against exact search on {} of its vectors (run {})",
        report.kind, report.table, report.rows, report.recall_at_10, report.sample, report.run_id
    )?;
    Ok(0)
}

/// `vlmdb bench …`: vlmdb beside its peer on the same machine.
pub async fn bench(args: BenchArgs, device: DeviceChoice, out: &mut dyn Write) -> Result<u8> {
    use crate::commands::bench::conditions;
    conditions::set_runs(args.runs as usize);
    let peer = match &args.what {
        BenchWhat::Ingest {
            python, no_peer, ..
        }
        | BenchWhat::Eval {
            python, no_peer, ..
        }
        | BenchWhat::Kmeans {
            python, no_peer, ..
        }
        | BenchWhat::Knn {
            python, no_peer, ..
        }
        | BenchWhat::Train {
            python, no_peer, ..
        }
        | BenchWhat::Finetune {
            python, no_peer, ..
        } => (!*no_peer).then(|| python.clone()),
        BenchWhat::Embed(a) => (!a.no_peer).then(|| a.python.clone()),
    };
    conditions::preamble(out, peer.as_deref())?;
    Ok(match args.what {
        BenchWhat::Ingest {
            images,
            python,
            no_peer,
        } => {
            crate::commands::bench::ingest_bench(
                images,
                (!no_peer).then_some(python.as_str()),
                out,
            )
            .await?;
            0
        }
        BenchWhat::Eval {
            images,
            per_image,
            dim,
            python,
            no_peer,
        } => {
            crate::commands::bench::retrieval::eval_bench(
                images,
                per_image,
                dim,
                &device.device()?,
                (!no_peer).then_some(python.as_str()),
                out,
            )?;
            0
        }
        BenchWhat::Kmeans {
            n,
            dim,
            k,
            iterations,
            seed,
            python,
            no_peer,
            no_sklearn,
        } => {
            crate::commands::bench::cluster::kmeans_bench(
                crate::commands::bench::cluster::KmeansBench {
                    n,
                    dim,
                    k,
                    iterations,
                    seed,
                },
                &device.device()?,
                (!no_peer).then_some(python.as_str()),
                no_sklearn,
                out,
            )?;
            0
        }
        BenchWhat::Knn {
            n,
            hnsw_n,
            dim,
            k,
            python,
            no_peer,
        } => {
            crate::commands::bench::retrieval::knn_bench(
                n,
                hnsw_n,
                dim,
                k,
                &device.device()?,
                (!no_peer).then_some(python.as_str()),
                out,
            )
            .await?;
            0
        }
        BenchWhat::Train {
            n,
            dim,
            batch,
            steps,
            python,
            no_peer,
        } => {
            crate::commands::bench::train::train_bench(
                n,
                dim,
                batch,
                steps,
                &device.device()?,
                (!no_peer).then_some(python.as_str()),
                out,
            )?;
            0
        }
        BenchWhat::Finetune {
            model,
            loss,
            batch,
            steps,
            python,
            no_peer,
        } => {
            crate::commands::bench::finetune::finetune_bench(
                &model,
                &loss,
                batch,
                steps,
                &device.device()?,
                (!no_peer).then_some(python.as_str()),
                out,
            )?;
            0
        }
        BenchWhat::Embed(args) => {
            let options = crate::commands::bench::EmbedBenchOptions {
                text_model: args.text_model,
                image_model: args.image_model,
                texts: args.texts,
                images: args.images,
                batch: args.batch,
                python: args.python,
                no_peer: args.no_peer,
            };
            crate::commands::bench::embed_bench(&options, device, out).await?;
            0
        }
    })
}
