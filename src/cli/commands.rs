//! The verbs that move data in and out of the store: `init`, `sql`, `run`, `runs`, `ingest`, `export`, `import`.
//! Each turns its arguments into the options of its command ([`crate::commands`]) and prints the report.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::sql::parser::Statement;

use super::args::{
    ExportArgs, ExportWhat, ImportArgs, ImportWhat, IngestArgs, RunFileArgs, RunsAction, RunsArgs,
    SqlArgs,
};
use super::display::TableStyle;
use super::format::{Format, Printer, write_result};
use super::report::{self, ReportFormat};
use crate::commands::export::{self, ExportFormat, ExportOptions};
use crate::commands::sql::{bind_run_id, recorded, sql_run_spec};
use crate::error::{Error, Result};
use crate::ingest::{self, IngestOptions, ReadOptions, SplitRule};
use crate::models::DeviceChoice;
use crate::sql::ExternalAccess;
use crate::sql::{Engine, Params, StatementResult, writes_store};
use crate::store::Store;

/// `vlmdb init`: create the store's missing tables.
pub async fn init(store: &Store, out: &mut dyn Write) -> Result<u8> {
    let created = crate::commands::init::init(store).await?;
    if created.is_empty() {
        writeln!(out, "store {} is up to date", store.location())?;
    } else {
        writeln!(
            out,
            "initialised store {}: created {}",
            store.location(),
            created.join(", ")
        )?;
    }
    Ok(0)
}

/// `vlmdb sql`: run the statements in order, printing each result. `$run_id` is always bound; statements that
/// write to the store run under a `sql` run record with that id.
pub async fn sql(
    store: &Store,
    args: SqlArgs,
    device: DeviceChoice,
    access: ExternalAccess,
    out: &mut dyn Write,
) -> Result<u8> {
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
    let engine = Engine::new(store.clone(), device)
        .await?
        .with_external_access(access);
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
pub async fn run_file(
    store: &Store,
    args: RunFileArgs,
    device: DeviceChoice,
    access: ExternalAccess,
    out: &mut dyn Write,
) -> Result<u8> {
    let params = Params::from_args(&args.params)?;
    let mut printer = Printer::new(args.format, TableStyle::for_stdout());
    let mut emit = |result: &StatementResult| printer.print(out, result);
    let s = crate::commands::run::run_file(store, &args.file, params, device, access, &mut emit)
        .await?;
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

async fn execute_all(
    engine: &Engine,
    statements: Vec<Statement>,
    params: &Params,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let mut printer = Printer::new(format, TableStyle::for_stdout());
    for statement in statements {
        let result = engine.execute(statement, params).await?;
        printer.print(out, &result)?;
    }
    Ok(())
}

/// `vlmdb runs [list|show ID]`.
pub async fn runs(store: &Store, args: RunsArgs, out: &mut dyn Write) -> Result<u8> {
    match args.action {
        None | Some(RunsAction::List) => runs_list(store, args.format, out).await,
        Some(RunsAction::Show { id }) => runs_show(store, &id, args.format, out).await,
    }
}

/// `vlmdb runs list`: runs newest first.
pub async fn runs_list(store: &Store, format: Format, out: &mut dyn Write) -> Result<u8> {
    write_result(out, format, &crate::commands::runs::list(store).await?)?;
    Ok(0)
}

/// `vlmdb runs show ID`: every field of one run (as `field | value` rows in table format).
pub async fn runs_show(store: &Store, id: &str, format: Format, out: &mut dyn Write) -> Result<u8> {
    let result = crate::commands::runs::show(store, id).await?;
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
        chunk: args.chunk,
    };
    let dataset = options.dataset.clone();
    let s = ingest::ingest(store, options).await?;
    if args.report == ReportFormat::Json {
        report::print(out, args.report, &s, |_| Ok(()))?;
        return Ok(u8::from(s.rejected > 0));
    }
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

/// `vlmdb export`: rows to `--out FILE` (written whole, then moved into place) or stdout; a dataset's images
/// folder; an artifact to a file.
pub async fn export(store: &Store, args: ExportArgs, out: &mut dyn Write) -> Result<u8> {
    let (format, rows) = match args.what {
        ExportWhat::Artifact { run, name, out } => {
            let bytes = export::artifact(store, &run, &name).await?;
            export::replace_file(&out, &bytes, "--out")?;
            eprintln!(
                "wrote artifact {name} of run {run} to {} ({} bytes)",
                out.display(),
                bytes.len()
            );
            return Ok(0);
        }
        ExportWhat::Jsonl {
            rows,
            images_out: Some(dir),
        } => {
            let dataset = rows
                .dataset
                .ok_or_else(|| Error::Usage("--images-out needs --dataset D".into()))?;
            let s = export::images_folder(store, &dataset, rows.split.as_deref(), &dir).await?;
            eprintln!(
                "wrote {} images and {} with {} captions (vlmdb ingest jsonl {} restores the dataset)",
                s.images,
                s.metadata.display(),
                s.captions,
                s.metadata.display()
            );
            return Ok(0);
        }
        ExportWhat::Jsonl { rows, .. } => (ExportFormat::Jsonl, rows),
        ExportWhat::Csv { rows } => (ExportFormat::Csv, rows),
        ExportWhat::Parquet { rows } => (ExportFormat::Parquet, rows),
    };
    let options = ExportOptions {
        format,
        dataset: rows.dataset,
        table: rows.table,
        split: rows.split,
    };
    let result = export::query(store, &options).await?;
    match &rows.out {
        Some(path) => {
            let mut buffer = Vec::new();
            let rows = write_export(&result, options.format, &mut buffer)?;
            export::replace_file(path, &buffer, "--out")?;
            eprintln!("wrote {rows} rows to {}", path.display());
        }
        None if options.format == ExportFormat::Parquet => {
            return Err(Error::Usage("parquet export needs --out FILE".into()));
        }
        None => {
            write_export(&result, options.format, out)?;
        }
    }
    Ok(0)
}

/// Write an export `result` in `format` to `out`; returns the number of rows.
fn write_export(
    result: &StatementResult,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<usize> {
    match format {
        ExportFormat::Jsonl => write_result(out, Format::Ndjson, result)?,
        ExportFormat::Csv => write_result(out, Format::Csv, result)?,
        ExportFormat::Parquet => {
            let mut buffer = Vec::new();
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(&mut buffer, result.schema.clone(), None)?;
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.close()?;
            out.write_all(&buffer)?;
        }
    }
    Ok(result.batches.iter().map(RecordBatch::num_rows).sum())
}

/// `vlmdb import embeddings|metrics`: vectors into a space, or an old training log into `metrics`.
pub async fn import(store: &Store, args: ImportArgs, out: &mut dyn Write) -> Result<u8> {
    Ok(match args.what {
        ImportWhat::Embeddings {
            file,
            space,
            model_id,
        } => {
            let options = crate::commands::import::ImportOptions {
                file,
                space,
                model_id,
            };
            let summary = crate::commands::import::embeddings(store, &options).await?;
            report::print(out, args.report, &summary, |out| {
                writeln!(
                    out,
                    "imported {} vectors of {} dimensions into {} (run {})",
                    summary.rows, summary.dim, summary.table, summary.run_id
                )?;
                Ok(())
            })?;
            0
        }
        ImportWhat::Metrics {
            file,
            csv,
            json,
            run_name,
        } => {
            use crate::commands::import::metrics::{LogFormat, import};
            let extension = file
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            let format = match (csv, json, extension.as_deref()) {
                (true, _, _) | (false, false, Some("csv")) => LogFormat::Csv,
                (_, true, _) | (false, false, Some("json")) => LogFormat::Json,
                _ => {
                    return Err(Error::Usage(format!(
                        "cannot tell the format of {}: name it .csv or .json, or pass --csv or --json",
                        file.display()
                    )));
                }
            };
            let s = import(store, &file, format, &run_name).await?;
            if args.report == ReportFormat::Json {
                report::print(out, args.report, &s, |_| Ok(()))?;
                return Ok(0);
            }
            writeln!(
                out,
                "imported {} values of {} metrics from {} rows into run {} ({}){}",
                s.metrics,
                s.names.len(),
                s.rows,
                s.run_id,
                s.names.join(", "),
                if s.ignored.is_empty() {
                    String::new()
                } else {
                    format!("; left out text columns: {}", s.ignored.join(", "))
                }
            )?;
            0
        }
    })
}

/// `vlmdb check`: one line per table; exit 1 when any table is damaged.
pub async fn check(store: &Store, out: &mut dyn Write) -> Result<u8> {
    let report = crate::commands::check::check(store).await?;
    let mut damaged = 0;
    for table in &report {
        match &table.damage {
            None if table.unfinished => writeln!(
                out,
                "{}: not created yet (its creation was interrupted before the first version; no data; the next \
                 write creates it)",
                table.table
            )?,
            None => writeln!(
                out,
                "{}: ok ({} versions, {} rows)",
                table.table,
                table.versions,
                table.rows.unwrap_or_default()
            )?,
            Some(damage) => {
                damaged += 1;
                writeln!(out, "{}: DAMAGED: {damage}", table.table)?;
            }
        }
    }
    Ok(u8::from(damaged > 0))
}
