//! Where a store lives: a local directory, or a prefix on an object store (`s3://bucket/prefix`, `gs://…`,
//! `az://…`, `memory://…`) that Lance reads and writes through `object_store`, with credentials and endpoint from
//! the usual environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …).

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The object-store schemes a store may live on (those lancedb is built with).
pub const OBJECT_STORE_SCHEMES: &[&str] = &["s3", "gs", "az", "abfss", "memory"];

/// A store's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine.
    Dir(PathBuf),
    /// A prefix on an object store, as its URI without a trailing `/`.
    Uri(String),
}

impl Location {
    /// What `--db` names: a URI with an object-store scheme, else a directory. A URI with another scheme is refused
    /// by name rather than taken for a directory called `ftp:`.
    pub fn parse(db: &Path) -> crate::error::Result<Location> {
        let Some(text) = db.to_str() else {
            return Ok(Location::Dir(db.to_path_buf()));
        };
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Location::Dir(db.to_path_buf()));
        };
        if scheme == "file" {
            return Ok(Location::Dir(PathBuf::from(rest)));
        }
        if !OBJECT_STORE_SCHEMES.contains(&scheme) {
            return Err(crate::error::Error::Usage(format!(
                "--db {text}: unknown scheme '{scheme}://' (a store is a directory, or one of {})",
                OBJECT_STORE_SCHEMES
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(crate::error::Error::Usage(format!(
                "--db {text}: name the bucket (and a prefix), as in {scheme}://bucket/prefix"
            )));
        }
        Ok(Location::Uri(format!("{scheme}://{rest}")))
    }

    /// The local directory, when the store is one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Location::Dir(dir) => Some(dir),
            Location::Uri(_) => None,
        }
    }

    /// What lancedb connects to.
    pub fn uri(&self) -> crate::error::Result<String> {
        match self {
            Location::Dir(dir) => dir.to_str().map(str::to_string).ok_or_else(|| {
                crate::error::Error::Usage(format!(
                    "store path {} is not valid UTF-8",
                    dir.display()
                ))
            }),
            Location::Uri(uri) => Ok(uri.clone()),
        }
    }

    /// Options for Lance's object store beyond what it reads from the environment itself: plain `http://` is
    /// allowed when `AWS_ENDPOINT_URL` names an `http://` endpoint (a MinIO or test server on the lab's network)
    /// and `AWS_ALLOW_HTTP` does not say otherwise; `object_store` refuses it by default.
    pub fn storage_options(&self) -> Vec<(String, String)> {
        let Location::Uri(uri) = self else {
            return Vec::new();
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let http_endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|name| env(name))
            .is_some_and(|endpoint| endpoint.starts_with("http://"));
        if uri.starts_with("s3://") && http_endpoint && env("AWS_ALLOW_HTTP").is_none() {
            vec![("allow_http".into(), "true".into())]
        } else {
            Vec::new()
        }
    }

    /// Where table `name`'s files are (its `.lance` directory or prefix).
    pub fn table(&self, name: &str) -> PathBuf {
        match self {
            Location::Dir(dir) => dir.join(format!("{name}.lance")),
            Location::Uri(uri) => PathBuf::from(format!("{uri}/{name}.lance")),
        }
    }

    /// A directory on this machine that belongs to this store: the store's own directory, or, for an object
    /// store, one under `$XDG_CACHE_HOME/vlmdb` (else `~/.cache/vlmdb`) named by the URI's hash, holding what
    /// must be a local file (the write lock; the Hugging Face export of a fine-tuning run this machine made).
    pub fn local_dir(&self) -> PathBuf {
        match self {
            Location::Dir(dir) => dir.clone(),
            Location::Uri(uri) => {
                let cache = std::env::var_os("XDG_CACHE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .unwrap_or_else(std::env::temp_dir);
                let digest = hex::encode(&Sha256::digest(uri.as_bytes())[..8]);
                cache.join("vlmdb").join("stores").join(digest)
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::Uri(uri) => f.write_str(uri),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_store_uris_and_directories() {
        let parse = |s: &str| Location::parse(Path::new(s));
        assert_eq!(
            parse("s3://bucket/lab/store/").ok(),
            Some(Location::Uri("s3://bucket/lab/store".into()))
        );
        assert_eq!(
            parse("runs/store").ok(),
            Some(Location::Dir(PathBuf::from("runs/store")))
        );
        assert_eq!(
            parse("file:///tmp/store").ok(),
            Some(Location::Dir(PathBuf::from("/tmp/store")))
        );
        let unknown = parse("ftp://host/store").err().map(|e| e.to_string());
        assert!(
            unknown
                .as_deref()
                .is_some_and(|m| m.contains("'ftp://'") && m.contains("s3://")),
            "{unknown:?}"
        );
        assert!(parse("s3://").is_err());
        let uri = Location::Uri("s3://b/p".into());
        assert_eq!(uri.table("images"), PathBuf::from("s3://b/p/images.lance"));
        assert_ne!(
            uri.local_dir(),
            Location::Uri("s3://b/q".into()).local_dir()
        );
    }
}
