//! `vlmdb augment pairs` (seed 004's augmented CIR pairs): a captioner describes each composed pair's target image,
//! once per prompt, and every description becomes a new pair — the same reference, target, split, category and
//! candidate set, the description as its modification text — with its provenance: `source` = the captioner's id
//! and revision and the prompt, `parent_id` = the pair it came from. Ids are stable per (pair, captioner revision,
//! prompt), so running it again replaces rather than duplicates; captions come through `model_cache`. Training and
//! mining take `--augmented include|exclude|only`; evaluation scores the dataset's own pairs.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::prelude::{col, lit};

use crate::error::{Error, Result};
use crate::inference::captions::captions;
use crate::models::DeviceChoice;
use crate::store::Store;
use crate::store::columns::{binaries, strings};
use crate::store::model_cache::sha256;
use crate::store::runs::{Run, RunSpec};
use crate::store::schema::fixed_table;
use crate::store::write::{batch_for, upsert};

/// What `vlmdb augment pairs` does.
#[derive(Debug, Clone)]
pub struct AugmentOptions {
    /// The captioner (BLIP or LLaVA).
    pub captioner: String,
    pub dataset: String,
    pub split: Option<String>,
    /// One augmented pair per original pair and prompt (`None`: the captioner's unprompted caption).
    pub prompts: Vec<Option<String>>,
    pub max_new_tokens: Option<usize>,
    pub device: DeviceChoice,
}

/// What it did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AugmentSummary {
    pub run_id: String,
    /// The dataset's own pairs with a target (those described).
    pub pairs: usize,
    /// Augmented pairs written (stored or replaced).
    pub written: usize,
}

/// One original pair.
struct Original {
    id: String,
    split: Option<String>,
    category: Option<String>,
    reference: String,
    target: String,
    candidates: Option<Vec<String>>,
}

async fn originals(store: &Store, dataset: &str, split: Option<&str>) -> Result<Vec<Original>> {
    let mut filter = col("dataset")
        .eq(lit(dataset))
        .and(col("target_id").is_not_null())
        .and(col("source").is_null());
    if let Some(split) = split {
        filter = filter.and(col("split").eq(lit(split)));
    }
    let columns = [
        "pair_id",
        "split",
        "category",
        "reference_id",
        "target_id",
        "candidates",
    ];
    let mut out = Vec::new();
    for batch in store.scan("pairs", &columns, Some(filter)).await? {
        let (ids, splits, categories) = (
            strings(&batch, "pair_id")?,
            strings(&batch, "split")?,
            strings(&batch, "category")?,
        );
        let (references, targets) = (
            strings(&batch, "reference_id")?,
            strings(&batch, "target_id")?,
        );
        let lists = batch
            .column_by_name("candidates")
            .ok_or_else(|| Error::SchemaMismatch {
                table: "pairs".into(),
                message: "no column 'candidates'".into(),
            })?
            .as_list::<i32>()
            .clone();
        for r in 0..batch.num_rows() {
            let (Some(id), Some(reference), Some(target)) =
                (ids[r].clone(), references[r].clone(), targets[r].clone())
            else {
                continue;
            };
            let candidates = lists.is_valid(r).then(|| {
                let values = lists.value(r);
                let values = values.as_string::<i32>();
                (0..values.len())
                    .filter(|&i| values.is_valid(i))
                    .map(|i| values.value(i).to_string())
                    .collect()
            });
            out.push(Original {
                id,
                split: splits[r].clone(),
                category: categories[r].clone(),
                reference,
                target,
                candidates,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The image bytes of `ids`, by id.
async fn image_bytes(store: &Store, ids: &[String]) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(256) {
        let filter =
            col("image_id").in_list(chunk.iter().map(|id| lit(id.as_str())).collect(), false);
        for batch in store
            .scan("images", &["image_id", "data"], Some(filter))
            .await?
        {
            for (id, data) in strings(&batch, "image_id")?
                .into_iter()
                .zip(binaries(&batch, "data")?)
            {
                if let (Some(id), Some(data)) = (id, data) {
                    out.insert(id, data);
                }
            }
        }
    }
    Ok(out)
}

/// Describe every pair's target with `options.captioner` and store the descriptions as new pairs, under an
/// `augment` run.
pub async fn augment_pairs(store: &Store, options: &AugmentOptions) -> Result<AugmentSummary> {
    store.ensure_writable("augmenting pairs")?;
    if options.prompts.is_empty() {
        return Err(Error::Usage(
            "augment pairs needs at least one prompt".into(),
        ));
    }
    // The versions read: the pairs before this run adds its own, and their target images.
    let mut read = Vec::new();
    for table in ["pairs", "images"] {
        read.push((table, store.open_table(table).await?.version().await?));
    }
    let pairs = originals(store, &options.dataset, options.split.as_deref()).await?;
    if pairs.is_empty() {
        return Err(Error::Usage(format!(
            "dataset '{}'{} has no composed pairs with a target to augment",
            options.dataset,
            options
                .split
                .as_ref()
                .map(|s| format!(" split '{s}'"))
                .unwrap_or_default()
        )));
    }
    let captioner = crate::models::load_captioner(&options.captioner, options.device).await?;
    let prompts: Vec<Option<&str>> = options.prompts.iter().map(Option::as_deref).collect();
    let spec = RunSpec {
        kind: "augment".into(),
        name: format!(
            "augment pairs of {} with {}",
            options.dataset,
            captioner.files.space()
        ),
        config: serde_json::json!({
            "captioner": options.captioner,
            "dataset": options.dataset,
            "split": options.split,
            "prompts": prompts,
            "max_new_tokens": options
                .max_new_tokens
                .unwrap_or_else(|| captioner.default_max_new_tokens()),
            "device": options.device.to_string(),
        }),
        seed: None,
    };
    let mut run = Run::open(store, spec).await?;
    run.record_model(&captioner.files.id, &captioner.files.revision);
    for (table, version) in read {
        run.record_input(table, version);
    }
    let run_id = run.id().to_string();
    let outcome = async {
        let mut targets: Vec<String> = pairs.iter().map(|p| p.target.clone()).collect();
        targets.sort();
        targets.dedup();
        let bytes = image_bytes(store, &targets).await?;
        if let Some(missing) = targets.iter().find(|t| !bytes.contains_key(*t)) {
            return Err(Error::Usage(format!(
                "pair target image '{missing}' is not in images"
            )));
        }
        let inputs: Vec<Option<&[u8]>> = targets
            .iter()
            .map(|t| bytes.get(t).map(Vec::as_slice))
            .collect();
        let table = fixed_table("pairs")?.ok_or_else(|| Error::UnknownTable {
            name: "pairs".into(),
        })?;
        let mut written = 0;
        for prompt in &prompts {
            let texts = captions(
                Some(store),
                &captioner,
                &inputs,
                *prompt,
                options.max_new_tokens,
            )
            .await
            .map_err(|e| e.naming_input(|i| format!("target image '{}'", targets[i])))?;
            let text_of: HashMap<&str, String> = targets
                .iter()
                .map(String::as_str)
                .zip(texts)
                .filter_map(|(t, text)| Some((t, text?)))
                .collect();
            let source = format!(
                "{}@{}|{}",
                captioner.files.id,
                captioner.files.revision,
                prompt.unwrap_or("")
            );
            let tag = &sha256(source.as_bytes())[..8];
            let rows: Vec<(&Original, &String)> = pairs
                .iter()
                .filter_map(|p| text_of.get(p.target.as_str()).map(|t| (p, t)))
                .collect();
            let n = rows.len();
            let text =
                |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
            let batch = batch_for(
                &table,
                vec![
                    (
                        "pair_id",
                        text(
                            rows.iter()
                                .map(|(p, _)| Some(format!("{}/aug/{tag}", p.id)))
                                .collect(),
                        ),
                    ),
                    (
                        "dataset",
                        crate::store::arrays::repeated(&options.dataset, n),
                    ),
                    (
                        "split",
                        text(rows.iter().map(|(p, _)| p.split.clone()).collect()),
                    ),
                    (
                        "category",
                        text(rows.iter().map(|(p, _)| p.category.clone()).collect()),
                    ),
                    (
                        "reference_id",
                        text(
                            rows.iter()
                                .map(|(p, _)| Some(p.reference.clone()))
                                .collect(),
                        ),
                    ),
                    (
                        "target_id",
                        text(rows.iter().map(|(p, _)| Some(p.target.clone())).collect()),
                    ),
                    (
                        "text",
                        text(rows.iter().map(|(_, t)| Some((*t).clone())).collect()),
                    ),
                    (
                        "candidates",
                        crate::store::arrays::text_lists(
                            rows.iter().map(|(p, _)| p.candidates.as_ref()),
                        ),
                    ),
                    ("run_id", crate::store::arrays::repeated(&run_id, n)),
                    ("source", crate::store::arrays::repeated(&source, n)),
                    (
                        "parent_id",
                        text(rows.iter().map(|(p, _)| Some(p.id.clone())).collect()),
                    ),
                ],
            )?;
            upsert(store, &table, batch).await?;
            written += n;
        }
        Ok(written)
    }
    .await;
    let written = run.close(store, outcome).await?;
    Ok(AugmentSummary {
        run_id,
        pairs: pairs.len(),
        written,
    })
}
