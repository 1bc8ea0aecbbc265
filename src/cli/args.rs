//! Command-line arguments (clap). DESIGN §5 is the contract for names.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::format::Format;

/// vlmdb: an embedded experiment database for vision-language research.
#[derive(Debug, Parser)]
#[command(name = "vlmdb", version, about)]
pub struct Cli {
    /// The store directory (created if missing). Default: ./vlmdb_store
    #[arg(long, env = "VLMDB_DB", global = true, value_name = "DIR")]
    pub db: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store and its tables (those already there are kept).
    Init,
    /// Run SQL statements and print their results.
    Sql(SqlArgs),
    /// Interactive SQL shell (also reads statements from piped stdin).
    Shell(ShellArgs),
    /// List runs, or show one.
    Runs(RunsArgs),
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The SQL to run (several statements separated by `;` run in order).
    #[arg(
        value_name = "STATEMENT",
        conflicts_with = "file",
        required_unless_present = "file"
    )]
    pub statement: Option<String>,
    /// Read the SQL from this file instead.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Bind $NAME to VALUE (NAME:int|float|bool|text=VALUE forces a type). Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Bind $NAME to VALUE for every statement of the session. Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Output format (change it in the shell with \format).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub action: Option<RunsAction>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// List runs, newest first.
    List,
    /// Show one run: configuration, inputs, models, status.
    Show {
        /// The run id.
        id: String,
    },
}
