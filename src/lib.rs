//! vlmdb: an embedded experiment database for vision-language research.
//!
//! Every caption, image, embedding, metric, run and artifact lands in a LanceDB store ([`store`]); experiments are
//! DataFusion SQL over that store ([`sql`]); people use it through the CLI and the SQL shell ([`cli`]).
//!
//! The modules stand on each other in floors, and a module only uses the floors below it (a test reads `src/` and
//! enforces it):
//!
//! 1. [`cli`]: arguments, dispatch, printing, the shell.
//! 2. [`commands`]: one file per verb.
//! 3. [`sql`]: the DataFusion session and every SQL function.
//! 4. compute: [`inference`] (models over stored inputs, with the model cache), [`eval`], [`cluster`], [`train`],
//!    [`caption_loop`], [`plot`].
//! 5. [`models`]: config + weights → forward, per family.
//! 6. [`ingest`]: one reader per dataset format.
//! 7. [`store`]: tables, typed reads, writes, runs.
//! 8. ground: [`simd`], [`image`], [`error`], [`rng`], [`progress`].

pub mod cli;
pub mod commands;
pub mod sql;

pub mod caption_loop;
pub mod cluster;
pub mod eval;
pub mod inference;
pub mod plot;
pub mod train;

pub mod models;

pub mod ingest;

pub mod store;

pub mod error;
pub mod image;
pub mod progress;
pub mod rng;
pub mod simd;

pub use error::{Error, Result};
