//! Re-running a finished experiment reports it instead of repeating it (issue 21): the same command over the same
//! inputs is the same experiment — same seed, same bytes — so a second copy of its rows would only duplicate it.
//! A command looks for a **finished twin** before it opens its run: the newest finished run of its kind with the
//! same configuration (its notes and run-specific keys aside), every table it is about to read at the version that
//! run read (tables only one of them reads do not count; at least one must be shared), and the same model
//! revisions. `--again` skips the lookup for a deliberate replicate.

use std::collections::BTreeMap;

use datafusion::prelude::{col, lit};

use super::Store;
use super::columns::{integers, strings};
use crate::error::Result;

/// What a command is about to read, known before it starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Table name → the version it would read.
    pub tables: BTreeMap<String, u64>,
    /// Model id → resolved revision.
    pub models: BTreeMap<String, String>,
}

impl Inputs {
    /// Add the current version of each of `tables` that exists.
    pub async fn tables(&mut self, store: &Store, tables: &[&str]) -> Result<()> {
        let existing = store.table_names().await?;
        for &table in tables {
            if existing.iter().any(|t| t == table) {
                let version = store.open_table(table).await?.version().await?;
                self.tables.insert(table.to_string(), version);
            }
        }
        Ok(())
    }

    fn matches(&self, tables: &BTreeMap<String, u64>, models: &BTreeMap<String, String>) -> bool {
        let shared: Vec<&String> = self
            .tables
            .keys()
            .filter(|t| tables.contains_key(*t))
            .collect();
        !shared.is_empty()
            && shared.iter().all(|t| self.tables.get(*t) == tables.get(*t))
            && self
                .models
                .iter()
                .all(|(id, rev)| models.get(id) == Some(rev))
    }
}

/// A configuration without its notes and the keys in `ignore`.
fn comparable(config: &serde_json::Value, ignore: &[&str]) -> serde_json::Value {
    let mut config = config.clone();
    if let Some(map) = config.as_object_mut() {
        map.remove("notes");
        for key in ignore {
            map.remove(*key);
        }
    }
    config
}

/// The newest finished `kind` run that already did what `config` over `inputs` would do (see the module docs).
pub async fn finished_twin(
    store: &Store,
    kind: &str,
    config: &serde_json::Value,
    ignore: &[&str],
    inputs: &Inputs,
) -> Result<Option<String>> {
    let wanted = comparable(config, ignore);
    let batches = store
        .scan_if_exists(
            "runs",
            &["run_id", "config", "inputs", "models", "started_at"],
            Some(
                col("kind")
                    .eq(lit(kind.to_string()))
                    .and(col("status").eq(lit("finished"))),
            ),
        )
        .await?;
    let mut found: Option<(i64, String)> = None;
    for batch in &batches {
        let ids = strings(batch, "run_id")?;
        let configs = strings(batch, "config")?;
        let tables = strings(batch, "inputs")?;
        let models = strings(batch, "models")?;
        let started = integers(batch, "started_at")?;
        for i in 0..batch.num_rows() {
            let (Some(id), Some(config), Some(tables), Some(models)) = (
                ids[i].as_ref(),
                configs[i].as_ref(),
                tables[i].as_ref(),
                models[i].as_ref(),
            ) else {
                continue;
            };
            let config: serde_json::Value = serde_json::from_str(config)?;
            let tables: BTreeMap<String, u64> = serde_json::from_str(tables).unwrap_or_default();
            let models: BTreeMap<String, String> = serde_json::from_str(models).unwrap_or_default();
            let started = started[i].unwrap_or(i64::MIN);
            if comparable(&config, ignore) == wanted
                && inputs.matches(&tables, &models)
                && found.as_ref().is_none_or(|(at, _)| started > *at)
            {
                found = Some((started, id.clone()));
            }
        }
    }
    Ok(found.map(|(_, id)| id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_match_on_the_tables_both_read_and_every_model() {
        let mut inputs = Inputs::default();
        inputs.tables.insert("emb_a".into(), 3);
        inputs.tables.insert("pairs".into(), 7);
        inputs.models.insert("m".into(), "r1".into());
        let tables = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(t, v)| (t.to_string(), *v)).collect()
        };
        let models: BTreeMap<String, String> = [("m".to_string(), "r1".to_string())].into();
        assert!(inputs.matches(&tables(&[("emb_a", 3), ("captions", 9)]), &models));
        assert!(!inputs.matches(&tables(&[("emb_a", 4)]), &models));
        assert!(!inputs.matches(&tables(&[("captions", 9)]), &models));
        assert!(!inputs.matches(&tables(&[("emb_a", 3)]), &BTreeMap::new()));
        let config = serde_json::json!({"k": 3, "space": "emb_head_x", "notes": {"a": 1}});
        assert_eq!(comparable(&config, &["space"]), serde_json::json!({"k": 3}));
    }
}
