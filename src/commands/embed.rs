//! `vlmdb embed`: a dataset's images, captions or pair texts into the model's space table `emb_<space>`, with the
//! item's dataset and split copied into each row. Items already in the space are skipped, and rows are committed a
//! chunk at a time, so a run that was interrupted resumes where it stopped. Vectors go through the model cache
//! ([`crate::models::cache`]), so inputs seen before (another dataset, an earlier store run) are not recomputed.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use datafusion::prelude::{col, lit};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use crate::error::{Error, Result};
use crate::inference::cache::{CacheStats, InputColumn, embed as embed_cached};
use crate::inference::space_spec;
use crate::models::{DeviceChoice, Modality, Model};
use crate::progress::Progress;
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::TableSpec;
use crate::store::write::{batch_for, insert_new};

/// Which items to embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Items {
    Images,
    Captions,
    Pairs,
}

impl Items {
    /// The `kind` written in the space table.
    /// The item kind, in words and in the plural when `n` is not 1 (`1 image`, `30 images`, `2 pair texts`).
    pub fn noun(self, n: usize) -> String {
        let word = match self {
            Items::Images => "image",
            Items::Captions => "caption",
            Items::Pairs => "pair text",
        };
        if n == 1 {
            word.to_string()
        } else {
            format!("{word}s")
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Items::Images => "image",
            Items::Captions => "caption",
            Items::Pairs => "pair_text",
        }
    }

    fn source(self) -> (&'static str, &'static str, &'static str) {
        // table, id column, input column
        match self {
            Items::Images => ("images", "image_id", "data"),
            Items::Captions => ("captions", "caption_id", "text"),
            Items::Pairs => ("pairs", "pair_id", "text"),
        }
    }

    fn modality(self) -> Modality {
        match self {
            Items::Images => Modality::Image,
            Items::Captions | Items::Pairs => Modality::Text,
        }
    }
}

/// What `vlmdb embed` does.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    pub model: String,
    pub items: Items,
    pub dataset: Option<String>,
    pub batch: usize,
    pub device: DeviceChoice,
    pub progress: bool,
}

/// What `vlmdb embed` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbedSummary {
    pub run_id: String,
    pub table: String,
    pub model_id: String,
    pub revision: String,
    pub dim: usize,
    pub embedded: usize,
    pub already_present: usize,
    pub from_cache: usize,
    pub computed: usize,
    /// Items whose input (image bytes, text) equals another's of the same chunk: computed once, stored for each.
    pub duplicates: usize,
    /// Items with no input (NULL text or bytes): no vector, no row.
    pub no_input: usize,
}

/// Rows written per commit (and per progress step).
const CHUNK: usize = 512;
/// Input bytes per chunk at most (large images make a chunk smaller): with the model's batch decoded at a time,
/// this bounds memory whatever the images' size.
const CHUNK_BYTES: usize = 64 << 20;
/// Rows per batch read from the source table: images few at a time (a batch is held whole while it is read, so
/// this and reading one fragment ahead, [`Store::scan_large`], bound the image bytes in memory), texts many.
const READ_IMAGES: usize = 8;
const READ_TEXTS: usize = 256;

/// Run `vlmdb embed` as a run of its own.
pub async fn run(store: &Store, options: &EmbedOptions) -> Result<EmbedSummary> {
    store.ensure_writable("embed")?;
    if let Some(run_id) = options.model.strip_prefix(crate::eval::space::HEAD_PREFIX) {
        return project_stored(store, run_id, options).await;
    }
    let model = crate::inference::load_model(Some(store), &options.model, options.device).await?;
    if !model.supports(options.items.modality()) {
        return Err(Error::Model {
            model: options.model.clone(),
            message: format!(
                "this {} model cannot embed {} (it has no {} tower)",
                model.family,
                options.items.source().0,
                if options.items == Items::Images {
                    "image"
                } else {
                    "text"
                }
            ),
        });
    }
    let spec = RunSpec {
        kind: "embed".into(),
        name: format!("{} {}", model.space(), options.items.source().0),
        config: serde_json::json!({
            "model": options.model,
            "items": options.items.source().0,
            "dataset": options.dataset,
            "batch": options.batch,
            "device": options.device.to_string(),
        }),
        seed: None,
    };
    crate::inference::check_space_owner(store, &model).await?;
    let mut run = Run::open_continuing(store, spec).await?;
    run.record_model(&model.files.id, &model.files.revision);
    let outcome = embed_items(store, &model, options, &mut run).await;
    run.close(store, outcome).await
}

/// `vlmdb embed --model head:<run>`: the items' stored vectors in the run's base space, projected through its best
/// heads into its space (no encoder runs, so heads over imported spaces work too). Every item is (re)written, so the
/// space follows the run's latest best heads.
async fn project_stored(
    store: &Store,
    run_id: &str,
    options: &EmbedOptions,
) -> Result<EmbedSummary> {
    use crate::train::space::{head_space_spec, load_heads, project};
    let device = options.device.device()?;
    let trained = load_heads(store, run_id, &device).await?;
    // The heads were read from the run's checkpoint in `artifacts`.
    let artifacts = store.open_table("artifacts").await?.version().await?;
    let base = if options.items == Items::Images {
        &trained.image_table
    } else {
        &trained.text_table
    };
    let dim = trained.heads.shape.dim;
    let spec = head_space_spec(run_id, dim, &trained.image_table, &trained.text_table)?;
    let run_spec = RunSpec {
        kind: "embed".into(),
        name: format!(
            "{} {} (projected from {base})",
            spec.name,
            options.items.source().0
        ),
        config: serde_json::json!({
            "model": options.model,
            "items": options.items.source().0,
            "dataset": options.dataset,
            "base_space": base,
            "checkpoint": trained.checkpoint,
        }),
        seed: None,
    };
    let mut run = Run::open(store, run_spec).await?;
    run.record_model(&options.model, &trained.checkpoint);
    run.record_input("artifacts", artifacts);
    run.record_input(base, store.open_table(base).await?.version().await?);
    let run_id_now = run.id().to_string();
    let outcome = project(
        store,
        &trained.heads,
        &spec,
        base,
        options.items.kind(),
        options.dataset.as_deref(),
        None,
        &run_id_now,
        &device,
    )
    .await;
    let written = run.close(store, outcome).await?;
    Ok(EmbedSummary {
        run_id: run_id_now,
        table: spec.name,
        model_id: options.model.clone(),
        revision: trained.checkpoint,
        dim,
        embedded: written,
        already_present: 0,
        from_cache: 0,
        computed: written,
        duplicates: 0,
        no_input: 0,
    })
}

async fn embed_items(
    store: &Store,
    model: &Arc<Model>,
    options: &EmbedOptions,
    run: &mut Run,
) -> Result<EmbedSummary> {
    let space = space_spec(model)?;
    let table = store.table_for(&space).await?;
    crate::store::schema::check_compatible(&space, table.schema().await?.as_ref())?;
    let kind = options.items.kind();
    // The ids already in the space are skipped: it is read, at the version before this run writes to it.
    let (table, version) = store.open_pinned(&space.name).await?;
    run.record_input(&space.name, version);
    let present = existing_ids(&table, kind).await?;
    run.record_output(&space.name);

    let (source_name, id_column, input_column) = options.items.source();
    let (source, version) = store.open_pinned(source_name).await?;
    run.record_input(source_name, version);
    let dataset_filter = options
        .dataset
        .as_ref()
        .map(|d| col("dataset").eq(lit(d.as_str())));
    let mut count = source.query().select(Select::columns(&[id_column]));
    if let Some(filter) = &dataset_filter {
        count = count.only_if_expr(filter.clone());
    }
    let total: usize = count
        .execute()
        .await?
        .try_fold(0, |n, batch| async move { Ok(n + batch.num_rows()) })
        .await?;
    let rows = if matches!(options.items, Items::Images) {
        READ_IMAGES
    } else {
        READ_TEXTS
    };
    let columns = [id_column, "dataset", "split", input_column];
    let mut stream = Box::pin(Store::scan_large(&source, &columns, dataset_filter, rows).await?);

    let progress = options
        .progress
        .then(|| Progress::new(total as u64, &format!("embed {source_name}")));
    let mut summary = EmbedSummary {
        run_id: run.id().to_string(),
        table: space.name.clone(),
        model_id: model.files.id.clone(),
        revision: model.files.revision.clone(),
        dim: model.dim(),
        embedded: 0,
        already_present: 0,
        from_cache: 0,
        computed: 0,
        duplicates: 0,
        no_input: 0,
    };
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    let mut pending_bytes = 0;
    while let Some(batch) = stream.try_next().await? {
        let (batch, skipped) =
            skip_present(&batch, source_name, id_column, &present, &mut summary)?;
        if let Some(progress) = &progress {
            progress.inc(skipped as u64);
        }
        pending_rows += batch.num_rows();
        pending_bytes += batch.get_array_memory_size();
        pending.push(batch);
        if pending_rows >= CHUNK || pending_bytes >= CHUNK_BYTES {
            let rows = whole(std::mem::take(&mut pending))?;
            pending_rows = 0;
            pending_bytes = 0;
            write_chunk(
                store,
                model,
                options,
                &space,
                &rows,
                run.id(),
                &mut summary,
                progress.as_ref(),
            )
            .await?;
        }
    }
    if pending_rows > 0 {
        let rows = whole(pending)?;
        write_chunk(
            store,
            model,
            options,
            &space,
            &rows,
            run.id(),
            &mut summary,
            progress.as_ref(),
        )
        .await?;
    }
    if let Some(progress) = progress {
        progress.finish();
    }
    Ok(summary)
}

/// The batches read for one chunk as one batch; a chunk of one batch (large images) is not copied.
fn whole(mut batches: Vec<RecordBatch>) -> Result<RecordBatch> {
    if batches.len() == 1
        && let Some(batch) = batches.pop()
    {
        return Ok(batch);
    }
    match batches.first() {
        Some(first) => Ok(arrow::compute::concat_batches(&first.schema(), &batches)?),
        None => Err(Error::Usage("embed: an empty chunk".into())),
    }
}

/// Item ids of `kind` already in the space table.
async fn existing_ids(table: &lancedb::Table, kind: &str) -> Result<HashSet<String>> {
    let batches: Vec<RecordBatch> = table
        .query()
        .only_if_expr(col("kind").eq(lit(kind)))
        .select(Select::columns(&["item_id"]))
        .execute()
        .await?
        .try_collect()
        .await?;
    let mut ids = HashSet::new();
    for batch in batches {
        if let Some(column) = batch.column_by_name("item_id") {
            let column = arrow::compute::cast(column, &DataType::Utf8)?;
            ids.extend(
                column
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string),
            );
        }
    }
    Ok(ids)
}

/// Column `name` of rows read from `table`.
fn column(rows: &RecordBatch, table: &str, name: &str) -> Result<arrow::array::ArrayRef> {
    rows.column_by_name(name)
        .cloned()
        .ok_or_else(|| Error::SchemaMismatch {
            table: table.into(),
            message: format!("missing column '{name}'"),
        })
}

/// The rows of `batch` whose id is not in `present`; the second value counts the rows skipped.
fn skip_present(
    batch: &RecordBatch,
    table: &str,
    id_column: &str,
    present: &HashSet<String>,
    summary: &mut EmbedSummary,
) -> Result<(RecordBatch, usize)> {
    let ids = arrow::compute::cast(&column(batch, table, id_column)?, &DataType::Utf8)?;
    let ids = ids.as_string::<i32>();
    let keep: arrow::array::BooleanArray = ids
        .iter()
        .map(|id| Some(id.is_some_and(|id| !present.contains(id))))
        .collect();
    let kept = arrow::compute::filter_record_batch(batch, &keep)?;
    let skipped = batch.num_rows() - kept.num_rows();
    summary.already_present += skipped;
    Ok((kept, skipped))
}

#[allow(clippy::too_many_arguments)]
async fn write_chunk(
    store: &Store,
    model: &Arc<Model>,
    options: &EmbedOptions,
    space: &TableSpec,
    rows: &RecordBatch,
    run_id: &str,
    summary: &mut EmbedSummary,
    progress: Option<&Progress>,
) -> Result<()> {
    let (table, id_column, input_column) = options.items.source();
    let input = column(rows, table, input_column)?;
    let ids = arrow::compute::cast(&column(rows, table, id_column)?, &DataType::Utf8)?;
    let ids = ids.as_string::<i32>();
    let modality = options.items.modality();
    let inputs = InputColumn::new(modality, &input)?;
    let (vectors, stats): (Vec<Option<Vec<f32>>>, CacheStats) = embed_cached(
        Some(store),
        model,
        modality,
        &inputs.inputs(),
        options.batch,
    )
    .await
    .map_err(|e| {
        e.naming_input(|input| {
            format!(
                "{} '{}'",
                id_column,
                ids.value(input.min(ids.len().saturating_sub(1)))
            )
        })
    })?;
    summary.from_cache += stats.cached;
    summary.computed += stats.computed;
    // Items with no input (NULL text or bytes) get no vector and no row.
    let keep: Vec<usize> = (0..rows.num_rows())
        .filter(|&r| vectors[r].is_some())
        .collect();
    let dim = model.dim() as i32;
    let values: Vec<f32> = keep
        .iter()
        .flat_map(|&r| vectors[r].clone().unwrap_or_default())
        .collect();
    let vector = crate::store::arrays::vectors(values, dim as usize)?;
    let take = arrow::array::UInt32Array::from(keep.iter().map(|&r| r as u32).collect::<Vec<_>>());
    let pick = |name: &str| -> Result<Arc<dyn Array>> {
        Ok(arrow::compute::take(
            &column(rows, table, name)?,
            &take,
            None,
        )?)
    };
    let n = keep.len();
    let batch = batch_for(
        space,
        vec![
            ("item_id", pick(id_column)?),
            (
                "kind",
                Arc::new(StringArray::from(vec![options.items.kind(); n])),
            ),
            ("dataset", pick("dataset")?),
            ("split", pick("split")?),
            ("vector", Arc::new(vector)),
            ("run_id", Arc::new(StringArray::from(vec![run_id; n]))),
        ],
    )?;
    insert_new(store, space, batch).await?;
    summary.embedded += n;
    summary.no_input += rows.num_rows() - n;
    summary.duplicates += n.saturating_sub(stats.cached + stats.computed);
    if let Some(progress) = progress {
        progress.inc(rows.num_rows() as u64);
    }
    Ok(())
}
