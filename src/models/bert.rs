//! Sentence-transformers BERT encoders (all-MiniLM-L6-v2 and kin): the BERT encoder ([`super::bert_encoder`]) with
//! the **attention mask**, then
//! the pooling the model's `1_Pooling/config.json` asks for (masked mean by default; CLS supported), so padded
//! positions never reach the sentence vector. Truncation at `sentence_bert_config.json`'s `max_seq_length`
//! (256 for MiniLM), else the model's position limit.

use candle_core::{D, DType, Device, Tensor};
use candle_transformers::models::bert::Config;
use serde::Deserialize;

use super::bert_encoder::BertEncoder;
use super::hub::ModelFiles;
use super::tokens::{Padding, TextTokenizer, TokenBatch};
use super::{Encoder, read_json, weights};
use crate::error::{Error, Result};
use crate::models::preprocess::ImageProcessor;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pooling {
    Mean,
    Cls,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

/// A sentence-transformers BERT model (text only).
pub struct SentenceBert {
    model: BertEncoder,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    dim: usize,
}

impl Encoder for SentenceBert {
    fn load(files: &mut ModelFiles, device: &Device) -> Result<Self> {
        let config: Config = read_json(files, "config.json")?;
        let pooling = match files.optional("1_Pooling/config.json")? {
            None => Pooling::Mean,
            Some(path) => {
                let p: PoolingConfig = super::read_json_path(&files.spec, &path)?;
                match (
                    p.pooling_mode_mean_tokens,
                    p.pooling_mode_cls_token,
                    p.pooling_mode_max_tokens,
                ) {
                    (true, false, false) => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    _ => {
                        return Err(Error::Model {
                            model: files.spec.clone(),
                            message: "1_Pooling/config.json: only mean or CLS pooling is supported"
                                .into(),
                        });
                    }
                }
            }
        };
        let max_len = match files.optional("sentence_bert_config.json")? {
            Some(path) => super::read_json_path::<SentenceConfig>(&files.spec, &path)?
                .max_seq_length
                .unwrap_or(config.max_position_embeddings),
            None => config.max_position_embeddings,
        }
        .min(config.max_position_embeddings);
        let tokenizer = TextTokenizer::load(
            &files.require("tokenizer.json")?,
            max_len,
            config.pad_token_id as u32,
            Padding::Longest,
        )?;
        let vb = weights(files, device)?;
        let model = BertEncoder::load(vb, &config).map_err(|source| Error::Candle {
            model: files.spec.clone(),
            source,
        })?;
        Ok(SentenceBert {
            model,
            tokenizer,
            pooling,
            dim: config.hidden_size,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn tokenizer(&self) -> Option<&TextTokenizer> {
        Some(&self.tokenizer)
    }

    fn text_features(&self, batch: &TokenBatch) -> candle_core::Result<Tensor> {
        let hidden = self.model.forward(&batch.ids, &batch.mask)?;
        match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => {
                let mask = batch.mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)
            }
        }
    }

    fn image_processor(&self) -> Option<&ImageProcessor> {
        None
    }

    fn image_features(&self, _pixels: &Tensor) -> candle_core::Result<Tensor> {
        candle_core::bail!("a sentence-transformers model has no image tower")
    }

    fn text_key(&self) -> String {
        format!(
            "bert:max_len={}:pool={:?}",
            self.tokenizer.max_len, self.pooling
        )
    }
}
