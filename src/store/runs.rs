//! Run records. Every command that computes or writes opens a `runs` row before it starts (status `running`)
//! and closes it as `finished` or `failed` with the error, so every output can be traced to its configuration,
//! seed, input table versions, model revisions and code version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use chrono::Utc;

use super::Store;
use super::liveness::{self, Process};
use super::schema::{TableSpec, fixed_table};
use super::write::{batch_for, upsert};
use crate::error::{Error, Result};

/// The version of the running binary: crate version and the git commit it was built from.
pub const CODE_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("VLMDB_GIT_COMMIT"));

/// What a run is: recorded in its row when it opens.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Command family: `init`, `sql`, `ingest`, `embed`, …
    pub kind: String,
    /// Human-readable name: a file name, a dataset, …
    pub name: String,
    /// The full configuration (command-line arguments, bound parameters).
    pub config: serde_json::Value,
    /// Seed of the run's RNG, when it uses one.
    pub seed: Option<i64>,
}

/// An open run.
#[derive(Debug)]
pub struct Run {
    id: String,
    spec: RunSpec,
    started_at: i64,
    inputs: BTreeMap<String, u64>,
    /// Tables the run writes: what it reads of them afterwards is its own rows, no input.
    outputs: BTreeSet<String>,
    /// The version of `runs` before the run's row went in: the version a read of `runs` counts as (every run
    /// writes `runs` when it opens, so whatever it reads there later holds its own row).
    runs_before: u64,
    models: BTreeMap<String, String>,
    process: Process,
    /// Refreshes `heartbeat_at` while the run is open; stopped when it closes (or is dropped).
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

impl Run {
    /// A fresh run id: UTC start time (sortable) plus random hex.
    pub fn new_id() -> String {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{}-{}", Utc::now().format("%Y%m%d-%H%M%S"), &random[..8])
    }

    /// Open a run with a fresh id: writes its `running` row.
    pub async fn open(store: &Store, spec: RunSpec) -> Result<Run> {
        Run::open_with_id(store, Run::new_id(), spec).await
    }

    /// Open a run for a command that picks up where an interrupted run of the same configuration stopped (ingest
    /// and embed skip what is stored): the new run names the run it continues, in its notes and on stderr.
    pub async fn open_continuing(store: &Store, spec: RunSpec) -> Result<Run> {
        let continues = liveness::interrupted_like(store, &spec.kind, &spec.config).await?;
        let mut run = Run::open(store, spec).await?;
        if let Some(id) = continues {
            crate::progress::note(&format!(
                "{} run {} continues interrupted run {id}",
                run.spec.kind, run.id
            ));
            run.note("continues", serde_json::json!(id));
        }
        Ok(run)
    }

    /// Open a run whose id was chosen beforehand (e.g. already bound as `$run_id`).
    pub async fn open_with_id(store: &Store, id: String, spec: RunSpec) -> Result<Run> {
        store.ensure_writable(&format!("recording run of `{}`", spec.kind))?;
        store.upgrade_tables(&["runs"]).await?;
        let mut run = Run {
            id,
            spec,
            started_at: Utc::now().timestamp_micros(),
            inputs: BTreeMap::new(),
            outputs: BTreeSet::new(),
            runs_before: u64::MAX,
            models: BTreeMap::new(),
            process: Process::current(),
            heartbeat: None,
        };
        // Lance numbers commits one by one: the version before this row's is the one below.
        run.runs_before = run
            .write(store, "running", None, None)
            .await?
            .saturating_sub(1);
        let (beat_store, beat_id) = (store.clone(), run.id.clone());
        run.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(liveness::HEARTBEAT).await;
                // A missed beat only makes the run look older to other hosts.
                let _ = liveness::beat(&beat_store, &beat_id).await;
            }
        }));
        Ok(run)
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Record the version of a table the run read (the latest, when it reads one twice). A table the run writes
    /// ([`Run::record_output`]) stays at the version read before: reading it back reads the run's own rows; `runs`
    /// counts as read at the version before the run's own row.
    pub fn record_input(&mut self, table: &str, version: u64) {
        let version = if table == "runs" {
            version.min(self.runs_before)
        } else {
            version
        };
        if !self.outputs.contains(table) {
            self.inputs.insert(table.to_string(), version);
        }
    }

    /// Record the current version of `table` as read, for a read through a helper that does not say which version
    /// it read (a table that does not exist is read as empty and not recorded).
    pub async fn record_current(&mut self, store: &Store, table: &str) -> Result<()> {
        if let Some(version) = store.current_version(table).await? {
            self.record_input(table, version);
        }
        Ok(())
    }

    /// Note that the run is about to write `table` (so reads of it from now on are not inputs).
    pub fn record_output(&mut self, table: &str) {
        self.outputs.insert(table.to_string());
    }

    /// Record a model the run used and its resolved revision.
    pub fn record_model(&mut self, model: &str, revision: &str) {
        self.models.insert(model.to_string(), revision.to_string());
    }

    /// Record something the run found out (a warning, where it resumed) under `notes` in its configuration;
    /// it is written with the run's next status change.
    pub fn note(&mut self, key: &str, value: serde_json::Value) {
        if !self.spec.config.is_object() {
            self.spec.config = serde_json::json!({ "value": self.spec.config.take() });
        }
        if let Some(config) = self.spec.config.as_object_mut() {
            let notes = config
                .entry("notes")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(notes) = notes.as_object_mut() {
                notes.insert(key.to_string(), value);
            }
        }
    }

    /// Close the run as finished.
    pub async fn finish(mut self, store: &Store) -> Result<()> {
        self.stop_heartbeat();
        let now = Utc::now().timestamp_micros();
        self.write(store, "finished", Some(now), None)
            .await
            .map(drop)
    }

    /// Close the run according to `outcome` and pass the outcome on. When the work failed, its error is what the
    /// caller gets: a failure to record the failure is dropped rather than hiding the original error.
    pub async fn close<T>(self, store: &Store, outcome: Result<T>) -> Result<T> {
        match outcome {
            Ok(value) => {
                self.finish(store).await?;
                Ok(value)
            }
            Err(error) => {
                let _ = self.fail(store, &error).await;
                Err(error)
            }
        }
    }

    /// Close the run as failed with `error`.
    pub async fn fail(mut self, store: &Store, error: &Error) -> Result<()> {
        self.stop_heartbeat();
        let now = Utc::now().timestamp_micros();
        self.write(store, "failed", Some(now), Some(error.to_string()))
            .await
            .map(drop)
    }

    fn stop_heartbeat(&mut self) {
        if let Some(beat) = self.heartbeat.take() {
            beat.abort();
        }
    }

    /// Write the run's row as it is now; returns the version of `runs` that made.
    async fn write(
        &self,
        store: &Store,
        status: &str,
        finished_at: Option<i64>,
        error: Option<String>,
    ) -> Result<u64> {
        let spec = runs_spec()?;
        let text = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let utc = |v: Option<i64>| {
            Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone("UTC")) as ArrayRef
        };
        let columns = vec![
            ("run_id", text(&self.id)),
            ("kind", text(&self.spec.kind)),
            ("name", text(&self.spec.name)),
            ("status", text(status)),
            ("config", text(&self.spec.config.to_string())),
            (
                "seed",
                Arc::new(Int64Array::from(vec![self.spec.seed])) as ArrayRef,
            ),
            ("inputs", text(&serde_json::to_string(&self.inputs)?)),
            ("models", text(&serde_json::to_string(&self.models)?)),
            ("code_version", text(CODE_VERSION)),
            ("started_at", utc(Some(self.started_at))),
            ("finished_at", utc(finished_at)),
            (
                "error",
                Arc::new(StringArray::from(vec![error])) as ArrayRef,
            ),
        ];
        let columns = columns
            .into_iter()
            .chain(liveness::process_columns(&self.process))
            .collect();
        upsert(store, &spec, batch_for(&spec, columns)?).await
    }
}

fn runs_spec() -> Result<TableSpec> {
    fixed_table("runs")?.ok_or_else(|| Error::UnknownTable {
        name: "runs".into(),
    })
}

/// `{"a": {"b": 1}}` → `{"a.b": 1}`, under `prefix` (empty: none). How `run_configs` shows a run's settings and
/// `import metrics` reads nested JSON logs.
pub fn flatten(
    prefix: &str,
    value: &serde_json::Value,
    out: &mut BTreeMap<String, serde_json::Value>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}
