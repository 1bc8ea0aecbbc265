//! The one way rows get into the store. Every write is checked against the table's schema file, shaped to the
//! table's column order, and committed as one Lance version: `append` adds rows, `upsert` merges on the table's key.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchIterator, new_null_array};

use super::Store;
use super::schema::{TableSpec, check_compatible};
use crate::error::{Error, Result};

/// Build a batch in `spec`'s column order from named columns; nullable columns not given are filled with NULLs.
pub fn batch_for(spec: &TableSpec, columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let rows = columns.first().map(|(_, a)| a.len()).unwrap_or(0);
    if let Some((unknown, _)) = columns.iter().find(|(n, _)| spec.column(n).is_none()) {
        return Err(Error::SchemaMismatch {
            table: spec.name.clone(),
            message: format!("unexpected column '{unknown}'"),
        });
    }
    let arrays = spec
        .columns
        .iter()
        .map(|c| {
            columns
                .iter()
                .find(|(n, _)| *n == c.name)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| new_null_array(&c.data_type, rows))
        })
        .collect();
    conform(spec, arrays)
}

/// Append `batch` to the table of `spec` (created if missing) as one commit; returns the new version.
pub async fn append(store: &Store, spec: &TableSpec, batch: RecordBatch) -> Result<u64> {
    let batch = shape(spec, batch)?;
    let table = store.table_for(spec).await?;
    if batch.num_rows() == 0 {
        return Ok(table.version().await?);
    }
    store.ensure_table_writable(&spec.name, "writing")?;
    // Only a reported conflict is retried: the append did not commit then, so it cannot be doubled.
    let version = committed(store, Retry::Conflicts, || async {
        Ok(table.add(batch.clone()).execute().await?.version)
    })
    .await?;
    Ok(version)
}

/// Insert or replace rows of the table of `spec` by its key columns, as one commit; returns the new version.
pub async fn upsert(store: &Store, spec: &TableSpec, batch: RecordBatch) -> Result<u64> {
    if spec.key.is_empty() {
        return Err(Error::SchemaMismatch {
            table: spec.name.clone(),
            message: "table has no key: use append".into(),
        });
    }
    merge(store, spec, batch, Matched::Replace).await
}

/// Insert the rows of `batch` whose key is not in the table of `spec` yet, as one commit; rows whose key is there
/// are left as they are. Keys are the table's primary key, so a concurrent writer inserting the same keys makes
/// this commit conflict and retry against its rows: no key is ever stored twice. Returns the new version.
pub async fn insert_new(store: &Store, spec: &TableSpec, batch: RecordBatch) -> Result<u64> {
    if spec.key.is_empty() {
        return append(store, spec, batch).await;
    }
    merge(store, spec, batch, Matched::Keep).await
}

/// What a merge does with a row whose key is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matched {
    Replace,
    Keep,
}

/// Merge `batch` into the table of `spec` on its key (rows with new keys inserted), as one commit.
async fn merge(
    store: &Store,
    spec: &TableSpec,
    batch: RecordBatch,
    matched: Matched,
) -> Result<u64> {
    let batch = shape(spec, batch)?;
    let table = store.table_for(spec).await?;
    if batch.num_rows() == 0 {
        return Ok(table.version().await?);
    }
    store.ensure_table_writable(&spec.name, "writing")?;
    let keys: Vec<&str> = spec.key.iter().map(String::as_str).collect();
    committed(store, Retry::ConflictsAndTimeouts, || async {
        let reader = RecordBatchIterator::new(vec![Ok(batch.clone())], batch.schema());
        let mut merge = table.merge_insert(&keys);
        if matched == Matched::Replace {
            merge.when_matched_update_all(None);
        }
        merge.when_not_matched_insert_all();
        Ok(merge.execute(Box::new(reader)).await?.version)
    })
    .await
}

/// Which failures of a commit are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Lance reported a conflict with another writer: nothing was committed.
    Conflicts,
    /// Also a merge that ran out of Lance's own retry time: merges are keyed, so a repeat changes nothing twice.
    ConflictsAndTimeouts,
}

/// Run `commit` while holding the store's write lock, trying again with growing, jittered pauses when another
/// writer still won every one of Lance's own retries: up to 8 more times, about 10 s in all.
///
/// The lock (`flock` on `<store>/.write.lock`) queues the commits of vlmdb processes on one machine: each write is
/// small and short, and taking turns is far cheaper than Lance's optimistic retries, where every lost race redoes
/// the merge (8 processes × 50 single-row INSERTs failed on Lance's 30 s retry budget without it). Writers on other
/// machines (or another tool) are still serialised by Lance's commit protocol.
async fn committed<T, F, Fut>(store: &Store, retry: Retry, mut commit: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut pause = std::time::Duration::from_millis(20);
    let mut attempt: u64 = 0;
    loop {
        let lock = store.write_lock().await?;
        let outcome = commit().await;
        drop(lock);
        match outcome {
            Err(e) if attempt < 8 && e.is_write_conflict(retry == Retry::ConflictsAndTimeouts) => {
                let jitter = u64::from(std::process::id()).wrapping_mul(attempt + 7) % 50;
                tokio::time::sleep(pause + std::time::Duration::from_millis(jitter)).await;
                pause *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Check `batch` against the spec and reorder its columns to the table's order.
fn shape(spec: &TableSpec, batch: RecordBatch) -> Result<RecordBatch> {
    check_compatible(spec, &batch.schema())?;
    let arrays = spec
        .columns
        .iter()
        .map(|c| {
            batch
                .column_by_name(&c.name)
                .cloned()
                .ok_or_else(|| Error::SchemaMismatch {
                    table: spec.name.clone(),
                    message: format!("missing column '{}'", c.name),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    conform(spec, arrays)
}

/// Put arrays under the spec's schema; a NULL in a `not null` column is reported with its column and row.
fn conform(spec: &TableSpec, arrays: Vec<ArrayRef>) -> Result<RecordBatch> {
    for (column, array) in spec.columns.iter().zip(&arrays) {
        if !column.nullable && array.null_count() > 0 {
            let row = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
            return Err(Error::SchemaMismatch {
                table: spec.name.clone(),
                message: format!(
                    "column '{}' is NULL in row {row} but is declared not null",
                    column.name
                ),
            });
        }
    }
    let schema = spec.arrow_schema();
    // Cast list item fields to the table's naming; top-level types were already checked.
    let arrays = arrays
        .into_iter()
        .zip(schema.fields())
        .map(|(a, f)| {
            if a.data_type() == f.data_type() {
                Ok(a)
            } else {
                arrow::compute::cast(&a, f.data_type()).map_err(Error::from)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(&schema), arrays)?)
}
