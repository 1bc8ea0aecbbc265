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

/// Each hop's image vectors (image space) and caption vectors (text space), computed once per process run: hop h
/// needs its own, hop 0's and hop h − 1's.
#[derive(Default)]
pub(super) struct HopVectors {
    hops: Vec<Option<(Vectors, Vectors)>>,
}

/// One vector per item.
type Vectors = Vec<Vec<f32>>;

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
            let image = vectors(store, &models.image_space, Modality::Image, &hops[hop]).await?;
            let text = vectors(store, &models.text_space, Modality::Text, &hops[hop]).await?;
            self.hops[hop] = Some((image, text));
        }
        Ok(())
    }

    /// The (image, text) vectors of a hop [`fill`](Self::fill) computed; empty when it did not.
    fn at(&self, hop: usize) -> (&[Vec<f32>], &[Vec<f32>]) {
        match self.hops.get(hop) {
            Some(Some((image, text))) => (image, text),
            _ => (&[], &[]),
        }
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
    let (image, text) = cache.at(hop);
    let joint_text = vectors(store, &models.image_space, Modality::Text, &hops[hop]).await?;
    let mut per_name: Vec<(&str, Vec<f64>)> = Vec::new();
    if hop > 0 {
        let (image_0, text_0) = cache.at(0);
        let (image_prev, text_prev) = cache.at(hop - 1);
        let pairwise = |a: &[Vec<f32>], b: &[Vec<f32>]| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| dot(x, y)).collect()
        };
        per_name.push((NAMES[0], pairwise(image, image_0)));
        per_name.push((NAMES[1], pairwise(image, image_prev)));
        per_name.push((NAMES[2], pairwise(text, text_0)));
        per_name.push((NAMES[3], pairwise(text, text_prev)));
    }
    per_name.push((
        NAMES[4],
        image
            .iter()
            .zip(&joint_text)
            .map(|(x, y)| dot(x, y))
            .collect(),
    ));
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
