//! `vlmdb run FILE.sql`: an experiment written as a SQL file, run as one `run` of its own. Every statement runs in
//! order with the bound parameters and `$run_id`; every result set is printed; the run records the file, its
//! parameters and the versions of the tables the file read.
//!
//! **Header convention.** The comment lines before a file's first statement are its header. A header line
//! `-- @metrics` asks for the numbers of every query's result to be stored in `metrics` under the run: a result
//! with a text `name` and a numeric `value` column gives one metric per row; otherwise each numeric column gives
//! one metric per row, named by the column. Columns `step`, `iteration`, `split`, `direction`, `k`, `dim` and
//! `item_id` qualify the values instead of being metrics ([`crate::store::metrics::from_columns`]). Results of
//! statements that write (INSERT …) or define tables and views are not stored.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::error::{Error, Result};
use crate::models::DeviceChoice;
use crate::sql::{Engine, ExternalAccess, ParamValue, Params, StatementResult, writes_store};
use crate::store::Store;
use crate::store::metrics::{Cell, Metric, from_columns, write as write_metrics};
use crate::store::runs::{Run, RunSpec};

/// The header line that asks for metrics.
pub const METRICS_DIRECTIVE: &str = "@metrics";

/// What a `vlmdb run` did.
#[derive(Debug, Clone)]
pub struct ExperimentSummary {
    pub run_id: String,
    pub statements: usize,
    /// Metrics written (0 unless the header asks for them).
    pub metrics: usize,
    /// Result columns that were neither numbers nor qualifiers (not stored).
    pub ignored: Vec<String>,
}

/// True when the header of `sql` (the comment lines before the first statement) has a `-- @metrics` line.
pub fn wants_metrics(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("--"))
        .any(|l| l.trim_start_matches('-').trim() == METRICS_DIRECTIVE)
}

/// A result set as named columns of cells: numbers (any integer, float or decimal), texts (strings, booleans);
/// other columns (vectors, bytes) are left out.
pub fn result_columns(result: &StatementResult) -> Result<Vec<(String, Vec<Cell>)>> {
    let mut columns: Vec<(String, Vec<Cell>)> = Vec::new();
    for (i, field) in result.schema.fields().iter().enumerate() {
        let numeric = field.data_type().is_numeric();
        let textual = matches!(
            field.data_type(),
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Boolean
                | DataType::Null
        );
        if !numeric && !textual {
            continue;
        }
        let mut cells = Vec::new();
        for batch in &result.batches {
            let column = batch.column(i);
            if numeric {
                let values = arrow::compute::cast(column, &DataType::Float64)?;
                let values = values.as_primitive::<arrow::datatypes::Float64Type>();
                cells.extend((0..values.len()).map(|r| {
                    if values.is_valid(r) {
                        Cell::Number(values.value(r))
                    } else {
                        Cell::Null
                    }
                }));
            } else {
                let values = arrow::compute::cast(column, &DataType::Utf8)?;
                let values = values.as_string::<i32>();
                cells.extend((0..values.len()).map(|r| {
                    if values.is_valid(r) {
                        Cell::Text(values.value(r).to_string())
                    } else {
                        Cell::Null
                    }
                }));
            }
        }
        columns.push((field.name().clone(), cells));
    }
    Ok(columns)
}

/// True for statements whose result is a query's rows (not a write, a table or view definition, or a setting).
fn is_query(statement: &Statement) -> bool {
    match statement {
        Statement::Statement(s) => matches!(s.as_ref(), SqlStatement::Query(_)),
        _ => false,
    }
}

/// Run the experiment file at `path` with `params` under a `run` run, model functions on `device`, handing each
/// query's result to `emit` as it completes (the CLI prints it).
pub async fn run_file(
    store: &Store,
    path: &Path,
    mut params: Params,
    device: DeviceChoice,
    access: ExternalAccess,
    emit: &mut dyn FnMut(&StatementResult) -> Result<()>,
) -> Result<ExperimentSummary> {
    store.ensure_writable("run")?;
    let sql = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let metrics_wanted = wants_metrics(&sql);
    if params.get("run_id").is_some() {
        return Err(Error::Param {
            name: "run_id".into(),
            message: "is bound by vlmdb to the current run and cannot be set".into(),
        });
    }
    let engine = Engine::new(store.clone(), device)
        .await?
        .with_external_access(access);
    let statements = engine.parse(&sql).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if statements.is_empty() {
        return Err(Error::Input {
            path: path.to_path_buf(),
            message: "the file has no statements".into(),
        });
    }
    if metrics_wanted {
        store.ensure_tables(&["metrics"]).await?;
    }
    let spec = RunSpec {
        kind: "run".into(),
        name: path.display().to_string(),
        config: serde_json::json!({
            "file": path.display().to_string(),
            "sql": sql,
            "params": params.to_json(),
            "metrics": metrics_wanted,
        }),
        seed: None,
    };
    let mut run = Run::open(store, spec).await?;
    params.set("run_id", ParamValue::Text(run.id().to_string()))?;
    let run_id = run.id().to_string();
    let count = statements.len();
    let outcome = async {
        let mut metrics: Vec<Metric> = Vec::new();
        let mut ignored: Vec<String> = Vec::new();
        for (i, statement) in statements.into_iter().enumerate() {
            let query = is_query(&statement) && !writes_store(&statement);
            let result = engine
                .execute(statement, &params)
                .await
                .map_err(|e| Error::Input {
                    path: path.to_path_buf(),
                    message: format!("statement {}: {e}", i + 1),
                })?;
            emit(&result)?;
            if metrics_wanted && query {
                let source = format!("{} (statement {})", path.display(), i + 1);
                let (found, left_out) = from_columns(&source, &result_columns(&result)?)?;
                metrics.extend(found);
                ignored.extend(
                    left_out
                        .into_iter()
                        .filter(|c| !ignored.contains(c))
                        .collect::<Vec<_>>(),
                );
            }
        }
        write_metrics(store, &run_id, &metrics).await?;
        Ok((metrics.len(), ignored))
    }
    .await;
    for (table, version) in engine.reads() {
        run.record_input(&table, version);
    }
    let (metrics, ignored) = run.close(store, outcome).await?;
    Ok(ExperimentSummary {
        run_id,
        statements: count,
        metrics,
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::wants_metrics;

    #[test]
    fn the_directive_is_read_from_the_header_only() {
        assert!(wants_metrics("-- R@K of a space\n-- @metrics\nSELECT 1;"));
        assert!(!wants_metrics("-- R@K\nSELECT 1;\n-- @metrics\n"));
        assert!(!wants_metrics("SELECT '-- @metrics';"));
    }
}
