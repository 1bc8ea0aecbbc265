//! Rows of the `metrics` table (long format: one number per row with the qualifiers that say what it measures),
//! collected and written in one commit. Training logs its steps through here; `vlmdb run` and `vlmdb import
//! metrics` turn result sets and training logs into these rows with [`from_columns`].

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};

use super::Store;
use super::schema::fixed_table;
use super::write::{append, batch_for};
use crate::error::{Error, Result};

/// One metric value and what it was measured at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub step: Option<i64>,
    pub iteration: Option<i32>,
    pub split: Option<String>,
    pub direction: Option<String>,
    pub k: Option<i32>,
    pub dim: Option<i32>,
    pub item_id: Option<String>,
}

impl Metric {
    /// A value with a step and an iteration (training logs).
    pub fn at(name: &str, value: f64, step: u64, iteration: usize) -> Metric {
        Metric {
            name: name.to_string(),
            value,
            step: Some(step as i64),
            iteration: Some(iteration as i32),
            ..Metric::default()
        }
    }
}

/// Append `metrics` under `run_id` in one commit (nothing when empty).
pub async fn write(store: &Store, run_id: &str, metrics: &[Metric]) -> Result<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    let spec = fixed_table("metrics")?.ok_or_else(|| Error::UnknownTable {
        name: "metrics".into(),
    })?;
    let n = metrics.len();
    let text = |f: fn(&Metric) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from(metrics.iter().map(f).collect::<Vec<_>>()))
    };
    let batch = batch_for(
        &spec,
        vec![
            ("run_id", crate::store::arrays::repeated(run_id, n)),
            (
                "name",
                Arc::new(StringArray::from_iter_values(
                    metrics.iter().map(|m| m.name.as_str()),
                )),
            ),
            (
                "value",
                Arc::new(Float64Array::from_iter_values(
                    metrics.iter().map(|m| m.value),
                )),
            ),
            (
                "step",
                Arc::new(Int64Array::from_iter(metrics.iter().map(|m| m.step))),
            ),
            (
                "iteration",
                Arc::new(Int32Array::from_iter(metrics.iter().map(|m| m.iteration))),
            ),
            ("split", text(|m| m.split.as_deref())),
            ("direction", text(|m| m.direction.as_deref())),
            (
                "k",
                Arc::new(Int32Array::from_iter(metrics.iter().map(|m| m.k))),
            ),
            (
                "dim",
                Arc::new(Int32Array::from_iter(metrics.iter().map(|m| m.dim))),
            ),
            ("item_id", text(|m| m.item_id.as_deref())),
        ],
    )?;
    append(store, &spec, batch).await?;
    Ok(())
}

/// Delete the metrics of `run_id` that match `condition`, an SQL predicate the program builds from numbers (never
/// from user text). Lance deletes by predicate text, so the run id — always ours: a timestamp and hex — is checked
/// for characters a run id never has before it goes in.
pub async fn forget(store: &Store, run_id: &str, condition: &str) -> Result<()> {
    if !run_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::Usage(format!(
            "run id '{run_id}' has characters a run id never has"
        )));
    }
    if !store.table_names().await?.iter().any(|t| t == "metrics") {
        return Ok(());
    }
    let table = store.open_table("metrics").await?;
    table
        .delete(&format!("run_id = '{run_id}' AND ({condition})"))
        .await?;
    Ok(())
}

/// One cell of a table of results or of a training log.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Number(f64),
    Text(String),
}

/// How an error shows a cell: `'oops'`, `2.5`, `an empty cell`.
impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => write!(f, "an empty cell"),
            Cell::Number(v) => write!(f, "{v}"),
            Cell::Text(t) => write!(f, "'{t}'"),
        }
    }
}

/// Columns that qualify a metric rather than being one (`epoch` becomes the step when there is no `step`).
pub const QUALIFIERS: [&str; 7] = [
    "step",
    "iteration",
    "split",
    "direction",
    "k",
    "dim",
    "item_id",
];

/// Metrics from a table given as named columns of cells (`source` names the table in errors; rows count from 1).
///
/// - Long format: a table with a text column `name` and a numeric column `value` gives one metric per row.
/// - Wide format: otherwise every numeric column that is not a qualifier gives one metric per row, named by the
///   column (`loss`, `r_at_1`, …).
///
/// The qualifier columns (`step`, `iteration`, `split`, `direction`, `k`, `dim`, `item_id`) fill in what each
/// value was measured at; a column `epoch` is the step when the table has no `step`. Text columns other than
/// those are not metrics and are returned by name, so the caller can say they were left out. A column with numbers
/// and a cell that is not one is an error naming the row and column. NULL cells give no metric.
pub fn from_columns(
    source: &str,
    columns: &[(String, Vec<Cell>)],
) -> Result<(Vec<Metric>, Vec<String>)> {
    let rows = columns.first().map_or(0, |c| c.1.len());
    let find = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, c)| c);
    let is_numeric = |cells: &Vec<Cell>| cells.iter().any(|c| matches!(c, Cell::Number(_)));
    let is_text = |cells: &Vec<Cell>| cells.iter().any(|c| matches!(c, Cell::Text(_)));
    let step_column = if find("step").is_some() {
        "step"
    } else {
        "epoch"
    };
    let bad = |row: usize, column: &str, message: String| Error::Input {
        path: source.into(),
        message: format!("row {}, column '{column}': {message}", row + 1),
    };
    let integer = |row: usize, column: &str| -> Result<Option<i64>> {
        match find(column).map(|c| &c[row]) {
            None | Some(Cell::Null) => Ok(None),
            Some(Cell::Number(v)) if v.fract() == 0.0 && v.is_finite() => Ok(Some(*v as i64)),
            Some(other) => Err(bad(row, column, format!("{other} is not a whole number"))),
        }
    };
    let text = |row: usize, column: &str| -> Option<String> {
        match find(column).map(|c| &c[row]) {
            Some(Cell::Text(t)) => Some(t.clone()),
            Some(Cell::Number(v)) => Some(v.to_string()),
            _ => None,
        }
    };
    for (name, cells) in columns {
        if is_numeric(cells)
            && is_text(cells)
            && !["split", "direction", "item_id", "name"].contains(&name.as_str())
        {
            let (row, cell) = cells
                .iter()
                .enumerate()
                .find(|(_, c)| matches!(c, Cell::Text(_)))
                .map(|(r, c)| (r, c.clone()))
                .unwrap_or((0, Cell::Null));
            return Err(bad(
                row,
                name,
                format!("{cell} is not a number (the column's other values are)"),
            ));
        }
    }
    let long =
        matches!((find("name"), find("value")), (Some(n), Some(v)) if is_text(n) && is_numeric(v));
    let qualifier = |name: &str| QUALIFIERS.contains(&name) || name == step_column;
    let value_columns: Vec<&(String, Vec<Cell>)> = if long {
        columns.iter().filter(|(n, _)| n == "value").collect()
    } else {
        columns
            .iter()
            .filter(|(n, c)| !qualifier(n) && is_numeric(c))
            .collect()
    };
    let ignored: Vec<String> = columns
        .iter()
        .filter(|(n, c)| !(qualifier(n) || is_numeric(c) || (long && n == "name")))
        .map(|(n, _)| n.clone())
        .collect();
    let mut metrics = Vec::new();
    for row in 0..rows {
        let step = integer(row, step_column)?;
        let iteration = integer(row, "iteration")?.map(|v| v as i32);
        let k = integer(row, "k")?.map(|v| v as i32);
        let dim = integer(row, "dim")?.map(|v| v as i32);
        for (column, cells) in &value_columns {
            let Cell::Number(value) = cells[row] else {
                continue;
            };
            let name = if long {
                match text(row, "name") {
                    Some(name) => name,
                    None => continue,
                }
            } else {
                column.clone()
            };
            metrics.push(Metric {
                name,
                value,
                step,
                iteration,
                split: text(row, "split"),
                direction: text(row, "direction"),
                k,
                dim,
                item_id: text(row, "item_id"),
            });
        }
    }
    Ok((metrics, ignored))
}

/// The (step, value) series of metric `name` of run `run_id`, by step.
pub async fn series(store: &Store, run_id: &str, name: &str) -> Result<Vec<(i64, f64)>> {
    use datafusion::prelude::{col, lit};
    let mut out = Vec::new();
    for batch in store
        .scan(
            "metrics",
            &["step", "value"],
            Some(
                col("run_id")
                    .eq(lit(run_id.to_string()))
                    .and(col("name").eq(lit(name.to_string()))),
            ),
        )
        .await?
    {
        let steps = super::columns::integers(&batch, "step")?;
        let values = super::columns::floats(&batch, "value")?;
        out.extend(
            steps
                .into_iter()
                .zip(values)
                .filter_map(|(s, v)| Some((s.unwrap_or(0), v?))),
        );
    }
    out.sort_by_key(|p| p.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, cells: Vec<Cell>) -> (String, Vec<Cell>) {
        (name.to_string(), cells)
    }

    #[test]
    fn wide_tables_give_one_metric_per_numeric_cell() {
        let (metrics, ignored) = from_columns(
            "log.csv",
            &[
                col("epoch", vec![Cell::Number(1.0), Cell::Number(2.0)]),
                col("train_loss", vec![Cell::Number(0.5), Cell::Number(0.25)]),
                col("split", vec![Cell::Text("val".into()), Cell::Null]),
                col(
                    "note",
                    vec![Cell::Text("ok".into()), Cell::Text("ok".into())],
                ),
            ],
        )
        .unwrap();
        assert_eq!(ignored, ["note"]);
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[1].name, "train_loss");
        assert_eq!(metrics[1].step, Some(2));
        assert_eq!(metrics[0].split.as_deref(), Some("val"));
    }

    #[test]
    fn long_tables_and_bad_cells() {
        let (metrics, _) = from_columns(
            "q",
            &[
                col("name", vec![Cell::Text("r_at_1".into())]),
                col("value", vec![Cell::Number(0.75)]),
                col("k", vec![Cell::Number(1.0)]),
            ],
        )
        .unwrap();
        assert_eq!(metrics[0].name, "r_at_1");
        assert_eq!(metrics[0].k, Some(1));
        let err = from_columns(
            "log.csv",
            &[col(
                "loss",
                vec![Cell::Number(1.0), Cell::Text("nan?".into())],
            )],
        )
        .unwrap_err();
        assert!(err.to_string().contains("row 2, column 'loss'"), "{err}");
    }
}
