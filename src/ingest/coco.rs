//! COCO captions JSON: `images[]` (id, file_name) and `annotations[]` (id, image_id, caption) joined on
//! `image_id`, about five captions per image. Image paths are relative to the images root (`--images`, default:
//! the JSON file's directory).

use std::path::Path;

use serde::Deserialize;

use super::paths::resolve;
use super::record::{CaptionRecord, Collected, ImageData, ImageRecord, SeenIds};
use super::{ReadOptions, id_text, read_json};
use crate::error::Result;

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    #[serde(default)]
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: serde_json::Value,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    id: serde_json::Value,
    image_id: serde_json::Value,
    caption: String,
}

pub fn read(path: &Path, options: &ReadOptions) -> Result<Collected> {
    let file: CocoFile = read_json(path)?;
    let origin = path.display().to_string();
    let root = options.images_root(path);
    let mut out = Collected::default();
    let mut seen = SeenIds::default();
    // Images that passed the path checks; `seen` holds every listed id, rejected ones too.
    let mut accepted = std::collections::HashSet::new();
    for image in file.images {
        let key = id_text(&image.id);
        if !seen.first(&key) {
            out.reject(
                &origin,
                format!("image {key}"),
                format!("duplicate image id {key}"),
            );
            continue;
        }
        match resolve(&root, &image.file_name) {
            Ok(real) => {
                accepted.insert(key.clone());
                out.images.push(ImageRecord {
                    key,
                    path: image.file_name,
                    split: None,
                    data: ImageData::File(real),
                    origin: origin.clone(),
                });
            }
            Err(reason) => out.reject(
                &origin,
                format!("image {key} ({})", image.file_name),
                reason,
            ),
        }
    }
    let mut seen_captions = SeenIds::default();
    for ann in file.annotations {
        let key = id_text(&ann.id);
        let image_key = id_text(&ann.image_id);
        let item = format!("annotation {key} of image {image_key}");
        if let Some(first) = seen_captions.claim(&key, &item) {
            out.reject(
                &origin,
                item,
                format!("duplicate annotation id {key}: {first} has it too"),
            );
        } else if !seen.contains(&image_key) {
            out.reject(
                &origin,
                format!("annotation {key}"),
                format!("image_id {image_key} is not in images[]"),
            );
        } else if accepted.contains(&image_key) {
            out.captions.push(CaptionRecord {
                key,
                image_key,
                text: ann.caption.trim().to_string(),
            });
        }
    }
    Ok(out)
}
