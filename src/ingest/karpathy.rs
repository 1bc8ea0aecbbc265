//! Karpathy split JSON (`dataset_coco.json`, `dataset_flickr8k.json`, `dataset_flickr30k.json`): `images[]` with
//! `filename`, optional `filepath`, `split` (train/val/test/restval, kept as given) and `sentences[].raw`.

use std::path::Path;

use serde::Deserialize;

use super::paths::resolve;
use super::record::{CaptionRecord, Collected, ImageData, ImageRecord, SeenIds};
use super::{ReadOptions, id_text, read_json, strip_extension};
use crate::error::Result;

#[derive(Deserialize)]
struct KarpathyFile {
    images: Vec<KarpathyImage>,
}

#[derive(Deserialize)]
struct KarpathyImage {
    filename: String,
    #[serde(default)]
    filepath: Option<String>,
    #[serde(default)]
    split: Option<String>,
    #[serde(default)]
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    raw: String,
    #[serde(default)]
    sentid: Option<serde_json::Value>,
}

pub fn read(path: &Path, options: &ReadOptions) -> Result<Collected> {
    let file: KarpathyFile = read_json(path)?;
    let origin = path.display().to_string();
    let root = options.images_root(path);
    let mut out = Collected::default();
    let mut seen = SeenIds::default();
    for image in file.images {
        let relative = match &image.filepath {
            Some(dir) if !dir.is_empty() => format!("{dir}/{}", image.filename),
            _ => image.filename.clone(),
        };
        let key = strip_extension(&relative);
        if !seen.first(&key) {
            out.reject(&origin, &relative, format!("duplicate image {relative}"));
            continue;
        }
        let real = match resolve(&root, &relative) {
            Ok(real) => real,
            Err(reason) => {
                out.reject(&origin, &relative, reason);
                continue;
            }
        };
        for (i, sentence) in image.sentences.iter().enumerate() {
            let caption_key = match &sentence.sentid {
                Some(id) => id_text(id),
                None => format!("{key}#{i}"),
            };
            out.captions.push(CaptionRecord {
                key: caption_key,
                image_key: key.clone(),
                text: sentence.raw.trim().to_string(),
            });
        }
        out.images.push(ImageRecord {
            key,
            path: relative,
            split: image.split,
            data: ImageData::File(real),
            origin: origin.clone(),
        });
    }
    Ok(out)
}
