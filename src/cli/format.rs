//! Result printing: one function writes a statement's result to any `Write` in the chosen format.

use std::io::Write;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::display::{TableStyle, render};

use crate::error::{Error, Result};
use crate::sql::StatementResult;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of row objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        match s.trim() {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "ndjson" => Ok(Format::Ndjson),
            other => Err(Error::Usage(format!(
                "unknown format '{other}' (use table, csv, json or ndjson)"
            ))),
        }
    }
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
        }
    }
}

/// Prints the results of several statements to one output so that it still parses: CSV results after the first
/// are preceded by an empty line, and tables follow the [`TableStyle`].
pub struct Printer {
    pub format: Format,
    pub style: TableStyle,
    printed: usize,
}

impl Printer {
    pub fn new(format: Format, style: TableStyle) -> Printer {
        Printer {
            format,
            style,
            printed: 0,
        }
    }

    /// Print one statement's result (nothing for statements without output columns).
    pub fn print(&mut self, out: &mut dyn Write, result: &StatementResult) -> Result<()> {
        if result.schema.fields().is_empty() {
            return Ok(());
        }
        if self.printed > 0 && self.format == Format::Csv {
            writeln!(out)?;
        }
        self.printed += 1;
        write_styled(out, self.format, result, &self.style)
    }
}

/// Write `result` to `out` (standard output, or a file for CSV and JSON): tables laid out for the terminal when
/// standard output is one, complete otherwise. Statements without output columns (DDL) print nothing.
pub fn write_result(out: &mut dyn Write, format: Format, result: &StatementResult) -> Result<()> {
    write_styled(out, format, result, &TableStyle::for_stdout())
}

/// [`write_result`] with tables laid out by `style` (CSV and JSON are always complete).
pub fn write_styled(
    out: &mut dyn Write,
    format: Format,
    result: &StatementResult,
    style: &TableStyle,
) -> Result<()> {
    if result.schema.fields().is_empty() {
        return Ok(());
    }
    let batches: Vec<&RecordBatch> = result.batches.iter().filter(|b| b.num_rows() > 0).collect();
    match format {
        Format::Table => {
            let owned: Vec<RecordBatch> = batches.into_iter().cloned().collect();
            let table = render(&result.schema, &owned, style)?;
            writeln!(out, "{table}")?;
        }
        // Arrow's CSV and JSON writers flatten I/O errors into strings; encoding each batch into memory first
        // keeps a closed pipe recognisable as one.
        Format::Csv => {
            let mut header = true;
            let empty = [RecordBatch::new_empty(result.schema.clone())];
            let batches: Vec<&RecordBatch> = if batches.is_empty() {
                empty.iter().collect()
            } else {
                batches
            };
            for batch in batches {
                let mut buffer = Vec::new();
                arrow::csv::WriterBuilder::new()
                    .with_header(header)
                    .build(&mut buffer)
                    .write(&csv_cells(batch)?)?;
                header = false;
                out.write_all(&buffer)?;
            }
        }
        Format::Json => {
            if batches.is_empty() {
                writeln!(out, "[]")?;
            } else {
                for (i, batch) in batches.iter().enumerate() {
                    let rows = ndjson_rows(batch)?;
                    for (j, row) in rows.iter().enumerate() {
                        let lead: &[u8] = if i == 0 && j == 0 { b"[" } else { b"," };
                        out.write_all(lead)?;
                        out.write_all(row)?;
                    }
                }
                writeln!(out, "]")?;
            }
        }
        Format::Ndjson => {
            for batch in batches {
                for row in ndjson_rows(batch)? {
                    out.write_all(&row)?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `batch` as CSV can hold it: binary columns (image bytes, digests) as lowercase hex text, as the table format
/// shows them, and nested columns (vectors, lists, structs) as JSON text (`[0.1,0.2]`): CSV has no notation for
/// either.
fn csv_cells(batch: &RecordBatch) -> Result<RecordBatch> {
    let binary = |t: &DataType| {
        matches!(
            t,
            DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
        )
    };
    let nested = |t: &DataType| t.is_nested();
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| binary(f.data_type()) || nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let text: Option<StringArray> = if binary(field.data_type()) {
            let bytes = arrow::compute::cast(column, &DataType::LargeBinary)?;
            let bytes = bytes.as_binary::<i64>();
            Some(
                (0..bytes.len())
                    .map(|i| bytes.is_valid(i).then(|| hex::encode(bytes.value(i))))
                    .collect(),
            )
        } else if nested(field.data_type()) {
            Some(json_texts(field, column)?)
        } else {
            None
        };
        match text {
            Some(text) => {
                fields.push(Field::new(
                    field.name(),
                    DataType::Utf8,
                    field.is_nullable(),
                ));
                columns.push(Arc::new(text) as ArrayRef);
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Each value of a nested column as JSON text (NULL stays NULL), as the JSON formats write it.
fn json_texts(field: &Field, column: &ArrayRef) -> Result<StringArray> {
    let one = RecordBatch::try_new(
        Arc::new(Schema::new(vec![field.clone()])),
        vec![column.clone()],
    )?;
    let mut texts = Vec::with_capacity(column.len());
    for (i, row) in ndjson_rows(&one)?.iter().enumerate() {
        if column.is_null(i) {
            texts.push(None);
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(row)?;
        texts.push(value.get(field.name()).map(|v| v.to_string()));
    }
    Ok(texts.into_iter().collect())
}

/// Every row of `result` as a JSON object, as `--format json` prints them.
pub fn json_rows(result: &StatementResult) -> Result<Vec<serde_json::Value>> {
    let mut rows = Vec::new();
    for batch in result.batches.iter().filter(|b| b.num_rows() > 0) {
        for row in ndjson_rows(batch)? {
            rows.push(serde_json::from_slice(&row)?);
        }
    }
    Ok(rows)
}

/// Each row of `batch` as one JSON object (no trailing newline).
fn ndjson_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let mut buffer = Vec::new();
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(&mut buffer);
    writer.write(batch)?;
    writer.finish()?;
    Ok(buffer
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
