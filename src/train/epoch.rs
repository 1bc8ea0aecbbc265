//! The bookkeeping of one epoch, the same for every training run: each step's numbers (loss, logit scale, `temp`,
//! gradient norm, lr, batch size, SANW statistics) buffered for one commit, the dead-training watch fed, the
//! progress bar moved; then the validation R@1 that decides whether the epoch's weights are the best, and the
//! checkpoint (weights, optimiser moments, state) and best weights written together.

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::checkpoint::{self, TrainState, best_name, checkpoint_name};
use super::dead::DeadWatch;
use super::step::StepOutcome;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::Store;
use crate::store::metrics::{Metric, write as write_metrics};

/// Metrics of one epoch's steps, written in one commit.
#[derive(Debug, Default)]
pub struct StepMetrics(Vec<Metric>);

impl StepMetrics {
    pub fn push(&mut self, name: &str, value: f64, step: u64, round: usize) {
        self.0.push(Metric::at(name, value, step, round));
    }

    pub async fn write(self, store: &Store, run_id: &str) -> Result<()> {
        write_metrics(store, run_id, &self.0).await
    }
}

/// One epoch's record.
#[derive(Debug, Default)]
pub struct EpochLog {
    pub metrics: StepMetrics,
    loss_sum: f64,
    steps: usize,
    pub last_lr: f64,
    pub last_loss: Option<f64>,
}

/// What a step was, beside its outcome.
#[derive(Debug, Clone, Copy)]
pub struct StepFacts {
    /// The temperature's inverse, exp(logit scale), after the step.
    pub scale: f64,
    pub lr: f64,
    /// Rows in the batch (pairs plus the negatives it carried).
    pub batch_size: usize,
    /// Round (`iteration` in `metrics`).
    pub round: usize,
}

impl EpochLog {
    /// Record step `state.step + 1`: refuse a non-finite loss, count the step, buffer its numbers, feed the
    /// dead-training watch (the first time it fires: a warning, a `dead_training` metric, `state.dead_at`).
    pub fn step(
        &mut self,
        state: &mut TrainState,
        watch: &mut DeadWatch,
        done: &StepOutcome,
        facts: StepFacts,
        run_id: &str,
        bar: Option<&Progress>,
    ) -> Result<()> {
        if !done.loss.is_finite() {
            return Err(Error::Usage(format!(
                "step {}: the loss is {} (lower --lr, or check the inputs for bad vectors)",
                state.step + 1,
                done.loss
            )));
        }
        state.step += 1;
        state.round_step += 1;
        let (step, round) = (state.step, facts.round);
        let m = &mut self.metrics;
        m.push("loss", done.loss, step, round);
        m.push("logit_scale", facts.scale, step, round);
        m.push("temp", 1.0 / facts.scale, step, round);
        m.push("grad_norm", done.grad_norm, step, round);
        m.push("lr", facts.lr, step, round);
        m.push("batch_size", facts.batch_size as f64, step, round);
        for (name, value) in done.weights.map(|w| w.metrics()).unwrap_or_default() {
            m.push(name, value, step, round);
        }
        if let Some(reason) = watch.observe(done.loss, done.grad_norm, done.relative_update)
            && state.dead_at.is_none()
        {
            state.dead_at = Some(step);
            m.push("dead_training", 1.0, step, round);
            let message = format!("run {run_id}: training looks dead at step {step}: {reason}");
            match bar {
                Some(bar) => bar.warn(&message),
                None => crate::progress::warn(&message),
            }
        }
        self.loss_sum += done.loss;
        self.steps += 1;
        self.last_lr = facts.lr;
        self.last_loss = Some(done.loss);
        if let Some(bar) = bar {
            bar.inc(1);
        }
        Ok(())
    }

    /// The epoch's mean loss.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.steps.max(1) as f64
    }
}

/// One epoch's summary line for a log without a terminal.
pub struct EpochLine<'a> {
    pub run_id: &'a str,
    pub round: usize,
    pub rounds: usize,
    pub epoch: usize,
    pub epochs: usize,
    pub loss: f64,
    pub lr: f64,
    pub r1: &'a [(String, i64, f64)],
    pub epoch_seconds: f64,
    pub eta_seconds: f64,
}

impl std::fmt::Display for EpochLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "train {}", self.run_id)?;
        if self.rounds > 1 {
            write!(f, " round {}/{}", self.round + 1, self.rounds)?;
        }
        write!(
            f,
            " epoch {}/{}: loss {:.6}, lr {:.3e}",
            self.epoch, self.epochs, self.loss, self.lr
        )?;
        for (direction, dim, value) in self.r1 {
            write!(f, ", val R@1 {direction}@{dim} {value:.4}")?;
        }
        write!(
            f,
            ", {}, ETA {}",
            crate::progress::duration(self.epoch_seconds),
            crate::progress::duration(self.eta_seconds)
        )
    }
}

/// Count validation R@1 `r1` against the best so far; true when it is the new best.
pub fn observe_r1(state: &mut TrainState, r1: Option<f64>) -> bool {
    let Some(r1) = r1 else {
        return false;
    };
    if state.best_r1.is_none_or(|best| r1 > best) {
        state.best_r1 = Some(r1);
        state.since_best = 0;
        true
    } else {
        state.since_best += 1;
        false
    }
}

/// Write the epoch's checkpoint — `weights` and the optimiser's `moments`, with `state` — and, when `best`, the
/// weights alone as the best ones, in one commit.
pub async fn save(
    store: &Store,
    run_id: &str,
    weights: BTreeMap<String, Tensor>,
    moments: BTreeMap<String, Tensor>,
    state: &TrainState,
    best: bool,
) -> Result<()> {
    let mut files = Vec::new();
    if best {
        files.push((best_name(state.step), checkpoint::encode(&weights, state)?));
    }
    let mut full = weights;
    full.extend(moments);
    files.insert(
        0,
        (
            checkpoint_name(state.step),
            checkpoint::encode(&full, state)?,
        ),
    );
    checkpoint::save(store, run_id, files).await
}
