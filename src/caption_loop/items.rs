//! Which dataset images a loop starts from: the first images (by image id) with a human caption, each with its
//! first human caption, and the pool of every human caption for the random-captions baseline.

use std::collections::BTreeMap;

use datafusion::prelude::{col, lit};

use super::{Item, LoopOptions};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::columns::{binaries, strings};
use crate::store::read::no_images;

/// The first `images` images of the dataset (by image_id) that have a human caption, and the pool of every human
/// caption of the dataset as (image_id, text) for the random-captions baseline.
pub async fn select_items(
    store: &Store,
    options: &LoopOptions,
) -> Result<(Vec<Item>, Vec<(String, String)>)> {
    let of_dataset = col("dataset").eq(lit(options.dataset.as_str()));
    let captions = store.human_captions(&options.dataset, None).await?;
    let mut pool = Vec::with_capacity(captions.len());
    let mut first: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (image, id, text) in captions {
        first
            .entry(image.clone())
            .or_insert_with(|| (id, text.clone()));
        pool.push((image, text));
    }
    let mut images = Vec::new();
    for batch in store
        .scan_if_exists("images", &["image_id", "split"], Some(of_dataset))
        .await?
    {
        let ids = strings(&batch, "image_id")?;
        let splits = strings(&batch, "split")?;
        images.extend(
            ids.into_iter()
                .zip(splits)
                .filter_map(|(id, split)| Some((id?, split))),
        );
    }
    images.sort();
    let chosen: Vec<(String, Option<String>)> = images
        .into_iter()
        .filter(|(id, split)| {
            (options.split.is_none() || *split == options.split) && first.contains_key(id)
        })
        .take(options.images)
        .collect();
    if chosen.is_empty() {
        return Err(no_images(
            &options.dataset,
            options.split.as_deref(),
            "images with a human caption",
        ));
    }
    if chosen.len() < options.images {
        crate::progress::warn(&format!(
            "loop: dataset '{}' has only {} captioned images; using them all (--images {})",
            options.dataset,
            chosen.len(),
            options.images
        ));
    }
    let ids = chosen.iter().map(|(id, _)| lit(id.as_str())).collect();
    let mut data = std::collections::HashMap::new();
    for batch in store
        .scan(
            "images",
            &["image_id", "data"],
            Some(col("image_id").in_list(ids, false)),
        )
        .await?
    {
        for (id, bytes) in strings(&batch, "image_id")?
            .into_iter()
            .zip(binaries(&batch, "data")?)
        {
            if let (Some(id), Some(bytes)) = (id, bytes) {
                data.entry(id).or_insert(bytes);
            }
        }
    }
    let mut items = Vec::with_capacity(chosen.len());
    for (image_id, split) in chosen {
        let data = data
            .remove(&image_id)
            .ok_or_else(|| Error::Usage(format!("image '{image_id}' has no bytes")))?;
        let caption = first.get(&image_id).cloned().unwrap_or_default();
        items.push(Item {
            image_id,
            split,
            data,
            caption,
        });
    }
    Ok((items, pool))
}
