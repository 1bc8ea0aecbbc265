//! What every training run shares, heads over frozen spaces and fine-tuning alike: the data it fits (dataset,
//! splits, batches), the loss, the optimiser and its schedule, and how it is watched (patience, dead training).
//! Each run's configuration flattens these fields in beside its own, so a stored configuration reads as one map.

use crate::error::{Error, Result};
use crate::train::loss::Loss;
use crate::train::optim::{AdamWConfig, Schedule};

/// The options every training run has.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fit {
    pub dataset: String,
    /// The split trained on.
    pub split: String,
    /// The split scored after every epoch (R@1/5/10 both ways); `None`: no validation, the last epoch is best.
    pub val_split: Option<String>,
    pub loss: Loss,
    pub batch: usize,
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    pub min_lr: f64,
    /// Warmup steps (default: one epoch, at most a tenth of the run).
    pub warmup: Option<usize>,
    pub adamw: AdamWConfig,
    /// Gradient-norm clipping threshold (0: off).
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Topical batches from this `vlmdb cluster` run.
    pub topical: Option<String>,
    /// The (first round's) batches carry the negatives of this `vlmdb mine` run.
    pub negatives: Option<String>,
    pub negatives_per_query: usize,
    /// Early stopping: stop after this many epochs without a better validation R@1.
    pub patience: Option<usize>,
    /// Dead-training window in steps (0: off).
    pub dead_steps: usize,
    /// An epoch visits each image once with one of its captions, instead of every caption–image pair (runs
    /// configured before the choice existed did this).
    #[serde(default = "yes")]
    pub one_caption_per_image: bool,
}

fn yes() -> bool {
    true
}

impl Fit {
    /// The checks every run makes before it starts.
    pub fn validate(&self) -> Result<()> {
        let usage = |m: String| Err(Error::Usage(m));
        if self.batch < 2 {
            return usage(format!(
                "--batch {}: a contrastive batch needs at least 2 pairs",
                self.batch
            ));
        }
        if self.epochs == 0 {
            return usage("--epochs must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return usage(format!(
                "--lr {} / --min-lr {}: need 0 <= min-lr, finite lr >= 0",
                self.lr, self.min_lr
            ));
        }
        Ok(())
    }

    /// The learning-rate schedule of a run of `per_epoch` batches per epoch.
    pub fn schedule(&self, per_epoch: usize) -> Schedule {
        let total = per_epoch * self.epochs;
        Schedule {
            peak: self.lr,
            min_lr: self.min_lr,
            warmup: self.warmup.unwrap_or_else(|| per_epoch.min(total / 10)),
            total,
        }
    }
}
