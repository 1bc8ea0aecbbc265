//! The caption→image→caption loop (`vlmdb loop`, seed S0): hop 0 is a dataset's images; each hop captions the
//! previous image with a captioner (BLIP) and draws the next image from that caption with a generator (Stable
//! Diffusion). Everything a hop makes lands in the store with full lineage: generated images in `images`
//! (run_id, iteration = hop, parent_id = the caption it was drawn from), captions in `captions` (run_id, iteration,
//! image_id = the image they describe), and per-item and per-hop similarities in `metrics` ([`similarity`]).
//!
//! **Baselines** ([`variant::Variant`]) are runs of their own, linked to the loop run by `baseline_of` in their config:
//! generator-only (every hop draws from the item's original caption), random captions (each hop's caption is a
//! human caption of another image, drawn with the seed), and fixed caption (one caption for every item and hop).
//! All variants use the same generation seed for the same (item, hop), so they differ only in their captions.
//!
//! **Resume**: re-running the same command continues the newest unfinished run with the same configuration, and a
//! finished loop run whose baselines did not all finish is kept, so its baselines resume under it. A hop counts as
//! done once its per-hop metrics (written last, in one commit) are stored; the rows of an unfinished hop are
//! replaced (images and captions have stable ids and are upserted, its metrics are deleted first), so nothing is
//! duplicated. Once the loop and all its baselines finished, the same command starts new runs.
//!
//! Generated rows carry dataset `<dataset>/loop` (so the dataset's own evaluation never sees them) and the split
//! of the item they descend from.
//!
//! The compute lives here, by concept: which images a loop starts from ([`items`]), what each variant captions
//! ([`variant`]), the rows a hop writes and their ids ([`lineage`]), the hops of one run ([`hop`]), the metrics
//! ([`similarity`]), the hop vectors kept in the spaces ([`spaces`]) and what an interrupted run left ([`resume`]); `vlmdb loop`
//! ([`crate::commands::caption_loop`]) opens the runs and ties them together.

pub mod hop;
pub mod items;
pub mod lineage;
pub mod resume;
pub mod similarity;
pub mod spaces;
pub mod variant;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::models::Model;
use crate::models::captioner::Captioner;
use crate::models::diffusion::Generator;
use variant::Variant;

/// What `vlmdb loop` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopOptions {
    pub captioner: String,
    pub generator: String,
    pub dataset: String,
    pub split: Option<String>,
    /// Items: the dataset's first images by image_id (those with a human caption).
    pub images: usize,
    /// Hops after hop 0: generated images per item.
    pub iterations: usize,
    pub seed: u64,
    pub baselines: bool,
    /// The model whose image (and text) tower measures image–image and image–caption similarity.
    pub image_space: String,
    /// The model whose text tower measures caption–caption similarity.
    pub text_space: String,
    pub steps: usize,
    pub guidance: f64,
    /// The captioner's conditional prefix.
    pub prompt: Option<String>,
    /// The fixed-caption baseline's caption (default: the first item's original caption).
    pub fixed_caption: Option<String>,
    /// The generator's negative prompt (absent in the configurations of earlier runs: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// The captioner's limit on new tokens (absent in earlier runs' configurations: the captioner's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
}

/// The stored configuration of one run of the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(flatten)]
    pub options: LoopOptions,
    pub variant: Variant,
    /// The loop run a baseline belongs to.
    pub baseline_of: Option<String>,
}

/// What one run of the loop did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub variant: Variant,
    /// The last hop that was already complete when this invocation started, when it resumed a run.
    pub resumed_after_hop: Option<usize>,
    /// The run had finished before this invocation: nothing was written.
    pub finished_before: bool,
    pub images_written: usize,
    pub captions_written: usize,
    pub metrics_written: usize,
}

/// One selected dataset image.
#[derive(Debug, Clone)]
pub struct Item {
    pub image_id: String,
    pub split: Option<String>,
    pub data: Vec<u8>,
    /// Its first human caption: (caption_id, text).
    pub caption: (String, String),
}

/// The image and caption of one item at one hop.
#[derive(Debug, Clone)]
pub struct HopState {
    pub image_id: String,
    pub image: Vec<u8>,
    pub caption_id: String,
    pub caption: String,
}

/// The models every variant shares.
pub struct Models {
    pub captioner: Arc<Captioner>,
    pub generator: Arc<Generator>,
    pub image_space: Arc<Model>,
    pub text_space: Arc<Model>,
}
