//! vlmdb: an embedded experiment database for vision-language research.
//!
//! Every caption, image, embedding, metric, run and artifact lands in a LanceDB store ([`store`]); experiments are
//! DataFusion SQL over that store ([`sql`]); people use it through the CLI and the SQL shell ([`cli`]).

pub mod bench;
pub mod caption;
pub mod cli;
pub mod cluster;
pub mod embed;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod feedback;
pub mod import;
pub mod ingest;
pub mod mine;
pub mod models;
pub mod plot;
pub mod progress;
pub mod rng;
pub mod search;
pub mod sql;
pub mod store;
pub mod train;

pub use error::{Error, Result};
