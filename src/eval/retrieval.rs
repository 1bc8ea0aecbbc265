//! `retrieval_ranks`: for one space, dataset and split, the rank of every positive of every query, in three
//! directions:
//!
//! - `t2i` — each caption's image among all images of the split;
//! - `i2t` — each of an image's captions among all captions of the split;
//! - `composed` — each `pairs` row with a target (CIRR, FashionIQ): the query combines the reference image's and
//!   the modification text's vectors ([`Combiner`]), the candidates are the split's images except the reference,
//!   and `subset_rank` is the target's rank within the pair's own candidate set (CIRR's Recall_subset), when it has
//!   one.
//!
//! Ground truth comes from `captions` (caption → image) and `pairs`. Every caption and image of the split must have
//! a vector (the error names the first missing one); a space with no vectors for the dataset gives no rows.

use arrow::array::{Array, AsArray, RecordBatch};
use candle_core::Device;
use datafusion::prelude::{Expr, col, lit};
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use super::ranks::{both_directions, ranks, subset_rank};
use super::space::{Filter, Vectors, load, normalize};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::columns::strings;

/// How a composed query is built from the reference image's vector `r` and the modification text's vector `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Combiner {
    /// `normalise(r + t)` (the default).
    #[default]
    Sum,
    /// `r` alone (the image-only baseline).
    Image,
    /// `t` alone (the text-only baseline).
    Text,
}

impl std::str::FromStr for Combiner {
    type Err = Error;
    fn from_str(s: &str) -> Result<Combiner> {
        match s {
            "sum" => Ok(Combiner::Sum),
            "image" => Ok(Combiner::Image),
            "text" => Ok(Combiner::Text),
            other => Err(Error::Usage(format!(
                "unknown combiner '{other}' (use sum, image or text)"
            ))),
        }
    }
}

impl Combiner {
    /// The composed query of a reference vector and a text vector (both unit length).
    pub fn combine(self, reference: &[f32], text: &[f32]) -> Vec<f32> {
        match self {
            Combiner::Image => reference.to_vec(),
            Combiner::Text => text.to_vec(),
            Combiner::Sum => {
                let mut v: Vec<f32> = reference.iter().zip(text).map(|(a, b)| a + b).collect();
                // r = -t has no direction; fall back to the text, which is what was asked for.
                if normalize(&mut v).is_err() {
                    v = text.to_vec();
                }
                v
            }
        }
    }
}

/// What to rank.
#[derive(Debug, Clone)]
pub struct RankRequest {
    /// The space table (already resolved).
    pub table: String,
    pub dataset: String,
    /// `None`: every split of the dataset as one pool.
    pub split: Option<String>,
    /// MRL: evaluate the first `dim` dimensions, re-normalised.
    pub dim: Option<usize>,
    pub combiner: Combiner,
    /// Only the items of this loop run (its captions as queries, the images they describe as candidates) …
    pub run: Option<String>,
    /// … at this hop.
    pub iteration: Option<i32>,
}

impl RankRequest {
    /// The store tables [`retrieval_ranks`] reads for this request: the space and `captions`, then `pairs` (the
    /// dataset's composed queries) or, for a loop run's items, `images` (their lineage).
    pub fn tables(&self) -> Vec<&str> {
        let lineage = self.run.is_some() || self.iteration.is_some();
        let truth = if lineage { "images" } else { "pairs" };
        vec![self.table.as_str(), "captions", truth]
    }
}

/// One positive of one query.
#[derive(Debug, Clone, PartialEq)]
pub struct RankRow {
    pub direction: &'static str,
    pub query_id: String,
    pub positive_id: String,
    pub rank: u64,
    pub score: f32,
    pub subset_rank: Option<u64>,
}

/// The ranks of `request`, ordered by direction, query id, positive id.
pub async fn retrieval_ranks(
    store: &Store,
    request: &RankRequest,
    device: &Device,
) -> Result<Vec<RankRow>> {
    let lineage = request.run.is_some() || request.iteration.is_some();
    // A loop hop's items span two datasets (hop 0's images are the dataset's own): its lineage selects them.
    let dataset = (!lineage).then_some(request.dataset.as_str());
    let split = request.split.as_deref();
    let vectors = |kind: &'static str| {
        let filter = Filter::new(Some(kind), dataset, split)
            .lineage(request.run.as_deref(), request.iteration);
        async move { load(store, &request.table, &filter).await }
    };
    let mut images = vectors("image").await?;
    let mut captions = vectors("caption").await?;
    let mut pair_texts = vectors("pair_text").await?;
    if let Some(dim) = request.dim {
        images = images.truncate(dim)?;
        captions = captions.truncate(dim)?;
        pair_texts = pair_texts.truncate(dim)?;
    }
    let mut rows = Vec::new();
    if images.is_empty() && captions.is_empty() && pair_texts.is_empty() {
        return Ok(rows);
    }
    let missing = |what: &str, id: &str| {
        Error::Usage(format!(
            "{what} '{id}' of dataset '{}'{} has no vector in {}: embed it first (`vlmdb embed … --{}`)",
            request.dataset,
            split.map(|s| format!(" split '{s}'")).unwrap_or_default(),
            request.table,
            if what == "image" {
                "images"
            } else if what == "caption" {
                "captions"
            } else {
                "pairs"
            }
        ))
    };

    let mut truth = caption_truth(store, &request.dataset, split).await?;
    if let Some(keep) = Filter::default()
        .lineage(request.run.as_deref(), request.iteration)
        .lineage_ids(store)
        .await?
    {
        truth.retain(|(caption, _)| keep.contains(caption));
    }
    if !truth.is_empty() {
        let text_index = captions.index();
        let image_index = images.index();
        // Caption rows in the order of `captions`, each with its image row.
        let mut image_of = vec![u32::MAX; captions.len()];
        for (caption, image) in &truth {
            let t = *text_index
                .get(caption.as_str())
                .ok_or_else(|| missing("caption", caption))?;
            let i = *image_index
                .get(image.as_str())
                .ok_or_else(|| missing("image", image))?;
            image_of[t as usize] = i;
        }
        if let Some(t) = image_of.iter().position(|&i| i == u32::MAX) {
            return Err(Error::Usage(format!(
                "space {} has a vector for caption '{}', which is not a caption of dataset '{}'{}",
                request.table,
                captions.ids[t],
                request.dataset,
                split.map(|s| format!(" split '{s}'")).unwrap_or_default()
            )));
        }
        let (t2i, i2t) = both_directions(&captions, &images, &image_of, device)?;
        for (t, r) in t2i.into_iter().enumerate() {
            rows.push(RankRow {
                direction: "t2i",
                query_id: captions.ids[t].clone(),
                positive_id: images.ids[image_of[t] as usize].clone(),
                rank: r.rank,
                score: r.score,
                subset_rank: None,
            });
        }
        for (i, positives) in i2t.into_iter().enumerate() {
            for (t, r) in positives {
                rows.push(RankRow {
                    direction: "i2t",
                    query_id: images.ids[i].clone(),
                    positive_id: captions.ids[t as usize].clone(),
                    rank: r.rank,
                    score: r.score,
                    subset_rank: None,
                });
            }
        }
    }

    let pairs = if lineage {
        Vec::new() // a loop writes no pairs
    } else {
        pair_truth(store, &request.dataset, split).await?
    };
    let pairs: Vec<PairTruth> = pairs.into_iter().filter(|p| p.target.is_some()).collect();
    if !pairs.is_empty() {
        let image_index = images.index();
        let text_index = pair_texts.index();
        let image_row = |id: &str| {
            image_index
                .get(id)
                .copied()
                .ok_or_else(|| missing("image", id))
        };
        let mut query_rows = Vec::with_capacity(pairs.len());
        let mut positives = Vec::with_capacity(pairs.len());
        let mut exclude = Vec::with_capacity(pairs.len());
        let mut subsets = Vec::with_capacity(pairs.len());
        for pair in &pairs {
            let t = *text_index
                .get(pair.id.as_str())
                .ok_or_else(|| missing("pair", &pair.id))?;
            let r = image_row(&pair.reference)?;
            let target = image_row(pair.target.as_deref().unwrap_or_default())?;
            let query = request
                .combiner
                .combine(images.row(r as usize), pair_texts.row(t as usize));
            query_rows.push((pair.id.clone(), query));
            positives.push(vec![target]);
            exclude.push(Some(r));
            subsets.push(match &pair.candidates {
                Some(members) => Some(
                    members
                        .iter()
                        .filter(|m| **m != pair.reference)
                        .map(|m| image_row(m))
                        .collect::<Result<Vec<u32>>>()?,
                ),
                None => None,
            });
        }
        let queries = Vectors::from_rows("the composed queries", images.dim, query_rows)?;
        // from_rows sorts by pair id; `pairs` is sorted the same way (pair_truth orders by id).
        let got = ranks(&queries, &images, &positives, &exclude, device)?;
        for (q, ranked) in got.into_iter().enumerate() {
            let target = positives[q][0];
            rows.push(RankRow {
                direction: "composed",
                query_id: queries.ids[q].clone(),
                positive_id: images.ids[target as usize].clone(),
                rank: ranked[0].rank,
                score: ranked[0].score,
                subset_rank: subsets[q]
                    .as_ref()
                    .map(|members| subset_rank(queries.row(q), &images, target, members)),
            });
        }
    }
    rows.sort_by(|a, b| {
        a.direction
            .cmp(b.direction)
            .then_with(|| a.query_id.cmp(&b.query_id))
            .then_with(|| a.positive_id.cmp(&b.positive_id))
    });
    Ok(rows)
}

fn filter(dataset: &str, split: Option<&str>) -> Expr {
    let mut e = col("dataset").eq(lit(dataset));
    if let Some(s) = split {
        e = e.and(col("split").eq(lit(s)));
    }
    e
}

async fn read(
    store: &Store,
    table: &str,
    columns: &[&str],
    predicate: Expr,
) -> Result<Vec<RecordBatch>> {
    let handle = match store.open_table(table).await {
        Ok(t) => t,
        Err(Error::UnknownTable { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(handle
        .query()
        .select(Select::columns(columns))
        .only_if_expr(predicate)
        .execute()
        .await?
        .try_collect()
        .await?)
}

/// (caption id, image id) of the dataset's captions in the split.
pub async fn caption_truth(
    store: &Store,
    dataset: &str,
    split: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for batch in read(
        store,
        "captions",
        &["caption_id", "image_id"],
        filter(dataset, split),
    )
    .await?
    {
        let ids = strings(&batch, "caption_id")?;
        let images = strings(&batch, "image_id")?;
        out.extend(
            ids.into_iter()
                .zip(images)
                .filter_map(|(c, i)| Some((c?, i?))),
        );
    }
    out.sort();
    Ok(out)
}

/// One composed-retrieval pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairTruth {
    pub id: String,
    pub reference: String,
    pub target: Option<String>,
    pub candidates: Option<Vec<String>>,
}

/// The dataset's pairs in the split, sorted by id.
pub async fn pair_truth(
    store: &Store,
    dataset: &str,
    split: Option<&str>,
) -> Result<Vec<PairTruth>> {
    let mut out = Vec::new();
    let columns = ["pair_id", "reference_id", "target_id", "candidates"];
    for batch in read(store, "pairs", &columns, filter(dataset, split)).await? {
        let ids = strings(&batch, "pair_id")?;
        let references = strings(&batch, "reference_id")?;
        let targets = strings(&batch, "target_id")?;
        let candidates =
            batch
                .column_by_name("candidates")
                .ok_or_else(|| Error::SchemaMismatch {
                    table: "pairs".into(),
                    message: "no column 'candidates'".into(),
                })?;
        let candidates = candidates.as_list::<i32>();
        for r in 0..batch.num_rows() {
            let (Some(id), Some(reference)) = (ids[r].clone(), references[r].clone()) else {
                continue;
            };
            let members = candidates.is_valid(r).then(|| {
                let values = candidates.value(r);
                let values = values.as_string::<i32>();
                (0..values.len())
                    .filter(|&i| values.is_valid(i))
                    .map(|i| values.value(i).to_string())
                    .collect::<Vec<String>>()
            });
            out.push(PairTruth {
                id,
                reference,
                target: targets[r].clone(),
                candidates: members,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}
