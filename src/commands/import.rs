//! `vlmdb import embeddings FILE.parquet --space NAME`: vectors computed elsewhere (open_clip in Python, say) into
//! a space `emb_NAME`, so they are evaluated, searched, mined and clustered like vlmdb's own.
//!
//! The file has columns `item_id` (text), `kind` (`image`, `caption` or `pair_text`) and `vector` (a list of
//! floats). Every row is checked before anything is written: a NULL, a width that differs from the others (or
//! from the existing space), a non-finite value, an unknown kind or an id that is not a stored image / caption /
//! pair is an error naming the row, and the store is left as it was. Dataset and split are copied from the item.
//! Rows already in the space (same item and kind) are replaced, so importing a file twice changes nothing.

pub mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float32Type};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::eval::space::SPACE_PREFIX;
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::embedding_table;
use crate::store::write::{batch_for, upsert};

/// What `vlmdb import embeddings` does.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub file: PathBuf,
    /// The space name (a slug of `[a-z0-9_]`); the table is `emb_<space>`.
    pub space: String,
    /// The model the vectors came from, recorded in the space's metadata.
    pub model_id: Option<String>,
}

/// What it did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportSummary {
    pub run_id: String,
    pub table: String,
    pub dim: usize,
    pub rows: usize,
}

struct Row {
    item_id: String,
    kind: &'static str,
    vector: Vec<f32>,
}

const KINDS: [(&str, &str, &str); 3] = [
    // kind, table, id column
    ("image", "images", "image_id"),
    ("caption", "captions", "caption_id"),
    ("pair_text", "pairs", "pair_id"),
];

fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::Input {
        path: path.to_path_buf(),
        message,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(format!("not a Parquet file: {e}")))?
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let column = |name: &str| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                bad(format!(
                    "no column '{name}' (the file needs item_id, kind and vector)"
                ))
            })
        };
        let ids = arrow::compute::cast(&column("item_id")?, &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let kinds = arrow::compute::cast(&column("kind")?, &DataType::Utf8)?;
        let kinds = kinds.as_string::<i32>();
        let vectors = column("vector")?;
        let vectors = arrow::compute::cast(
            &vectors,
            &DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))),
        )
        .map_err(|e| bad(format!("column vector must be a list of numbers ({e})")))?;
        let vectors = vectors.as_list::<i32>();
        for r in 0..batch.num_rows() {
            let row = rows.len() + 1;
            if ids.is_null(r) {
                return Err(bad(format!("row {row}: item_id is NULL")));
            }
            let id = ids.value(r).to_string();
            let at = |message: String| bad(format!("row {row} (item_id '{id}'): {message}"));
            let kind = if kinds.is_null(r) {
                return Err(at("kind is NULL".into()));
            } else {
                let k = kinds.value(r);
                KINDS
                    .iter()
                    .find(|(name, _, _)| *name == k)
                    .map(|(name, _, _)| *name)
                    .ok_or_else(|| {
                        at(format!(
                            "unknown kind '{k}' (use image, caption or pair_text)"
                        ))
                    })?
            };
            if vectors.is_null(r) {
                return Err(at("vector is NULL".into()));
            }
            let values = vectors.value(r);
            let values = values.as_primitive::<Float32Type>();
            if values.null_count() > 0 {
                return Err(at("the vector has a NULL element".into()));
            }
            let vector = values.values().to_vec();
            if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
                return Err(at(format!("element {i} of the vector is {}", vector[i])));
            }
            if vector.is_empty() {
                return Err(at("the vector is empty".into()));
            }
            rows.push(Row {
                item_id: id,
                kind,
                vector,
            });
        }
    }
    Ok(rows)
}

/// item id -> (dataset, split) for the stored items of `table`, and the version read (`None`: no such table).
async fn items(store: &Store, table: &str, id: &str) -> Result<(ItemPlaces, Option<u64>)> {
    let (handle, version) = match store.open_pinned(table).await {
        Ok(t) => t,
        Err(Error::UnknownTable { .. }) => return Ok((HashMap::new(), None)),
        Err(e) => return Err(e),
    };
    let batches: Vec<RecordBatch> = handle
        .query()
        .select(Select::columns(&[id, "dataset", "split"]))
        .execute()
        .await?
        .try_collect()
        .await?;
    let mut out = HashMap::new();
    for batch in batches {
        let cast = |name: &str| -> Result<ArrayRef> {
            let c = batch
                .column_by_name(name)
                .ok_or_else(|| Error::SchemaMismatch {
                    table: table.to_string(),
                    message: format!("no column '{name}'"),
                })?;
            Ok(arrow::compute::cast(c, &DataType::Utf8)?)
        };
        let (ids, datasets, splits) = (cast(id)?, cast("dataset")?, cast("split")?);
        let (ids, datasets, splits) = (
            ids.as_string::<i32>(),
            datasets.as_string::<i32>(),
            splits.as_string::<i32>(),
        );
        for r in 0..batch.num_rows() {
            out.insert(
                ids.value(r).to_string(),
                (
                    datasets.value(r).to_string(),
                    splits.is_valid(r).then(|| splits.value(r).to_string()),
                ),
            );
        }
    }
    Ok((out, Some(version)))
}

/// item id -> (dataset, split).
type ItemPlaces = HashMap<String, (String, Option<String>)>;

/// Import the file under an `import` run.
pub async fn embeddings(store: &Store, options: &ImportOptions) -> Result<ImportSummary> {
    store.ensure_writable("import embeddings")?;
    let rows = read_rows(&options.file)?;
    let Some(first) = rows.first() else {
        return Err(Error::Input {
            path: options.file.clone(),
            message: "the file has no rows".into(),
        });
    };
    let dim = first.vector.len();
    let table = format!("{SPACE_PREFIX}{}", options.space);
    let mut spec = embedding_table(&options.space, dim)?;
    if store.table_names().await?.contains(&table) {
        let existing = crate::eval::space::dim(store, &table).await?;
        if existing != dim {
            return Err(Error::DimensionMismatch {
                left: options.file.display().to_string(),
                left_dim: dim,
                right: format!("space {table}"),
                right_dim: existing,
            });
        }
    }
    let mut known = HashMap::new();
    // The items' tables are read (each vector takes its item's dataset and split): these are the run's inputs.
    let mut read = Vec::new();
    for (kind, source, id) in KINDS {
        let (places, version) = items(store, source, id).await?;
        known.insert(kind, places);
        read.extend(version.map(|v| (source, v)));
    }
    let mut datasets = Vec::with_capacity(rows.len());
    let mut splits = Vec::with_capacity(rows.len());
    let mut values = Vec::with_capacity(rows.len() * dim);
    let mut seen = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let at = |message: String| Error::Input {
            path: options.file.clone(),
            message: format!("row {} (item_id '{}'): {message}", i + 1, row.item_id),
        };
        if row.vector.len() != dim {
            return Err(at(format!(
                "the vector has {} dimensions but row 1 has {dim}",
                row.vector.len()
            )));
        }
        if let Some(before) = seen.insert((row.item_id.as_str(), row.kind), i + 1) {
            return Err(at(format!("the same item and kind as row {before}")));
        }
        let (dataset, split) = known[row.kind].get(&row.item_id).ok_or_else(|| {
            at(format!(
                "no stored {} has this id ({})",
                row.kind,
                KINDS
                    .iter()
                    .find(|k| k.0 == row.kind)
                    .map(|k| k.1)
                    .unwrap_or_default()
            ))
        })?;
        datasets.push(dataset.clone());
        splits.push(split.clone());
        values.extend_from_slice(&row.vector);
    }
    let model_id = options
        .model_id
        .clone()
        .unwrap_or_else(|| format!("imported:{}", options.file.display()));
    spec.metadata = HashMap::from([
        ("vlmdb.model_id".to_string(), model_id.clone()),
        ("vlmdb.revision".to_string(), String::new()),
        ("vlmdb.family".to_string(), "imported".to_string()),
        ("vlmdb.dim".to_string(), dim.to_string()),
        ("vlmdb.normalization".to_string(), "as imported".to_string()),
    ]);
    let spec_run = RunSpec {
        kind: "import".into(),
        name: format!("embeddings into {table}"),
        config: serde_json::json!({
            "file": options.file.display().to_string(),
            "space": options.space,
            "model_id": options.model_id,
        }),
        seed: None,
    };
    let mut run = Run::open(store, spec_run).await?;
    run.record_model(&model_id, "");
    for (table, version) in read {
        run.record_input(table, version);
    }
    let run_id = run.id().to_string();
    let outcome = async {
        let vector = crate::store::arrays::vectors(values, dim)?;
        let n = rows.len();
        let batch = batch_for(
            &spec,
            vec![
                (
                    "item_id",
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| r.item_id.as_str()),
                    )),
                ),
                (
                    "kind",
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.kind))),
                ),
                ("dataset", Arc::new(StringArray::from(datasets))),
                ("split", Arc::new(StringArray::from(splits))),
                ("vector", Arc::new(vector)),
                ("run_id", crate::store::arrays::repeated(run_id.as_str(), n)),
            ],
        )?;
        upsert(store, &spec, batch).await?;
        Ok(n)
    }
    .await;
    let n = run.close(store, outcome).await?;
    Ok(ImportSummary {
        run_id,
        table,
        dim,
        rows: n,
    })
}
