//! Where a model's files come from. `--model` is an alias (pinned repo + commit), `hf:org/repo[@rev]`, or a local
//! directory in Hugging Face layout. Hub repos resolve through the Hugging Face cache first (`HF_HUB_CACHE`, else
//! `HF_HOME/hub`, else `~/.cache/huggingface/hub`: `models--org--repo/snapshots/<commit>/…`, a branch or tag read
//! through `refs/<rev>`), and download into that same cache only on a miss and only when `HF_HUB_OFFLINE` is not
//! set. hf-hub ignores those variables itself, so the cache directory is handed to it explicitly.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A model name vlmdb knows, pinned to one commit so a space always means the same weights.
#[derive(Debug, Clone, Copy)]
pub struct Alias {
    pub name: &'static str,
    pub repo: &'static str,
    pub revision: &'static str,
}

/// The aliases `--model` accepts.
pub const ALIASES: &[Alias] = &[
    Alias {
        name: "minilm",
        repo: "sentence-transformers/all-MiniLM-L6-v2",
        revision: "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
    },
    Alias {
        name: "clip-vit-b32",
        repo: "openai/clip-vit-base-patch32",
        revision: "3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268",
    },
    Alias {
        name: "clip-vit-l14",
        repo: "openai/clip-vit-large-patch14",
        revision: "32bd64288804d66eefd0ccbe215aa642df71cc41",
    },
    Alias {
        name: "laion-vit-b32",
        repo: "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        revision: "1a25a446712ba5ee05982a381eed697ef9b435cf",
    },
    Alias {
        name: "laion-vit-h14",
        repo: "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        revision: "1c2b8495b28150b8a4922ee1c8edee224c284c0c",
    },
    Alias {
        name: "siglip-b16",
        repo: "google/siglip-base-patch16-224",
        revision: "7fd15f0689c79d79e38b1c2e2e2370a7bf2761ed",
    },
];

/// The files that make a directory or repo a model, in the order they are looked for: transformers' config, a
/// diffusers pipeline's index, OpenCLIP's config.
const CONFIG_FILES: [&str; 3] = ["config.json", "model_index.json", "open_clip_config.json"];

/// Where the files of one model are.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user wrote after `--model`.
    pub spec: String,
    /// The model id recorded on runs and in space metadata: the hub repo, or the local directory's path.
    pub id: String,
    /// The resolved revision: the hub commit, or for a local directory a fingerprint of its contents.
    pub revision: String,
    /// The name the space is built from: the alias, or a slug of the repo or directory name.
    pub base_name: String,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Local(PathBuf),
    /// A model built from the store rather than from files (a trained head): it has no files, and its space is
    /// named by whoever built it.
    Store {
        space: String,
    },
    Hub {
        repo: String,
        /// The revision as asked for (commit, branch or tag).
        requested: String,
        cache: PathBuf,
        /// The snapshot directory once the commit is known.
        snapshot: Option<PathBuf>,
    },
}

/// The Hugging Face hub cache directory, as huggingface_hub computes it.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// True when `HF_HUB_OFFLINE` forbids network access (`1`, `true`, `yes`, `on`, as huggingface_hub reads it).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// `[a-z0-9_]` slug of a name: lower-cased, every other character run becomes one `_`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

impl ModelFiles {
    /// Resolve `spec`. A local directory must exist and hold `config.json`; a hub repo's commit is found in the
    /// cache (or by downloading `config.json`), so an offline miss fails here, at once, naming repo and revision.
    pub fn resolve(spec: &str) -> Result<ModelFiles> {
        let (repo, requested, base_name) =
            if let Some(alias) = ALIASES.iter().find(|a| a.name == spec) {
                (
                    alias.repo.to_string(),
                    alias.revision.to_string(),
                    alias.name.to_string(),
                )
            } else if let Some(rest) = spec.strip_prefix("hf:") {
                let (repo, revision) = match rest.split_once('@') {
                    Some((repo, rev)) if !rev.is_empty() => (repo, rev),
                    _ => (rest, "main"),
                };
                let valid = repo.split('/').count() == 2
                    && repo.split('/').all(|part| {
                        !part.is_empty()
                            && part != ".."
                            && part
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    });
                if !valid {
                    return Err(Error::Model {
                        model: spec.into(),
                        message: "expected hf:org/repo or hf:org/repo@revision".into(),
                    });
                }
                let name = repo.rsplit('/').next().unwrap_or(repo);
                (repo.to_string(), revision.to_string(), slug(name))
            } else {
                return Self::local(spec);
            };
        let mut files = ModelFiles {
            spec: spec.into(),
            id: repo.clone(),
            revision: requested.clone(),
            base_name,
            source: Source::Hub {
                repo,
                requested,
                cache: hub_cache_dir(),
                snapshot: None,
            },
        };
        // config.json (model_index.json for a diffusers pipeline, open_clip_config.json for an OpenCLIP checkpoint)
        // pins the commit: every later file comes from the same snapshot.
        for name in CONFIG_FILES {
            if files.optional(name)?.is_some() {
                return Ok(files);
            }
        }
        Err(Error::ModelFile {
            repo: files.id.clone(),
            revision: files.revision.clone(),
            file: "config.json".into(),
            message: format!("the repo has none of {}", CONFIG_FILES.join(", ")),
        })
    }

    fn local(spec: &str) -> Result<ModelFiles> {
        let dir = PathBuf::from(spec);
        if !dir.is_dir() {
            let known: Vec<&str> = ALIASES.iter().map(|a| a.name).collect();
            return Err(Error::Model {
                model: spec.into(),
                message: format!(
                    "not an alias ({}), not hf:org/repo[@rev], and not a directory",
                    known.join(", ")
                ),
            });
        }
        if !CONFIG_FILES.iter().any(|name| dir.join(name).is_file()) {
            return Err(Error::Model {
                model: spec.into(),
                message: "the directory has no config.json (a Hugging Face model directory), no \
                          model_index.json (a diffusers pipeline) and no open_clip_config.json (an OpenCLIP \
                          checkpoint)"
                    .into(),
            });
        }
        let dir = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(ModelFiles {
            spec: spec.into(),
            id: dir.display().to_string(),
            revision: fingerprint(&dir)?,
            base_name: slug(&name),
            source: Source::Local(dir),
        })
    }

    /// A model that lives in the store (a trained head), whose vectors go to `space`.
    pub fn in_store(spec: &str, id: &str, revision: &str, space: &str) -> ModelFiles {
        ModelFiles {
            spec: spec.to_string(),
            id: id.to_string(),
            revision: revision.to_string(),
            base_name: space.to_string(),
            source: Source::Store {
                space: space.to_string(),
            },
        }
    }

    /// The space this model's vectors live in: `<base name>_<first 7 characters of the revision>`.
    pub fn space(&self) -> String {
        if let Source::Store { space } = &self.source {
            return space.clone();
        }
        let short: String = self.revision.chars().take(7).collect();
        format!("{}_{}", self.base_name, slug(&short))
    }

    /// A file of the model, or `None` when the model has no such file.
    pub fn optional(&mut self, name: &str) -> Result<Option<PathBuf>> {
        match &mut self.source {
            Source::Local(dir) => {
                let path = dir.join(name);
                Ok(path.is_file().then_some(path))
            }
            Source::Hub { .. } => self.hub_file(name),
            Source::Store { .. } => Ok(None),
        }
    }

    /// A file the model cannot do without.
    pub fn require(&mut self, name: &str) -> Result<PathBuf> {
        match self.optional(name)? {
            Some(path) => Ok(path),
            None => Err(Error::ModelFile {
                repo: self.id.clone(),
                revision: self.revision.clone(),
                file: name.into(),
                message: "the model has no such file".into(),
            }),
        }
    }

    fn hub_file(&mut self, name: &str) -> Result<Option<PathBuf>> {
        let Source::Hub {
            repo,
            requested,
            cache,
            snapshot,
        } = &mut self.source
        else {
            return Ok(None);
        };
        let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
        if snapshot.is_none() {
            let commit = if is_commit(requested) {
                Some(requested.clone())
            } else {
                std::fs::read_to_string(repo_dir.join("refs").join(&*requested))
                    .ok()
                    .map(|c| c.trim().to_string())
            };
            *snapshot = commit.map(|c| repo_dir.join("snapshots").join(c));
        }
        if let Some(dir) = snapshot.as_ref() {
            let path = dir.join(name);
            if path.is_file() {
                self.revision = commit_of(dir);
                return Ok(Some(path));
            }
            if repo_dir
                .join(".no_exist")
                .join(commit_of(dir))
                .join(name)
                .exists()
            {
                return Ok(None);
            }
        }
        let miss = |message: String| Error::ModelFile {
            repo: repo.clone(),
            revision: requested.clone(),
            file: name.into(),
            message,
        };
        if offline() {
            // A cache holding the repo under other revisions (or without the ref asked for) says which it has.
            let mut present: Vec<String> = std::fs::read_dir(repo_dir.join("snapshots"))
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            present.sort();
            let have = if present.is_empty() {
                String::new()
            } else {
                format!(
                    "; the cache has this repo at {} (use hf:{repo}@<revision>)",
                    present.join(", ")
                )
            };
            return Err(miss(format!(
                "not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set, so it is not downloaded{have}",
                cache.display()
            )));
        }
        let api = hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.clone()))
            .with_progress(true)
            .build()
            .map_err(|e| miss(format!("cannot start the download client: {e}")))?;
        let hub_repo =
            hf_hub::Repo::with_revision(repo.clone(), hf_hub::RepoType::Model, requested.clone());
        match api.repo(hub_repo).get(name) {
            Ok(path) => {
                // .../snapshots/<commit>/<name>: the snapshot is the ancestor as many levels up as `name` is deep.
                let depth = Path::new(name).components().count();
                let dir = path.ancestors().nth(depth).map(Path::to_path_buf);
                if let Some(dir) = dir {
                    self.revision = commit_of(&dir);
                    *snapshot = Some(dir);
                }
                Ok(Some(path))
            }
            Err(hf_hub::api::sync::ApiError::RequestError(e))
                if matches!(*e, ureq::Error::Status(404, _)) =>
            {
                Ok(None)
            }
            Err(e) => Err(miss(format!("download failed: {e}"))),
        }
    }
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

fn commit_of(snapshot: &Path) -> String {
    snapshot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A content fingerprint of a local model directory (its revision): sha256 over `config.json`, the tokenizer and
/// preprocessor files, and each weights file's length plus its first and last MiB. Changing the weights changes
/// the space and the cache key, without hashing gigabytes on every start.
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for name in [
        "config.json",
        "model_index.json",
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "scheduler/scheduler_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        let path = dir.join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            hasher.update(name.as_bytes());
            hasher.update(&bytes);
        }
    }
    for name in [
        "model.safetensors",
        "pytorch_model.bin",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    ] {
        let path = dir.join(name);
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        hasher.update(name.as_bytes());
        hasher.update(len.to_le_bytes());
        let mut head = vec![0u8; (1 << 20).min(len as usize)];
        file.read_exact(&mut head)
            .map_err(|e| Error::io(&path, e))?;
        hasher.update(&head);
        if len > (2 << 20) {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::End(-(1 << 20)))
                .map_err(|e| Error::io(&path, e))?;
            file.read_exact(&mut head)
                .map_err(|e| Error::io(&path, e))?;
            hasher.update(&head);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_sql_identifiers() {
        assert_eq!(slug("clip-vit-base-patch32"), "clip_vit_base_patch32");
        assert_eq!(slug("All-MiniLM-L6-v2"), "all_minilm_l6_v2");
        assert_eq!(slug("--a..b--"), "a_b");
    }

    #[test]
    fn commits_are_forty_hex_digits() {
        assert!(is_commit("c9745ed1d9f207416be6d2e6f8de32d1f16199bf"));
        assert!(!is_commit("main"));
    }
}
