//! What an interrupted run left: the newest run of a configuration and its status, whether a loop run's baselines
//! all finished, the last hop whose metrics are stored, and the images and captions of the completed hops.

use std::collections::HashMap;

use datafusion::prelude::{col, lit};

use super::lineage::{caption_row_id, image_row_id};
use super::variant::Variant;
use super::{HopState, Item, RunConfig};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::columns::{binaries, integers, strings};

/// The newest `loop` run whose configuration (notes aside) is `config`, with its status.
pub async fn latest_run(store: &Store, config: &RunConfig) -> Result<Option<(String, String)>> {
    let wanted = serde_json::to_value(config)?;
    let batches = store
        .scan_if_exists(
            "runs",
            &["run_id", "config", "status", "started_at"],
            Some(col("kind").eq(lit("loop"))),
        )
        .await?;
    let mut runs = Vec::new();
    for batch in &batches {
        let ids = strings(batch, "run_id")?;
        let configs = strings(batch, "config")?;
        let statuses = strings(batch, "status")?;
        let started = integers(batch, "started_at")?;
        for (((id, stored), status), started) in
            ids.into_iter().zip(configs).zip(statuses).zip(started)
        {
            if let (Some(id), Some(stored)) = (id, stored) {
                runs.push((started, id, stored, status));
            }
        }
    }
    // Newest first (ties by run id, descending).
    runs.sort_by(|a, b| (&b.0, &b.1).cmp(&(&a.0, &a.1)));
    for (_, id, stored, status) in runs {
        let mut stored: serde_json::Value = serde_json::from_str(&stored)?;
        if let Some(map) = stored.as_object_mut() {
            map.remove("notes");
        }
        if stored == wanted {
            return Ok(Some((id, status.unwrap_or_default())));
        }
    }
    Ok(None)
}

/// True when every baseline of the loop run `main` has a finished run.
pub async fn baselines_finished(store: &Store, config: &RunConfig, main: &str) -> Result<bool> {
    for variant in Variant::BASELINES {
        let baseline = RunConfig {
            options: config.options.clone(),
            variant,
            baseline_of: Some(main.to_string()),
        };
        match latest_run(store, &baseline).await? {
            Some((_, status)) if status == "finished" => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// The last hop whose per-hop metrics (the last thing a hop writes) are stored.
pub async fn completed_hops(store: &Store, run_id: &str) -> Result<Option<usize>> {
    let per_hop = col("run_id")
        .eq(lit(run_id))
        .and(col("item_id").is_null())
        .and(col("name").eq(lit("image_caption_sim")));
    let mut last: Option<i64> = None;
    for batch in store
        .scan_if_exists("metrics", &["iteration"], Some(per_hop))
        .await?
    {
        last = integers(&batch, "iteration")?
            .into_iter()
            .flatten()
            .chain(last)
            .max();
    }
    Ok(last.map(|hop| hop as usize))
}

/// The stored images and captions of hops `0..=last` of a run, per hop in item order.
pub async fn load_hops(
    store: &Store,
    run_id: &str,
    items: &[Item],
    last: usize,
) -> Result<Vec<Vec<HopState>>> {
    let of_run = col("run_id").eq(lit(run_id));
    let mut texts: HashMap<String, String> = HashMap::new();
    for batch in store
        .scan("captions", &["caption_id", "text"], Some(of_run.clone()))
        .await?
    {
        for (id, text) in strings(&batch, "caption_id")?
            .into_iter()
            .zip(strings(&batch, "text")?)
        {
            if let (Some(id), Some(text)) = (id, text) {
                texts.insert(id, text);
            }
        }
    }
    let mut bytes: HashMap<String, Vec<u8>> = HashMap::new();
    for batch in store
        .scan("images", &["image_id", "data"], Some(of_run))
        .await?
    {
        for (id, data) in strings(&batch, "image_id")?
            .into_iter()
            .zip(binaries(&batch, "data")?)
        {
            if let (Some(id), Some(data)) = (id, data) {
                bytes.insert(id, data);
            }
        }
    }
    let mut hops = Vec::with_capacity(last + 1);
    for hop in 0..=last {
        let mut states = Vec::with_capacity(items.len());
        for item in items {
            let image_id = if hop == 0 {
                item.image_id.clone()
            } else {
                image_row_id(run_id, item, hop)
            };
            let image = if hop == 0 {
                item.data.clone()
            } else {
                bytes.remove(&image_id).ok_or_else(|| {
                    Error::Usage(format!(
                        "resuming loop run {run_id}: hop {hop} is recorded as done but image {image_id} is missing"
                    ))
                })?
            };
            let caption_id = caption_row_id(run_id, item, hop);
            let caption = texts.remove(&caption_id).ok_or_else(|| {
                Error::Usage(format!(
                    "resuming loop run {run_id}: hop {hop} is recorded as done but caption {caption_id} is missing"
                ))
            })?;
            states.push(HopState {
                image_id,
                image,
                caption_id,
                caption,
            });
        }
        hops.push(states);
    }
    Ok(hops)
}
