//! The loop's similarity metrics, per item (`metrics.item_id` = the dataset image the item started from; its split
//! is the image's) and per hop (the mean over items, `item_id` NULL), at `iteration` = the hop. Vectors are L2-normalised embeddings through
//! the model cache, so cosine = dot product and nothing is embedded twice.
//!
//! | name | hops | what |
//! | --- | --- | --- |
//! | `image_sim_to_hop0` | ≥ 1 | image at this hop vs the item's dataset image (image space) |
//! | `image_sim_to_prev` | ≥ 1 | image at this hop vs the previous hop's image (image space) |
//! | `caption_sim_to_hop0` | ≥ 1 | caption at this hop vs the hop-0 caption (text space) |
//! | `caption_sim_to_prev` | ≥ 1 | caption at this hop vs the previous hop's caption (text space) |
//! | `image_caption_sim` | ≥ 0 | image at this hop vs its caption (the image space's image and text towers) |

use std::sync::Arc;

use super::{HopState, Item, Models};
use crate::error::Result;
use crate::inference::cache::{Input, embed};
use crate::models::{DEFAULT_BATCH, Modality, Model};
use crate::store::Store;
use crate::store::metrics::Metric;

/// Every metric name the loop writes, in the order of the table above.
pub const NAMES: [&str; 5] = [
    "image_sim_to_hop0",
    "image_sim_to_prev",
    "caption_sim_to_hop0",
    "caption_sim_to_prev",
    "image_caption_sim",
];

async fn vectors(
    store: &Store,
    model: &Arc<Model>,
    modality: Modality,
    states: &[HopState],
) -> Result<Vec<Vec<f32>>> {
    let inputs: Vec<Option<Input<'_>>> = states
        .iter()
        .map(|s| {
            Some(match modality {
                Modality::Image => Input::Image(&s.image),
                Modality::Text => Input::Text(&s.caption),
            })
        })
        .collect();
    let (vectors, _) = embed(Some(store), model, modality, &inputs, DEFAULT_BATCH).await?;
    Ok(vectors.into_iter().map(Option::unwrap_or_default).collect())
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum()
}

/// One hop's vectors, one per item: images in the image space, captions in the text space, and captions in the
/// image space (its text tower, for image–caption similarity).
#[derive(Clone)]
pub(super) struct HopSet {
    pub image: Vec<Vec<f32>>,
    pub text: Vec<Vec<f32>>,
    pub joint_text: Vec<Vec<f32>>,
}

/// Each hop's vectors, computed once per process run: hop h needs its own, hop 0's and hop h − 1's.
#[derive(Default)]
pub(super) struct HopVectors {
    hops: Vec<Option<HopSet>>,
}

impl HopVectors {
    /// Compute the vectors of `hop` unless they are known.
    async fn fill(
        &mut self,
        store: &Store,
        models: &Models,
        hops: &[Vec<HopState>],
        hop: usize,
    ) -> Result<()> {
        if self.hops.len() <= hop {
            self.hops.resize(hop + 1, None);
        }
        if self.hops[hop].is_none() {
            let states = &hops[hop];
            self.hops[hop] = Some(HopSet {
                image: vectors(store, &models.image_space, Modality::Image, states).await?,
                text: vectors(store, &models.text_space, Modality::Text, states).await?,
                joint_text: vectors(store, &models.image_space, Modality::Text, states).await?,
            });
        }
        Ok(())
    }

    /// The vectors of a hop [`fill`](Self::fill) computed; empty when it did not.
    pub(super) fn at(&self, hop: usize) -> &HopSet {
        const NONE: &HopSet = &HopSet {
            image: Vec::new(),
            text: Vec::new(),
            joint_text: Vec::new(),
        };
        self.hops.get(hop).and_then(Option::as_ref).unwrap_or(NONE)
    }
}

/// The metrics of `hop` (whose states are `hops[hop]`).
pub(super) async fn hop_metrics(
    store: &Store,
    models: &Models,
    items: &[Item],
    hops: &[Vec<HopState>],
    hop: usize,
    cache: &mut HopVectors,
) -> Result<Vec<Metric>> {
    for h in [0, hop.saturating_sub(1), hop] {
        cache.fill(store, models, hops, h).await?;
    }
    let now = cache.at(hop);
    let pairwise = |a: &[Vec<f32>], b: &[Vec<f32>]| -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| dot(x, y)).collect()
    };
    let mut per_name: Vec<(&str, Vec<f64>)> = Vec::new();
    if hop > 0 {
        let (first, prev) = (cache.at(0), cache.at(hop - 1));
        per_name.push((NAMES[0], pairwise(&now.image, &first.image)));
        per_name.push((NAMES[1], pairwise(&now.image, &prev.image)));
        per_name.push((NAMES[2], pairwise(&now.text, &first.text)));
        per_name.push((NAMES[3], pairwise(&now.text, &prev.text)));
    }
    per_name.push((NAMES[4], pairwise(&now.image, &now.joint_text)));
    let mut metrics = Vec::new();
    for (name, values) in per_name {
        for (item, value) in items.iter().zip(&values) {
            metrics.push(Metric {
                name: name.to_string(),
                value: *value,
                iteration: Some(hop as i32),
                item_id: Some(item.image_id.clone()),
                ..Metric::default()
            });
        }
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        metrics.push(Metric {
            name: name.to_string(),
            value: mean,
            iteration: Some(hop as i32),
            ..Metric::default()
        });
    }
    Ok(metrics)
}
