//! WebDataset tar shards, named by a brace pattern (`shards/{000..009}.tar`). Each shard is read as a stream and
//! never extracted; a sample is the run of adjacent members sharing a key (the member path up to the first dot of
//! its file name), holding an image and a `.txt` or `.json` caption.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::jsonl::caption_of;
use super::record::{Collected, ImageData, ImageRecord, SeenIds};
use super::{IMAGE_EXTENSIONS, ReadOptions};
use crate::error::{Error, Result};

/// Expand `{000..009}` (zero-padded numeric ranges) and `{a,b}` (alternatives) in a shard pattern.
pub fn expand_braces(pattern: &str) -> Result<Vec<String>> {
    // Counted before anything is expanded: `x{0..999}{0..999}{0..999}.tar` names a billion shards.
    let count = shard_count(pattern)?;
    if count > MAX_SHARDS {
        return Err(Error::Usage(format!(
            "shard pattern '{pattern}' names {count} shards; at most {MAX_SHARDS} are read in one ingest"
        )));
    }
    expand(pattern)
}

/// The most shards one pattern may name.
pub const MAX_SHARDS: u128 = 100_000;

/// One brace group of `pattern`: (text before, the group's choices, text after); `None` without braces.
fn first_group(pattern: &str) -> Result<Option<(&str, Vec<String>, &str)>> {
    let Some(open) = pattern.find('{') else {
        return Ok(None);
    };
    let close = pattern[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or_else(|| Error::Usage(format!("shard pattern '{pattern}': unclosed '{{'")))?;
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let choices: Vec<String> = if let Some((from, to)) = body.split_once("..") {
        let bad = || Error::Usage(format!("shard pattern '{pattern}': bad range {{{body}}}"));
        let start: u64 = from.parse().map_err(|_| bad())?;
        let end: u64 = to.parse().map_err(|_| bad())?;
        if end < start || end - start > MAX_SHARDS as u64 {
            return Err(bad());
        }
        let width = from.len();
        (start..=end).map(|n| format!("{n:0width$}")).collect()
    } else {
        body.split(',').map(str::to_string).collect()
    };
    Ok(Some((head, choices, tail)))
}

/// How many names `pattern` expands to (saturating), without expanding it.
fn shard_count(pattern: &str) -> Result<u128> {
    match first_group(pattern)? {
        None => Ok(1),
        Some((_, choices, tail)) => Ok((choices.len() as u128).saturating_mul(shard_count(tail)?)),
    }
}

fn expand(pattern: &str) -> Result<Vec<String>> {
    let Some((head, choices, tail)) = first_group(pattern)? else {
        return Ok(vec![pattern.to_string()]);
    };
    let mut out = Vec::new();
    for rest in expand(tail)? {
        for choice in &choices {
            out.push(format!("{head}{choice}{rest}"));
        }
    }
    out.sort();
    Ok(out)
}

/// A sample's members: (extension after the key, bytes).
struct Sample {
    key: String,
    members: Vec<(String, Vec<u8>)>,
}

pub fn read(pattern: &Path, options: &ReadOptions) -> Result<Collected> {
    let text = pattern.to_string_lossy();
    let shards: Vec<PathBuf> = expand_braces(&text)?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let mut out = Collected::default();
    let mut seen = SeenIds::default();
    for shard in shards {
        let origin = shard.display().to_string();
        let file = std::fs::File::open(&shard).map_err(|e| Error::io(&shard, e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut current: Option<Sample> = None;
        let entries = archive.entries().map_err(|e| Error::io(&shard, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::io(&shard, e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(|e| Error::io(&shard, e))?
                .to_string_lossy()
                .into_owned();
            let (dir, file_name) = name
                .rsplit_once('/')
                .map(|(d, f)| (format!("{d}/"), f))
                .unwrap_or((String::new(), &name));
            let Some((stem, extension)) = file_name.split_once('.') else {
                out.reject(&origin, &name, "member has no extension");
                continue;
            };
            let key = format!("{dir}{stem}");
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(&shard, e))?;
            if current.as_ref().is_some_and(|s| s.key != key)
                && let Some(done) = current.take()
            {
                finish(done, &origin, options, &mut seen, &mut out);
            }
            current
                .get_or_insert_with(|| Sample {
                    key,
                    members: Vec::new(),
                })
                .members
                .push((extension.to_ascii_lowercase(), bytes));
        }
        if let Some(done) = current.take() {
            finish(done, &origin, options, &mut seen, &mut out);
        }
    }
    Ok(out)
}

fn finish(
    sample: Sample,
    origin: &str,
    options: &ReadOptions,
    seen: &mut SeenIds,
    out: &mut Collected,
) {
    let key = sample.key;
    if !seen.first(&key) {
        out.reject(origin, &key, format!("duplicate sample key {key}"));
        return;
    }
    let mut image = None;
    let mut caption = None;
    for (extension, bytes) in sample.members {
        if IMAGE_EXTENSIONS.contains(&extension.as_str()) && image.is_none() {
            image = Some((extension, bytes));
        } else if extension == "txt" {
            match String::from_utf8(bytes) {
                Ok(text) => caption = Some(text.trim().to_string()).filter(|t| !t.is_empty()),
                Err(_) => {
                    out.reject(origin, &key, format!("{key}.txt is not valid UTF-8"));
                    return;
                }
            }
        } else if extension == "json" {
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(value) => {
                    if caption.is_none() {
                        caption = caption_of(&value, options.caption_field.as_deref());
                    }
                }
                Err(e) => {
                    out.reject(origin, &key, format!("{key}.json is malformed: {e}"));
                    return;
                }
            }
        }
    }
    let Some((extension, bytes)) = image else {
        out.reject(origin, &key, "sample has no image member");
        return;
    };
    let image = ImageRecord {
        path: format!("{key}.{extension}"),
        key,
        split: None,
        data: ImageData::Bytes(bytes),
        origin: origin.to_string(),
    };
    out.push_sample(image, caption);
}

#[cfg(test)]
mod tests {
    use super::expand_braces;

    #[test]
    fn braces() {
        assert_eq!(
            expand_braces("s/{008..011}.tar").expect("range"),
            ["s/008.tar", "s/009.tar", "s/010.tar", "s/011.tar"]
        );
        assert_eq!(
            expand_braces("{a,b}-{0..1}").expect("two"),
            ["a-0", "a-1", "b-0", "b-1"]
        );
        assert_eq!(expand_braces("plain.tar").expect("plain"), ["plain.tar"]);
        assert!(expand_braces("s/{3..1}.tar").is_err());
        // A billion names are refused from the count, before any is made.
        let err = expand_braces("x{0..999}{0..999}{0..999}.tar").expect_err("too many");
        assert!(err.to_string().contains("names 1000000000 shards"), "{err}");
        assert!(expand_braces("s/{0..1.tar").is_err());
    }
}
