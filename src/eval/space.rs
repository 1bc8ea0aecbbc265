//! Embedding spaces as retrieval reads them: resolving a name to its `emb_<space>` table, and loading the vectors of
//! one kind/dataset/split into memory, L2-normalised (scores are cosine similarities, as CLIP_benchmark defines them)
//! and sorted by item id (the order ties are broken in).

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type};
use datafusion::prelude::{Expr, col, lit};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use crate::error::{Error, Result};
use crate::models::hub::{ALIASES, ModelFiles};
use crate::store::Store;
use crate::store::columns::strings;

/// The prefix of every space table.
pub const SPACE_PREFIX: &str = "emb_";

/// The prefix of a trained head's model name: `head:<run_id>`.
pub const HEAD_PREFIX: &str = "head:";

/// The prefix that names a fine-tuned CLIP: `ft:<run_id>`, the best weights of a `vlmdb train --finetune` run.
pub const FT_PREFIX: &str = "ft:";

/// The space of training run `run_id` (`head_<run slug>`).
pub fn head_space(run_id: &str) -> String {
    format!("head_{}", crate::models::hub::slug(run_id))
}

/// The table of training run `run_id`'s space.
pub fn head_table(run_id: &str) -> String {
    format!("{SPACE_PREFIX}{}", head_space(run_id))
}

/// The table of the space `name` names. `name` may be the table (`emb_clip_vit_b32_3d74acf`), the space
/// (`clip_vit_b32_3d74acf`), or a model (alias, `hf:` id, local directory) whose space has vectors.
pub async fn resolve(store: &Store, name: &str) -> Result<String> {
    let tables = store.table_names().await?;
    let spaces: Vec<String> = tables
        .iter()
        .filter(|t| t.starts_with(SPACE_PREFIX))
        .cloned()
        .collect();
    let unknown = || Error::UnknownSpace {
        name: name.to_string(),
        known: spaces
            .iter()
            .map(|t| t[SPACE_PREFIX.len()..].to_string())
            .collect(),
    };
    if name.starts_with(SPACE_PREFIX) && spaces.iter().any(|t| t == name) {
        return Ok(name.to_string());
    }
    let table = format!("{SPACE_PREFIX}{name}");
    if spaces.contains(&table) {
        return Ok(table);
    }
    if let Some(run_id) = name.strip_prefix(HEAD_PREFIX) {
        let table = head_table(run_id);
        return if spaces.contains(&table) {
            Ok(table)
        } else {
            Err(Error::Usage(format!(
                "{name} has no vectors yet (its space would be {table}): is {run_id} a finished `vlmdb train` \
                 run? `vlmdb embed --model {name} --images` (and --captions) projects a dataset into it"
            )))
        };
    }
    let finetuned = name
        .strip_prefix(FT_PREFIX)
        .map(|run_id| store.finetuned_dir(run_id).display().to_string());
    let name = finetuned.as_deref().unwrap_or(name);
    // Only names that can be models are resolved as models (a hub lookup for a typo would be slow and confusing).
    let model_like = name.starts_with("hf:")
        || ALIASES.iter().any(|a| a.name == name)
        || std::path::Path::new(name).is_dir();
    if !model_like {
        return Err(unknown());
    }
    let files = ModelFiles::resolve(name)?;
    let table = format!("{SPACE_PREFIX}{}", files.space());
    if spaces.contains(&table) {
        Ok(table)
    } else {
        Err(Error::Usage(format!(
            "model {name} has no vectors yet (its space would be {table}): run `vlmdb embed --model {name} \
             --images` (and --captions / --pairs) first"
        )))
    }
}

/// Which rows of a space to load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub kind: Option<String>,
    pub dataset: Option<String>,
    pub split: Option<String>,
    /// Only the items a run wrote (a loop run: its hop images and captions, and the dataset images it started
    /// from), found through the `run_id` / `iteration` lineage of `images` and `captions`.
    pub run: Option<String>,
    /// Only the items of this iteration (a loop hop; 0 = the dataset images the loop started from and their
    /// captions).
    pub iteration: Option<i32>,
}

impl Filter {
    pub fn new(kind: Option<&str>, dataset: Option<&str>, split: Option<&str>) -> Filter {
        Filter {
            kind: kind.map(str::to_string),
            dataset: dataset.map(str::to_string),
            split: split.map(str::to_string),
            ..Filter::default()
        }
    }

    /// The same filter, restricted to run `run` and iteration `iteration` (each when given).
    pub fn lineage(mut self, run: Option<&str>, iteration: Option<i32>) -> Filter {
        self.run = run.map(str::to_string);
        self.iteration = iteration;
        self
    }

    /// The tables [`Filter::lineage_ids`] reads (none without a run/iteration part).
    pub fn lineage_tables(&self) -> Vec<&'static str> {
        if self.run.is_none() && self.iteration.is_none() {
            return Vec::new();
        }
        let wants = |kind: &str| self.kind.as_deref().is_none_or(|k| k == kind);
        let mut tables = Vec::new();
        if wants("image") {
            tables.push("images");
        }
        // Hop 0's images are found through the captions of the run's hop 0.
        if wants("caption") || (wants("image") && self.iteration.is_none_or(|i| i == 0)) {
            tables.push("captions");
        }
        tables
    }

    /// The item ids the run/iteration part selects (`None`: no such part, every item).
    pub async fn lineage_ids(&self, store: &Store) -> Result<Option<HashSet<String>>> {
        if self.run.is_none() && self.iteration.is_none() {
            return Ok(None);
        }
        let part = || -> Option<Expr> {
            let mut parts = Vec::new();
            if let Some(run) = &self.run {
                parts.push(col("run_id").eq(lit(run.as_str())));
            }
            match self.iteration {
                Some(i) => parts.push(col("iteration").eq(lit(i))),
                None => parts.push(col("iteration").is_not_null()),
            }
            parts.into_iter().reduce(Expr::and)
        };
        let mut ids = HashSet::new();
        let wants = |kind: &str| self.kind.as_deref().is_none_or(|k| k == kind);
        let mut collect = |batches: Vec<RecordBatch>, column: &str| -> Result<()> {
            for batch in &batches {
                ids.extend(strings(batch, column)?.into_iter().flatten());
            }
            Ok(())
        };
        if wants("image") {
            // Generated images carry the run and hop; hop 0 is the dataset images the run's hop-0 captions describe.
            collect(
                store
                    .scan_if_exists("images", &["image_id"], part())
                    .await?,
                "image_id",
            )?;
            if self.iteration.is_none_or(|i| i == 0) {
                let mut hop0 = col("iteration").eq(lit(0));
                if let Some(run) = &self.run {
                    hop0 = hop0.and(col("run_id").eq(lit(run.as_str())));
                }
                collect(
                    store
                        .scan_if_exists("captions", &["image_id"], Some(hop0))
                        .await?,
                    "image_id",
                )?;
            }
        }
        if wants("caption") {
            collect(
                store
                    .scan_if_exists("captions", &["caption_id"], part())
                    .await?,
                "caption_id",
            )?;
        }
        Ok(Some(ids))
    }

    /// The filter as a LanceDB predicate (values are literals in an expression tree, never spliced into text).
    pub fn expr(&self) -> Option<Expr> {
        let mut parts = Vec::new();
        for (column, value) in [
            ("kind", &self.kind),
            ("dataset", &self.dataset),
            ("split", &self.split),
        ] {
            if let Some(v) = value {
                parts.push(col(column).eq(lit(v.as_str())));
            }
        }
        parts.into_iter().reduce(Expr::and)
    }
}

/// Vectors in memory: row `i` is item `ids[i]`, L2-normalised, rows sorted by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vectors {
    pub ids: Vec<String>,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    /// An empty set of `dim`-wide vectors.
    pub fn empty(dim: usize) -> Vectors {
        Vectors {
            ids: Vec::new(),
            dim,
            data: Vec::new(),
        }
    }

    /// Build from raw rows, normalising each and sorting by id. `what` names the source in errors.
    pub fn from_rows(what: &str, dim: usize, mut rows: Vec<(String, Vec<f32>)>) -> Result<Vectors> {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = rows.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::Usage(format!(
                "{what}: item '{}' has more than one vector",
                w[0].0
            )));
        }
        let mut out = Vectors {
            ids: Vec::with_capacity(rows.len()),
            dim,
            data: Vec::with_capacity(rows.len() * dim),
        };
        for (id, mut v) in rows {
            if v.len() != dim {
                return Err(Error::DimensionMismatch {
                    left: format!("item '{id}'"),
                    left_dim: v.len(),
                    right: what.to_string(),
                    right_dim: dim,
                });
            }
            normalize(&mut v)
                .map_err(|reason| Error::Usage(format!("{what}: item '{id}' has {reason}")))?;
            out.ids.push(id);
            out.data.extend_from_slice(&v);
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Item id -> row.
    pub fn index(&self) -> HashMap<&str, u32> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i as u32))
            .collect()
    }

    /// The Matryoshka (MRL) view: the first `dim` components of every vector, re-normalised.
    pub fn truncate(&self, dim: usize) -> Result<Vectors> {
        if dim == 0 || dim > self.dim {
            return Err(Error::DimensionMismatch {
                left: "the truncation".into(),
                left_dim: dim,
                right: "the space".into(),
                right_dim: self.dim,
            });
        }
        if dim == self.dim {
            return Ok(self.clone());
        }
        let mut data = Vec::with_capacity(self.len() * dim);
        for (i, id) in self.ids.iter().enumerate() {
            let mut v = self.row(i)[..dim].to_vec();
            normalize(&mut v).map_err(|reason| {
                Error::Usage(format!(
                    "item '{id}' has {reason} in its first {dim} dimensions"
                ))
            })?;
            data.extend_from_slice(&v);
        }
        Ok(Vectors {
            ids: self.ids.clone(),
            dim,
            data,
        })
    }
}

/// Scale `v` to unit length; the reason when it cannot be (non-finite or zero).
pub fn normalize(v: &mut [f32]) -> std::result::Result<(), &'static str> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err("a non-finite value (NaN or infinity)");
    }
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return Err("a zero vector (no direction to compare)");
    }
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    Ok(())
}

/// The vector width of a space table.
pub async fn dim(store: &Store, table: &str) -> Result<usize> {
    let schema = store.open_table(table).await?.schema().await?;
    match schema.field_with_name("vector").map(|f| f.data_type()) {
        Ok(DataType::FixedSizeList(_, n)) => Ok(*n as usize),
        _ => Err(Error::SchemaMismatch {
            table: table.to_string(),
            message: "a space table needs a fixed-size list column 'vector'".into(),
        }),
    }
}

/// Load the vectors of `table` that match `filter`, normalised and sorted by item id.
pub async fn load(store: &Store, table: &str, filter: &Filter) -> Result<Vectors> {
    let dim = dim(store, table).await?;
    let handle = store.open_table(table).await?;
    let mut query = handle
        .query()
        .select(Select::columns(&["item_id", "vector"]));
    if let Some(predicate) = filter.expr() {
        query = query.only_if_expr(predicate);
    }
    let batches: Vec<RecordBatch> = query.execute().await?.try_collect().await?;
    let lineage = filter.lineage_ids(store).await?;
    let mut rows = Vec::new();
    for batch in &batches {
        let ids = arrow::compute::cast(
            batch
                .column_by_name("item_id")
                .ok_or_else(|| no_column(table, "item_id"))?,
            &DataType::Utf8,
        )?;
        let ids = ids.as_string::<i32>();
        let vectors = batch
            .column_by_name("vector")
            .ok_or_else(|| no_column(table, "vector"))?
            .as_fixed_size_list();
        for r in 0..batch.num_rows() {
            if ids.is_null(r) || vectors.is_null(r) {
                continue;
            }
            if lineage
                .as_ref()
                .is_some_and(|keep| !keep.contains(ids.value(r)))
            {
                continue;
            }
            let values = vectors.value(r);
            let values = values.as_primitive::<Float32Type>();
            rows.push((ids.value(r).to_string(), values.values().to_vec()));
        }
    }
    Vectors::from_rows(&format!("space {table}"), dim, rows)
}

/// Resolve the space `name` names ([`resolve`]) and load its vectors that match `filter`: (table, vectors).
pub async fn load_named(store: &Store, name: &str, filter: &Filter) -> Result<(String, Vectors)> {
    let table = resolve(store, name).await?;
    let vectors = load(store, &table, filter).await?;
    Ok((table, vectors))
}

fn no_column(table: &str, column: &str) -> Error {
    Error::SchemaMismatch {
        table: table.to_string(),
        message: format!("a space table needs a column '{column}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sorted_normalised_and_checked() {
        let v = Vectors::from_rows(
            "t",
            2,
            vec![("b".into(), vec![3.0, 4.0]), ("a".into(), vec![0.0, 2.0])],
        )
        .unwrap();
        assert_eq!(v.ids, ["a", "b"]);
        assert_eq!(v.row(0), [0.0, 1.0]);
        assert!((v.row(1)[0] - 0.6).abs() < 1e-7 && (v.row(1)[1] - 0.8).abs() < 1e-7);
        let err = Vectors::from_rows("t", 2, vec![("a".into(), vec![0.0, 0.0])]).unwrap_err();
        assert!(
            err.to_string().contains("item 'a' has a zero vector"),
            "{err}"
        );
        let err = Vectors::from_rows("t", 2, vec![("a".into(), vec![1.0])]).unwrap_err();
        assert!(
            err.to_string().contains("1 dimensions but t has 2"),
            "{err}"
        );
        let err = Vectors::from_rows("t", 1, vec![("a".into(), vec![f32::NAN])]).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
    }

    #[test]
    fn truncation_renormalises_the_prefix() {
        let v = Vectors::from_rows("t", 3, vec![("a".into(), vec![3.0, 4.0, 12.0])]).unwrap();
        let t = v.truncate(2).unwrap();
        assert_eq!(t.dim, 2);
        assert!((t.row(0)[0] - 0.6).abs() < 1e-6 && (t.row(0)[1] - 0.8).abs() < 1e-6);
        assert!(
            v.truncate(4)
                .unwrap_err()
                .to_string()
                .contains("4 dimensions")
        );
    }
}
