//! Training checkpoints: one safetensors file holding the heads' weights, AdamW's moments and, in its metadata,
//! the training state (step, round, epoch, schedule position, RNG state, early-stopping state), stored in
//! `artifacts` under the training run. `checkpoint_step<N>.safetensors` is the full state after step N (what
//! `--resume` continues from); `best_step<N>.safetensors` holds only the weights of the best validation R@1 so
//! far (what `head:<run_id>` projects through).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{LargeBinaryArray, StringArray};
use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::arrays::repeated;
use crate::store::schema::fixed_table;
use crate::store::write::{append, batch_for};

/// The media type of a safetensors file.
pub const MEDIA_TYPE: &str = "application/x-safetensors";

/// The metadata key the training state is kept under.
const STATE_KEY: &str = "vlmdb.train_state";

/// Where a run stands between two epochs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Optimiser steps taken over the whole run (all rounds).
    pub step: u64,
    /// The round in progress (seed S4's mine → train → eval), 0-based.
    pub round: usize,
    /// The next epoch of that round, 0-based.
    pub epoch: usize,
    /// Steps taken in this round (the schedule and AdamW restart each round).
    pub round_step: u64,
    /// The run's RNG.
    pub rng: [u64; 4],
    /// Best validation R@1 (mean of both directions) of this round, and epochs since it improved.
    pub best_r1: Option<f64>,
    pub since_best: usize,
    /// The mining run whose negatives this round's batches carry.
    pub negatives_run: Option<String>,
    /// Step at which training was first flagged dead, if it was.
    pub dead_at: Option<u64>,
}

/// A checkpoint as bytes: `tensors` (weights, and AdamW's moments for a full checkpoint) plus `state`.
pub fn encode(tensors: &BTreeMap<String, Tensor>, state: &TrainState) -> Result<Vec<u8>> {
    let metadata = HashMap::from([(STATE_KEY.to_string(), serde_json::to_string(state)?)]);
    safetensors::tensor::serialize(tensors.iter(), Some(metadata)).map_err(|source| {
        Error::Safetensors {
            what: "writing a checkpoint".into(),
            source,
        }
    })
}

/// The tensors and state of a checkpoint's bytes.
pub fn decode(bytes: &[u8], device: &Device) -> Result<(BTreeMap<String, Tensor>, TrainState)> {
    let bad = |message: String| Error::Usage(format!("checkpoint: {message}"));
    let (_, metadata) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let text = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| bad(format!("no {STATE_KEY} in its metadata")))?;
    let state: TrainState = serde_json::from_str(text)?;
    let tensors = candle_core::safetensors::load_buffer(bytes, device)
        .map_err(Error::tensor("reading a checkpoint"))?
        .into_iter()
        .collect();
    Ok((tensors, state))
}

/// The artifact name of a full checkpoint after `step`.
pub fn checkpoint_name(step: u64) -> String {
    format!("checkpoint_step{step:09}.safetensors")
}

/// The artifact name of the best weights after `step`.
pub fn best_name(step: u64) -> String {
    format!("best_step{step:09}.safetensors")
}

/// Store files under `run_id` in `artifacts`, all in one commit (a checkpoint and a new best land together or
/// not at all).
pub async fn save(store: &Store, run_id: &str, files: Vec<(String, Vec<u8>)>) -> Result<()> {
    let spec = fixed_table("artifacts")?.ok_or_else(|| Error::UnknownTable {
        name: "artifacts".into(),
    })?;
    let n = files.len();
    let (names, data): (Vec<String>, Vec<Vec<u8>>) = files.into_iter().unzip();
    let batch = batch_for(
        &spec,
        vec![
            ("run_id", repeated(run_id, n)),
            ("name", Arc::new(StringArray::from(names))),
            ("media_type", repeated(MEDIA_TYPE, n)),
            (
                "data",
                Arc::new(LargeBinaryArray::from_iter_values(
                    data.iter().map(Vec::as_slice),
                )),
            ),
        ],
    )?;
    append(store, &spec, batch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_tensors_round_trip() {
        let state = TrainState {
            step: 12,
            round: 1,
            epoch: 3,
            round_step: 4,
            rng: [1, 2, u64::MAX, 4],
            best_r1: Some(0.5),
            since_best: 1,
            negatives_run: Some("r".into()),
            dead_at: None,
        };
        let tensors = BTreeMap::from([(
            "w".to_string(),
            Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap(),
        )]);
        let bytes = encode(&tensors, &state).unwrap();
        let (back, s) = decode(&bytes, &Device::Cpu).unwrap();
        assert_eq!(s, state);
        assert_eq!(
            back["w"].to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert!(checkpoint_name(5) < checkpoint_name(40));
    }
}
