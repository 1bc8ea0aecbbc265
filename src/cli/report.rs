//! The report of a command that makes a run: a sentence for people (`--format text`, the default) or one JSON
//! object for scripts (`--format json`) with the fields of the command's summary (run id, counts, outputs), so a
//! script reads the run id instead of scraping it.

use std::io::Write;

use serde::Serialize;

use crate::error::Result;

/// How a run's report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportFormat {
    /// One line for people.
    #[default]
    Text,
    /// One JSON object on one line.
    Json,
}

/// Print `summary` as JSON, or run `text` to print it for people.
pub fn print<T: Serialize>(
    out: &mut dyn Write,
    format: ReportFormat,
    summary: &T,
    text: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match format {
        ReportFormat::Text => text(out),
        ReportFormat::Json => {
            writeln!(out, "{}", serde_json::to_string(summary)?)?;
            Ok(())
        }
    }
}
