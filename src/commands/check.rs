//! `vlmdb check`: open every table of the store at every version and read its row count, and say what cannot be
//! read (a deleted `_versions` folder, a truncated manifest, a missing data file). The check only reads.

use crate::error::{Error, Result, catch_panic};
use crate::store::Store;

/// What was found for one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableHealth {
    pub table: String,
    /// Versions read (all of them when the table is sound).
    pub versions: u64,
    /// Rows at the latest version, when it could be read.
    pub rows: Option<usize>,
    /// What is damaged; `None` when every version read.
    pub damage: Option<String>,
    /// A creation that was killed before the table's first version: no version and no data, so nothing is lost;
    /// the next write creates the table.
    pub unfinished: bool,
}

/// Every table of the store (each `*.lance` directory, whether Lance can open it or not), checked.
pub async fn check(store: &Store) -> Result<Vec<TableHealth>> {
    let mut names = store.table_names().await.unwrap_or_default();
    // A directory store's table directories that Lance cannot open are listed too (an object store's are not:
    // Lance lists what it can open).
    let entries = match store.location().dir() {
        Some(root) => std::fs::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .collect(),
        None => Vec::new(),
    };
    for entry in entries.into_iter().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(table) = name.strip_suffix(".lance")
            && entry.path().is_dir()
            && !names.iter().any(|n| n == table)
        {
            names.push(table.to_string());
        }
    }
    names.sort();
    let mut report = Vec::with_capacity(names.len());
    for name in names {
        report.push(table_health(store, &name).await);
    }
    Ok(report)
}

async fn table_health(store: &Store, name: &str) -> TableHealth {
    let mut health = TableHealth {
        table: name.to_string(),
        versions: 0,
        rows: None,
        damage: None,
        unfinished: false,
    };
    let latest = match store.open_table(name).await {
        Ok(table) => table,
        Err(Error::UnknownTable { .. })
            if store.location().dir().is_some()
                && !crate::store::holds_data(&store.location().table(name)) =>
        {
            health.unfinished = true;
            return health;
        }
        Err(Error::UnknownTable { .. }) => {
            health.damage = Some(format!(
                "{name}.lance exists but holds no readable version (was its _versions folder deleted?)"
            ));
            return health;
        }
        Err(e) => {
            health.damage = Some(e.to_string());
            return health;
        }
    };
    let last = match latest.version().await {
        Ok(v) => v,
        Err(e) => {
            health.damage = Some(Error::from(e).to_string());
            return health;
        }
    };
    // Lance panics on some damaged files: a panic is damage like any other.
    match catch_panic(latest.count_rows(None)).await {
        Ok(Ok(rows)) => health.rows = Some(rows),
        Ok(Err(e)) => {
            health.damage = Some(format!("version {last}: {}", Error::from(e)));
            return health;
        }
        Err(panic) => {
            health.damage = Some(format!("version {last}: reading it panicked: {panic}"));
            return health;
        }
    }
    // One handle, moved from version to version (opening the table afresh for each would re-read the latest).
    for version in 1..=last {
        let read = async {
            latest.checkout(version).await?;
            latest.count_rows(None).await
        };
        match catch_panic(read).await {
            Ok(Ok(_)) => health.versions += 1,
            Ok(Err(e)) => {
                health.damage = Some(format!("version {version}: {}", Error::from(e)));
                break;
            }
            Err(panic) => {
                health.damage = Some(format!("version {version}: reading it panicked: {panic}"));
                break;
            }
        }
    }
    health
}
