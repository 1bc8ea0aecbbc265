//! The store as a DataFusion schema. Every table of the store is queryable by name, including tables created after
//! the session started and rows another process wrote: tables are opened when a statement names them (DataFusion
//! resolves table references asynchronously before planning), and LanceDB reads with strong consistency.
//!
//! Time travel: `"images@3"` names the `images` table as it was at version 3 (opened on its own handle).
//! Views and `CREATE TABLE` results live in the session only; store tables are never dropped from SQL.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use lancedb::table::datafusion::BaseTableAdapter;

use super::reads::ReadLog;
use crate::error::{Error, Result};
use crate::store::Store;

/// The separator between a table name and a version in time-travel names.
pub const VERSION_SEPARATOR: char = '@';

/// Split `images@3` into `("images", Some(3))`; a name without a valid `@N` suffix is returned whole.
pub fn split_version(name: &str) -> (&str, Option<u64>) {
    match name.rsplit_once(VERSION_SEPARATOR) {
        Some((base, v)) if !base.is_empty() => match v.parse::<u64>() {
            Ok(version) => (base, Some(version)),
            Err(_) => (name, None),
        },
        _ => (name, None),
    }
}

/// The store's tables plus the session's own views.
#[derive(Debug)]
pub struct StoreSchema {
    store: Store,
    /// Store table names as of the last [`StoreSchema::refresh`] (for DataFusion's synchronous listing hooks).
    names: RwLock<Vec<String>>,
    /// Views and tables created in this session.
    session: RwLock<HashMap<String, Arc<dyn TableProvider>>>,
    /// Version of every store table a statement read (shared with the session's table functions).
    reads: ReadLog,
}

impl StoreSchema {
    pub fn new(store: Store, reads: ReadLog) -> StoreSchema {
        StoreSchema {
            store,
            names: RwLock::new(Vec::new()),
            session: RwLock::new(HashMap::new()),
            reads,
        }
    }

    /// Re-list the store's tables (called before each statement).
    pub async fn refresh(&self) -> Result<()> {
        let names = self.store.table_names().await?;
        *self.names.write().unwrap_or_else(|p| p.into_inner()) = names;
        Ok(())
    }

    /// Store table names as of the last refresh.
    pub fn store_names(&self) -> Vec<String> {
        self.names.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn session_table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.session
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    async fn open(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (base, version) = split_version(name);
        let table = match version {
            Some(v) => self.store.open_table_at(base, v).await,
            None => self.store.open_table(base).await,
        };
        let table = match (table, version) {
            (Ok(t), _) => t,
            (Err(Error::UnknownTable { .. }), _) => return Ok(None),
            // The latest version is damaged: read the one asked for straight from its own manifest.
            (Err(damaged @ Error::DamagedTable { .. }), Some(v)) => {
                return match self.version_only(base, v).await {
                    Some(provider) => {
                        self.reads.record(base, v);
                        Ok(Some(provider))
                    }
                    None => Err(damaged),
                };
            }
            (Err(e), _) => return Err(e),
        };
        let read_version = match version {
            Some(v) => v,
            None => table.version().await?,
        };
        self.reads.record(base, read_version);
        let adapter = BaseTableAdapter::try_new(table.base_table().clone()).await?;
        Ok(Some(Arc::new(adapter)))
    }
}

impl StoreSchema {
    /// Version `version` of table `name` read through Lance alone, from that version's manifest (lancedb opens the
    /// latest version first); `None` when that version cannot be read either.
    async fn version_only(&self, name: &str, version: u64) -> Option<Arc<dyn TableProvider>> {
        let location = self.store.location();
        let uri = location.table(name);
        let load = lance::dataset::builder::DatasetBuilder::from_uri(uri.to_string_lossy())
            .with_storage_options(location.storage_options().into_iter().collect())
            .with_version(version)
            .load();
        match crate::error::catch_panic(load).await {
            Ok(Ok(dataset)) => Some(Arc::new(lance::datafusion::LanceTableProvider::new(
                Arc::new(dataset),
                false,
                false,
            ))),
            _ => None,
        }
    }
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl SchemaProvider for StoreSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.store_names();
        names.extend(
            self.session
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.session_table(name) {
            return Ok(Some(table));
        }
        self.open(name).await.map_err(external)
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if self.store_names().contains(&name) {
            return Err(DataFusionError::Plan(format!(
                "'{name}' is a table of the store; choose another name for a session view or table"
            )));
        }
        let mut session = self.session.write().unwrap_or_else(|p| p.into_inner());
        if session.contains_key(&name) {
            return Err(DataFusionError::Plan(format!(
                "'{name}' already exists in this session"
            )));
        }
        Ok(session.insert(name, table))
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let removed = self
            .session
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if removed.is_none() && self.store_names().iter().any(|n| n == name) {
            return Err(DataFusionError::Plan(format!(
                "'{name}' is a table of the store; store tables are not dropped from SQL"
            )));
        }
        Ok(removed)
    }

    fn table_exist(&self, name: &str) -> bool {
        if self.session_table(name).is_some() {
            return true;
        }
        let (base, _) = split_version(name);
        self.store_names().iter().any(|n| n == base)
    }
}

#[cfg(test)]
mod tests {
    use super::split_version;

    #[test]
    fn version_suffix() {
        assert_eq!(split_version("images@3"), ("images", Some(3)));
        assert_eq!(split_version("images"), ("images", None));
        assert_eq!(split_version("images@x"), ("images@x", None));
        assert_eq!(split_version("@3"), ("@3", None));
    }
}
