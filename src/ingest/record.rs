//! What a dataset reader produces: source records keyed by the ids the source gives them, and the items it
//! rejected. Readers only parse; validating images and writing rows happen once, in the pipeline.

use std::path::PathBuf;

/// Where an image's bytes are.
#[derive(Debug, Clone)]
pub enum ImageData {
    /// A file on disk, already resolved inside the images root.
    File(PathBuf),
    /// Bytes read from an archive or a Parquet file.
    Bytes(Vec<u8>),
}

/// One image of the source.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// The source's own id for the image (the stable part of `image_id`).
    pub key: String,
    /// The image's path as the source names it.
    pub path: String,
    pub split: Option<String>,
    pub data: ImageData,
    /// The file the record came from (for error rows).
    pub origin: String,
}

/// One caption of the source.
#[derive(Debug, Clone)]
pub struct CaptionRecord {
    /// The source's own id for the caption.
    pub key: String,
    /// The key of the image it describes.
    pub image_key: String,
    pub text: String,
}

/// One composed-retrieval triplet.
#[derive(Debug, Clone)]
pub struct PairRecord {
    pub key: String,
    pub split: Option<String>,
    pub category: Option<String>,
    pub reference_key: String,
    pub target_key: Option<String>,
    pub text: String,
    pub candidates: Option<Vec<String>>,
}

/// An item the reader or the validator refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub source_file: String,
    pub item: String,
    pub reason: String,
}

/// Everything read from one input.
#[derive(Debug, Default)]
pub struct Collected {
    pub images: Vec<ImageRecord>,
    pub captions: Vec<CaptionRecord>,
    pub pairs: Vec<PairRecord>,
    pub rejected: Vec<Rejection>,
}

impl Collected {
    /// Add an image with at most one caption (formats with one caption per sample: folder, webdataset, Parquet).
    pub fn push_sample(&mut self, image: ImageRecord, caption: Option<String>) {
        if let Some(text) = caption
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
        {
            self.captions.push(CaptionRecord {
                key: format!("{}#0", image.key),
                image_key: image.key.clone(),
                text,
            });
        }
        self.images.push(image);
    }

    /// Reject every caption and pair whose id an earlier caption or pair of this input already has: the first keeps
    /// the id, each later one gets an `ingest_errors` row naming both (two rows with one id would otherwise
    /// overwrite each other, and re-ingesting would flip which one wins). Images are checked as readers list them.
    pub fn reject_id_collisions(&mut self, origin: &str) {
        let mut rejected = first_of_each_id(
            &mut self.captions,
            |c| &c.key,
            |c| format!("caption {} of image {}", c.key, c.image_key),
            "caption",
        );
        rejected.extend(first_of_each_id(
            &mut self.pairs,
            |p| &p.key,
            |p| format!("pair {} (reference {})", p.key, p.reference_key),
            "pair",
        ));
        for (item, reason) in rejected {
            self.reject(origin, item, reason);
        }
    }

    /// Record a rejected item.
    pub fn reject(
        &mut self,
        source_file: impl Into<String>,
        item: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.rejected.push(Rejection {
            source_file: source_file.into(),
            item: item.into(),
            reason: reason.into(),
        });
    }
}

/// Keep the first record of each id in `records`; the others come back as (item, reason naming both).
fn first_of_each_id<T>(
    records: &mut Vec<T>,
    id: impl Fn(&T) -> &String,
    item: impl Fn(&T) -> String,
    what: &str,
) -> Vec<(String, String)> {
    let mut first: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut rejected = Vec::new();
    records.retain(|record| {
        let name = item(record);
        match first.get(id(record)) {
            Some(earlier) => {
                let reason = format!("duplicate {what} id {}: {earlier} has it too", id(record));
                rejected.push((name, reason));
                false
            }
            None => {
                first.insert(id(record).clone(), name);
                true
            }
        }
    });
    rejected
}

/// Tracks ids seen in one input, so a repeated id is rejected instead of silently overwriting.
#[derive(Debug, Default)]
pub struct SeenIds(std::collections::HashMap<String, String>);

impl SeenIds {
    /// True the first time `id` is seen.
    pub fn first(&mut self, id: &str) -> bool {
        self.claim(id, id).is_none()
    }

    /// Claim `id` for `item`; when another item claimed it first, that item's name (for a reason naming both).
    pub fn claim(&mut self, id: &str, item: &str) -> Option<String> {
        match self.0.get(id) {
            Some(first) => Some(first.clone()),
            None => {
                self.0.insert(id.to_string(), item.to_string());
                None
            }
        }
    }

    /// True when `id` was seen.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }
}
