//! Model results cached in the store's `model_cache` table ([`crate::store::model_cache`]): asking for the same text
//! or image twice, in this process or another one, computes it once. [`embed`] is the one path from inputs to
//! vectors for the SQL functions and `vlmdb embed` alike.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;

use crate::error::{Error, Result};
use crate::models::{Modality, Model};
use crate::store::Store;
use crate::store::model_cache::{insert, lookup, sha256};

/// One input: text or encoded image bytes.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Text(&'a str),
    Image(&'a [u8]),
}

impl<'a> Input<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            Input::Text(t) => t.as_bytes(),
            Input::Image(b) => b,
        }
    }
}

/// A column of inputs of one modality, cast once to the type [`Input`] borrows from: `LargeUtf8` for texts,
/// `LargeBinary` for image bytes. The SQL functions and `vlmdb embed` both read their inputs through it.
pub struct InputColumn {
    modality: Modality,
    array: ArrayRef,
}

impl InputColumn {
    pub fn new(modality: Modality, array: &ArrayRef) -> Result<Self> {
        let target = match modality {
            Modality::Text => DataType::LargeUtf8,
            Modality::Image => DataType::LargeBinary,
        };
        Ok(InputColumn {
            modality,
            array: arrow::compute::cast(array, &target)?,
        })
    }

    /// One input per row, `None` where the row is NULL.
    pub fn inputs(&self) -> Vec<Option<Input<'_>>> {
        match self.modality {
            Modality::Text => {
                let text = self.array.as_string::<i64>();
                (0..text.len())
                    .map(|r| text.is_valid(r).then(|| Input::Text(text.value(r))))
                    .collect()
            }
            Modality::Image => {
                let bytes = self.array.as_binary::<i64>();
                (0..bytes.len())
                    .map(|r| bytes.is_valid(r).then(|| Input::Image(bytes.value(r))))
                    .collect()
            }
        }
    }
}

/// The distinct hashes of `hashes`, in first-seen order.
pub fn distinct(hashes: &[Option<String>]) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for hash in hashes.iter().flatten() {
        if seen.insert(hash.as_str()) {
            out.push(hash.clone());
        }
    }
    out
}

/// The first position of each input whose hash is not in `known`: what is left to compute, once each.
pub fn first_misses<T>(hashes: &[Option<String>], known: &HashMap<String, T>) -> Vec<usize> {
    let mut missing = Vec::new();
    let mut queued = HashSet::new();
    for (i, hash) in hashes.iter().enumerate() {
        if let Some(hash) = hash
            && !known.contains_key(hash)
            && queued.insert(hash.as_str())
        {
            missing.push(i);
        }
    }
    missing
}

/// What [`embed`] did: how many vectors came from the cache and how many were computed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub cached: usize,
    pub computed: usize,
}

/// L2-normalised embeddings of `inputs` (all of one modality), `None` in → `None` out. Looks each distinct input
/// up in `model_cache` (when a store is given), computes only the misses (once each, on a blocking thread), and
/// caches them. Errors name the position of the input in `inputs`.
pub async fn embed(
    store: Option<&Store>,
    model: &Arc<Model>,
    modality: Modality,
    inputs: &[Option<Input<'_>>],
    batch_size: usize,
) -> Result<(Vec<Option<Vec<f32>>>, CacheStats)> {
    let key = model.cache_key(modality);
    let hashes: Vec<Option<String>> = inputs
        .iter()
        .map(|i| i.as_ref().map(|i| sha256(i.bytes())))
        .collect();
    let mut known = match store {
        Some(store) => lookup(store, &key, &distinct(&hashes)).await?,
        None => HashMap::new(),
    };
    let mut stats = CacheStats {
        cached: known.len(),
        computed: 0,
    };
    let missing = first_misses(&hashes, &known);
    if !missing.is_empty() {
        let computed = compute(model, modality, inputs, &missing, batch_size).await?;
        stats.computed = computed.len();
        let entries: Vec<(String, Vec<f32>)> = missing
            .iter()
            .zip(computed)
            .filter_map(|(&i, v)| hashes[i].clone().map(|h| (h, v)))
            .collect();
        if let Some(store) = store {
            insert(store, &key, &entries).await?;
        }
        known.extend(entries);
    }
    let vectors = hashes
        .iter()
        .map(|h| h.as_ref().and_then(|h| known.get(h).cloned()))
        .collect();
    Ok((vectors, stats))
}

async fn compute(
    model: &Arc<Model>,
    modality: Modality,
    inputs: &[Option<Input<'_>>],
    positions: &[usize],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    // On a multi-threaded runtime (the CLI's) the model runs in place on the inputs as they are (a chunk of large
    // images is not copied); on a single-threaded one, on a blocking thread over a copy.
    let result = if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        let borrowed: Vec<&[u8]> = positions
            .iter()
            .map(|&i| inputs[i].map_or(&[][..], |x| x.bytes()))
            .collect();
        tokio::task::block_in_place(|| run_model(model, modality, &borrowed, batch_size))
    } else {
        let owned: Vec<Vec<u8>> = positions
            .iter()
            .map(|&i| inputs[i].map(|x| x.bytes().to_vec()).unwrap_or_default())
            .collect();
        let model = Arc::clone(model);
        tokio::task::spawn_blocking(move || {
            let borrowed: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            run_model(&model, modality, &borrowed, batch_size)
        })
        .await
        .map_err(Error::task("running the model"))?
    };
    // Errors from the model name the position among the misses: translate it to the caller's position.
    result.map_err(|e| match e {
        Error::ModelInput {
            model,
            input,
            message,
        } => Error::ModelInput {
            model,
            input: positions.get(input).copied().unwrap_or(input),
            message,
        },
        other => other,
    })
}

/// The model over `inputs` (texts as UTF-8 bytes, or encoded images), in order.
fn run_model(
    model: &Model,
    modality: Modality,
    inputs: &[&[u8]],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    match modality {
        Modality::Text => {
            let texts: Vec<&str> = inputs
                .iter()
                .map(|b| std::str::from_utf8(b).unwrap_or_default())
                .collect();
            model.embed_texts(&texts, batch_size)
        }
        Modality::Image => model.embed_images(inputs, batch_size),
    }
}
