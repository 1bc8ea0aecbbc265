//! Whether a `running` run is still running. Each run records the host, pid and start time of its process and
//! refreshes `heartbeat_at` every [`HEARTBEAT`] while it runs. A run whose process is gone reads as
//! `interrupted`: on its own host when no process with its pid and start time exists, elsewhere when its
//! heartbeat is older than [`STALE`]. [`mark_interrupted`] writes that status, so `runs list`, `runs show` and SQL
//! all see it.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use chrono::Utc;
use datafusion::prelude::{col, lit};

use super::Store;
use super::columns::{integers, strings};
use crate::error::Result;

/// How often a running run refreshes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A run on another host whose heartbeat is older than this is taken as interrupted.
pub const STALE: Duration = Duration::from_secs(300);

/// This process: host name, pid, start time (clock ticks after boot, where the system says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub host: String,
    pub pid: i64,
    pub start: Option<i64>,
}

impl Process {
    /// The process this code runs in.
    pub fn current() -> Process {
        let pid = std::process::id() as i64;
        Process {
            host: host_name(),
            pid,
            start: start_time(pid),
        }
    }

    /// True when this process is gone: no process with its pid, or one started at another time (a reused pid).
    /// Only meaningful on the host that recorded it.
    fn is_gone(&self) -> bool {
        if !std::path::Path::new("/proc/self/stat").exists() {
            // No procfs (not Linux): a process cannot be looked up, so only the heartbeat can tell.
            return false;
        }
        match start_time(self.pid) {
            None => !std::path::Path::new(&format!("/proc/{}", self.pid)).exists(),
            Some(now) => self.start.is_some_and(|recorded| recorded != now),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks after boot); `None` without procfs or that process.
fn start_time(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The columns [`Process::current`] fills in a run's row, with the heartbeat set to now.
pub fn process_columns(process: &Process) -> Vec<(&'static str, ArrayRef)> {
    vec![
        (
            "host",
            Arc::new(StringArray::from(vec![process.host.clone()])) as ArrayRef,
        ),
        (
            "pid",
            Arc::new(Int64Array::from(vec![process.pid])) as ArrayRef,
        ),
        (
            "pid_start",
            Arc::new(Int64Array::from(vec![process.start])) as ArrayRef,
        ),
        (
            "heartbeat_at",
            Arc::new(
                TimestampMicrosecondArray::from(vec![Utc::now().timestamp_micros()])
                    .with_timezone("UTC"),
            ) as ArrayRef,
        ),
    ]
}

/// True for a run id that may be written into a Lance filter as it is: vlmdb's own ids (`YYYYMMDD-HHMMSS-hex`)
/// are; anything else is left alone.
fn plain_id(id: &str) -> bool {
    id.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Refresh the heartbeat of run `run_id` while it is still `running` (never touches a closed run).
pub async fn beat(store: &Store, run_id: &str) -> Result<()> {
    if !plain_id(run_id) {
        return Ok(());
    }
    let table = store.open_table("runs").await?;
    table
        .update()
        .only_if(format!("run_id = '{run_id}' AND status = 'running'"))
        .column("heartbeat_at", "now()")
        .execute()
        .await?;
    Ok(())
}

/// Mark every `running` run whose process is gone as `interrupted`, naming the process in `error`; returns the
/// ids marked. A read-only store is left as it is.
pub async fn mark_interrupted(store: &Store) -> Result<Vec<String>> {
    if store
        .ensure_table_writable("runs", "marking interrupted runs")
        .is_err()
    {
        return Ok(Vec::new());
    }
    let running = match store
        .scan(
            "runs",
            &["run_id", "host", "pid", "pid_start", "heartbeat_at"],
            Some(col("status").eq(lit("running"))),
        )
        .await
    {
        Ok(batches) => batches,
        // No runs table, or one from before these columns (it gets them with its next run).
        Err(_) => return Ok(Vec::new()),
    };
    let here = host_name();
    let now = Utc::now().timestamp_micros();
    let mut gone = Vec::new();
    for batch in &running {
        let ids = strings(batch, "run_id")?;
        let hosts = strings(batch, "host")?;
        let pids = integers(batch, "pid")?;
        let starts = integers(batch, "pid_start")?;
        let beats = integers(batch, "heartbeat_at")?;
        for r in 0..batch.num_rows() {
            let (Some(id), Some(host), Some(pid)) = (ids[r].clone(), hosts[r].clone(), pids[r])
            else {
                continue;
            };
            let process = Process {
                host,
                pid,
                start: starts[r],
            };
            let stale = beats[r].is_some_and(|at| now - at > STALE.as_micros() as i64);
            let dead = if process.host == here {
                process.is_gone() || (stale && !std::path::Path::new("/proc/self/stat").exists())
            } else {
                stale
            };
            if dead {
                gone.push((id, process));
            }
        }
    }
    let table = store.open_table("runs").await?;
    let mut marked = Vec::new();
    for (id, process) in gone {
        if !plain_id(&id) {
            continue;
        }
        let reason = format!(
            "interrupted: process {} on {} ended without closing the run",
            process.pid, process.host
        )
        .replace('\'', "");
        table
            .update()
            .only_if(format!("run_id = '{id}' AND status = 'running'"))
            .column("status", "'interrupted'")
            .column("error", format!("'{reason}'"))
            .execute()
            .await?;
        marked.push(id);
    }
    Ok(marked)
}

/// The newest `interrupted` run of `kind` whose configuration is `config` (notes aside): the run a command that
/// picks up where it stopped (ingest, embed skip what is stored) continues.
pub async fn interrupted_like(
    store: &Store,
    kind: &str,
    config: &serde_json::Value,
) -> Result<Option<String>> {
    let filter = col("kind")
        .eq(lit(kind))
        .and(col("status").eq(lit("interrupted")));
    let batches = store
        .scan_if_exists("runs", &["run_id", "config", "started_at"], Some(filter))
        .await?;
    let mut found: Option<(i64, String)> = None;
    for batch in &batches {
        let ids = strings(batch, "run_id")?;
        let configs = strings(batch, "config")?;
        let started = integers(batch, "started_at")?;
        for r in 0..batch.num_rows() {
            let (Some(id), Some(stored)) = (ids[r].clone(), configs[r].as_deref()) else {
                continue;
            };
            let Ok(mut stored) = serde_json::from_str::<serde_json::Value>(stored) else {
                continue;
            };
            if let Some(map) = stored.as_object_mut() {
                map.remove("notes");
            }
            let at = started[r].unwrap_or_default();
            if stored == *config && found.as_ref().is_none_or(|(t, _)| at > *t) {
                found = Some((at, id));
            }
        }
    }
    Ok(found.map(|(_, id)| id))
}
