//! The one integration test binary (every extra binary would link lancedb + datafusion again): SQL behaviour from
//! the `.slt` files, the store through the library, and the CLI end to end through the real binary, each test on
//! a fresh temporary store.

mod cli;
mod common;
mod experiments;
mod feedback;
mod fuzz;
mod generation;
mod ingest;
mod integrity;
mod layers;
mod models;
mod object_store;
mod plot;
mod reports;
mod retrieval;
mod run_inputs;
mod shell;
mod slt;
mod store;
mod train;
