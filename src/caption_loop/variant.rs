//! The loop and its baselines: what produces each hop's caption.

use serde::{Deserialize, Serialize};

use super::lineage::generation_seed;
use super::{Item, Models, RunConfig};
use crate::error::Result;
use crate::rng::Rng;
use crate::store::Store;

/// What produces each hop's caption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The captioner captions the previous hop's image (the loop itself).
    Loop,
    /// Every hop draws from the item's original (first human) caption.
    GeneratorOnly,
    /// Each hop's caption is a human caption of another image, drawn with the seed.
    RandomCaptions,
    /// One caption for every item and hop.
    FixedCaption,
}

impl Variant {
    pub const BASELINES: [Variant; 3] = [
        Variant::GeneratorOnly,
        Variant::RandomCaptions,
        Variant::FixedCaption,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Loop => "loop",
            Variant::GeneratorOnly => "generator_only",
            Variant::RandomCaptions => "random_captions",
            Variant::FixedCaption => "fixed_caption",
        }
    }
}

/// The `source` of the captions a variant writes.
pub fn caption_source(models: &Models, config: &RunConfig) -> String {
    match config.variant {
        Variant::Loop => models.captioner.files.id.clone(),
        other => format!("baseline:{}", other.name()),
    }
}

/// Each item's caption at `hop`, by the variant's rule.
pub async fn hop_captions(
    store: &Store,
    models: &Models,
    items: &[Item],
    pool: &[(String, String)],
    config: &RunConfig,
    hop: usize,
    images: &[Vec<u8>],
) -> Result<Vec<String>> {
    let options = &config.options;
    Ok(match config.variant {
        Variant::Loop => {
            let inputs: Vec<Option<&[u8]>> = images.iter().map(|i| Some(i.as_slice())).collect();
            crate::inference::captions::captions(
                Some(store),
                &models.captioner,
                &inputs,
                options.prompt.as_deref(),
                options.max_new_tokens,
            )
            .await?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()
        }
        Variant::GeneratorOnly => items.iter().map(|i| i.caption.1.clone()).collect(),
        Variant::FixedCaption => {
            let fixed = options
                .fixed_caption
                .clone()
                .unwrap_or_else(|| items[0].caption.1.clone());
            vec![fixed; items.len()]
        }
        Variant::RandomCaptions => items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                let others: Vec<&(String, String)> = pool
                    .iter()
                    .filter(|(image, _)| *image != item.image_id)
                    .collect();
                if others.is_empty() {
                    return item.caption.1.clone();
                }
                let mut rng = Rng::new(generation_seed(options.seed, k, hop) ^ 0x5eed_ca97);
                others[rng.below(others.len())].1.clone()
            })
            .collect(),
    })
}
