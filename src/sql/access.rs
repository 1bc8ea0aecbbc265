//! Which files SQL may touch. `COPY … TO` and `CREATE EXTERNAL TABLE … LOCATION` are useful (exports, joining a
//! CSV), so they stay, with two limits: they never reach into the store's own directory (a `COPY` there would
//! overwrite a table's manifest and destroy the table; a read there bypasses the store's versions), and with
//! external access off (`--no-external-access`, as DuckDB's `enable_external_access = false`) no statement touches
//! a file at all. The check runs on the parsed statement, before planning.

use std::path::{Component, Path, PathBuf};

use datafusion::sql::parser::{CopyToStatement, CreateExternalTable, Statement};

use crate::error::{Error, Result};
use crate::store::Location;

/// Whether SQL may read and write files outside the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExternalAccess {
    /// `COPY … TO` and external tables work on paths outside the store.
    #[default]
    Allowed,
    /// Every statement that names a file is refused.
    Denied,
}

/// The file `statement` would write or read, if any: (what the statement does, the location as written).
fn file_of(statement: &Statement) -> Option<(&'static str, &str)> {
    match statement {
        Statement::CopyTo(CopyToStatement { target, .. }) => Some(("COPY … TO", target.as_str())),
        Statement::CreateExternalTable(CreateExternalTable { location, .. }) => {
            Some(("CREATE EXTERNAL TABLE … LOCATION", location.as_str()))
        }
        Statement::Explain(explain) => file_of(&explain.statement),
        Statement::Statement(_) | Statement::Reset(_) => None,
    }
}

/// Refuse `statement` when it names a file inside the store at `store`, or any file while `access` is
/// [`ExternalAccess::Denied`].
pub fn check(statement: &Statement, store: &Location, access: ExternalAccess) -> Result<()> {
    let Some((what, location)) = file_of(statement) else {
        return Ok(());
    };
    if access == ExternalAccess::Denied {
        return Err(Error::Usage(format!(
            "{what} '{location}': external access is off (--no-external-access), so SQL touches no files"
        )));
    }
    let inside = || {
        Error::Usage(format!(
            "{what} '{location}' is inside the store {store}: SQL reads and writes store tables by name, \
             never their files"
        ))
    };
    let local = location.strip_prefix("file://").unwrap_or(location);
    match store {
        Location::Uri(uri) => {
            let target = local.trim_end_matches('/');
            if target == uri || target.starts_with(&format!("{uri}/")) {
                return Err(inside());
            }
            Ok(())
        }
        // Another scheme (s3://, …) is not the store's directory.
        Location::Dir(_) if local.contains("://") => Ok(()),
        Location::Dir(store_root) => {
            if resolve(Path::new(local))?.starts_with(resolve(store_root)?) {
                return Err(inside());
            }
            Ok(())
        }
    }
}

/// `path` made absolute, `.` and `..` applied, and symbolic links resolved as far as the path exists (a `COPY`
/// target usually does not exist yet; its directory may be a link into the store).
fn resolve(path: &Path) -> Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(".", e))?
            .join(path)
    };
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    // The longest existing prefix, with its links resolved, then the rest as written.
    let mut existing = normal.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut resolved = real;
            resolved.extend(rest.iter().rev());
            return Ok(resolved);
        }
        match (
            existing.file_name().map(ToOwned::to_owned),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return Ok(normal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn statement(sql: &str) -> Statement {
        DFParser::parse_sql(sql)
            .expect("parses")
            .pop_front()
            .expect("one statement")
    }

    #[test]
    fn files_inside_the_store_are_refused_and_others_allowed() {
        let dir = std::env::temp_dir().join(format!("vlmdb-access-{}", std::process::id()));
        let root = dir.join("store");
        std::fs::create_dir_all(root.join("images.lance")).expect("store dir");
        let store = Location::Dir(root.clone());
        let inside = format!(
            "COPY (SELECT 1) TO '{}/images.lance/_versions/1.manifest' STORED AS CSV",
            root.display()
        );
        let err = check(&statement(&inside), &store, ExternalAccess::Allowed).expect_err("inside");
        assert!(err.to_string().contains("inside the store"), "{err}");
        // `..` and `file://` do not get around it.
        let sneaky = format!(
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION 'file://{}/x/../store/runs.lance'",
            dir.display()
        );
        assert!(check(&statement(&sneaky), &store, ExternalAccess::Allowed).is_err());
        // A link into the store is followed.
        #[cfg(unix)]
        {
            let link = dir.join("link");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&root, &link).expect("symlink");
            let via_link = format!(
                "COPY (SELECT 1) TO '{}/new.csv' STORED AS CSV",
                link.display()
            );
            assert!(check(&statement(&via_link), &store, ExternalAccess::Allowed).is_err());
        }
        let outside = format!(
            "COPY (SELECT 1) TO '{}/out.csv' STORED AS CSV",
            dir.display()
        );
        check(&statement(&outside), &store, ExternalAccess::Allowed).expect("outside is allowed");
        let err = check(&statement(&outside), &store, ExternalAccess::Denied).expect_err("denied");
        assert!(err.to_string().contains("external access is off"), "{err}");
        let explain = format!("EXPLAIN {inside}");
        assert!(check(&statement(&explain), &store, ExternalAccess::Allowed).is_err());
        check(&statement("SELECT 1"), &store, ExternalAccess::Denied).expect("no file");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_object_stores_prefix_is_the_store() {
        let store = Location::Uri("s3://lab/store".into());
        let copy = |to: &str| statement(&format!("COPY (SELECT 1) TO '{to}' STORED AS CSV"));
        let err = check(
            &copy("s3://lab/store/runs.lance/x.csv"),
            &store,
            ExternalAccess::Allowed,
        )
        .expect_err("inside");
        assert!(
            err.to_string().contains("inside the store s3://lab/store"),
            "{err}"
        );
        check(
            &copy("s3://lab/store-exports/x.csv"),
            &store,
            ExternalAccess::Allowed,
        )
        .expect("a sibling prefix is outside");
        check(&copy("/tmp/x.csv"), &store, ExternalAccess::Allowed).expect("a local file");
    }
}
