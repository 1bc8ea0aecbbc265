//! `vlmdb caption` ([`run`]): a dataset's images captioned with a BLIP model (through
//! [`crate::inference::captions`], the model cache included) into `captions` with source = the model id, under a
//! run.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::prelude::{col, lit};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use crate::error::{Error, Result};
use crate::inference::captions::{caption_id, captions};
use crate::models::captioner::Captioner;
use crate::models::{DeviceChoice, load_captioner};
use crate::progress::Progress;
use crate::store::Store;
use crate::store::columns::strings;
use crate::store::read::no_images;
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::fixed_table;
use crate::store::write::{batch_for, upsert};

/// What `vlmdb caption` does.
#[derive(Debug, Clone)]
pub struct CaptionOptions {
    pub model: String,
    pub dataset: String,
    pub prompt: Option<String>,
    /// At most this many new tokens per caption (`None`: the model's default).
    pub max_new_tokens: Option<usize>,
    pub split: Option<String>,
    pub device: DeviceChoice,
    pub progress: bool,
}

/// What `vlmdb caption` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaptionSummary {
    pub run_id: String,
    pub model_id: String,
    pub revision: String,
    pub captioned: usize,
}

/// Images captioned per commit.
const CHUNK: usize = 64;
/// Images read at a time (a read batch is held whole, so this bounds the image bytes in memory).
const READ_IMAGES: usize = 8;

/// `vlmdb caption`: caption every image of a dataset (or one split of it) into `captions`.
pub async fn run(store: &Store, options: &CaptionOptions) -> Result<CaptionSummary> {
    store.ensure_writable("caption")?;
    let captioner = load_captioner(&options.model, options.device).await?;
    // Every read of `images` (ids, then bytes chunk by chunk) is of this version.
    let (images, images_version) = store.open_pinned("images").await?;
    let mut filter = col("dataset").eq(lit(options.dataset.as_str()));
    if let Some(split) = &options.split {
        filter = filter.and(col("split").eq(lit(split.as_str())));
    }
    let ids: Vec<RecordBatch> = images
        .query()
        .only_if_expr(filter.clone())
        .select(Select::columns(&["image_id"]))
        .execute()
        .await?
        .try_collect()
        .await?;
    let mut all_ids: Vec<String> = Vec::new();
    for batch in &ids {
        all_ids.extend(strings(batch, "image_id")?.into_iter().flatten());
    }
    all_ids.sort();
    if all_ids.is_empty() {
        return Err(no_images(
            &options.dataset,
            options.split.as_deref(),
            "images",
        ));
    }
    let spec = RunSpec {
        kind: "caption".into(),
        name: format!(
            "caption {} with {}",
            options.dataset,
            captioner.files.space()
        ),
        config: serde_json::json!({
            "model": options.model,
            "dataset": options.dataset,
            "split": options.split,
            "prompt": options.prompt,
            "max_new_tokens": options
                .max_new_tokens
                .unwrap_or_else(|| captioner.default_max_new_tokens()),
            "device": options.device.to_string(),
        }),
        seed: None,
    };
    let mut run = Run::open(store, spec).await?;
    run.record_model(&captioner.files.id, &captioner.files.revision);
    run.record_input("images", images_version);
    let run_id = run.id().to_string();
    let outcome = caption_all(store, &images, &captioner, options, &all_ids, &run_id).await;
    let captioned = run.close(store, outcome).await?;
    Ok(CaptionSummary {
        run_id,
        model_id: captioner.files.id.clone(),
        revision: captioner.files.revision.clone(),
        captioned,
    })
}

async fn caption_all(
    store: &Store,
    images: &lancedb::Table,
    captioner: &Arc<Captioner>,
    options: &CaptionOptions,
    ids: &[String],
    run_id: &str,
) -> Result<usize> {
    let spec = fixed_table("captions")?.ok_or_else(|| Error::UnknownTable {
        name: "captions".into(),
    })?;
    let progress = options
        .progress
        .then(|| Progress::new(ids.len() as u64, "caption"));
    let prompt = options.prompt.as_deref();
    let mut written = 0;
    for chunk in ids.chunks(CHUNK) {
        let filter =
            col("image_id").in_list(chunk.iter().map(|id| lit(id.as_str())).collect(), false);
        let mut batches = Box::pin(
            Store::scan_large(
                images,
                &["image_id", "dataset", "split", "data"],
                Some(filter),
                READ_IMAGES,
            )
            .await?,
        );
        let mut rows: Vec<(String, Option<String>, String)> = Vec::with_capacity(chunk.len());
        while let Some(batch) = batches.try_next().await? {
            let image_ids = strings(&batch, "image_id")?;
            let splits = strings(&batch, "split")?;
            let data = crate::store::columns::binaries(&batch, "data")?;
            let inputs: Vec<Option<&[u8]>> = data.iter().map(|d| d.as_deref()).collect();
            let texts = captions(
                Some(store),
                captioner,
                &inputs,
                prompt,
                options.max_new_tokens,
            )
            .await
            .map_err(|e| {
                e.naming_input(|i| format!("image '{}'", image_ids[i].as_deref().unwrap_or("?")))
            })?;
            rows.extend(
                image_ids
                    .iter()
                    .zip(&splits)
                    .zip(texts)
                    .filter_map(|((id, split), text)| Some((id.clone()?, split.clone(), text?))),
            );
        }
        let n = rows.len();
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "caption_id",
                Arc::new(StringArray::from_iter_values(
                    rows.iter()
                        .map(|(id, _, _)| caption_id(id, captioner, prompt)),
                )),
            ),
            (
                "image_id",
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(id, _, _)| id.as_str()),
                )),
            ),
            (
                "dataset",
                crate::store::arrays::repeated(options.dataset.as_str(), n),
            ),
            (
                "split",
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|(_, s, _)| s.as_deref())
                        .collect::<Vec<_>>(),
                )),
            ),
            (
                "text",
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(_, _, t)| t.as_str()),
                )),
            ),
            (
                "source",
                crate::store::arrays::repeated(captioner.files.id.as_str(), n),
            ),
            ("run_id", crate::store::arrays::repeated(run_id, n)),
            (
                "iteration",
                Arc::new(Int32Array::from(vec![None::<i32>; n])),
            ),
        ];
        upsert(store, &spec, batch_for(&spec, columns)?).await?;
        written += n;
        if let Some(p) = &progress {
            p.inc(n as u64);
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
    Ok(written)
}
