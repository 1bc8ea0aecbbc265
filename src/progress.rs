//! Progress on stderr, through this one helper. On a terminal: a bar with items/s and ETA. Without one (a batch
//! job's log, a pipe): plain lines — `label: done/total (pct %), rate/s, elapsed, ETA` at every tenth of the work
//! and at least once a minute — so a SLURM log shows where a job is without a bar's control characters. A
//! command with its own per-epoch lines (`train`) asks for a bar only, and prints those lines with [`Progress::line`].

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on a terminal, log lines elsewhere.
pub struct Progress {
    bar: ProgressBar,
    log: Option<Mutex<LogLines>>,
    terminal: bool,
}

/// The plain-line progress of a command without a terminal.
struct LogLines {
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    /// The next tenth of the work (1..=10) that gets a line.
    next_tenth: u64,
}

impl LogLines {
    fn advance(&mut self, n: u64) -> Option<String> {
        self.done += n;
        let tenth = (self.done * 10).checked_div(self.total).unwrap_or(10);
        let now = Instant::now();
        if tenth < self.next_tenth && now - self.last_line < Duration::from_secs(60) {
            return None;
        }
        self.next_tenth = tenth + 1;
        self.last_line = now;
        let elapsed = now - self.started;
        let rate = self.done as f64 / elapsed.as_secs_f64().max(1e-9);
        let eta = (self.total.saturating_sub(self.done)) as f64 / rate.max(1e-9);
        Some(format!(
            "{}: {}/{} ({:.0} %), {rate:.1}/s, {} elapsed, ETA {}",
            self.label,
            self.done,
            self.total,
            100.0 * self.done as f64 / (self.total.max(1)) as f64,
            duration(elapsed.as_secs_f64()),
            duration(eta),
        ))
    }
}

/// `1h02m`, `3m07s`, `12.4s`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, (s % 3600.0 / 60.0) as u64)
    }
}

impl Progress {
    /// A bar on a terminal; without one, a line at every tenth of `total` (and at least once a minute).
    pub fn new(total: u64, label: &str) -> Progress {
        Progress::build(total, label, true)
    }

    /// A bar on a terminal; nothing without one — the command prints its own lines with [`Progress::line`].
    pub fn bar_only(total: u64, label: &str) -> Progress {
        Progress::build(total, label, false)
    }

    fn build(total: u64, label: &str, log_lines: bool) -> Progress {
        if !std::io::stderr().is_terminal() {
            let now = Instant::now();
            return Progress {
                bar: ProgressBar::hidden(),
                log: log_lines.then(|| {
                    Mutex::new(LogLines {
                        label: label.to_string(),
                        total,
                        done: 0,
                        started: now,
                        last_line: now,
                        next_tenth: 1,
                    })
                }),
                terminal: false,
            };
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        Progress {
            bar,
            log: None,
            terminal: true,
        }
    }

    /// Whether the progress shows as a bar (stderr is a terminal).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(log) = &self.log {
            let line = log.lock().ok().and_then(|mut l| l.advance(n));
            if let Some(line) = line {
                note(&line);
            }
        }
    }

    /// A warning on stderr, shown whether or not the bar is (the bar steps aside for it).
    pub fn warn(&self, message: &str) {
        self.bar.suspend(|| warn(message));
    }

    /// Change the label in front of the bar (e.g. the current hop).
    pub fn label(&self, label: &str) {
        self.bar.set_message(label.to_string());
        if let Some(log) = &self.log
            && let Ok(mut l) = log.lock()
        {
            l.label = label.to_string();
        }
    }

    /// A line of information on stderr, shown whether or not the bar is.
    pub fn note(&self, message: &str) {
        self.bar.suspend(|| note(message));
    }

    /// A log line that only shows without a terminal (where the bar does not), e.g. train's per-epoch summary.
    pub fn line(&self, message: &str) {
        if !self.terminal {
            note(message);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_come_at_every_tenth_and_at_the_end() {
        let now = Instant::now();
        let mut log = LogLines {
            label: "embed".into(),
            total: 50,
            done: 0,
            started: now,
            last_line: now,
            next_tenth: 1,
        };
        let lines: Vec<String> = (0..50).filter_map(|_| log.advance(1)).collect();
        assert_eq!(lines.len(), 10, "{lines:?}");
        assert!(lines[0].starts_with("embed: 5/50 (10 %)"), "{}", lines[0]);
        assert!(lines[9].starts_with("embed: 50/50 (100 %)"), "{}", lines[9]);
        assert_eq!(duration(3725.0), "1h02m");
        assert_eq!(duration(187.0), "3m07s");
    }
}
