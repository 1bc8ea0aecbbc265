//! `knn`: the k nearest corpus items of every query item, by cosine similarity.
//!
//! A side of the search is a space plus an item kind (`image`, `caption`, `pair_text`, `text`), narrowed to a
//! dataset and split. The query kind `pair` stands for composed queries: each pair's reference image combined with
//! its modification text ([`Combiner::Sum`]), with the reference itself left out of its own results.
//! Exact search streams score blocks into a running top-k ([`super::topk`]).

use candle_core::Device;

use super::ann::{self, StoredIndex};
use super::hnsw::{HnswParams, top_k_measured};
use super::recall::sampled_recall;
use super::retrieval::{Combiner, pair_truth};
use super::space::{Filter, Vectors, load};
use super::topk::top_k;
use crate::error::{Error, Result};
use crate::store::Store;

/// The kinds a side may name.
pub const KINDS: &[&str] = &["image", "caption", "pair_text", "text", "pair"];

/// One side of a search: a space table and a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub table: String,
    pub kind: String,
}

/// Exact search, an HNSW graph built for the call, or the corpus space's stored vector index ([`super::ann`]);
/// the approximate ones with their recall measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    Exact,
    Hnsw(HnswParams),
    Ann,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Method> {
        match s {
            "exact" => Ok(Method::Exact),
            "hnsw" => Ok(Method::Hnsw(HnswParams::default())),
            "ann" => Ok(Method::Ann),
            other => Err(Error::Usage(format!(
                "unknown knn method '{other}' (use exact, hnsw or ann)"
            ))),
        }
    }
}

/// Queries whose exact neighbours are computed to measure an approximate search's recall.
pub const RECALL_SAMPLE: usize = 200;

/// What to search.
#[derive(Debug, Clone)]
pub struct KnnRequest {
    pub queries: Side,
    pub corpus: Side,
    pub k: usize,
    pub dataset: Option<String>,
    pub split: Option<String>,
    pub method: Method,
}

/// The neighbours, for an approximate method its measured recall@k, and for `ann` the index searched.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnResult {
    pub rows: Vec<NeighborRow>,
    pub recall: Option<f64>,
    pub index: Option<StoredIndex>,
}

/// One neighbour of one query.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighborRow {
    pub query_id: String,
    pub neighbor_id: String,
    pub rank: u64,
    pub score: f32,
}

/// Split `space:kind` (the kind part optional: `default_kind` then).
pub fn parse_side(text: &str, default_kind: &str) -> Result<(String, String)> {
    let (space, kind) = match text.rsplit_once(':') {
        Some((space, kind)) if KINDS.contains(&kind) => (space, kind),
        _ => (text, default_kind),
    };
    if space.is_empty() {
        return Err(Error::Usage(format!("'{text}' names no space")));
    }
    Ok((space.to_string(), kind.to_string()))
}

/// The query vectors of one side; for `pair`, the composed queries and the reference each must skip.
pub async fn query_vectors(
    store: &Store,
    side: &Side,
    dataset: Option<&str>,
    split: Option<&str>,
) -> Result<(Vectors, Option<Vec<String>>)> {
    if side.kind != "pair" {
        let filter = Filter::new(Some(&side.kind), dataset, split);
        return Ok((load(store, &side.table, &filter).await?, None));
    }
    let dataset = dataset.ok_or_else(|| {
        Error::Usage("composed (pair) queries need a dataset to read the pairs of".into())
    })?;
    let texts = load(
        store,
        &side.table,
        &Filter::new(Some("pair_text"), Some(dataset), split),
    )
    .await?;
    let images = load(
        store,
        &side.table,
        &Filter::new(Some("image"), Some(dataset), None),
    )
    .await?;
    let (text_index, image_index) = (texts.index(), images.index());
    let mut rows = Vec::new();
    let mut references = Vec::new();
    for pair in pair_truth(store, dataset, split).await? {
        let (Some(&t), Some(&r)) = (
            text_index.get(pair.id.as_str()),
            image_index.get(pair.reference.as_str()),
        ) else {
            continue; // a pair whose text or reference is not embedded has no query
        };
        let query = Combiner::Sum.combine(images.row(r as usize), texts.row(t as usize));
        rows.push((pair.id, query));
        references.push(pair.reference);
    }
    let queries = Vectors::from_rows("the composed queries", texts.dim.max(images.dim), rows)?;
    Ok((queries, Some(references)))
}

/// The top-k of every query, best first; ties by neighbour id.
pub async fn knn(store: &Store, request: &KnnRequest, device: &Device) -> Result<KnnResult> {
    let dataset = request.dataset.as_deref();
    let split = request.split.as_deref();
    if request.corpus.kind == "pair" {
        return Err(Error::Usage(
            "the corpus kind 'pair' is not stored vectors; use pair_text (the texts) or image"
                .into(),
        ));
    }
    let (queries, references) = query_vectors(store, &request.queries, dataset, split).await?;
    let corpus_filter = Filter::new(Some(&request.corpus.kind), dataset, split);
    // The index is looked up first: a space without one is refused before anything is loaded.
    let index = match request.method {
        Method::Ann => Some(StoredIndex::of(store, &request.corpus.table).await?),
        _ => None,
    };
    let corpus = load(store, &request.corpus.table, &corpus_filter).await?;
    if queries.dim != corpus.dim {
        return Err(Error::DimensionMismatch {
            left: format!("query space {}", request.queries.table),
            left_dim: queries.dim,
            right: format!("corpus space {}", request.corpus.table),
            right_dim: corpus.dim,
        });
    }
    if queries.is_empty() || corpus.is_empty() {
        return Ok(KnnResult {
            rows: Vec::new(),
            recall: None,
            index: None,
        });
    }
    let exclude: Option<Vec<Option<u32>>> = references.map(|refs| {
        let index = corpus.index();
        refs.iter()
            .map(|r| index.get(r.as_str()).copied())
            .collect()
    });
    // More neighbours than candidates is all of them (and nothing is sized by an absurd k).
    let k = request.k.min(corpus.len());
    let (hits, recall) = match request.method {
        Method::Exact => (
            top_k(&queries, &corpus, k, exclude.as_deref(), device)?,
            None,
        ),
        // A k that covers the whole corpus asks for every candidate: exact search answers it, where a graph
        // whose parallel construction left a node unreachable would return fewer (recall 1 by construction).
        Method::Hnsw(_) if k >= corpus.len() => (
            top_k(&queries, &corpus, k, exclude.as_deref(), device)?,
            Some(1.0),
        ),
        Method::Ann => {
            let hits = ann::top_k(
                store,
                &request.corpus.table,
                &queries,
                &corpus,
                k,
                &corpus_filter,
                exclude.as_deref(),
            )
            .await?;
            let recall = sampled_recall(
                &queries,
                &corpus,
                k,
                exclude.as_deref(),
                &hits,
                RECALL_SAMPLE,
                device,
            )?;
            (hits, Some(recall))
        }
        Method::Hnsw(params) => {
            let (hits, recall) = top_k_measured(
                &queries,
                &corpus,
                k,
                exclude.as_deref(),
                params,
                RECALL_SAMPLE,
                device,
            )?;
            (hits, Some(recall))
        }
    };
    let mut rows = Vec::with_capacity(queries.len().saturating_mul(k));
    for (q, hits) in hits.into_iter().enumerate() {
        for (r, hit) in hits.into_iter().enumerate() {
            rows.push(NeighborRow {
                query_id: queries.ids[q].clone(),
                neighbor_id: corpus.ids[hit.index as usize].clone(),
                rank: r as u64 + 1,
                score: hit.score,
            });
        }
    }
    Ok(KnnResult {
        rows,
        recall,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_side;

    #[test]
    fn sides() {
        assert_eq!(
            parse_side("clip_1:caption", "image").unwrap(),
            ("clip_1".into(), "caption".into())
        );
        assert_eq!(
            parse_side("clip_1", "image").unwrap(),
            ("clip_1".into(), "image".into())
        );
        assert_eq!(
            parse_side("hf:a/b", "image").unwrap(),
            ("hf:a/b".into(), "image".into())
        );
        assert!(parse_side(":image", "x").is_err());
    }
}
