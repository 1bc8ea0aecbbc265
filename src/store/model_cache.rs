//! The `model_cache` table: model results keyed by (model id + revision + preprocessing, sha256 of the input), read
//! and written in chunks. [`crate::inference::cache`] puts it around the models.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, StringArray};
use arrow::datatypes::Float32Type;
use datafusion::prelude::{col, lit};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use sha2::{Digest, Sha256};

use super::Store;
use super::schema::fixed_table;
use super::write::{append, batch_for};
use crate::error::{Error, Result};

const TABLE: &str = "model_cache";
/// Inputs per lookup query (the size of its `IN` list).
const LOOKUP_CHUNK: usize = 1024;

/// Hex sha256 of an input's bytes (UTF-8 for texts).
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Cached vectors of `key` for the given input hashes (those found).
pub async fn lookup(
    store: &Store,
    key: &str,
    hashes: &[String],
) -> Result<HashMap<String, Vec<f32>>> {
    let mut found = HashMap::new();
    for batch in cached_rows(store, key, hashes, "vector").await? {
        let (Some(hashes), Some(vectors)) = (
            batch
                .column_by_name("input_sha256")
                .and_then(|c| c.as_string_opt::<i32>()),
            batch
                .column_by_name("vector")
                .and_then(|c| c.as_list_opt::<i32>()),
        ) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            if hashes.is_null(row) || vectors.is_null(row) {
                continue;
            }
            let values = vectors.value(row);
            let values = values.as_primitive::<Float32Type>();
            found.insert(hashes.value(row).to_string(), values.values().to_vec());
        }
    }
    Ok(found)
}

/// Cached texts (captions) of `key` for the given input hashes (those found).
pub async fn lookup_texts(
    store: &Store,
    key: &str,
    hashes: &[String],
) -> Result<HashMap<String, String>> {
    let mut found = HashMap::new();
    for batch in cached_rows(store, key, hashes, "text").await? {
        let (Some(hashes), Some(texts)) = (
            batch
                .column_by_name("input_sha256")
                .and_then(|c| c.as_string_opt::<i32>()),
            batch
                .column_by_name("text")
                .and_then(|c| c.as_string_opt::<i32>()),
        ) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            if !hashes.is_null(row) && !texts.is_null(row) {
                found.insert(hashes.value(row).to_string(), texts.value(row).to_string());
            }
        }
    }
    Ok(found)
}

/// The `model_cache` rows of `key` for `hashes` with a non-NULL `column`: `input_sha256` and `column`.
async fn cached_rows(
    store: &Store,
    key: &str,
    hashes: &[String],
    column: &str,
) -> Result<Vec<arrow::array::RecordBatch>> {
    let table = match store.open_table(TABLE).await {
        Ok(table) => table,
        Err(Error::UnknownTable { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for chunk in hashes.chunks(LOOKUP_CHUNK) {
        let filter = col("model_key")
            .eq(lit(key))
            .and(
                col("input_sha256").in_list(chunk.iter().map(|h| lit(h.as_str())).collect(), false),
            )
            .and(col(column).is_not_null());
        let batches: Vec<_> = table
            .query()
            .only_if_expr(filter)
            .select(Select::columns(&["input_sha256", column]))
            .execute()
            .await?
            .try_collect()
            .await?;
        out.extend(batches);
    }
    Ok(out)
}

/// Store computed vectors under `key` (one commit). A read-only store keeps nothing and is not an error: reads
/// with model functions still work there, they only miss the cache.
pub async fn insert(store: &Store, key: &str, entries: &[(String, Vec<f32>)]) -> Result<()> {
    let vectors = ListArray::from_iter_primitive::<Float32Type, _, _>(
        entries
            .iter()
            .map(|(_, v)| Some(v.iter().copied().map(Some))),
    );
    let hashes = entries.iter().map(|(h, _)| h.as_str());
    insert_rows(store, key, hashes, ("vector", Arc::new(vectors))).await
}

/// Store computed texts (captions) under `key`, as [`insert`] does vectors.
pub async fn insert_texts(store: &Store, key: &str, entries: &[(String, String)]) -> Result<()> {
    let texts = StringArray::from_iter_values(entries.iter().map(|(_, t)| t.as_str()));
    let hashes = entries.iter().map(|(h, _)| h.as_str());
    insert_rows(store, key, hashes, ("text", Arc::new(texts))).await
}

async fn insert_rows<'a>(
    store: &Store,
    key: &str,
    hashes: impl ExactSizeIterator<Item = &'a str>,
    (column, values): (&str, ArrayRef),
) -> Result<()> {
    if hashes.len() == 0 || store.ensure_writable("caching model results").is_err() {
        return Ok(());
    }
    let spec = fixed_table(TABLE)?.ok_or_else(|| Error::UnknownTable { name: TABLE.into() })?;
    let keys = StringArray::from(vec![key; hashes.len()]);
    let hashes = StringArray::from_iter_values(hashes);
    let batch = batch_for(
        &spec,
        vec![
            ("model_key", Arc::new(keys)),
            ("input_sha256", Arc::new(hashes)),
            (column, values),
        ],
    )?;
    // The cache only saves work: a store this process may not write to (another user's, a failed commit) still
    // answers, it just does not keep the result.
    if let Err(e) = append(store, &spec, batch).await {
        crate::progress::warn(&format!("model results were not cached: {e}"));
    }
    Ok(())
}
