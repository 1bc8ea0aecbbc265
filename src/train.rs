//! Training on stored embeddings (seeds S1, S3, S4): projection heads over two frozen spaces of the store, trained
//! with Candle autograd on symmetric InfoNCE or the SANW losses ([`loss`]), optionally summed over Matryoshka
//! widths; random, topical or hard-negative batches ([`batches`]); AdamW with warmup + cosine decay and gradient
//! clipping ([`optim`]); every step's numbers and every epoch's validation retrieval in `metrics`; dead-training
//! detection ([`dead`]); checkpoints in `artifacts` with resume ([`checkpoint`]); rounds of mine → train → eval;
//! and the trained heads as a space of their own, `head:<run_id>` ([`space`]). `vlmdb train` ([`crate::commands::train`]) ties them together.

pub mod batches;
pub mod checkpoint;
pub mod composed;
pub mod data;
pub mod dead;
pub mod epoch;
pub mod fit;
pub mod head;
pub mod head_model;
pub mod loss;
pub mod optim;
pub mod space;
pub mod step;
