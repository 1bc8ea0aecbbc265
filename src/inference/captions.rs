//! Captioning images with a BLIP or LLaVA model: [`captions`] is the one path from image bytes to caption texts for the
//! `caption(...)` SQL function, `vlmdb caption` and the loop. Each distinct (image, prompt) is looked up in
//! `model_cache` first and computed once.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{distinct, first_misses};
use crate::error::{Error, Result};
use crate::models::captioner::Captioner;
use crate::store::Store;
use crate::store::model_cache::{insert_texts, lookup_texts, sha256};

/// Captions of `images` (encoded bytes; `None` in → `None` out) under `prompt` (BLIP: the prefix they start with;
/// LLaVA: the instruction), at most `max_new_tokens` new tokens each (`None`: the model's default). Cached in
/// `store`'s `model_cache`; an image that cannot be decoded is an error naming its position.
pub async fn captions(
    store: Option<&Store>,
    captioner: &Arc<Captioner>,
    images: &[Option<&[u8]>],
    prompt: Option<&str>,
    max_new_tokens: Option<usize>,
) -> Result<Vec<Option<String>>> {
    let key = captioner.cache_key(prompt, max_new_tokens);
    let hashes: Vec<Option<String>> = images.iter().map(|i| i.map(sha256)).collect();
    let mut known = match store {
        Some(store) => lookup_texts(store, &key, &distinct(&hashes)).await?,
        None => HashMap::new(),
    };
    let missing = first_misses(&hashes, &known);
    if !missing.is_empty() {
        let owned: Vec<Vec<u8>> = missing
            .iter()
            .map(|&i| images[i].map(<[u8]>::to_vec).unwrap_or_default())
            .collect();
        let positions = missing.clone();
        let model = Arc::clone(captioner);
        let prompt_owned = prompt.map(str::to_string);
        let computed = tokio::task::spawn_blocking(move || {
            owned
                .iter()
                .zip(&positions)
                .map(|(bytes, &position)| {
                    let (image, _) =
                        crate::image::decode(bytes).map_err(|reason| Error::ModelInput {
                            model: model.files.spec.clone(),
                            input: position,
                            message: format!("the image cannot be read: {reason}"),
                        })?;
                    model.caption(&image, prompt_owned.as_deref(), max_new_tokens)
                })
                .collect::<Result<Vec<String>>>()
        })
        .await
        .map_err(Error::task("captioning"))??;
        let entries: Vec<(String, String)> = missing
            .iter()
            .zip(computed)
            .filter_map(|(&i, text)| hashes[i].clone().map(|h| (h, text)))
            .collect();
        if let Some(store) = store {
            insert_texts(store, &key, &entries).await?;
        }
        known.extend(entries);
    }
    Ok(hashes
        .iter()
        .map(|h| h.as_ref().and_then(|h| known.get(h).cloned()))
        .collect())
}

/// The id of a model caption of an image: stable for (image, model revision, prompt), so captioning again
/// replaces rather than duplicates.
pub fn caption_id(image_id: &str, captioner: &Captioner, prompt: Option<&str>) -> String {
    let mut id = format!("{image_id}#{}", captioner.files.space());
    if let Some(prompt) = prompt.filter(|p| !p.is_empty()) {
        id.push_str("_p");
        id.push_str(&sha256(prompt.as_bytes())[..8]);
    }
    id
}
