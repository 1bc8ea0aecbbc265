//! Progress on stderr, through this one helper: a bar with items/s and ETA when stderr is a terminal, nothing
//! otherwise (so logs and pipes stay clean).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar that hides itself when stderr is not a terminal.
pub struct Progress(ProgressBar);

impl Progress {
    pub fn new(total: u64, label: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(ProgressBar::hidden());
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        Progress(bar)
    }

    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// A warning on stderr, shown whether or not the bar is (the bar steps aside for it).
    pub fn warn(&self, message: &str) {
        self.0.suspend(|| warn(message));
    }

    /// Change the label in front of the bar (e.g. the current hop).
    pub fn label(&self, label: &str) {
        self.0.set_message(label.to_string());
    }

    /// A line of information on stderr, shown whether or not the bar is.
    pub fn note(&self, message: &str) {
        self.0.suspend(|| note(message));
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A warning on stderr (when no bar is running).
pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}

/// A line of information on stderr (what a command did, beside results on stdout).
pub fn note(message: &str) {
    eprintln!("{message}");
}
