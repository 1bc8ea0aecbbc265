//! A directory of images with same-stem `.txt` caption files (`cat.png` + `cat.txt`), searched recursively. An
//! image without a caption file is stored uncaptioned. The image's id is its path below the directory, without
//! extension, so `a.png` and `a.jpg` side by side are a duplicate.

use std::path::{Path, PathBuf};

use super::paths::resolve;
use super::record::{Collected, ImageData, ImageRecord, SeenIds};
use super::{IMAGE_EXTENSIONS, ReadOptions, strip_extension};
use crate::error::{Error, Result};

/// The largest caption file read (1 MiB): captions are sentences, and a larger file is a mistake or an attack.
const MAX_CAPTION_BYTES: u64 = 1 << 20;

pub fn read(path: &Path, _options: &ReadOptions) -> Result<Collected> {
    if !path.is_dir() {
        return Err(Error::Usage(format!(
            "folder input {} is not a directory",
            path.display()
        )));
    }
    let mut files = Vec::new();
    walk(path, &mut files)?;
    files.sort();
    let mut out = Collected::default();
    let mut seen = SeenIds::default();
    let origin = path.display().to_string();
    for file in files {
        let Ok(relative) = file.strip_prefix(path) else {
            continue;
        };
        let relative = relative.to_string_lossy().into_owned();
        let is_image = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if !is_image {
            continue;
        }
        let key = strip_extension(&relative);
        if let Some(first) = seen.claim(&key, &relative) {
            out.reject(
                &origin,
                &relative,
                format!(
                    "duplicate id {key}: {first} has the same stem (and is stored with {key}.txt)"
                ),
            );
            continue;
        }
        let caption_file = file.with_extension("txt");
        // The caption file obeys the images' rules (inside the root, a regular file) and a size limit: a link to
        // `/etc/hostname` or `/dev/zero`, or a FIFO, is refused rather than read.
        if std::fs::symlink_metadata(&caption_file).is_ok() {
            let relative_caption = Path::new(&relative).with_extension("txt");
            let checked = resolve(path, &relative_caption.to_string_lossy()).and_then(|real| {
                let size = std::fs::metadata(&real).map(|m| m.len()).unwrap_or(0);
                if size > MAX_CAPTION_BYTES {
                    Err(format!(
                        "caption file {} has {size} bytes, more than the {MAX_CAPTION_BYTES}-byte limit",
                        caption_file.display()
                    ))
                } else {
                    Ok(real)
                }
            });
            if let Err(reason) = checked {
                out.reject(&origin, &relative, format!("caption file: {reason}"));
                continue;
            }
        }
        let caption = match std::fs::read(&caption_file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
                Err(_) => {
                    out.reject(
                        &origin,
                        &relative,
                        format!("caption file {} is not valid UTF-8", caption_file.display()),
                    );
                    continue;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&caption_file, e)),
        };
        let image = ImageRecord {
            key,
            path: relative,
            split: None,
            data: ImageData::File(file),
            origin: origin.clone(),
        };
        out.push_sample(image, caption);
    }
    Ok(out)
}

/// Regular files below `dir` (symlinks are not followed: a link could lead outside the folder).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        if kind.is_dir() {
            walk(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}
