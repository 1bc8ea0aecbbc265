//! Floor 2: one file per verb. Each takes an options struct and the store, does its work through SQL, compute,
//! models and the store, and returns a report (a serialisable summary or result batches) that the CLI prints.
//! Progress goes to the reporter it is handed; nothing here writes to stdout or reads argv. Orchestration that runs
//! a SQL file (eval, mine, training validation, plots) lives here.

pub mod augment;
pub mod bench;
pub mod caption;
pub mod caption_loop;
pub mod check;
pub mod cluster;
pub mod embed;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod import;
pub mod index;
pub mod init;
pub mod mine;
pub mod plot;
pub mod run;
pub mod runs;
pub mod search;
pub mod sql;
pub mod train;
