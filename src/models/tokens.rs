//! Text to token batches: the model's `tokenizer.json` with truncation at the model's limit (special tokens kept),
//! and padding either to the longest sequence of the batch (BERT, CLIP) or to a fixed length (SigLIP).
//! Texts are batched in order of length, as sentence-transformers does, so a batch pads as little as possible.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// How a batch is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// To the longest sequence in the batch.
    Longest,
    /// Always to this length (SigLIP pads to 64 and pools the last position).
    Fixed(usize),
}

/// A model's tokenizer with its truncation and padding rules.
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    pub max_len: usize,
    pub pad_id: u32,
    pub padding: Padding,
}

/// A padded batch on a device: ids and attention mask (`batch × len`, u32), plus each row's unpadded ids.
pub struct TokenBatch {
    pub ids: Tensor,
    pub mask: Tensor,
    pub rows: Vec<Vec<u32>>,
}

impl TextTokenizer {
    pub fn load(path: &Path, max_len: usize, pad_id: u32, padding: Padding) -> Result<Self> {
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| Error::Input {
            path: path.into(),
            message: format!("cannot load the tokenizer: {e}"),
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| Error::Input {
                path: path.into(),
                message: format!("cannot set truncation to {max_len}: {e}"),
            })?;
        Ok(TextTokenizer {
            tokenizer,
            max_len,
            pad_id,
            padding,
        })
    }

    /// The id of a special token, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Token ids of each text, special tokens added, truncated to `max_len`.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        texts
            .iter()
            .enumerate()
            .map(|(row, text)| {
                self.tokenizer
                    .encode(*text, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|source| Error::Tokenizer {
                        what: format!("text {row}"),
                        source,
                    })
            })
            .collect()
    }

    /// Pad `rows` into one batch on `device`.
    pub fn batch(&self, rows: Vec<Vec<u32>>, device: &Device) -> Result<TokenBatch> {
        let len = match self.padding {
            Padding::Longest => rows.iter().map(Vec::len).max().unwrap_or(0).max(1),
            Padding::Fixed(n) => n,
        };
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut mask = Vec::with_capacity(rows.len() * len);
        for row in &rows {
            let n = row.len().min(len);
            ids.extend_from_slice(&row[..n]);
            ids.extend(std::iter::repeat_n(self.pad_id, len - n));
            mask.extend(std::iter::repeat_n(1u32, n));
            mask.extend(std::iter::repeat_n(0u32, len - n));
        }
        let shape = (rows.len(), len);
        let candle = |source| Error::Candle {
            model: "tokenizer".into(),
            source,
        };
        Ok(TokenBatch {
            ids: Tensor::from_vec(ids, shape, device).map_err(candle)?,
            mask: Tensor::from_vec(mask, shape, device).map_err(candle)?,
            rows,
        })
    }
}

/// Indices of `lengths` in batches of at most `batch_size`, longest first, so each batch holds similar lengths.
pub fn length_sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_group_similar_lengths() {
        let batches = length_sorted_batches(&[3, 10, 1, 7], 2);
        assert_eq!(batches, vec![vec![1, 3], vec![0, 2]]);
    }
}
