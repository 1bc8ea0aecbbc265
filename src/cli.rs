//! The command-line interface: argument parsing ([`args`]), one dispatch line per verb into its handler
//! ([`commands`] for the data verbs, [`experiments`] for the computing ones), result printing ([`format`]), and the
//! SQL shell ([`shell`], [`meta`]). Commands write results to the `Write` they are given;
//! errors go back to `main`, which prints them to stderr and maps them to exit codes.

pub mod args;
pub mod commands;
pub mod completion;
pub mod display;
pub mod experiments;
pub mod format;
pub mod meta;
pub mod report;
pub mod shell;

use std::io::Write;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::models::DeviceChoice;
use crate::sql::ExternalAccess;
use crate::store::{DEFAULT_STORE_DIR, Store};
pub use args::Cli;
use args::Command;

/// Run one command line; returns the process exit code (errors are returned, not printed).
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<u8> {
    let store_path = cli.db.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_DIR));
    let device: DeviceChoice = cli.device.parse()?;
    if let Some(size) = &cli.memory_limit {
        crate::sql::memory::set_limit(crate::sql::memory::parse_size(size)?);
    }
    let access = if cli.no_external_access {
        ExternalAccess::Denied
    } else {
        ExternalAccess::Allowed
    };
    // The store is opened only by the commands that use it (benchmarks make their own). Only the commands that
    // bring data in (init, ingest, import) create it; every other one needs it to exist, so a mistyped --db is an
    // error that leaves nothing behind rather than a new empty store.
    let create = || open_store(&store_path, true);
    let store = || open_store(&store_path, false);
    let code = match cli.command {
        Command::Init => commands::init(&create().await?, out).await?,
        Command::Sql(args) => commands::sql(&store().await?, args, device, access, out).await?,
        Command::Run(args) => {
            commands::run_file(&store().await?, args, device, access, out).await?
        }
        Command::Shell(args) => shell::run(&store().await?, args, device, access, out).await?,
        Command::Ingest(args) => commands::ingest(&create().await?, args, out).await?,
        Command::Export(args) => commands::export(&store().await?, args, out).await?,
        Command::Embed(args) => experiments::embed(&store().await?, args, device, out).await?,
        Command::Caption(args) => experiments::caption(&store().await?, args, device, out).await?,
        Command::Augment(args) => experiments::augment(&store().await?, args, device, out).await?,
        Command::Loop(args) => {
            experiments::feedback_loop(&store().await?, *args, device, out).await?
        }
        Command::Search(args) => experiments::search(&store().await?, args, device, out).await?,
        Command::Import(args) => commands::import(&create().await?, args, out).await?,
        Command::Cluster(args) => experiments::cluster(&store().await?, args, device, out).await?,
        Command::Index(args) => experiments::index(&store().await?, args, device, out).await?,
        Command::Mine(args) => experiments::mine(&store().await?, args, device, out).await?,
        Command::Train(args) => experiments::train(&store().await?, *args, device, out).await?,
        Command::Eval(args) => experiments::eval(&store().await?, args, device, out).await?,
        Command::Plot(args) => experiments::plot(&store().await?, args, device, out).await?,
        Command::Runs(args) => commands::runs(&store().await?, args, out).await?,
        Command::Check => commands::check(&store().await?, out).await?,
        Command::Bench(args) => experiments::bench(args, device, out).await?,
    };
    out.flush()?;
    Ok(code)
}

/// Open the store for a command (creating it when `create`, else refusing a path where there is none), marking the
/// runs whose process is gone as `interrupted` first, so every command (`runs`, `sql`, the resuming ones) sees them
/// as they are.
async fn open_store(path: &std::path::Path, create: bool) -> Result<Store> {
    let no_store = || Error::NoStore {
        path: path.to_path_buf(),
    };
    let directory = crate::store::Location::parse(path)?.dir().is_some();
    if !create && directory && !path.exists() {
        return Err(no_store());
    }
    let store = Store::open(path).await?;
    // An object-store prefix is a store once it holds a table.
    if !create && !directory && store.table_names().await?.is_empty() {
        return Err(no_store());
    }
    let fixed: Vec<String> = crate::store::schema::fixed_tables()?
        .into_iter()
        .map(|t| t.name)
        .collect();
    store
        .upgrade_tables(&fixed.iter().map(String::as_str).collect::<Vec<_>>())
        .await?;
    for id in crate::store::liveness::mark_interrupted(&store).await? {
        crate::progress::note(&format!(
            "run {id} was interrupted (its process ended without closing it)"
        ));
    }
    Ok(store)
}
