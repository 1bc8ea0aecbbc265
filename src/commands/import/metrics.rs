//! `vlmdb import metrics FILE (--csv | --json) --run-name N`: a training log written elsewhere (seed S1's
//! per-epoch CSV, seed S2's `metrics.json`) into `metrics` under a new `import` run named N, so old experiments
//! join the store and compare, plot and query like new ones.
//!
//! - **CSV**: a header row, then one row per step/epoch. Every column of numbers is a metric named by its header;
//!   `step`, `iteration`, `split`, `direction`, `k`, `dim`, `item_id` qualify the values, and `epoch` is the
//!   step when there is no `step` column. Empty cells are missing values.
//! - **JSON**: an array of objects (rows, as in CSV); or an object whose values are arrays (one series each, value
//!   i at step i + 1 unless a `step`/`epoch` array says otherwise) and/or numbers (final values, no step). Nested
//!   objects are flattened with dots (`{"val": {"r_at_1": …}}` → `val.r_at_1`).
//!
//! Every cell is checked before anything is written: a text in a column of numbers is an error naming the row and
//! column, and the store is left as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::metrics::{Cell, from_columns, write as write_metrics};
use crate::store::runs::flatten;
use crate::store::runs::{Run, RunSpec};

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Csv,
    Json,
}

/// What an import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MetricsImport {
    pub run_id: String,
    pub rows: usize,
    pub metrics: usize,
    /// Names of the metrics imported.
    pub names: Vec<String>,
    /// Text columns that are not metrics (left out).
    pub ignored: Vec<String>,
}

type Columns = Vec<(String, Vec<Cell>)>;

fn cell(text: &str) -> Cell {
    let t = text.trim();
    if t.is_empty() {
        return Cell::Null;
    }
    match t.parse::<f64>() {
        Ok(v) => Cell::Number(v),
        Err(_) => Cell::Text(t.to_string()),
    }
}

/// The CSV file as columns (every cell read as text, then as a number where it is one).
fn csv_columns(path: &Path) -> Result<Columns> {
    let bad = |message: String| Error::Input {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (schema, _) = format
        .infer_schema(std::io::BufReader::new(file), Some(1))
        .map_err(|e| bad(format!("cannot read the header: {e}")))?;
    if schema.fields().is_empty() {
        return Err(bad("the file has no header row".into()));
    }
    let texts = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name().trim(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = arrow::csv::ReaderBuilder::new(texts.clone())
        .with_header(true)
        .build(file)
        .map_err(|e| bad(e.to_string()))?;
    let mut columns: Columns = texts
        .fields()
        .iter()
        .map(|f| (f.name().clone(), Vec::new()))
        .collect();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        for (i, column) in batch.columns().iter().enumerate() {
            let values = column.as_string::<i32>();
            columns[i].1.extend((0..values.len()).map(|r| {
                if values.is_valid(r) {
                    cell(values.value(r))
                } else {
                    Cell::Null
                }
            }));
        }
    }
    Ok(columns)
}

fn json_cell(path: &Path, at: &str, value: &serde_json::Value) -> Result<Cell> {
    Ok(match value {
        serde_json::Value::Null => Cell::Null,
        serde_json::Value::Number(n) => Cell::Number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => cell(s),
        serde_json::Value::Bool(b) => Cell::Text(b.to_string()),
        _ => {
            return Err(Error::Input {
                path: path.to_path_buf(),
                message: format!("{at}: a nested list or object where a value belongs"),
            });
        }
    })
}

/// Rows (objects) as columns, in the order keys first appear.
fn rows_to_columns(path: &Path, rows: &[BTreeMap<String, serde_json::Value>]) -> Result<Columns> {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        for key in row.keys() {
            if !names.contains(key) {
                names.push(key.clone());
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let cells = rows
                .iter()
                .enumerate()
                .map(|(r, row)| match row.get(&name) {
                    None => Ok(Cell::Null),
                    Some(v) => json_cell(path, &format!("row {}, key '{name}'", r + 1), v),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((name, cells))
        })
        .collect()
}

/// The JSON file as columns.
fn json_columns(path: &Path) -> Result<Columns> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        message: format!("not JSON: {e}"),
    })?;
    match value {
        serde_json::Value::Array(items) => {
            let rows = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    if !item.is_object() {
                        return Err(Error::Input {
                            path: path.to_path_buf(),
                            message: format!("row {}: expected an object of metric values", i + 1),
                        });
                    }
                    let mut row = BTreeMap::new();
                    flatten("", item, &mut row);
                    Ok(row)
                })
                .collect::<Result<Vec<_>>>()?;
            rows_to_columns(path, &rows)
        }
        serde_json::Value::Object(_) => {
            let mut flat = BTreeMap::new();
            flatten("", &value, &mut flat);
            let longest = flat
                .values()
                .filter_map(|v| v.as_array().map(Vec::len))
                .max()
                .unwrap_or(0);
            let has_step = flat
                .get("step")
                .or_else(|| flat.get("epoch"))
                .is_some_and(|v| v.is_array());
            let mut rows: Vec<BTreeMap<String, serde_json::Value>> = (0..longest)
                .map(|i| {
                    let mut row = BTreeMap::new();
                    if !has_step {
                        row.insert("step".to_string(), serde_json::json!(i + 1));
                    }
                    row
                })
                .collect();
            let mut finals = BTreeMap::new();
            for (key, v) in flat {
                match v {
                    serde_json::Value::Array(series) => {
                        for (i, x) in series.into_iter().enumerate() {
                            rows[i].insert(key.clone(), x);
                        }
                    }
                    other => {
                        finals.insert(key, other);
                    }
                }
            }
            if !finals.is_empty() {
                rows.push(finals);
            }
            rows_to_columns(path, &rows)
        }
        _ => Err(Error::Input {
            path: path.to_path_buf(),
            message: "expected an array of rows or an object of metrics".into(),
        }),
    }
}

/// Import the log at `file` as the metrics of a new run named `run_name`.
pub async fn import(
    store: &Store,
    file: &Path,
    format: LogFormat,
    run_name: &str,
) -> Result<MetricsImport> {
    store.ensure_writable("import metrics")?;
    let columns = match format {
        LogFormat::Csv => csv_columns(file)?,
        LogFormat::Json => json_columns(file)?,
    };
    let rows = columns.first().map_or(0, |c| c.1.len());
    let (metrics, ignored) = from_columns(&file.display().to_string(), &columns)?;
    if metrics.is_empty() {
        return Err(Error::Input {
            path: PathBuf::from(file),
            message: "no numeric values to import".into(),
        });
    }
    store.ensure_tables(&["metrics"]).await?;
    let spec = RunSpec {
        kind: "import".into(),
        name: run_name.to_string(),
        config: serde_json::json!({
            "file": file.display().to_string(),
            "format": match format { LogFormat::Csv => "csv", LogFormat::Json => "json" },
            "ignored_columns": ignored,
        }),
        seed: None,
    };
    let run = Run::open(store, spec).await?;
    let run_id = run.id().to_string();
    let outcome = write_metrics(store, &run_id, &metrics).await;
    run.close(store, outcome).await?;
    let mut names: Vec<String> = metrics.iter().map(|m| m.name.clone()).collect();
    names.sort();
    names.dedup();
    Ok(MetricsImport {
        run_id,
        rows,
        metrics: metrics.len(),
        names,
        ignored,
    })
}
