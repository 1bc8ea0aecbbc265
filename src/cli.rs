//! The command-line interface: argument parsing ([`args`]), the commands ([`commands`]), result printing
//! ([`format`]), and the SQL shell ([`shell`], [`meta`]). Commands write results to the `Write` they are given;
//! errors go back to `main`, which prints them to stderr and maps them to exit codes.

pub mod args;
pub mod commands;
pub mod format;
pub mod meta;
pub mod shell;

use std::io::Write;
use std::path::PathBuf;

use crate::error::Result;
use crate::store::{DEFAULT_STORE_DIR, Store};
pub use args::Cli;
use args::{BenchWhat, Command, RunsAction};

/// Run one command line; returns the process exit code (errors are returned, not printed).
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<u8> {
    // Benchmarks make their own temporary stores.
    if let Command::Bench(args) = cli.command {
        match args.what {
            BenchWhat::Ingest {
                images,
                python,
                no_peer,
            } => {
                crate::bench::ingest_bench(images, (!no_peer).then_some(python.as_str()), out)
                    .await?
            }
        }
        out.flush()?;
        return Ok(0);
    }
    let path = cli.db.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_DIR));
    let store = Store::open(&path).await?;
    let code = match cli.command {
        Command::Init => commands::init(&store, out).await?,
        Command::Sql(args) => commands::sql(&store, args, out).await?,
        Command::Shell(args) => shell::run(&store, args, out).await?,
        Command::Ingest(args) => commands::ingest(&store, args, out).await?,
        Command::Export(args) => commands::export(&store, args, out).await?,
        Command::Bench(_) => 0,
        Command::Runs(args) => match args.action {
            None | Some(RunsAction::List) => commands::runs_list(&store, args.format, out).await?,
            Some(RunsAction::Show { id }) => {
                commands::runs_show(&store, &id, args.format, out).await?
            }
        },
    };
    out.flush()?;
    Ok(code)
}
