//! `vlmdb plot`: runs the plot's SQL file (compiled in from `sql/plot/`, or the user's own with `--query`, given
//! the same bound parameters) under a `plot` run, draws its rows, writes the PNG to `--out` and stores it in
//! `artifacts` under that run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, LargeBinaryArray, StringArray};
use arrow::datatypes::DataType;

use crate::commands::eval::space_model;
use crate::error::{Error, Result};
use crate::eval::space::resolve;
use crate::models::DeviceChoice;
use crate::plot::Canvas;
use crate::plot::contact_sheet::{self, Cell, Row};
use crate::plot::curves::{self, Panel, Series};
use crate::plot::scatter::{self, Point};
use crate::plot::similarity::{self, Group};
use crate::sql::{Engine, ParamValue, Params, StatementResult};
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::fixed_table;
use crate::store::write::{append, batch_for};

/// The x axis of metric curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XAxis {
    Step,
    Iteration,
}

impl std::str::FromStr for XAxis {
    type Err = Error;
    fn from_str(s: &str) -> Result<XAxis> {
        match s {
            "step" => Ok(XAxis::Step),
            "iteration" => Ok(XAxis::Iteration),
            other => Err(Error::Usage(format!(
                "--x '{other}': expected step or iteration"
            ))),
        }
    }
}

/// How a scatter plot lays the items out in two dimensions.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Layout {
    /// The first two principal components.
    Pca,
    /// A seeded t-SNE view.
    Tsne {
        /// `None`: the automatic perplexity.
        perplexity: Option<f64>,
        iterations: usize,
        seed: u64,
    },
}

/// What to plot.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "plot", rename_all = "kebab-case")]
pub enum Request {
    /// Metric curves of one or more runs over steps or iterations.
    Metrics {
        runs: Vec<String>,
        /// Metric names; empty: all.
        metrics: Vec<String>,
        /// None: the step where there is one, else the iteration.
        x: Option<XAxis>,
        /// The loop run whose drift this is (the other runs are its baselines): hops on the x axis.
        #[serde(skip_serializing_if = "Option::is_none")]
        drift_of: Option<String>,
        /// Every series on one y axis instead of one panel per metric.
        single_axis: bool,
        /// A log y axis.
        log_y: bool,
    },
    /// A 2-D view of a space's items, coloured by the clusters of a clustering run.
    Scatter {
        model: String,
        dataset: Option<String>,
        split: Option<String>,
        /// Only the items of this loop run …
        run: Option<String>,
        /// … at this hop.
        iteration: Option<i32>,
        kind: String,
        layout: Layout,
        clusters: Option<String>,
    },
    /// Similarity distributions of positive and negative caption–image pairs.
    Similarity {
        model: String,
        dataset: String,
        split: Option<String>,
        negatives: usize,
        seed: u64,
        bins: usize,
    },
    /// A loop run's items, hop by hop, with their captions.
    Lineage {
        run: String,
        items: usize,
        thumb: u32,
        lines: u32,
    },
    /// Thumbnails of each cluster's most typical members.
    ContactSheet {
        /// The clustering run; None: the latest finished one.
        clusters: Option<String>,
        per_cluster: usize,
        thumb: u32,
    },
}

/// What `vlmdb plot` does.
#[derive(Debug, Clone)]
pub struct PlotOptions {
    pub request: Request,
    /// The PNG file written.
    pub out: PathBuf,
    /// Size of charts (a contact sheet's size follows from its cells).
    pub width: u32,
    pub height: u32,
    /// A SQL file used instead of the plot's own; it gets the same parameters and must return the same columns.
    pub query: Option<PathBuf>,
    /// Further parameters for a `query` file; they may not rebind the plot's own.
    pub params: Params,
    pub device: DeviceChoice,
}

/// What it did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlotSummary {
    pub run_id: String,
    pub out: PathBuf,
    pub width: u32,
    pub height: u32,
    /// One line on what was drawn.
    pub description: String,
}

const METRICS_SQL: &str = include_str!("../../sql/plot/metrics.sql");
const PCA_SCATTER_SQL: &str = include_str!("../../sql/plot/pca_scatter.sql");
const TSNE_SCATTER_SQL: &str = include_str!("../../sql/plot/tsne_scatter.sql");
const SIMILARITY_SQL: &str = include_str!("../../sql/plot/similarity.sql");
const CONTACT_SHEET_SQL: &str = include_str!("../../sql/plot/contact_sheet.sql");
const LINEAGE_SQL: &str = include_str!("../../sql/plot/lineage.sql");

/// A plot ready to run: its SQL, parameters, title and the tables it needs.
struct Prepared {
    file: String,
    sql: String,
    params: Params,
    title: String,
    /// The space the plot reads, when it reads one (its model is recorded on the run).
    space: Option<String>,
    /// Run names by id (metric curves label their series with them).
    run_names: Vec<(String, String)>,
}

fn text(value: &str) -> ParamValue {
    ParamValue::Text(value.to_string())
}

fn optional(value: Option<&str>) -> ParamValue {
    value.map_or(ParamValue::Null, text)
}

/// The name of run `id`, or UnknownRun.
async fn run_name(engine: &Engine, id: &str) -> Result<String> {
    let mut params = Params::default();
    params.set("id", text(id))?;
    let result = engine
        .execute_sql("SELECT name FROM runs WHERE run_id = $id", &params)
        .await?
        .pop();
    result
        .and_then(|r| strings(&r, "name").ok())
        .and_then(|names| names.into_iter().next().flatten())
        .ok_or_else(|| Error::UnknownRun { id: id.to_string() })
}

/// The latest finished `cluster` run.
async fn latest_cluster_run(engine: &Engine) -> Result<String> {
    let result = engine
        .execute_sql(
            "SELECT run_id FROM runs WHERE kind = 'cluster' AND status = 'finished' \
             ORDER BY started_at DESC LIMIT 1",
            &Params::default(),
        )
        .await?
        .pop();
    result
        .and_then(|r| strings(&r, "run_id").ok())
        .and_then(|ids| ids.into_iter().next().flatten())
        .ok_or_else(|| {
            Error::Usage(
                "the store has no finished clustering run: run `vlmdb cluster` first, or name one with --clusters"
                    .into(),
            )
        })
}

fn dataset_label(dataset: &str, split: Option<&str>) -> String {
    split.map_or_else(|| dataset.to_string(), |s| format!("{dataset}, {s}"))
}

/// What a scatter's items are: dataset and split, loop run and hop, as far as they are given.
fn items_label(
    dataset: Option<&str>,
    split: Option<&str>,
    run: Option<&str>,
    iteration: Option<i32>,
) -> String {
    let mut parts = Vec::new();
    if let Some(dataset) = dataset {
        parts.push(dataset_label(dataset, split));
    } else if let Some(split) = split {
        parts.push(format!("split {split}"));
    }
    if let Some(run) = run {
        parts.push(format!("run {run}"));
    }
    if let Some(i) = iteration {
        parts.push(format!("hop {i}"));
    }
    if parts.is_empty() {
        "every item".into()
    } else {
        parts.join(", ")
    }
}

async fn prepare(store: &Store, engine: &Engine, request: &Request) -> Result<Prepared> {
    let mut params = Params::default();
    let own = |file: &str, sql: &str| (format!("sql/plot/{file}"), sql.to_string());
    match request {
        Request::Metrics {
            runs,
            metrics,
            x,
            drift_of,
            ..
        } => {
            if runs.is_empty() {
                return Err(Error::Usage("plot metrics needs at least one --run".into()));
            }
            let mut run_names = Vec::new();
            for id in runs {
                run_names.push((id.clone(), run_name(engine, id).await?));
            }
            params.set("runs", text(&runs.join(",")))?;
            params.set(
                "metrics",
                if metrics.is_empty() {
                    ParamValue::Null
                } else {
                    text(&metrics.join(","))
                },
            )?;
            params.set(
                "x",
                match x {
                    Some(XAxis::Step) => text("step"),
                    Some(XAxis::Iteration) => text("iteration"),
                    None => ParamValue::Null,
                },
            )?;
            let title = match (drift_of, run_names.as_slice()) {
                (Some(run), names) => {
                    let name = names
                        .iter()
                        .find(|(id, _)| id == run)
                        .map_or(run.as_str(), |(_, name)| name.as_str());
                    match names.len().saturating_sub(1) {
                        0 => format!("drift of {name} (run {run})"),
                        1 => format!("drift of {name} (run {run}) and its baseline"),
                        n => format!("drift of {name} (run {run}) and its {n} baselines"),
                    }
                }
                (None, [(id, name)]) => format!("{name} ({id})"),
                (None, many) => format!("{} runs", many.len()),
            };
            let (file, sql) = own("metrics.sql", METRICS_SQL);
            Ok(Prepared {
                file,
                sql,
                params,
                title,
                space: None,
                run_names,
            })
        }
        Request::Scatter {
            model,
            dataset,
            split,
            run,
            iteration,
            kind,
            layout,
            clusters,
        } => {
            let table = resolve(store, model).await?;
            params.set("space", text(&table))?;
            params.set("dataset", optional(dataset.as_deref()))?;
            params.set("split", optional(split.as_deref()))?;
            params.set("kind", text(kind))?;
            params.set("run", optional(run.as_deref()))?;
            params.set(
                "iteration",
                iteration.map_or(ParamValue::Null, |i| ParamValue::Int(i64::from(i))),
            )?;
            params.set("clusters", optional(clusters.as_deref()))?;
            if let Some(id) = clusters {
                run_name(engine, id).await?;
            }
            let (method, (file, sql)) = match layout {
                Layout::Pca => ("PCA", own("pca_scatter.sql", PCA_SCATTER_SQL)),
                Layout::Tsne {
                    perplexity,
                    iterations,
                    seed,
                } => {
                    params.set(
                        "perplexity",
                        perplexity.map_or(ParamValue::Null, ParamValue::Float),
                    )?;
                    params.set("iterations", ParamValue::Int(*iterations as i64))?;
                    params.set("seed", ParamValue::Int(*seed as i64))?;
                    ("t-SNE", own("tsne_scatter.sql", TSNE_SCATTER_SQL))
                }
            };
            let colouring = clusters
                .as_ref()
                .map(|c| format!(", clusters of run {c}"))
                .unwrap_or_default();
            Ok(Prepared {
                file,
                sql,
                params,
                title: format!(
                    "{method} of {table} ({kind}s of {}){colouring}",
                    items_label(
                        dataset.as_deref(),
                        split.as_deref(),
                        run.as_deref(),
                        *iteration
                    )
                ),
                space: Some(table),
                run_names: Vec::new(),
            })
        }
        Request::Similarity {
            model,
            dataset,
            split,
            negatives,
            seed,
            ..
        } => {
            let table = resolve(store, model).await?;
            if *negatives == 0 {
                return Err(Error::Usage("--negatives must be at least 1".into()));
            }
            params.set("space", text(&table))?;
            params.set("dataset", text(dataset))?;
            params.set("split", optional(split.as_deref()))?;
            params.set("negatives", ParamValue::Int(*negatives as i64))?;
            params.set("seed", ParamValue::Int(*seed as i64))?;
            let (file, sql) = own("similarity.sql", SIMILARITY_SQL);
            Ok(Prepared {
                file,
                sql,
                params,
                title: format!(
                    "caption–image similarity in {table} ({})",
                    dataset_label(dataset, split.as_deref())
                ),
                space: Some(table),
                run_names: Vec::new(),
            })
        }
        Request::Lineage { run, items, .. } => {
            if *items == 0 {
                return Err(Error::Usage("--items must be at least 1".into()));
            }
            let name = run_name(engine, run).await?;
            params.set("run", text(run))?;
            params.set("items", ParamValue::Int(*items as i64))?;
            let (file, sql) = own("lineage.sql", LINEAGE_SQL);
            Ok(Prepared {
                file,
                sql,
                params,
                title: format!("{name} (run {run}): hop 0 … N, left to right"),
                space: None,
                run_names: vec![(run.clone(), name)],
            })
        }
        Request::ContactSheet {
            clusters,
            per_cluster,
            ..
        } => {
            if *per_cluster == 0 {
                return Err(Error::Usage("--per-cluster must be at least 1".into()));
            }
            let id = match clusters {
                Some(id) => id.clone(),
                None => latest_cluster_run(engine).await?,
            };
            let name = run_name(engine, &id).await?;
            params.set("clusters", text(&id))?;
            params.set("per_cluster", ParamValue::Int(*per_cluster as i64))?;
            let (file, sql) = own("contact_sheet.sql", CONTACT_SHEET_SQL);
            Ok(Prepared {
                file,
                sql,
                params,
                title: format!("{name} (run {id})"),
                space: None,
                run_names: vec![(id, name)],
            })
        }
    }
}

/// The column `name` of a plot query's result, cast to `to`.
fn column(result: &StatementResult, name: &str, to: &DataType) -> Result<Vec<ArrayRef>> {
    if result.schema.column_with_name(name).is_none() {
        return Err(Error::Usage(format!(
            "the plot query returned no column '{name}' (it returned: {})",
            result
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    result
        .batches
        .iter()
        .map(|b| {
            let array = b.column_by_name(name).ok_or_else(|| {
                Error::Usage(format!("the plot query returned no column '{name}'"))
            })?;
            arrow::compute::cast(array, to).map_err(|e| {
                Error::Usage(format!(
                    "the plot query's column '{name}' ({}) is not {to}: {e}",
                    array.data_type()
                ))
            })
        })
        .collect()
}

fn strings(result: &StatementResult, name: &str) -> Result<Vec<Option<String>>> {
    Ok(column(result, name, &DataType::Utf8)?
        .iter()
        .flat_map(|a| {
            let a = a.as_string::<i32>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect())
}

fn numbers(result: &StatementResult, name: &str) -> Result<Vec<Option<f64>>> {
    Ok(column(result, name, &DataType::Float64)?
        .iter()
        .flat_map(|a| {
            let a = a.as_primitive::<arrow::datatypes::Float64Type>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect())
}

fn bytes(result: &StatementResult, name: &str) -> Result<Vec<Option<Vec<u8>>>> {
    Ok(column(result, name, &DataType::LargeBinary)?
        .iter()
        .flat_map(|a| {
            let a = a.as_binary::<i64>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_vec()))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Series grouped into panels: one per metric (the first word of the series name), in order of appearance, or
/// all on one axis.
fn panels(series: Vec<Series>, keys: Vec<(String, String)>, single_axis: bool) -> Vec<Panel> {
    if single_axis {
        return vec![Panel {
            y_label: "value".into(),
            series,
        }];
    }
    let mut panels: Vec<Panel> = Vec::new();
    for (s, (_, name)) in series.into_iter().zip(keys) {
        let metric = name
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        match panels.iter_mut().find(|p| p.y_label == metric) {
            Some(panel) => panel.series.push(s),
            None => panels.push(Panel {
                y_label: metric,
                series: vec![s],
            }),
        }
    }
    panels
}

/// A text column that a query may leave out: its values, or none.
fn optional_strings(result: &StatementResult, name: &str) -> Result<Vec<Option<String>>> {
    if result.schema.field_with_name(name).is_err() {
        return Ok(Vec::new());
    }
    strings(result, name)
}

/// A required number in row `row` of column `name`.
fn required(values: &[Option<f64>], name: &str, row: usize) -> Result<f64> {
    match values[row] {
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(Error::Usage(format!(
            "the plot query's column '{name}' is {v} in row {row}"
        ))),
        None => Err(Error::Usage(format!(
            "the plot query's column '{name}' is NULL in row {row}"
        ))),
    }
}

fn required_text(values: &[Option<String>], name: &str, row: usize) -> Result<String> {
    values[row].clone().ok_or_else(|| {
        Error::Usage(format!(
            "the plot query's column '{name}' is NULL in row {row}"
        ))
    })
}

/// Draw the result of `prepared`'s query for `request`; returns the canvas and a one-line description.
fn render(
    request: &Request,
    prepared: &Prepared,
    result: &StatementResult,
    width: u32,
    height: u32,
) -> Result<(Canvas, String)> {
    let rows = result.num_rows();
    match request {
        Request::Metrics {
            runs,
            x,
            drift_of,
            single_axis,
            log_y,
            ..
        } => {
            let (ids, names, xs, ys) = (
                strings(result, "run_id")?,
                strings(result, "series")?,
                numbers(result, "x")?,
                numbers(result, "y")?,
            );
            // Several runs: each series is prefixed with its run's name, or its id where names repeat.
            let names_repeat = {
                let mut seen: Vec<&str> =
                    prepared.run_names.iter().map(|(_, n)| n.as_str()).collect();
                seen.sort_unstable();
                seen.windows(2).any(|w| w[0] == w[1])
            };
            let run_label = |run: &str| -> String {
                match prepared.run_names.iter().find(|(id, _)| id == run) {
                    Some((_, name)) if !names_repeat => name.clone(),
                    _ => run.to_string(),
                }
            };
            let mut series: Vec<Series> = Vec::new();
            let mut keys: Vec<(String, String)> = Vec::new();
            for r in 0..rows {
                let key = (
                    required_text(&ids, "run_id", r)?,
                    required_text(&names, "series", r)?,
                );
                let point = (required(&xs, "x", r)?, required(&ys, "y", r)?);
                match keys.iter().position(|k| *k == key) {
                    Some(i) => series[i].points.push(point),
                    None => {
                        let label = if runs.len() > 1 {
                            format!("{}: {}", run_label(&key.0), key.1)
                        } else {
                            key.1.clone()
                        };
                        series.push(Series {
                            label,
                            points: vec![point],
                        });
                        keys.push(key);
                    }
                }
            }
            if series.is_empty() {
                return Err(Error::Usage(format!(
                    "run(s) {} have no metrics{} with a step or iteration to draw",
                    runs.join(", "),
                    match x {
                        Some(XAxis::Step) => " with a step",
                        Some(XAxis::Iteration) => " with an iteration",
                        None => "",
                    }
                )));
            }
            // The x axis is named by what it counts: the query says which column each x came from.
            let axes = optional_strings(result, "x_axis")?;
            let named: Vec<&str> = axes.iter().flatten().map(String::as_str).collect();
            let x_label = match (drift_of, x) {
                (Some(_), _) => "hop".to_string(),
                (None, Some(XAxis::Step)) => "step".to_string(),
                (None, Some(XAxis::Iteration)) => "iteration".to_string(),
                (None, None) => match named.first() {
                    Some(first) if named.iter().all(|a| a == first) => first.to_string(),
                    _ => "step or iteration".to_string(),
                },
            };
            let panels = panels(series, keys, *single_axis);
            let mut canvas = Canvas::new(width, height)?;
            curves::draw(&mut canvas, &prepared.title, &x_label, *log_y, &panels)?;
            let lines: usize = panels.iter().map(|p| p.series.len()).sum();
            let points: usize = panels
                .iter()
                .flat_map(|p| &p.series)
                .map(|s| s.points.len())
                .sum();
            Ok((
                canvas,
                format!(
                    "{lines} series in {} panel{}, {points} points",
                    panels.len(),
                    if panels.len() == 1 { "" } else { "s" }
                ),
            ))
        }
        Request::Scatter {
            layout, clusters, ..
        } => {
            let (xs, ys, labels) = (
                numbers(result, "x")?,
                numbers(result, "y")?,
                strings(result, "label")?,
            );
            let points = (0..rows)
                .map(|r| {
                    Ok(Point {
                        x: required(&xs, "x", r)?,
                        y: required(&ys, "y", r)?,
                        label: labels[r].clone(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if points.is_empty() {
                return Err(Error::Usage(
                    "the space has no items of that kind in that dataset/split to draw".into(),
                ));
            }
            if let Some(run) = clusters
                && points.iter().all(|p| p.label.is_none())
            {
                return Err(Error::Usage(format!(
                    "none of the {} items drawn is in the clusters of run {run} (did it cluster another \
                     dataset, kind or space?)",
                    points.len()
                )));
            }
            let axes = match layout {
                Layout::Pca => ("PC 1", "PC 2"),
                Layout::Tsne { .. } => ("t-SNE 1", "t-SNE 2"),
            };
            let mut canvas = Canvas::new(width, height)?;
            let labels = scatter::draw(&mut canvas, &prepared.title, axes, "cluster ", &points)?;
            Ok((
                canvas,
                format!("{} points in {} clusters", points.len(), labels.len()),
            ))
        }
        Request::Similarity { bins, .. } => {
            let (pairs, values) = (strings(result, "pair")?, numbers(result, "similarity")?);
            let mut groups: Vec<Group> = Vec::new();
            for r in 0..rows {
                let label = required_text(&pairs, "pair", r)?;
                let value = required(&values, "similarity", r)?;
                match groups.iter_mut().find(|g| g.label == label) {
                    Some(g) => g.values.push(value),
                    None => groups.push(Group {
                        label,
                        values: vec![value],
                    }),
                }
            }
            if groups.is_empty() {
                return Err(Error::Usage(
                    "no caption–image pairs to compare: the space needs both the dataset's images and its \
                     captions (vlmdb embed --images and --captions)"
                        .into(),
                ));
            }
            let mut canvas = Canvas::new(width, height)?;
            let stats = similarity::draw(
                &mut canvas,
                &prepared.title,
                "cosine similarity",
                &groups,
                *bins,
            )?;
            let description = groups
                .iter()
                .zip(&stats)
                .map(|(g, s)| {
                    format!(
                        "{}: n = {}, mean {:.4}, sd {:.4}",
                        g.label, s.n, s.mean, s.std
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            Ok((canvas, description))
        }
        Request::Lineage {
            run, thumb, lines, ..
        } => {
            let (items, hops, ids, images, captions) = (
                strings(result, "item")?,
                numbers(result, "hop")?,
                strings(result, "image_id")?,
                bytes(result, "image")?,
                strings(result, "caption")?,
            );
            let mut sheet: Vec<Row> = Vec::new();
            for (r, image) in images.into_iter().enumerate() {
                let item = required_text(&items, "item", r)?;
                let hop = required(&hops, "hop", r)? as i64;
                let item_id = required_text(&ids, "image_id", r)?;
                let image = image.ok_or_else(|| {
                    Error::Usage(format!(
                        "the image of item {item} at hop {hop} has no bytes"
                    ))
                })?;
                let cell = Cell {
                    item_id,
                    image,
                    caption: captions[r].clone(),
                };
                let detail = if hop == 0 {
                    "hop 0".to_string()
                } else {
                    format!("hops 0–{hop}")
                };
                contact_sheet::push(&mut sheet, item, detail, cell);
            }
            if sheet.is_empty() {
                return Err(Error::Usage(format!(
                    "run {run} has no loop images or captions (is it a `vlmdb loop` run?)"
                )));
            }
            let canvas = contact_sheet::draw(
                &prepared.title,
                &sheet,
                *thumb,
                *lines,
                "lower --items, --thumb or --lines",
            )?;
            let cells: usize = sheet.iter().map(|r| r.cells.len()).sum();
            Ok((canvas, format!("{} items, {cells} images", sheet.len())))
        }
        Request::ContactSheet { thumb, .. } => {
            let (clusters, sizes, items, images) = (
                numbers(result, "cluster_id")?,
                numbers(result, "size")?,
                strings(result, "item_id")?,
                bytes(result, "image")?,
            );
            let mut sheet: Vec<Row> = Vec::new();
            for (r, image) in images.into_iter().enumerate() {
                let cluster = required(&clusters, "cluster_id", r)? as i64;
                let size = required(&sizes, "size", r)? as i64;
                let item_id = required_text(&items, "item_id", r)?;
                let image = image.ok_or_else(|| {
                    Error::Usage(format!(
                        "item {item_id} of cluster {cluster} has no image (neither an image nor a caption of one)"
                    ))
                })?;
                let cell = Cell {
                    item_id,
                    image,
                    caption: None,
                };
                let detail = format!("{size} {}", if size == 1 { "item" } else { "items" });
                contact_sheet::push(&mut sheet, format!("cluster {cluster}"), detail, cell);
            }
            if sheet.is_empty() {
                return Err(Error::Usage(format!(
                    "run {} has no clusters",
                    prepared
                        .run_names
                        .first()
                        .map_or("?", |(id, _)| id.as_str())
                )));
            }
            let canvas = contact_sheet::draw(
                &prepared.title,
                &sheet,
                *thumb,
                0,
                "lower --per-cluster or --thumb, or cluster with fewer clusters",
            )?;
            let cells: usize = sheet.iter().map(|r| r.cells.len()).sum();
            Ok((canvas, format!("{} clusters, {cells} images", sheet.len())))
        }
    }
}

/// Check `--out` before any work: a .png file in a directory that exists.
fn check_out(out: &Path) -> Result<()> {
    let png = out
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !png {
        return Err(Error::Usage(format!(
            "--out {}: plots are PNG files; name it *.png",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::Usage(format!(
            "--out {}: directory {} does not exist",
            out.display(),
            parent.display()
        )));
    }
    Ok(())
}

async fn store_artifact(store: &Store, run_id: &str, name: &str, png: Vec<u8>) -> Result<()> {
    let spec = fixed_table("artifacts")?.ok_or_else(|| Error::UnknownTable {
        name: "artifacts".into(),
    })?;
    let one = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let batch = batch_for(
        &spec,
        vec![
            ("run_id", one(run_id)),
            ("name", one(name)),
            ("media_type", one("image/png")),
            (
                "data",
                Arc::new(LargeBinaryArray::from_vec(vec![png.as_slice()])) as ArrayRef,
            ),
        ],
    )?;
    append(store, &spec, batch).await?;
    Ok(())
}

/// Draw the plot under a `plot` run: the PNG is written to `--out` and stored in `artifacts`.
pub async fn plot(store: &Store, options: &PlotOptions) -> Result<PlotSummary> {
    check_out(&options.out)?;
    store.ensure_writable("plot")?;
    store
        .ensure_tables(&["artifacts", "metrics", "clusters"])
        .await?;
    let engine = Engine::new(store.clone(), options.device).await?;
    let mut prepared = prepare(store, &engine, &options.request).await?;
    if let Some(path) = &options.query {
        prepared.sql = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        prepared.file = path.display().to_string();
    }
    for (name, value) in options.params.iter() {
        if prepared.params.get(name).is_some() || name == "run_id" {
            return Err(Error::Param {
                name: name.clone(),
                message: "is set by the plot itself (use the plot's own option)".into(),
            });
        }
        prepared.params.set(name, value.clone())?;
    }
    let mut config = serde_json::to_value(&options.request)?;
    if let Some(map) = config.as_object_mut() {
        map.insert("sql".into(), prepared.file.clone().into());
        map.insert("params".into(), prepared.params.to_json());
        map.insert("out".into(), options.out.display().to_string().into());
        // Sheets take their size from their cells.
        if !matches!(
            options.request,
            Request::Lineage { .. } | Request::ContactSheet { .. }
        ) {
            map.insert("width".into(), options.width.into());
            map.insert("height".into(), options.height.into());
        }
    }
    let seed = match &options.request {
        Request::Scatter {
            layout: Layout::Tsne { seed, .. },
            ..
        }
        | Request::Similarity { seed, .. } => Some(*seed as i64),
        _ => None,
    };
    let spec = RunSpec {
        kind: "plot".into(),
        name: prepared.title.clone(),
        config,
        seed,
    };
    let mut run = Run::open(store, spec).await?;
    if let Some(space) = &prepared.space
        && let Some((id, revision)) = space_model(store, space).await?
    {
        run.record_model(&id, &revision);
    }
    let run_id = run.id().to_string();
    let outcome = async {
        let result = engine
            .execute_sql(&prepared.sql, &prepared.params)
            .await?
            .pop()
            .ok_or_else(|| Error::Usage(format!("{} has no statements", prepared.file)))?;
        let (canvas, description) = render(
            &options.request,
            &prepared,
            &result,
            options.width,
            options.height,
        )?;
        let png = canvas.png()?;
        std::fs::write(&options.out, &png).map_err(|e| Error::io(&options.out, e))?;
        let name = options.out.file_name().map_or_else(
            || "plot.png".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        store_artifact(store, &run_id, &name, png).await?;
        Ok((canvas.width(), canvas.height(), description))
    }
    .await;
    for (table, version) in engine.reads() {
        run.record_input(&table, version);
    }
    let (width, height, description) = run.close(store, outcome).await?;
    Ok(PlotSummary {
        run_id,
        out: options.out.clone(),
        width,
        height,
        description,
    })
}
