//! Writing an ingest's rows. Rows already stored exactly as they are (same id, same content) are skipped, so
//! ingesting the same input twice writes nothing; everything else is upserted by id, one commit per table and
//! chunk. Before the first write the versions of the touched tables are noted, so a failed ingest can restore them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, LargeBinaryArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::compute::filter_record_batch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::PreparedImage;
use super::record::{CaptionRecord, PairRecord, Rejection};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::schema::{TableSpec, fixed_table};
use crate::store::write::{append, batch_for, insert_new, upsert};
use datafusion::prelude::{col, lit};

/// The tables an ingest writes.
pub const TABLES: &[&str] = &["images", "captions", "pairs", "ingest_errors"];

/// The tables an ingest reads: the dataset's stored rows, so what is already there is skipped.
pub const READS: &[&str] = &["images", "captions", "pairs"];

/// The columns that decide whether a stored row is already what the ingest would write.
const IMAGE_CONTENT: &[&str] = &[
    "sha256",
    "split",
    "path",
    "width",
    "height",
    "orig_width",
    "orig_height",
];
const CAPTION_CONTENT: &[&str] = &["image_id", "split", "text", "source"];
const PAIR_CONTENT: &[&str] = &[
    "split",
    "category",
    "reference_id",
    "target_id",
    "text",
    "candidates",
];

/// Current version of each ingest table (tables are created from their schema files if missing).
pub async fn versions(store: &Store) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for name in TABLES {
        let table = store.table_for(&spec(name)?).await?;
        out.push((name.to_string(), table.version().await?));
    }
    Ok(out)
}

/// Restore every table that moved past its noted version.
pub async fn rollback(store: &Store, before: &[(String, u64)]) -> Result<()> {
    for (name, version) in before {
        let table = store.open_table(name).await?;
        if table.version().await? != *version {
            table.checkout(*version).await?;
            table.restore().await?;
        }
    }
    Ok(())
}

fn spec(name: &str) -> Result<TableSpec> {
    fixed_table(name)?.ok_or_else(|| Error::UnknownTable {
        name: name.to_string(),
    })
}

fn text(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn optional_text(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

/// Writes one dataset's rows under one run.
pub struct DatasetWriter<'a> {
    store: &'a Store,
    dataset: String,
    run_id: String,
    stored_images: HashMap<String, String>,
    stored_captions: HashMap<String, String>,
}

impl<'a> DatasetWriter<'a> {
    pub async fn open(store: &'a Store, dataset: &str, run_id: &str) -> Result<DatasetWriter<'a>> {
        let mut writer = DatasetWriter {
            store,
            dataset: dataset.to_string(),
            run_id: run_id.to_string(),
            stored_images: HashMap::new(),
            stored_captions: HashMap::new(),
        };
        writer.stored_images = writer.stored("images", "image_id", IMAGE_CONTENT).await?;
        writer.stored_captions = writer
            .stored("captions", "caption_id", CAPTION_CONTENT)
            .await?;
        Ok(writer)
    }

    fn id(&self, key: &str) -> String {
        format!("{}/{key}", self.dataset)
    }

    /// id -> content fingerprint of the dataset's rows already in `table`.
    async fn stored(
        &self,
        table: &str,
        id: &str,
        content: &[&str],
    ) -> Result<HashMap<String, String>> {
        let mut columns = vec![id];
        columns.extend_from_slice(content);
        let filter = col("dataset").eq(lit(self.dataset.as_str()));
        let mut map = HashMap::new();
        for batch in self
            .store
            .scan_if_exists(table, &columns, Some(filter))
            .await?
        {
            for (key, print) in fingerprints(&batch, id, content)? {
                map.insert(key, print);
            }
        }
        Ok(map)
    }

    /// Write the rows of `batch` whose content differs from what is stored: rows with new ids are appended,
    /// rows whose stored content changed are upserted by id. Returns how many rows were written.
    async fn write_changed(
        &self,
        table: &str,
        id: &str,
        content: &[&str],
        batch: RecordBatch,
        stored: &HashMap<String, String>,
    ) -> Result<usize> {
        let prints = fingerprints(&batch, id, content)?;
        let is_new: BooleanArray = prints
            .iter()
            .map(|(key, _)| Some(!stored.contains_key(key)))
            .collect();
        let is_changed: BooleanArray = prints
            .iter()
            .map(|(key, print)| Some(stored.get(key).is_some_and(|p| p != print)))
            .collect();
        let spec = spec(table)?;
        let new_rows = filter_record_batch(&batch, &is_new)?;
        let changed_rows = filter_record_batch(&batch, &is_changed)?;
        let written = new_rows.num_rows() + changed_rows.num_rows();
        if new_rows.num_rows() > 0 {
            insert_new(self.store, &spec, new_rows).await?;
        }
        if changed_rows.num_rows() > 0 {
            upsert(self.store, &spec, changed_rows).await?;
        }
        Ok(written)
    }

    pub async fn write_images(&self, images: Vec<PreparedImage>) -> Result<usize> {
        if images.is_empty() {
            return Ok(0);
        }
        let table = spec("images")?;
        let n = images.len();
        let ids: Vec<String> = images.iter().map(|i| self.id(&i.key)).collect();
        let batch = batch_for(
            &table,
            vec![
                ("image_id", text(ids)),
                ("dataset", text(vec![self.dataset.clone(); n])),
                (
                    "split",
                    optional_text(images.iter().map(|i| i.split.clone()).collect()),
                ),
                (
                    "path",
                    optional_text(images.iter().map(|i| Some(i.path.clone())).collect()),
                ),
                (
                    "data",
                    Arc::new(LargeBinaryArray::from_iter_values(
                        images.iter().map(|i| i.bytes.as_slice()),
                    )),
                ),
                (
                    "width",
                    Arc::new(Int32Array::from_iter_values(
                        images.iter().map(|i| i.width as i32),
                    )),
                ),
                (
                    "height",
                    Arc::new(Int32Array::from_iter_values(
                        images.iter().map(|i| i.height as i32),
                    )),
                ),
                (
                    "orig_width",
                    Arc::new(Int32Array::from_iter(
                        images.iter().map(|i| i.original.map(|o| o.0 as i32)),
                    )),
                ),
                (
                    "orig_height",
                    Arc::new(Int32Array::from_iter(
                        images.iter().map(|i| i.original.map(|o| o.1 as i32)),
                    )),
                ),
                (
                    "format",
                    text(images.iter().map(|i| i.format.to_string()).collect()),
                ),
                (
                    "sha256",
                    text(images.iter().map(|i| i.sha256.clone()).collect()),
                ),
                ("run_id", text(vec![self.run_id.clone(); n])),
            ],
        )?;
        self.write_changed(
            "images",
            "image_id",
            IMAGE_CONTENT,
            batch,
            &self.stored_images,
        )
        .await
    }

    /// Captions with the split of their image.
    pub async fn write_captions(
        &self,
        captions: Vec<(CaptionRecord, Option<String>)>,
    ) -> Result<usize> {
        if captions.is_empty() {
            return Ok(0);
        }
        let table = spec("captions")?;
        let n = captions.len();
        let batch = batch_for(
            &table,
            vec![
                (
                    "caption_id",
                    text(captions.iter().map(|(c, _)| self.id(&c.key)).collect()),
                ),
                (
                    "image_id",
                    text(
                        captions
                            .iter()
                            .map(|(c, _)| self.id(&c.image_key))
                            .collect(),
                    ),
                ),
                ("dataset", text(vec![self.dataset.clone(); n])),
                (
                    "split",
                    optional_text(captions.iter().map(|(_, s)| s.clone()).collect()),
                ),
                (
                    "text",
                    text(captions.iter().map(|(c, _)| c.text.clone()).collect()),
                ),
                ("source", text(vec!["human".to_string(); n])),
                ("run_id", text(vec![self.run_id.clone(); n])),
            ],
        )?;
        self.write_changed(
            "captions",
            "caption_id",
            CAPTION_CONTENT,
            batch,
            &self.stored_captions,
        )
        .await
    }

    pub async fn write_pairs(&self, pairs: Vec<PairRecord>) -> Result<usize> {
        if pairs.is_empty() {
            return Ok(0);
        }
        let table = spec("pairs")?;
        let n = pairs.len();
        let candidates = crate::store::arrays::text_lists(pairs.iter().map(|p| {
            p.candidates
                .as_ref()
                .map(|list| list.iter().map(|c| self.id(c)).collect::<Vec<_>>())
        }));
        let batch = batch_for(
            &table,
            vec![
                (
                    "pair_id",
                    text(pairs.iter().map(|p| self.id(&p.key)).collect()),
                ),
                ("dataset", text(vec![self.dataset.clone(); n])),
                (
                    "split",
                    optional_text(pairs.iter().map(|p| p.split.clone()).collect()),
                ),
                (
                    "category",
                    optional_text(pairs.iter().map(|p| p.category.clone()).collect()),
                ),
                (
                    "reference_id",
                    text(pairs.iter().map(|p| self.id(&p.reference_key)).collect()),
                ),
                (
                    "target_id",
                    optional_text(
                        pairs
                            .iter()
                            .map(|p| p.target_key.as_ref().map(|t| self.id(t)))
                            .collect(),
                    ),
                ),
                ("text", text(pairs.iter().map(|p| p.text.clone()).collect())),
                ("candidates", candidates),
                ("run_id", text(vec![self.run_id.clone(); n])),
            ],
        )?;
        let stored = self.stored("pairs", "pair_id", PAIR_CONTENT).await?;
        self.write_changed("pairs", "pair_id", PAIR_CONTENT, batch, &stored)
            .await
    }

    pub async fn write_rejections(&self, rejected: Vec<Rejection>) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let table = spec("ingest_errors")?;
        let n = rejected.len();
        let now = chrono::Utc::now().timestamp_micros();
        let batch = batch_for(
            &table,
            vec![
                ("run_id", text(vec![self.run_id.clone(); n])),
                ("dataset", text(vec![self.dataset.clone(); n])),
                (
                    "source_file",
                    text(rejected.iter().map(|r| r.source_file.clone()).collect()),
                ),
                (
                    "item",
                    text(rejected.iter().map(|r| r.item.clone()).collect()),
                ),
                (
                    "reason",
                    text(rejected.iter().map(|r| r.reason.clone()).collect()),
                ),
                (
                    "created_at",
                    Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
                ),
            ],
        )?;
        append(self.store, &table, batch).await?;
        Ok(())
    }
}

/// (id, fingerprint of the content columns) per row; NULL prints differently from any value.
fn fingerprints(batch: &RecordBatch, id: &str, content: &[&str]) -> Result<Vec<(String, String)>> {
    let options = FormatOptions::default().with_null("\u{0}NULL");
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::SchemaMismatch {
                table: "ingest".into(),
                message: format!("missing column '{name}'"),
            })
    };
    let ids = ArrayFormatter::try_new(column(id)?.as_ref(), &options)?;
    let formatters = content
        .iter()
        .map(|c| Ok(ArrayFormatter::try_new(column(c)?.as_ref(), &options)?))
        .collect::<Result<Vec<_>>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            let print = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect::<Vec<_>>()
                .join("\u{1f}");
            (ids.value(row).to_string(), print)
        })
        .collect())
}
