//! FashionIQ: `captions/cap.<category>.<split>.json` (candidate, target, two captions) and
//! `image_splits/split.<category>.<split>.json` (image names) become images and `pairs` with their category. Images
//! are `<name>.<png|jpg|jpeg|webp>` under `--images` (default: PATH/images). The two captions are joined with
//! " and ", as the FashionIQ baselines do.

use std::path::Path;

use serde::Deserialize;

use super::paths::resolve;
use super::record::{Collected, ImageData, ImageRecord, PairRecord, SeenIds};
use super::{ReadOptions, list_json, read_json};
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct FiqCaption {
    candidate: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    captions: Vec<String>,
}

const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp"];

pub fn read(path: &Path, options: &ReadOptions) -> Result<Collected> {
    let root = options
        .images
        .clone()
        .unwrap_or_else(|| path.join("images"));
    let caption_files = list_json(&path.join("captions"), "cap.")?;
    if caption_files.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no captions/cap.<category>.<split>.json files (is this a FashionIQ root?)",
            path.display()
        )));
    }
    let mut out = Collected::default();
    let mut seen_images = SeenIds::default();
    for (stem, caption_file) in caption_files {
        let Some((category, split)) = stem.split_once('.') else {
            return Err(Error::Usage(format!(
                "{}: expected cap.<category>.<split>.json",
                caption_file.display()
            )));
        };
        let split_file = path
            .join("image_splits")
            .join(format!("split.{category}.{split}.json"));
        let names: Vec<String> = read_json(&split_file)?;
        let split_origin = split_file.display().to_string();
        for name in &names {
            if !seen_images.first(name) {
                continue;
            }
            let found = EXTENSIONS
                .iter()
                .map(|ext| format!("{name}.{ext}"))
                .find(|rel| root.join(rel).exists());
            let Some(relative) = found else {
                out.reject(
                    &split_origin,
                    name,
                    format!(
                        "missing image file {}/{name}.(png|jpg|jpeg|webp)",
                        root.display()
                    ),
                );
                continue;
            };
            match resolve(&root, &relative) {
                Ok(real) => out.images.push(ImageRecord {
                    key: name.clone(),
                    path: relative,
                    split: Some(split.to_string()),
                    data: ImageData::File(real),
                    origin: split_origin.clone(),
                }),
                Err(reason) => out.reject(&split_origin, name, reason),
            }
        }
        let origin = caption_file.display().to_string();
        let captions: Vec<FiqCaption> = read_json(&caption_file)?;
        for (index, caption) in captions.into_iter().enumerate() {
            let key = format!("{category}/{split}/{index}");
            let text = caption
                .captions
                .iter()
                .map(|c| c.trim())
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join(" and ");
            if text.is_empty() {
                out.reject(&origin, &key, "no captions");
                continue;
            }
            out.pairs.push(PairRecord {
                key,
                split: Some(split.to_string()),
                category: Some(category.to_string()),
                reference_key: caption.candidate,
                target_key: caption.target,
                text,
                candidates: None,
            });
        }
    }
    Ok(out)
}
