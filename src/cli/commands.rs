//! The commands: `init`, `sql`, `ingest`, `export`, `runs list`, `runs show`.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::sql::parser::Statement;

use super::args::{
    CaptionArgs, EmbedArgs, EvalArgs, ExportArgs, IngestArgs, LoopArgs, MineArgs, PlotArgs,
    PlotWhat, RunFileArgs, SearchArgs, SqlArgs, TrainArgs,
};
use super::format::{Format, write_result};
use crate::embed::{EmbedOptions, Items};
use crate::error::{Error, Result};
use crate::export::{self, ExportFormat, ExportOptions};
use crate::ingest::{self, IngestOptions, ReadOptions, SplitRule};
use crate::models::DeviceChoice;
use crate::search::{Query, SearchOptions};
use crate::sql::{Engine, ParamValue, Params, StatementResult, writes_store};
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::fixed_table;

/// `vlmdb init`: create the store's missing tables under an `init` run.
pub async fn init(store: &Store, out: &mut dyn Write) -> Result<u8> {
    store.ensure_writable("init")?;
    let existing = store.table_names().await?;
    let missing: Vec<String> = crate::store::schema::fixed_tables()?
        .into_iter()
        .map(|t| t.name)
        .filter(|name| !existing.contains(name))
        .collect();
    if missing.is_empty() {
        writeln!(out, "store {} is up to date", store.root().display())?;
        return Ok(0);
    }
    let spec = RunSpec {
        kind: "init".into(),
        name: "init".into(),
        config: serde_json::json!({ "store": store.root().display().to_string() }),
        seed: None,
    };
    let run = Run::open(store, spec).await?;
    let outcome = store.init().await;
    run.close(store, outcome).await?;
    writeln!(
        out,
        "initialised store {}: created {}",
        store.root().display(),
        missing.join(", ")
    )?;
    Ok(0)
}

/// `vlmdb sql`: run the statements in order, printing each result. `$run_id` is always bound; statements that
/// write to the store run under a `sql` run record with that id.
pub async fn sql(store: &Store, args: SqlArgs, out: &mut dyn Write) -> Result<u8> {
    let (text, name) = match (&args.statement, &args.file) {
        (Some(s), None) => (s.clone(), "sql".to_string()),
        (None, Some(path)) => (
            std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?,
            path.display().to_string(),
        ),
        _ => return Err(Error::Usage("give either a STATEMENT or -f FILE".into())),
    };
    let mut params = Params::from_args(&args.params)?;
    let run_id = bind_run_id(&mut params)?;
    let engine = Engine::new(store.clone()).await?;
    let statements = engine.parse(&text)?;
    if !statements.iter().any(writes_store) {
        execute_all(&engine, statements, &params, args.format, out).await?;
        return Ok(0);
    }
    let spec = sql_run_spec(&name, &text, &params);
    let work = execute_all(&engine, statements, &params, args.format, out);
    recorded(&engine, run_id, spec, work).await?;
    Ok(0)
}

/// `vlmdb run FILE.sql`: the file as one `run` run; a summary line on stderr after the results.
pub async fn run_file(store: &Store, args: RunFileArgs, out: &mut dyn Write) -> Result<u8> {
    let params = Params::from_args(&args.params)?;
    let s = crate::experiment::run_file(store, &args.file, params, args.format, out).await?;
    crate::progress::note(&format!(
        "run {}: {} statements of {}, {} metrics stored{}",
        s.run_id,
        s.statements,
        args.file.display(),
        s.metrics,
        if s.ignored.is_empty() {
            String::new()
        } else {
            format!(" (text columns left out: {})", s.ignored.join(", "))
        }
    ));
    Ok(0)
}

/// The run record of SQL that writes to the store.
pub fn sql_run_spec(name: &str, sql: &str, params: &Params) -> RunSpec {
    RunSpec {
        kind: "sql".into(),
        name: name.to_string(),
        config: serde_json::json!({ "sql": sql, "params": params.to_json() }),
        seed: None,
    }
}

/// Run `work` under a run record with id `run_id`, recording the table versions the session read.
pub async fn recorded<T>(
    engine: &Engine,
    run_id: String,
    spec: RunSpec,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let mut run = Run::open_with_id(engine.store(), run_id, spec).await?;
    let outcome = work.await;
    for (table, version) in engine.reads() {
        run.record_input(&table, version);
    }
    run.close(engine.store(), outcome).await
}

/// Bind `$run_id` to a fresh run id; it is reserved, so a user binding is an error.
pub fn bind_run_id(params: &mut Params) -> Result<String> {
    if params.get("run_id").is_some() {
        return Err(Error::Param {
            name: "run_id".into(),
            message: "is bound by vlmdb to the current run and cannot be set".into(),
        });
    }
    rebind_run_id(params)
}

/// Bind `$run_id` to a fresh run id, replacing any earlier one (each writing statement of a shell is a run).
pub fn rebind_run_id(params: &mut Params) -> Result<String> {
    let id = Run::new_id();
    params.set("run_id", ParamValue::Text(id.clone()))?;
    Ok(id)
}

async fn execute_all(
    engine: &Engine,
    statements: Vec<Statement>,
    params: &Params,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    for statement in statements {
        let result = engine.execute(statement, params).await?;
        write_result(out, format, &result)?;
    }
    Ok(())
}

/// The columns `runs list` shows.
const RUN_LIST_COLUMNS: &[&str] = &[
    "run_id",
    "kind",
    "name",
    "status",
    "started_at",
    "finished_at",
    "error",
];

/// `vlmdb runs list`: runs newest first.
pub async fn runs_list(store: &Store, format: Format, out: &mut dyn Write) -> Result<u8> {
    let result = if store.table_names().await?.iter().any(|t| t == "runs") {
        let engine = Engine::new(store.clone()).await?;
        let sql = format!(
            "SELECT {} FROM runs ORDER BY started_at DESC, run_id DESC",
            RUN_LIST_COLUMNS.join(", ")
        );
        let mut results = engine.execute_sql(&sql, &Params::default()).await?;
        results
            .pop()
            .ok_or_else(|| Error::Usage("runs query returned nothing".into()))?
    } else {
        // A store that never ran anything: same columns, no rows.
        let spec = fixed_table("runs")?.ok_or_else(|| Error::UnknownTable {
            name: "runs".into(),
        })?;
        let schema = spec.arrow_schema();
        let indices = RUN_LIST_COLUMNS
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        StatementResult {
            schema: Arc::new(schema.project(&indices)?),
            batches: Vec::new(),
        }
    };
    write_result(out, format, &result)?;
    Ok(0)
}

/// `vlmdb runs show ID`: every field of one run (as `field | value` rows in table format).
pub async fn runs_show(store: &Store, id: &str, format: Format, out: &mut dyn Write) -> Result<u8> {
    let engine = Engine::new(store.clone()).await?;
    let mut params = Params::default();
    params.set("id", ParamValue::Text(id.to_string()))?;
    let mut results = engine
        .execute_sql("SELECT * FROM runs WHERE run_id = $id", &params)
        .await?;
    let result = results
        .pop()
        .ok_or_else(|| Error::UnknownRun { id: id.to_string() })?;
    if result.num_rows() == 0 {
        return Err(Error::UnknownRun { id: id.to_string() });
    }
    if format != Format::Table {
        write_result(out, format, &result)?;
        return Ok(0);
    }
    let (fields, values) = transpose_first_row(&result)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("field", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(fields)) as ArrayRef,
            Arc::new(StringArray::from(values)) as ArrayRef,
        ],
    )?;
    write_result(
        out,
        Format::Table,
        &StatementResult {
            schema,
            batches: vec![batch],
        },
    )?;
    Ok(0)
}

/// The first row of a result as (column name, displayed value) pairs.
fn transpose_first_row(result: &StatementResult) -> Result<(Vec<String>, Vec<Option<String>>)> {
    let batch = result
        .batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| Error::Usage("empty result".into()))?;
    let options = FormatOptions::default();
    let mut fields = Vec::new();
    let mut values = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        fields.push(field.name().clone());
        if column.is_null(0) {
            values.push(None);
        } else {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
            values.push(Some(formatter.value(0).to_string()));
        }
    }
    Ok((fields, values))
}

/// `vlmdb ingest`: exit code 1 when any item was rejected (they are in `ingest_errors`), else 0.
pub async fn ingest(store: &Store, args: IngestArgs, out: &mut dyn Write) -> Result<u8> {
    let split = match (&args.split, &args.split_ratio) {
        (_, Some(ratio)) => SplitRule::ratio(ratio, args.seed)?,
        (Some(split), None) => SplitRule::Fixed(split.clone()),
        (None, None) => SplitRule::Source,
    };
    let options = IngestOptions {
        format: args.format,
        path: args.path,
        dataset: args.dataset,
        read: ReadOptions {
            images: args.images,
            caption_field: args.caption_field,
        },
        split,
        resize: args.resize,
        strict: args.strict,
    };
    let dataset = options.dataset.clone();
    let s = ingest::ingest(store, options).await?;
    writeln!(
        out,
        "ingested {dataset} (run {}): images {} ({} new or changed), captions {} ({} new or changed), \
         pairs {} ({} new or changed), rejected {}",
        s.run_id,
        s.images,
        s.images_written,
        s.captions,
        s.captions_written,
        s.pairs,
        s.pairs_written,
        s.rejected
    )?;
    if s.rejected > 0 {
        writeln!(
            out,
            "rejected items are in ingest_errors: vlmdb sql \"SELECT * FROM ingest_errors WHERE run_id = '{}'\"",
            s.run_id
        )?;
        return Ok(1);
    }
    Ok(0)
}

/// `vlmdb export`: to `--out FILE` (written whole, then moved into place) or stdout.
pub async fn export(store: &Store, args: ExportArgs, out: &mut dyn Write) -> Result<u8> {
    let options = ExportOptions {
        format: args.format,
        dataset: args.dataset,
        table: args.table,
        split: args.split,
    };
    let result = export::query(store, &options).await?;
    match &args.out {
        Some(path) => {
            let mut buffer = Vec::new();
            let rows = export::write(&result, options.format, &mut buffer)?;
            let partial = path.with_extension("partial");
            std::fs::write(&partial, &buffer).map_err(|e| Error::io(&partial, e))?;
            std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))?;
            eprintln!("wrote {rows} rows to {}", path.display());
        }
        None if options.format == ExportFormat::Parquet => {
            return Err(Error::Usage("parquet export needs --out FILE".into()));
        }
        None => {
            export::write(&result, options.format, out)?;
        }
    }
    Ok(0)
}

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
    let s = crate::embed::run(store, &options).await?;
    writeln!(
        out,
        "embedded {} {} into {} (run {}, {} {} dim {}): {} already there, {} from the model cache, {} computed",
        s.embedded,
        items.kind(),
        s.table,
        s.run_id,
        s.model_id,
        s.revision.chars().take(12).collect::<String>(),
        s.dim,
        s.already_present,
        s.from_cache,
        s.computed
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
    let options = crate::caption::CaptionOptions {
        model: args.model,
        dataset: args.dataset,
        prompt: args.prompt,
        split: args.split,
        device,
        progress: !args.quiet,
    };
    let s = crate::caption::run(store, &options).await?;
    writeln!(
        out,
        "captioned {} images of {} (run {}, {} {})",
        s.captioned,
        options.dataset,
        s.run_id,
        s.model_id,
        s.revision.chars().take(12).collect::<String>()
    )?;
    Ok(0)
}

/// `vlmdb loop`: the loop run and, with --baselines, its baseline runs; one line per run.
pub async fn feedback_loop(
    store: &Store,
    args: LoopArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let options = crate::feedback::LoopOptions {
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
    };
    let summary = crate::feedback::run(store, &options, device, !args.quiet).await?;
    for run in &summary.runs {
        writeln!(
            out,
            "{} run {}: {} items × {} hops{}: {} images, {} captions, {} metrics written",
            run.variant.name(),
            run.run_id,
            summary.items,
            summary.iterations,
            run.resumed_after_hop
                .map(|h| format!(" (resumed after hop {h})"))
                .unwrap_or_default(),
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
        device,
    };
    let batch = crate::search::search(store, &options).await?;
    let result = StatementResult {
        schema: batch.schema(),
        batches: vec![batch],
    };
    write_result(out, args.format, &result)?;
    Ok(0)
}

/// `vlmdb eval`: retrieval metrics of a space, written to `metrics` under an `eval` run and printed.
pub async fn eval(
    store: &Store,
    args: EvalArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let options = crate::eval::evaluate::EvalOptions {
        model: args.on.model,
        dataset: args.on.dataset,
        split: args.on.split,
        dims: args.dims,
        combiner: args.combiner,
        device,
    };
    let report = crate::eval::evaluate::evaluate(store, &options).await?;
    write_result(out, args.format, &report.result)?;
    if args.format == Format::Table {
        writeln!(out, "eval run {} ({})", report.run_id, report.table)?;
    }
    Ok(0)
}

/// `vlmdb mine`: hard negatives into `hard_negatives` under a `mine` run; prints a summary per direction.
pub async fn mine(
    store: &Store,
    args: MineArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    let options = crate::mine::MineOptions {
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
    };
    let report = crate::mine::mine(store, &options).await?;
    write_result(out, args.format, &report.result)?;
    if args.format == Format::Table {
        writeln!(out, "mine run {} ({})", report.run_id, report.table)?;
    }
    Ok(0)
}

/// `vlmdb plot`: draw one plot to `--out` (and into `artifacts`) under a `plot` run.
pub async fn plot(
    store: &Store,
    args: PlotArgs,
    device: DeviceChoice,
    out: &mut dyn Write,
) -> Result<u8> {
    use crate::plot::command::{Layout, PlotOptions, Request, XAxis};
    let file = args
        .out
        .ok_or_else(|| Error::Usage("plot needs --out FILE.png".into()))?;
    let request = match args.what {
        PlotWhat::Metrics { runs, metrics, x } => Request::Metrics {
            runs,
            metrics,
            x: x.as_deref().map(str::parse::<XAxis>).transpose()?,
        },
        PlotWhat::Drift { run, metrics } => Request::Metrics {
            runs: crate::feedback::linked_runs(store, &run)
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
        PlotWhat::Scatter {
            on,
            kind,
            method,
            clusters,
            perplexity,
            tsne_iterations,
            seed,
        } => Request::Scatter {
            model: on.model,
            dataset: on.dataset,
            split: on.split,
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
        PlotWhat::Similarity {
            on,
            negatives,
            seed,
            bins,
        } => Request::Similarity {
            model: on.model,
            dataset: on.dataset,
            split: on.split,
            negatives,
            seed,
            bins,
        },
        PlotWhat::ContactSheet {
            clusters,
            per_cluster,
            thumb,
        } => Request::ContactSheet {
            clusters,
            per_cluster,
            thumb,
        },
    };
    let options = PlotOptions {
        request,
        out: file,
        width: args.width,
        height: args.height,
        query: args.query,
        params: Params::from_args(&args.params)?,
        device,
    };
    let summary = crate::plot::command::plot(store, &options).await?;
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
    let progress = !args.quiet;
    let summary = match &args.resume {
        Some(id) => {
            let id = (!id.is_empty()).then_some(id.as_str());
            crate::train::resume(store, id, device, progress).await?
        }
        None => {
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
            let options = crate::train::TrainOptions {
                image_model: need(&args.image_model, "--image-model")?,
                text_model: need(&args.text_model, "--text-model")?,
                dataset: need(&args.dataset, "--dataset")?,
                split: args.split,
                val_split: (!args.no_val).then_some(args.val_split),
                loss,
                head: args.head.parse()?,
                dim: args.dim,
                hidden: args.hidden,
                mrl: args.mrl,
                batch: args.batch,
                epochs: args.epochs,
                lr: args.lr,
                min_lr: args.min_lr,
                warmup: args.warmup,
                adamw: crate::train::optim::AdamWConfig {
                    beta1: args.beta1,
                    beta2: args.beta2,
                    eps: args.eps,
                    weight_decay: args.weight_decay,
                },
                max_grad_norm: args.max_grad_norm,
                seed: args.seed,
                topical: args.topical,
                negatives: args.negatives,
                negatives_per_query: args.negatives_per_query,
                patience: args.patience,
                dead_steps: args.dead_steps,
                rounds: args.rounds,
                mine_k: args.mine_k,
            };
            crate::train::train(store, &options, device, progress).await?
        }
    };
    let number = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    writeln!(
        out,
        "train run {}{}: {} steps over {} round(s), final loss {}, best validation R@1 {}; heads are space {} \
         ({} vectors; use --model head:{})",
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
        summary.run_id
    )?;
    if let Some(dead) = &summary.dead {
        writeln!(
            out,
            "training looks dead ({dead}): see the dead_training metric and the run's notes"
        )?;
        return Ok(1);
    }
    Ok(0)
}
