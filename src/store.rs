//! The LanceDB store: one local directory (or object-store prefix, [`location`]) of versioned tables. Opening, creating tables from `schemas/`, listing,
//! and opening a table at an earlier version live here; writes go through [`write`], run records through [`runs`].

pub mod arrays;
pub mod columns;
pub mod liveness;
pub mod location;
pub mod metrics;
pub mod model_cache;
pub mod read;
pub mod runs;
pub mod schema;
pub mod twins;
pub mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lancedb::{Connection, Table};

use crate::error::{Error, Result};
pub use location::Location;
use schema::TableSpec;

/// The store directory used when neither `--db` nor `VLMDB_DB` is given: a visible folder in the current
/// directory, so a project's store sits beside its code the way a `.git` would, but is easy to find and delete.
pub const DEFAULT_STORE_DIR: &str = "vlmdb_store";

/// An open store.
#[derive(Clone)]
pub struct Store {
    location: Location,
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish()
    }
}

impl Store {
    /// Open the store at `path` (a directory, created if it does not exist, or an object-store URI: see
    /// [`Location::parse`]).
    ///
    /// Tables are read with strong consistency (read-consistency interval zero): every read checks for a newer
    /// version, so rows another process wrote are visible on the next statement.
    pub async fn open(path: &Path) -> Result<Store> {
        let location = Location::parse(path)?;
        if let Location::Dir(dir) = &location {
            match std::fs::metadata(dir) {
                Ok(meta) if !meta.is_dir() => {
                    return Err(Error::NotADirectory { path: dir.clone() });
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                }
                Err(e) => return Err(Error::io(dir, e)),
            }
        }
        let conn = lancedb::connect(&location.uri()?)
            .read_consistency_interval(Duration::ZERO)
            .storage_options(location.storage_options())
            .execute()
            .await
            .map_err(|source| Error::StoreUnreachable {
                store: location.to_string(),
                source: Box::new(source),
            })?;
        Ok(Store { location, conn })
    }

    /// Where the store is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The Hugging Face directory a fine-tuning run exports its best weights to, `<store>/finetuned/ft-<run>`
    /// (the model `ft:<run>`); for a store on an object store, under this machine's directory for it
    /// ([`Location::local_dir`]).
    pub fn finetuned_dir(&self, run_id: &str) -> PathBuf {
        self.location
            .local_dir()
            .join("finetuned")
            .join(format!("ft-{run_id}"))
    }

    /// Fail with [`Error::ReadOnlyStore`] when the directory is marked read-only. The permission bits are checked
    /// rather than attempting a write, because root can write to a read-only directory and would otherwise
    /// ignore the user's intent.
    /// An object store's permissions are its credentials': a write they do not allow fails with its error.
    pub fn ensure_writable(&self, action: &str) -> Result<()> {
        let Some(root) = self.location.dir() else {
            return Ok(());
        };
        let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
        if meta.permissions().readonly() {
            return Err(Error::ReadOnlyStore {
                path: root.to_path_buf(),
                action: action.to_string(),
            });
        }
        Ok(())
    }

    /// [`Store::ensure_writable`] for the store and for table `name`'s own directories: a table made read-only on
    /// its own (`chmod -w images.lance`) is refused before anything is written, naming the table, instead of
    /// failing halfway with the file system's error.
    pub fn ensure_table_writable(&self, name: &str, action: &str) -> Result<()> {
        self.ensure_writable(action)?;
        if self.location.dir().is_none() {
            return Ok(());
        }
        let table = self.location.table(name);
        for dir in [
            table.clone(),
            table.join("_versions"),
            table.join("data"),
            table.join("_transactions"),
        ] {
            if let Ok(meta) = std::fs::metadata(&dir)
                && meta.permissions().readonly()
            {
                return Err(Error::ReadOnlyStore {
                    path: dir,
                    action: format!("{action} (table '{name}')"),
                });
            }
        }
        Ok(())
    }

    /// Wait for this machine's other vlmdb writers to this store and hold the write lock until the guard is
    /// dropped (an exclusive `flock` on `<store>/.write.lock`, or on that file in this machine's directory for an
    /// object store, [`Location::local_dir`]; the kernel releases it if the process dies). Writers on other
    /// machines are kept apart by Lance's commit protocol alone (conditional writes on the object store).
    pub async fn write_lock(&self) -> Result<std::fs::File> {
        let dir = self.location.local_dir();
        if self.location.dir().is_none() {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let path = dir.join(".write.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(Error::task("waiting for the store's write lock"))?
            .map_err(|e| Error::io(path, e))
    }

    /// Names of all tables, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let mut names = self.conn.table_names().execute().await?;
        names.sort();
        Ok(names)
    }

    /// Open the latest version of a table.
    pub async fn open_table(&self, name: &str) -> Result<Table> {
        self.guarded(name, None, self.conn.open_table(name).execute())
            .await
    }

    /// Open a table as it was at `version`. The handle is its own (checking out would move a shared handle).
    pub async fn open_table_at(&self, name: &str, version: u64) -> Result<Table> {
        match self.open_table(name).await {
            Ok(table) => {
                let latest = table.version().await?;
                if version == 0 || version > latest {
                    return Err(Error::Usage(format!(
                        "table '{name}' has versions 1 to {latest}; there is no version {version}"
                    )));
                }
            }
            // A damaged latest version does not take the undamaged earlier ones with it: try the one asked for.
            Err(Error::DamagedTable { .. }) if version > 0 => {}
            Err(e) => return Err(e),
        }
        self.guarded(
            name,
            Some(version),
            self.conn.open_table(name).version(version).execute(),
        )
        .await
    }

    /// Run a Lance open, turning a panic inside Lance (a truncated or corrupt manifest makes it panic) into an
    /// error that names the table, the version and where its files are.
    async fn guarded(
        &self,
        name: &str,
        version: Option<u64>,
        open: impl std::future::Future<Output = lancedb::Result<Table>>,
    ) -> Result<Table> {
        let which = || version.map_or("its latest version".into(), |v| format!("version {v}"));
        let files = || self.location.table(name).join("_versions");
        match crate::error::catch_panic(open).await {
            Ok(Ok(table)) => Ok(table),
            Ok(Err(lancedb::Error::TableNotFound { .. })) => Err(Error::UnknownTable {
                name: name.to_string(),
            }),
            Ok(Err(e)) => Err(Error::DamagedTable {
                table: name.to_string(),
                version: which(),
                files: files(),
                reason: crate::error::without_location(&e.to_string()),
            }),
            Err(reason) => Err(Error::DamagedTable {
                table: name.to_string(),
                version: which(),
                files: files(),
                reason: format!("it panicked: {reason}"),
            }),
        }
    }

    /// Open the table `spec` describes, creating it empty from the spec when it does not exist yet.
    pub async fn table_for(&self, spec: &TableSpec) -> Result<Table> {
        match self.open_table(&spec.name).await {
            Ok(table) => Ok(table),
            Err(Error::UnknownTable { .. }) => self.create_table(spec).await,
            Err(e) => Err(e),
        }
    }

    /// Create the table `spec` describes. Another process creating it at the same moment is not an error.
    pub async fn create_table(&self, spec: &TableSpec) -> Result<Table> {
        self.ensure_writable(&format!("creating table '{}'", spec.name))?;
        // This machine's writers create tables one at a time, so below, a directory without a version is not one
        // another vlmdb process here is creating.
        let _lock = self.write_lock().await?;
        if self.location.dir().is_some() {
            self.clear_unfinished_creation(spec).await?;
        }
        match self
            .conn
            .create_empty_table(&spec.name, spec.arrow_schema())
            .execute()
            .await
        {
            Ok(table) => Ok(table),
            Err(lancedb::Error::TableAlreadyExists { .. }) => self.open_table(&spec.name).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Before creating table `spec` in a directory store: remove the directory a creation killed before its
    /// first version left (no version, no data), and refuse one that holds data but no readable version: its
    /// `_versions` was deleted or emptied, and starting a fresh table there would silently drop every row it held.
    async fn clear_unfinished_creation(&self, spec: &TableSpec) -> Result<()> {
        let directory = self.location.table(&spec.name);
        let opens = || async { self.conn.open_table(&spec.name).execute().await.is_ok() };
        // (Another process may be creating it this instant: its first version follows the directory at once.)
        if directory.is_dir() && !opens().await {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        if directory.is_dir() && !opens().await && !holds_data(&directory) {
            // A creation that was killed before its first version: no version and no data file, so nothing was
            // ever stored there. It goes, and the table is created as if it were not there.
            std::fs::remove_dir_all(&directory).map_err(|e| Error::io(&directory, e))?;
            crate::progress::note(&format!(
                "table '{}': its creation had been interrupted before its first version (no data); creating it \
                 afresh",
                spec.name
            ));
        }
        if directory.is_dir() && !opens().await {
            return Err(Error::DamagedTable {
                table: spec.name.clone(),
                version: "any version".into(),
                files: directory.join("_versions"),
                reason:
                    "its directory exists but holds no readable version (was _versions deleted?); \
                         restore it, or move the directory away to start the table afresh"
                        .into(),
            });
        }
        Ok(())
    }

    /// Bring the existing fixed tables among `names` up to their schema files, so stores made by earlier versions
    /// keep working: columns renamed since (`renamed` lines: `clusters.cluster` is now `cluster_id`) get their new
    /// name, and the nullable columns added since (runs' process columns, pairs' provenance, …) are added, all
    /// NULL. A read-only store is left as it is (its readers see the columns it has).
    pub async fn upgrade_tables(&self, names: &[&str]) -> Result<()> {
        use lancedb::table::{ColumnAlteration, NewColumnTransform};
        for name in names {
            let Some(spec) = schema::fixed_table(name)? else {
                continue;
            };
            // A missing table gets its columns when it is created; a damaged one is reported by what reads it
            // (`vlmdb check` among others), not here.
            let Ok(table) = self.open_table(name).await else {
                continue;
            };
            let pending = TableUpgrade::of(&spec, table.schema().await?.as_ref());
            if pending.is_empty() {
                continue;
            }
            if self
                .ensure_table_writable(name, "upgrading its columns")
                .is_err()
            {
                for r in &pending.renames {
                    crate::progress::note(&format!(
                        "table '{name}' is read-only and keeps its old column '{}' (now '{}'): query it by the \
                         old name",
                        r.from, r.to
                    ));
                }
                continue;
            }
            let _lock = self.write_lock().await?;
            // Another process may have upgraded it while this one waited for the lock.
            let upgrade = TableUpgrade::of(&spec, table.schema().await?.as_ref());
            if !upgrade.renames.is_empty() {
                let renames: Vec<ColumnAlteration> = upgrade
                    .renames
                    .iter()
                    .map(|r| ColumnAlteration::new(r.from.clone()).rename(r.to.clone()))
                    .collect();
                table.alter_columns(&renames).await?;
            }
            if !upgrade.missing.is_empty() {
                table
                    .add_columns()
                    .transform(NewColumnTransform::AllNulls(std::sync::Arc::new(
                        arrow::datatypes::Schema::new(upgrade.missing),
                    )))
                    .execute()
                    .await?;
            }
        }
        Ok(())
    }

    /// Open the fixed tables `names`, creating those that are missing (a command about to write to them).
    pub async fn ensure_tables(&self, names: &[&str]) -> Result<()> {
        for name in names {
            let spec = schema::fixed_table(name)?.ok_or_else(|| Error::UnknownTable {
                name: name.to_string(),
            })?;
            self.table_for(&spec).await?;
        }
        Ok(())
    }

    /// Create every fixed table that is missing; returns the names created.
    pub async fn init(&self) -> Result<Vec<String>> {
        self.ensure_writable("init")?;
        let existing = self.table_names().await?;
        let mut created = Vec::new();
        for spec in schema::fixed_tables()? {
            if !existing.contains(&spec.name) {
                self.create_table(&spec).await?;
                created.push(spec.name);
            }
        }
        Ok(created)
    }
}

/// What a table written by an earlier version lacks against its schema file.
struct TableUpgrade {
    /// Columns still under their old name.
    renames: Vec<schema::Rename>,
    /// Nullable columns it does not have (under either name).
    missing: Vec<arrow::datatypes::Field>,
}

impl TableUpgrade {
    fn of(spec: &TableSpec, actual: &arrow::datatypes::Schema) -> TableUpgrade {
        let has = |column: &str| actual.field_with_name(column).is_ok();
        let renames: Vec<schema::Rename> = spec
            .renames
            .iter()
            .filter(|r| has(&r.from) && !has(&r.to))
            .cloned()
            .collect();
        let missing = spec
            .arrow_schema()
            .fields()
            .iter()
            .filter(|f| {
                f.is_nullable() && !has(f.name()) && !renames.iter().any(|r| r.to == *f.name())
            })
            .map(|f| f.as_ref().clone())
            .collect();
        TableUpgrade { renames, missing }
    }

    fn is_empty(&self) -> bool {
        self.renames.is_empty() && self.missing.is_empty()
    }
}

/// Whether a table directory holds any data file (`data/`, with at least one entry).
pub fn holds_data(directory: &std::path::Path) -> bool {
    std::fs::read_dir(directory.join("data")).is_ok_and(|mut entries| entries.next().is_some())
}
