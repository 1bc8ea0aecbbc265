//! Typed reads of the store: a filtered scan of one table (lancedb's own query API, the filter a DataFusion
//! expression built from values, never SQL text), and the reads built on it that the floors above share — a run's
//! configuration, the newest artifact of a run. No SQL session is involved, so compute code reads the store without
//! standing on the SQL floor.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::prelude::{Expr, col, lit};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use super::Store;
use super::columns::strings;
use crate::error::{Error, Result};

impl Store {
    /// Table `name` held at its current version, and that version: every query through the handle reads it,
    /// whatever is committed meanwhile (a handle otherwise reads the latest version at each query), so the version a
    /// run records as read is the one it read. The handle is read-only.
    pub async fn open_pinned(&self, name: &str) -> Result<(lancedb::Table, u64)> {
        let table = self.open_table(name).await?;
        let version = table.version().await?;
        table.checkout(version).await?;
        Ok((table, version))
    }

    /// The rows of `table` that match `filter` (all rows without one), with only `columns`, in storage order.
    pub async fn scan(
        &self,
        table: &str,
        columns: &[&str],
        filter: Option<Expr>,
    ) -> Result<Vec<RecordBatch>> {
        let handle = self.open_table(table).await?;
        let mut query = handle.query().select(Select::columns(columns));
        if let Some(filter) = filter {
            query = query.only_if_expr(filter);
        }
        Ok(query.execute().await?.try_collect().await?)
    }

    /// [`Store::scan`] a batch at a time, for reads too large to hold at once (image bytes).
    pub async fn scan_batches(
        &self,
        table: &str,
        columns: &[&str],
        filter: Option<Expr>,
    ) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + use<>> {
        let handle = self.open_table(table).await?;
        let mut query = handle.query().select(Select::columns(columns));
        if let Some(filter) = filter {
            query = query.only_if_expr(filter);
        }
        Ok(query.execute().await?.map_err(Error::from))
    }

    /// [`Store::scan_batches`] of large rows (image bytes) through a pinned table handle: `rows` per batch, and one
    /// fragment read ahead at a time. Lance's default reads four fragments ahead, which holds up to four fragments
    /// of images in memory whenever the consumer (a model) is slower than the disk: embed's peak memory grew with
    /// the dataset (150 images of 4000 × 3000: 1.0 GB, 0.69 GB with one fragment ahead).
    pub async fn scan_large(
        table: &lancedb::Table,
        columns: &[&str],
        filter: Option<Expr>,
        rows: usize,
    ) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + use<>> {
        let lance_error = |e: lance::Error| Error::from(lancedb::Error::from(e));
        let dataset = table
            .dataset()
            .ok_or_else(|| Error::Usage(format!("table '{}' is not a Lance table", table.name())))?
            .get()
            .await?;
        let mut scanner = dataset.scan();
        scanner.project(columns).map_err(lance_error)?;
        if let Some(filter) = filter {
            scanner.filter_expr(filter);
        }
        scanner.batch_size(rows.max(1)).fragment_readahead(1);
        let stream = scanner.try_into_stream().await.map_err(lance_error)?;
        Ok(stream.map_err(lance_error))
    }

    /// [`Store::scan`], with a table that does not exist yet read as empty.
    pub async fn scan_if_exists(
        &self,
        table: &str,
        columns: &[&str],
        filter: Option<Expr>,
    ) -> Result<Vec<RecordBatch>> {
        match self.scan(table, columns, filter).await {
            Err(Error::UnknownTable { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// The human captions of `dataset` (of `split` only, when given) as (image_id, caption_id, text), sorted.
    pub async fn human_captions(
        &self,
        dataset: &str,
        split: Option<&str>,
    ) -> Result<Vec<(String, String, String)>> {
        let mut filter = col("dataset")
            .eq(lit(dataset))
            .and(col("source").eq(lit("human")));
        if let Some(split) = split {
            filter = filter.and(col("split").eq(lit(split)));
        }
        let mut captions = Vec::new();
        for batch in self
            .scan_if_exists(
                "captions",
                &["caption_id", "image_id", "text"],
                Some(filter),
            )
            .await?
        {
            let ids = strings(&batch, "caption_id")?;
            let images = strings(&batch, "image_id")?;
            let texts = strings(&batch, "text")?;
            for ((id, image), text) in ids.into_iter().zip(images).zip(texts) {
                if let (Some(id), Some(image), Some(text)) = (id, image, text) {
                    captions.push((image, id, text));
                }
            }
        }
        captions.sort();
        Ok(captions)
    }

    /// The stored configuration (JSON text) of run `run_id` when it is of `kind`; `None` when there is no such run.
    pub async fn run_config(&self, run_id: &str, kind: &str) -> Result<Option<String>> {
        let filter = col("run_id").eq(lit(run_id)).and(col("kind").eq(lit(kind)));
        let batches = self
            .scan_if_exists("runs", &["config"], Some(filter))
            .await?;
        for batch in &batches {
            if let Some(config) = strings(batch, "config")?.into_iter().flatten().next() {
                return Ok(Some(config));
            }
        }
        Ok(None)
    }

    /// The newest artifact of `run_id` whose name starts with `prefix` (names carry zero-padded steps, so the
    /// greatest name is the newest): (name, bytes). Names are read first; only the chosen artifact's bytes are.
    pub async fn latest_artifact(
        &self,
        run_id: &str,
        prefix: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let newest = self
            .artifact_names(run_id)
            .await?
            .into_iter()
            .filter(|name| name.starts_with(prefix))
            .max();
        let Some(name) = newest else {
            return Ok(None);
        };
        Ok(self
            .artifact(run_id, &name)
            .await?
            .map(|bytes| (name, bytes)))
    }

    /// The names of `run_id`'s artifacts.
    pub async fn artifact_names(&self, run_id: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for batch in self
            .scan_if_exists("artifacts", &["name"], Some(col("run_id").eq(lit(run_id))))
            .await?
        {
            names.extend(strings(&batch, "name")?.into_iter().flatten());
        }
        Ok(names)
    }

    /// The bytes of artifact `name` of `run_id`, if it has one of that name.
    pub async fn artifact(&self, run_id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let filter = col("run_id").eq(lit(run_id)).and(col("name").eq(lit(name)));
        for batch in self
            .scan_if_exists("artifacts", &["data"], Some(filter))
            .await?
        {
            let Some(data) = batch.column_by_name("data") else {
                continue;
            };
            let data = arrow::compute::cast(data, &DataType::LargeBinary)?;
            let data = data.as_binary::<i64>();
            if let Some(row) = (0..data.len()).find(|&r| data.is_valid(r)) {
                return Ok(Some(data.value(row).to_vec()));
            }
        }
        Ok(None)
    }

    /// The current version of table `name`; `None` when it does not exist yet.
    pub async fn current_version(&self, name: &str) -> Result<Option<u64>> {
        match self.open_table(name).await {
            Ok(table) => Ok(Some(table.version().await?)),
            Err(Error::UnknownTable { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The error for a dataset (or split) without the images a command needs (`what`: "images", "images with a human
/// caption").
pub fn no_images(dataset: &str, split: Option<&str>, what: &str) -> Error {
    Error::Usage(format!(
        "dataset '{dataset}'{} has no {what}: ingest it first",
        split.map(|s| format!(" (split '{s}')")).unwrap_or_default()
    ))
}
