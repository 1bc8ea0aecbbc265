//! JSON Lines, as Hugging Face ImageFolder's `metadata.jsonl`: one object per line with `file_name` (relative to
//! the JSONL file, or to `--images`) and a caption field (`text` or `caption`, or the one `--caption-field` names).
//! Several lines may name the same image (several captions); a line repeated exactly is a duplicate.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use super::paths::resolve;
use super::record::{CaptionRecord, Collected, ImageData, ImageRecord};
use super::{ReadOptions, strip_extension};
use crate::error::{Error, Result};

pub fn read(path: &Path, options: &ReadOptions) -> Result<Collected> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let origin = path.display().to_string();
    let root = options.images_root(path);
    let mut out = Collected::default();
    // image key -> number of captions so far; (file_name, text) -> first line, to find exact duplicates.
    let mut captions_of: HashMap<String, usize> = HashMap::new();
    let mut lines_seen: HashMap<(String, Option<String>), usize> = HashMap::new();
    for (index, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line_no = index + 1;
        let item = format!("line {line_no}");
        let bytes = line.map_err(|e| Error::io(path, e))?;
        let Ok(text) = String::from_utf8(bytes) else {
            out.reject(&origin, item, "line is not valid UTF-8");
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                out.reject(&origin, item, format!("malformed JSON: {e}"));
                continue;
            }
        };
        let Some(file_name) = value.get("file_name").and_then(|v| v.as_str()) else {
            out.reject(&origin, item, "no \"file_name\" string");
            continue;
        };
        let caption = caption_of(&value, options.caption_field.as_deref());
        if let Some(first) = lines_seen.insert((file_name.to_string(), caption.clone()), line_no) {
            out.reject(&origin, item, format!("duplicate of line {first}"));
            continue;
        }
        let key = strip_extension(file_name.trim_start_matches("./"));
        let count = captions_of.get(&key).copied();
        if count.is_none() {
            match resolve(&root, file_name) {
                Ok(real) => out.images.push(ImageRecord {
                    key: key.clone(),
                    path: file_name.to_string(),
                    split: value
                        .get("split")
                        .and_then(|s| s.as_str())
                        .map(str::to_string),
                    data: ImageData::File(real),
                    origin: origin.clone(),
                }),
                Err(reason) => {
                    out.reject(&origin, format!("{item} ({file_name})"), reason);
                    continue;
                }
            }
        }
        let n = count.unwrap_or(0);
        if let Some(text) = caption {
            out.captions.push(CaptionRecord {
                key: format!("{key}#{n}"),
                image_key: key.clone(),
                text,
            });
            captions_of.insert(key, n + 1);
        } else {
            captions_of.insert(key, n);
        }
    }
    Ok(out)
}

/// The caption of a JSON object: the named field, else `text`, else `caption`.
pub fn caption_of(value: &serde_json::Value, field: Option<&str>) -> Option<String> {
    let fields: &[&str] = match field {
        Some(f) => &[f][..],
        None => &["text", "caption"],
    };
    fields
        .iter()
        .find_map(|f| value.get(*f).and_then(|v| v.as_str()))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
