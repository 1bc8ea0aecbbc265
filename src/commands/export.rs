//! `vlmdb export`: a dataset's captions (JSON Lines as Hugging Face ImageFolder's `metadata.jsonl`, so an export
//! ingests back with `vlmdb ingest jsonl`), or any table, written out as JSONL, CSV or Parquet; a dataset as a
//! folder of its stored images with `metadata.jsonl` beside them ([`images_folder`]); a run's artifact as a file.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use datafusion::prelude::{col, lit};
use futures::TryStreamExt;
use sha2::Digest;

use crate::error::{Error, Result};
use crate::sql::{Engine, ParamValue, Params, StatementResult};
use crate::store::Store;
use crate::store::columns::strings;

/// Export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Parquet,
    Csv,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// Captions of this dataset (or, with `table`, only its rows).
    pub dataset: Option<String>,
    /// A whole table instead of captions.
    pub table: Option<String>,
    pub split: Option<String>,
}

const CAPTIONS: &str = "SELECT i.path AS file_name, c.text, c.caption_id, c.image_id, c.split \
    FROM captions c JOIN images i ON c.image_id = i.image_id \
    WHERE c.dataset = $dataset";

/// Run the export query; returns the result to write.
pub async fn query(store: &Store, options: &ExportOptions) -> Result<StatementResult> {
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    let mut filters = Vec::new();
    if let Some(split) = &options.split {
        params.set("split", ParamValue::Text(split.clone()))?;
    }
    if let Some(dataset) = &options.dataset {
        params.set("dataset", ParamValue::Text(dataset.clone()))?;
    }
    let sql = match (&options.table, &options.dataset) {
        (None, Some(_)) => {
            let split = if options.split.is_some() {
                " AND c.split = $split"
            } else {
                ""
            };
            format!("{CAPTIONS}{split} ORDER BY c.caption_id")
        }
        (Some(table), _) => {
            // A table name cannot be bound; it is checked against the store's tables and quoted.
            let tables = store.table_names().await?;
            if !tables.contains(table) {
                return Err(Error::UnknownTable {
                    name: table.clone(),
                });
            }
            let schema = store.open_table(table).await?.schema().await?;
            let has = |c: &str| schema.field_with_name(c).is_ok();
            for (column, option) in [("dataset", &options.dataset), ("split", &options.split)] {
                if option.is_some() {
                    if !has(column) {
                        return Err(Error::Usage(format!(
                            "table '{table}' has no {column} column to filter on"
                        )));
                    }
                    filters.push(format!("{column} = ${column}"));
                }
            }
            let filter = if filters.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", filters.join(" AND "))
            };
            format!("SELECT * FROM \"{table}\"{filter}")
        }
        (None, None) => return Err(Error::Usage("export needs --dataset D or --table T".into())),
    };
    let mut results = engine.execute_sql(&sql, &params).await?;
    results
        .pop()
        .ok_or_else(|| Error::Usage("export query returned nothing".into()))
}

/// What [`images_folder`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FolderSummary {
    /// The folder, and its `metadata.jsonl`.
    pub dir: PathBuf,
    pub metadata: PathBuf,
    pub images: usize,
    pub captions: usize,
}

/// The dataset's own images (not the loop's generated ones) written into `dir` as stored (resized ones as
/// resized), each under its source id with the extension of its format, and `dir/metadata.jsonl` with one line per
/// human caption (`file_name` relative to it, `text`, `split`, `image_id`, `caption_id`; a line without text for an
/// image without captions), so `vlmdb ingest jsonl dir/metadata.jsonl` restores the dataset. `dir` must be new or
/// empty; on failure it is left as it was.
pub async fn images_folder(
    store: &Store,
    dataset: &str,
    split: Option<&str>,
    dir: &Path,
) -> Result<FolderSummary> {
    let existed = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Usage(format!(
                    "--images-out {}: not empty (give a new or empty directory)",
                    dir.display()
                )));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(dir, e)),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let written = write_folder(store, dataset, split, dir).await;
    if written.is_err() {
        // Leave the directory as it was: gone if it was made here, empty if it was given empty.
        if existed {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    written
}

async fn write_folder(
    store: &Store,
    dataset: &str,
    split: Option<&str>,
    dir: &Path,
) -> Result<FolderSummary> {
    let mut filter = col("dataset").eq(lit(dataset));
    if let Some(split) = split {
        filter = filter.and(col("split").eq(lit(split)));
    }
    // Captions first (text only), by image.
    let mut captions_of: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (image, id, text) in store.human_captions(dataset, split).await? {
        captions_of.entry(image).or_default().push((id, text));
    }
    // Images a batch at a time: their bytes are never all in memory.
    let own = filter.and(col("iteration").is_null());
    let mut batches = store
        .scan_batches(
            "images",
            &["image_id", "split", "format", "data"],
            Some(own),
        )
        .await?;
    let mut lines: Vec<(String, String, String)> = Vec::new();
    let mut names = HashSet::new();
    let mut images = 0;
    while let Some(batch) = batches.try_next().await? {
        let ids = strings(&batch, "image_id")?;
        let splits = strings(&batch, "split")?;
        let formats = strings(&batch, "format")?;
        let data = batch
            .column_by_name("data")
            .ok_or_else(|| Error::Usage("images has no data column".into()))?;
        let data = arrow::compute::cast(data, &DataType::LargeBinary)?;
        let data = data.as_binary::<i64>();
        for row in 0..batch.num_rows() {
            let (Some(id), Some(format)) = (&ids[row], &formats[row]) else {
                continue;
            };
            if data.is_null(row) {
                continue;
            }
            let name = file_name(dataset, id, format, &names);
            names.insert(name.clone());
            let path = dir.join(&name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&path, data.value(row)).map_err(|e| Error::io(&path, e))?;
            images += 1;
            let base = serde_json::json!({
                "file_name": name,
                "split": splits[row],
                "image_id": id,
            });
            match captions_of.get(id) {
                Some(captions) => {
                    for (caption_id, text) in captions {
                        let mut line = base.clone();
                        line["text"] = text.clone().into();
                        line["caption_id"] = caption_id.clone().into();
                        lines.push((id.clone(), caption_id.clone(), line.to_string()));
                    }
                }
                None => lines.push((id.clone(), String::new(), base.to_string())),
            }
        }
    }
    if images == 0 {
        return Err(crate::store::read::no_images(dataset, split, "images"));
    }
    lines.sort();
    let captions = lines.iter().filter(|l| !l.1.is_empty()).count();
    let metadata = dir.join("metadata.jsonl");
    let mut text = Vec::new();
    for (_, _, line) in &lines {
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    replace_file(&metadata, &text, "--images-out")?;
    Ok(FolderSummary {
        dir: dir.to_path_buf(),
        metadata,
        images,
        captions,
    })
}

/// The file an image is written to inside the folder: its source id (the id without `<dataset>/`) with the
/// extension of its format, so a re-ingest gives it the same id. A source id that is not a plain relative path
/// (`..`, an absolute path) or collides is named by its digest instead.
fn file_name(dataset: &str, image_id: &str, format: &str, taken: &HashSet<String>) -> String {
    let extension = match format {
        "jpeg" => "jpg",
        "png" | "webp" | "gif" | "bmp" | "tiff" => format,
        _ => "img",
    };
    let source = image_id
        .strip_prefix(dataset)
        .and_then(|s| s.strip_prefix('/'))
        .unwrap_or(image_id);
    let plain = !source.is_empty()
        && !source.contains('\\')
        && Path::new(source)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    let name = format!("{source}.{extension}");
    if plain && !taken.contains(&name) && name != "metadata.jsonl" {
        return name;
    }
    let digest = hex::encode(sha2::Sha256::digest(image_id.as_bytes()));
    format!("images/{}.{extension}", &digest[..16])
}

/// The bytes of artifact `name` of run `run`; an unknown name is an error listing the run's artifacts.
pub async fn artifact(store: &Store, run: &str, name: &str) -> Result<Vec<u8>> {
    if let Some(bytes) = store.artifact(run, name).await? {
        return Ok(bytes);
    }
    let names = store.artifact_names(run).await?;
    Err(Error::Usage(if names.is_empty() {
        format!("run '{run}' has no artifacts")
    } else {
        format!(
            "run '{run}' has no artifact '{name}' (it has: {})",
            names.join(", ")
        )
    }))
}

/// Put `bytes` at `path` whole or not at all: written to a new file of a unique name in the same directory, then
/// renamed over `path`. Something at `path` that is not a regular file (a device, a FIFO, a link, a directory) is
/// refused, and a failed write leaves nothing behind. `flag` names the option that gave the path.
pub fn replace_file(path: &Path, bytes: &[u8], flag: &str) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        return Err(Error::Usage(format!(
            "{flag} {}: exists and is not a regular file (a device, FIFO, link or directory); nothing was written",
            path.display()
        )));
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{flag} {}: not a file name", path.display())))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(
        ".{}.{}-{nanos}.vlmdb-partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        Error::io(path, e)
    })
}
