//! CIRR: `captions/cap.rc2.<split>.json` (pairid, reference, caption, target_hard, img_set.members) and
//! `image_splits/split.rc2.<split>.json` (image name -> relative path) become images and `pairs`. The test split
//! (`test1`) has no targets and is accepted as such. Image paths are relative to `--images` (default: PATH).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::paths::resolve;
use super::record::{Collected, ImageData, ImageRecord, PairRecord, SeenIds};
use super::{ReadOptions, id_text, list_json, read_json};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct CirrPair {
    pairid: serde_json::Value,
    reference: String,
    caption: String,
    #[serde(default)]
    target_hard: Option<String>,
    #[serde(default)]
    img_set: Option<ImageSet>,
}

#[derive(Deserialize)]
struct ImageSet {
    #[serde(default)]
    members: Vec<String>,
}

/// `test1` is CIRR's test split.
fn split_label(file_split: &str) -> String {
    match file_split {
        "test1" => "test".to_string(),
        other => other.to_string(),
    }
}

pub fn read(path: &Path, options: &ReadOptions) -> Result<Collected> {
    let root = options.images.clone().unwrap_or_else(|| path.to_path_buf());
    let caption_files = list_json(&path.join("captions"), "cap.rc2.")?;
    if caption_files.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no captions/cap.rc2.<split>.json files (is this a CIRR root?)",
            path.display()
        )));
    }
    let mut out = Collected::default();
    let mut seen_images = SeenIds::default();
    let mut seen_pairs = SeenIds::default();
    for (file_split, caption_file) in caption_files {
        let split = split_label(&file_split);
        let split_file = path
            .join("image_splits")
            .join(format!("split.rc2.{file_split}.json"));
        let names: BTreeMap<String, String> = read_json(&split_file)?;
        let split_origin = split_file.display().to_string();
        for (name, relative) in &names {
            if !seen_images.first(name) {
                continue; // an image listed in two splits is stored once, under its first split
            }
            match resolve(&root, relative) {
                Ok(real) => out.images.push(ImageRecord {
                    key: name.clone(),
                    path: relative.clone(),
                    split: Some(split.clone()),
                    data: ImageData::File(real),
                    origin: split_origin.clone(),
                }),
                Err(reason) => out.reject(&split_origin, name, reason),
            }
        }
        let origin = caption_file.display().to_string();
        let pairs: Vec<CirrPair> = read_json(&caption_file)?;
        for pair in pairs {
            let key = format!("{split}/{}", id_text(&pair.pairid));
            if !seen_pairs.first(&key) {
                out.reject(
                    &origin,
                    &key,
                    format!("duplicate pairid {}", id_text(&pair.pairid)),
                );
                continue;
            }
            if !names.contains_key(&pair.reference) {
                out.reject(
                    &origin,
                    &key,
                    format!("reference {} is not in {split_origin}", pair.reference),
                );
                continue;
            }
            out.pairs.push(PairRecord {
                key,
                split: Some(split.clone()),
                category: None,
                reference_key: pair.reference,
                target_key: pair.target_hard,
                text: pair.caption.trim().to_string(),
                candidates: pair.img_set.map(|s| s.members),
            });
        }
    }
    Ok(out)
}
