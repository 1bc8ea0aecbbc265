//! `vlmdb ingest`: every image and caption of a dataset lands in the store. One reader per format (one file each
//! below) turns the input into source records; this module validates every image (format from the content, full
//! decode, bomb limits), assigns splits, and writes `images`, `captions`, `pairs` and `ingest_errors` under an
//! `ingest` run through [`writer`]. Ids are `<dataset>/<source id>`, so the same input ingested twice changes
//! nothing. A rejected item gets an `ingest_errors` row and the rest continues; `--strict` validates everything
//! before the first write and stops at the first bad item; a failed write restores every touched table.

pub mod cirr;
pub mod coco;
pub mod fashioniq;
pub mod folder;
pub mod hf_parquet;
pub mod jsonl;
pub mod karpathy;
pub mod paths;
pub mod record;
pub mod split;
pub mod webdataset;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::Store;
use crate::store::runs::{Run, RunSpec};
use record::{Collected, ImageData, ImageRecord, Rejection};
pub use split::SplitRule;

/// Extensions that mark a file as an image candidate (its content still decides whether it is one).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"];

/// Images validated and written per chunk by default (bounds memory on large inputs).
pub const DEFAULT_CHUNK: usize = 2048;
/// Image bytes per chunk at most (chunks of large images hold fewer): two chunks are in memory at once (one
/// decoded and hashed while the other is written), so this bounds an ingest's memory whatever the images' size.
const CHUNK_BYTES: u64 = 64 << 20;

/// `images` in chunks of at most `count` images and [`CHUNK_BYTES`] of image bytes (a larger image is a chunk of
/// its own).
fn chunks_by_size(images: &[ImageRecord], count: usize) -> Vec<&[ImageRecord]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, image) in images.iter().enumerate() {
        let size = match &image.data {
            ImageData::Bytes(b) => b.len() as u64,
            ImageData::File(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
        };
        if i > start && (i - start >= count.max(1) || bytes + size > CHUNK_BYTES) {
            chunks.push(&images[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < images.len() {
        chunks.push(&images[start..]);
    }
    chunks
}

/// The dataset formats `vlmdb ingest` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    Coco,
    Karpathy,
    Jsonl,
    Folder,
    Cirr,
    Fashioniq,
    Webdataset,
    HfParquet,
}

/// Options the readers share.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The images root (`--images`); each format documents its default.
    pub images: Option<PathBuf>,
    /// The caption field of JSON/JSONL/Parquet inputs (`--caption-field`); default `text`, then `caption`.
    pub caption_field: Option<String>,
}

impl ReadOptions {
    /// `--images`, else the directory of the input file.
    pub fn images_root(&self, input: &Path) -> PathBuf {
        self.images.clone().unwrap_or_else(|| {
            input
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        })
    }
}

/// Everything `vlmdb ingest` was asked to do.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub format: InputFormat,
    pub path: PathBuf,
    pub dataset: String,
    pub read: ReadOptions,
    pub split: SplitRule,
    /// Longest side after `--resize`.
    pub resize: Option<u32>,
    pub strict: bool,
    /// Images per commit: each chunk's images, then their captions, are one commit each.
    pub chunk: usize,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestSummary {
    pub run_id: String,
    /// Accepted images, and how many of them were new or changed (the rest were already stored as they are).
    pub images: usize,
    pub images_written: usize,
    pub captions: usize,
    pub captions_written: usize,
    pub pairs: usize,
    pub pairs_written: usize,
    pub rejected: usize,
}

/// An image ready to be stored.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    pub key: String,
    pub path: String,
    pub split: Option<String>,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub original: Option<(u32, u32)>,
    pub format: &'static str,
    pub sha256: String,
}

/// Read `options.path` with the format's reader.
pub fn read(options: &IngestOptions) -> Result<Collected> {
    let path = &options.path;
    let needs_existing = options.format != InputFormat::Webdataset;
    if needs_existing && !path.exists() {
        return Err(Error::Input {
            path: path.clone(),
            message: "no such file or directory".into(),
        });
    }
    let read = &options.read;
    let mut collected = match options.format {
        InputFormat::Coco => coco::read(path, read),
        InputFormat::Karpathy => karpathy::read(path, read),
        InputFormat::Jsonl => jsonl::read(path, read),
        InputFormat::Folder => folder::read(path, read),
        InputFormat::Cirr => cirr::read(path, read),
        InputFormat::Fashioniq => fashioniq::read(path, read),
        InputFormat::Webdataset => webdataset::read(path, read),
        InputFormat::HfParquet => hf_parquet::read(path, read),
    }?;
    collected.reject_id_collisions(&path.display().to_string());
    Ok(collected)
}

/// Validate one image: read its bytes, decode under limits, resize if asked, hash what is stored.
pub fn prepare(record: ImageRecord, resize: Option<u32>) -> Result<PreparedImage, Rejection> {
    let ImageRecord {
        key,
        path,
        split,
        data,
        origin,
    } = record;
    let reject = |reason: String| Rejection {
        source_file: origin.clone(),
        item: path.clone(),
        reason,
    };
    let bytes = match data {
        ImageData::Bytes(b) => b,
        ImageData::File(p) => {
            std::fs::read(&p).map_err(|e| reject(format!("cannot read {}: {e}", p.display())))?
        }
    };
    let (decoded, info) = crate::image::decode(&bytes).map_err(&reject)?;
    let resized = match resize {
        Some(longest) => crate::image::resize(&decoded, info, longest).map_err(&reject)?,
        None => None,
    };
    let (bytes, width, height, format, original) = match resized {
        Some(small) => (
            small.bytes,
            small.width,
            small.height,
            small.format,
            Some((info.width, info.height)),
        ),
        None => (bytes, info.width, info.height, info.format, None),
    };
    Ok(PreparedImage {
        sha256: hex::encode(Sha256::digest(&bytes)),
        key,
        path,
        split,
        bytes,
        width,
        height,
        original,
        format: crate::image::format_name(format),
    })
}

/// A dataset name is what ids are prefixed with: letters, digits, `_`, `-`, `.`.
pub fn check_dataset_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--dataset '{name}': use letters, digits, '_', '-' and '.' only"
        )))
    }
}

/// Run an ingest under an `ingest` run.
pub async fn ingest(store: &Store, options: IngestOptions) -> Result<IngestSummary> {
    check_dataset_name(&options.dataset)?;
    for table in ["images", "captions", "pairs", "ingest_errors", "runs"] {
        store.ensure_table_writable(table, "ingest")?;
    }
    let collected = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || read(&options))
            .await
            .map_err(Error::task("reading the dataset"))??
    };
    if options.strict {
        validate_all(&collected, &options).await?;
    }
    let config = serde_json::json!({
        "format": options.format,
        "path": options.path.display().to_string(),
        "dataset": options.dataset,
        "images": options.read.images.as_ref().map(|p| p.display().to_string()),
        "caption_field": options.read.caption_field,
        "split": format!("{:?}", options.split),
        "resize": options.resize,
        "strict": options.strict,
    });
    let seed = match &options.split {
        SplitRule::Ratio { seed, .. } => Some(*seed as i64),
        _ => None,
    };
    let spec = RunSpec {
        kind: "ingest".into(),
        name: options.dataset.clone(),
        config,
        seed,
    };
    let mut run = Run::open_continuing(store, spec).await?;
    let run_id = run.id().to_string();
    let before = writer::versions(store).await;
    let outcome = match before {
        Ok(before) => {
            // The stored rows it compares with are read at these versions, before the first write.
            for (table, version) in &before {
                if writer::READS.contains(&table.as_str()) {
                    run.record_input(table, *version);
                }
            }
            let result = write(store, &options, collected, &run_id).await;
            if result.is_err() {
                // Leave no row of this ingest behind; the write error is what the user needs to see.
                let _ = writer::rollback(store, &before).await;
            }
            result
        }
        Err(e) => Err(e),
    };
    run.close(store, outcome).await
}

/// `--strict`: every item is validated before the first write; the first bad one aborts.
async fn validate_all(collected: &Collected, options: &IngestOptions) -> Result<()> {
    if let Some(first) = collected.rejected.first() {
        return Err(rejected(first.clone()));
    }
    let progress = Progress::new(collected.images.len() as u64, "validating");
    for chunk in chunks_by_size(&collected.images, options.chunk) {
        let chunk = chunk.to_vec();
        let chunk_len = chunk.len();
        let resize = options.resize;
        let failure = tokio::task::spawn_blocking(move || {
            chunk
                .into_par_iter()
                .filter_map(|r| prepare(r, resize).err())
                .collect::<Vec<_>>()
        })
        .await
        .map_err(Error::task("validating images"))?;
        if let Some(first) = failure.into_iter().next() {
            return Err(rejected(first));
        }
        progress.inc(chunk_len as u64);
    }
    progress.finish();
    Ok(())
}

fn rejected(r: Rejection) -> Error {
    Error::Rejected {
        source_file: r.source_file,
        item: r.item,
        reason: r.reason,
    }
}

async fn write(
    store: &Store,
    options: &IngestOptions,
    collected: Collected,
    run_id: &str,
) -> Result<IngestSummary> {
    let Collected {
        images,
        captions,
        pairs,
        mut rejected,
    } = collected;
    let dataset = &options.dataset;
    let sink = writer::DatasetWriter::open(store, dataset, run_id).await?;
    let progress = Progress::new(images.len() as u64, "ingesting");
    let mut accepted: HashMap<String, Option<String>> = HashMap::new();
    let mut summary = IngestSummary {
        run_id: run_id.to_string(),
        ..Default::default()
    };
    let mut images = images;
    for image in &mut images {
        image.split = options.split.assign(&image.key, image.split.take());
    }
    // Chunk i + 1 is decoded and hashed while chunk i is written: the two take about as long.
    let resize = options.resize;
    let prepare_chunk = |chunk: &[ImageRecord]| {
        let chunk = chunk.to_vec();
        tokio::task::spawn_blocking(move || {
            chunk
                .into_par_iter()
                .map(|r| prepare(r, resize))
                .collect::<Vec<_>>()
        })
    };
    // Captions go in with their images, chunk by chunk: an interrupted ingest leaves at most one chunk's images
    // without their captions (and re-running completes it).
    let mut captions_of: HashMap<String, Vec<record::CaptionRecord>> = HashMap::new();
    for caption in captions {
        captions_of
            .entry(caption.image_key.clone())
            .or_default()
            .push(caption);
    }
    let mut chunks = chunks_by_size(&images, options.chunk).into_iter();
    let mut next = chunks.next().map(prepare_chunk);
    while let Some(preparing) = next.take() {
        let results = preparing.await.map_err(Error::task("preparing images"))?;
        next = chunks.next().map(prepare_chunk);
        let mut ready = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(image) => {
                    accepted.insert(image.key.clone(), image.split.clone());
                    ready.push(image);
                }
                Err(r) => rejected.push(r),
            }
        }
        let captions: Vec<_> = ready
            .iter()
            .flat_map(|image| {
                captions_of
                    .remove(&image.key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| (c, image.split.clone()))
            })
            .collect();
        summary.images += ready.len();
        progress.inc(ready.len() as u64);
        summary.images_written += sink.write_images(ready).await?;
        summary.captions += captions.len();
        summary.captions_written += sink.write_captions(captions).await?;
    }
    progress.finish();

    let accepted_keys: HashSet<&String> = accepted.keys().collect();
    let mut kept = Vec::new();
    for mut pair in pairs {
        let missing = std::iter::once(&pair.reference_key)
            .chain(pair.target_key.as_ref())
            .find(|k| !accepted_keys.contains(k))
            .cloned();
        match missing {
            Some(k) => rejected.push(Rejection {
                source_file: options.path.display().to_string(),
                item: pair.key.clone(),
                reason: format!("image {k} of the pair was rejected or is missing"),
            }),
            None => {
                if pair.split.is_none() {
                    pair.split = options.split.assign(&pair.key, None);
                }
                kept.push(pair);
            }
        }
    }
    summary.pairs = kept.len();
    summary.pairs_written = sink.write_pairs(kept).await?;
    summary.rejected = rejected.len();
    sink.write_rejections(rejected).await?;
    Ok(summary)
}

/// Read and parse a JSON file; a parse error names the file, line and column.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Input {
        path: path.to_path_buf(),
        message: format!("malformed JSON: {e}"),
    })
}

/// A JSON id (number or string) as text.
pub fn id_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `dir/name.ext` -> `dir/name` (only the last extension).
pub fn strip_extension(path: &str) -> String {
    match path.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') && !stem.is_empty() && !stem.ends_with('/') => {
            stem.to_string()
        }
        _ => path.to_string(),
    }
}

/// Files `<prefix><middle>.json` in `dir`, as (middle, path), sorted.
pub fn list_json(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let middle = name
                .strip_prefix(prefix)?
                .strip_suffix(".json")?
                .to_string();
            Some((middle, e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_hold_a_bounded_number_of_bytes() {
        let image = |n: usize| ImageRecord {
            key: n.to_string(),
            path: n.to_string(),
            split: None,
            data: ImageData::Bytes(vec![0; n]),
            origin: String::new(),
        };
        let mb = 1 << 20;
        let images = vec![
            image(30 * mb),
            image(30 * mb),
            image(30 * mb),
            image(300 * mb),
            image(1),
        ];
        let sizes: Vec<usize> = chunks_by_size(&images, 10)
            .iter()
            .map(|c| c.len())
            .collect();
        // 60 MB fit one chunk (64 MiB), the third image starts the next; a 300 MB image is a chunk of its own.
        assert_eq!(sizes, [2, 1, 1, 1]);
        let small: Vec<ImageRecord> = (0..5).map(|_| image(1)).collect();
        let sizes: Vec<usize> = chunks_by_size(&small, 2).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    use super::*;

    #[test]
    fn extensions_are_stripped_once() {
        assert_eq!(strip_extension("images/a.png"), "images/a");
        assert_eq!(strip_extension("a.tar.gz"), "a.tar");
        assert_eq!(strip_extension("dir.v2/file"), "dir.v2/file");
        assert_eq!(strip_extension(".hidden"), ".hidden");
    }

    #[test]
    fn dataset_names() {
        assert!(check_dataset_name("coco-2014_v1.0").is_ok());
        assert!(check_dataset_name("a/b").is_err());
        assert!(check_dataset_name("").is_err());
    }
}
