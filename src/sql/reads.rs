//! What a SQL session read, for the run records of the statements that write: the version of every store table a
//! statement named (noted by the catalog when it opens the table) and of every table a table function read (they
//! read the store directly: `retrieval_ranks` reads a space, `captions` and `pairs`). Shared by the session's
//! catalog and its table functions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::store::Store;

/// Table name -> the version read (the latest read of each table).
#[derive(Debug, Clone, Default)]
pub struct ReadLog(Arc<Mutex<BTreeMap<String, u64>>>);

impl ReadLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Note that version `version` of `table` was read.
    pub fn record(&self, table: &str, version: u64) {
        self.lock().insert(table.to_string(), version);
    }

    /// Every table read so far, with its version.
    pub fn tables(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    /// Put `table`'s entry back to `before` (`None`: not read): an `INSERT`'s target is opened like a table it
    /// reads, but its rows are not read.
    pub fn restore(&self, table: &str, before: Option<u64>) {
        let mut tables = self.lock();
        match before {
            Some(version) => tables.insert(table.to_string(), version),
            None => tables.remove(table),
        };
    }

    /// Note the current version of each of `tables` that exists, just before a table function reads them (one
    /// that does not exist is read as empty and not noted).
    pub async fn record_current(&self, store: &Store, tables: &[&str]) -> Result<()> {
        for &table in tables {
            if let Some(version) = store.current_version(table).await? {
                self.record(table, version);
            }
        }
        Ok(())
    }
}
