//! Composed-retrieval training (seed 004, iterative CIR): a query is a pair's reference image and modification
//! text, its target the pair's target image. The heads of a `vlmdb train --composed` run are the caption heads'
//! shape — an image head for reference and target images, a text head for modification texts — and the query is
//! combined as `vlmdb eval` scores it (`sql/eval/retrieval.sql`, combiner `sum`):
//!
//! ```text
//! q = normalise(normalise(h_img(x_ref)) + normalise(h_txt(x_text)))      t = normalise(h_img(x_target))
//! L = eˢ · q [t_1 … t_B, n_1 … n_M]ᵀ    (B × (B + M): the batch's targets, then its pairs' mined negatives)
//! loss = mean_i [ logsumexp(L_i) − L_ii ]   (summed over MRL widths)
//! ```
//!
//! InfoNCE over the batch's targets plus the hard negatives mined for its pairs (`vlmdb mine --directions
//! composed`), one direction (query → target), as composed retrieval is asked. Why the sum and not a learned
//! combiner: the trained heads are then a space that `eval`, `mine` and `search` use unchanged (a learned
//! combiner would be a third network no SQL function applies).

use std::collections::{HashMap, HashSet};

use candle_core::Tensor;
use datafusion::prelude::{col, lit};

use super::batches::chunk_sizes;
use super::data::load_split_vectors;
use super::loss::normalize_rows;
use crate::error::{Error, Result};
use crate::eval::space::Vectors;
use crate::rng::Rng;
use crate::store::Store;
use crate::store::columns::{integers, strings};

/// The composed pairs of one split with their frozen vectors.
#[derive(Debug, Clone)]
pub struct ComposedSet {
    /// The split's images (references and targets).
    pub images: Vectors,
    /// The split's modification texts (`pair_text` items, by pair id).
    pub texts: Vectors,
    /// (reference image row, text row, target image row) of each pair.
    pub pairs: Vec<(usize, usize, usize)>,
    /// Pair id of each pair.
    pub pair_ids: Vec<String>,
}

/// The pairs of `dataset`/`split` (the ones `augmented` admits) whose reference and target have vectors in
/// `image_table` and whose text has one in `text_table`.
pub async fn load_composed(
    store: &Store,
    image_table: &str,
    text_table: &str,
    dataset: &str,
    split: &str,
    augmented: crate::eval::augmented::Augmented,
) -> Result<ComposedSet> {
    let (images, texts) = load_split_vectors(
        store,
        (image_table, text_table),
        dataset,
        split,
        "pair_text",
    )
    .await?;
    let (image_row, text_row) = (images.index(), texts.index());
    let mut rows = Vec::new();
    for batch in store
        .scan(
            "pairs",
            &["pair_id", "reference_id", "target_id"],
            Some({
                let by_split = col("dataset")
                    .eq(lit(dataset.to_string()))
                    .and(col("split").eq(lit(split.to_string())));
                match augmented.predicate() {
                    Some(p) => by_split.and(p),
                    None => by_split,
                }
            }),
        )
        .await?
    {
        let ids = strings(&batch, "pair_id")?;
        let references = strings(&batch, "reference_id")?;
        let targets = strings(&batch, "target_id")?;
        for ((id, reference), target) in ids.into_iter().zip(references).zip(targets) {
            let (Some(id), Some(reference), Some(target)) = (id, reference, target) else {
                continue;
            };
            let found = (
                image_row.get(reference.as_str()),
                text_row.get(id.as_str()),
                image_row.get(target.as_str()),
            );
            if let (Some(&r), Some(&t), Some(&g)) = found {
                rows.push((id, (r as usize, t as usize, g as usize)));
            }
        }
    }
    rows.sort();
    if rows.len() < 2 {
        return Err(Error::Usage(format!(
            "dataset '{dataset}' split '{split}' has {} composed pairs with vectors for the reference and target \
             (image space {image_table}) and the modification text (text space {text_table}: embed with --pairs); \
             training needs at least 2",
            rows.len()
        )));
    }
    let (pair_ids, pairs) = rows.into_iter().unzip();
    Ok(ComposedSet {
        images,
        texts,
        pairs,
        pair_ids,
    })
}

/// The negatives a mining run found for each pair (by pair index): image rows in rank order.
#[derive(Debug, Clone, Default)]
pub struct ComposedNegatives {
    pub of: HashMap<usize, Vec<usize>>,
    pub per_query: usize,
}

/// The composed negatives of mining run `run_id` for the pairs of `set`.
pub async fn load_composed_negatives(
    store: &Store,
    run_id: &str,
    set: &ComposedSet,
    per_query: usize,
) -> Result<ComposedNegatives> {
    let batches = store
        .scan(
            "hard_negatives",
            &["query_id", "query_kind", "negative_id", "rank"],
            Some(
                col("run_id")
                    .eq(lit(run_id.to_string()))
                    .and(col("query_kind").eq(lit("pair"))),
            ),
        )
        .await?;
    let pair_row: HashMap<&str, usize> = set
        .pair_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let image_row = set.images.index();
    let mut mined = Vec::new();
    for batch in &batches {
        let ranks = integers(batch, "rank")?;
        let queries = strings(batch, "query_id")?;
        let negatives = strings(batch, "negative_id")?;
        for ((rank, q), n) in ranks.into_iter().zip(queries).zip(negatives) {
            if let (Some(q), Some(n)) = (q, n)
                && let (Some(&p), Some(&i)) = (pair_row.get(q.as_str()), image_row.get(n.as_str()))
            {
                mined.push((rank, p, i as usize));
            }
        }
    }
    mined.sort();
    let mut of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (_, p, i) in mined {
        if i != set.pairs[p].2 {
            of.entry(p).or_default().push(i);
        }
    }
    Ok(ComposedNegatives { of, per_query })
}

/// One composed batch: its pairs, then the extra negative images its pairs bring (not targets of the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct ComposedBatch {
    pub pairs: Vec<usize>,
    pub negatives: Vec<usize>,
}

/// The batches of one epoch: every pair once, shuffled, cut into near-equal batches; each batch carries up to
/// `per_query` mined negatives of each of its pairs.
pub fn composed_batches(
    n_pairs: usize,
    targets: impl Fn(usize) -> usize,
    negatives: Option<&ComposedNegatives>,
    batch_size: usize,
    rng: &mut Rng,
) -> Vec<ComposedBatch> {
    let mut order: Vec<usize> = (0..n_pairs).collect();
    rng.shuffle(&mut order);
    let mut rest = order.as_slice();
    let mut out = Vec::new();
    for size in chunk_sizes(n_pairs, batch_size.max(2)) {
        let (pairs, tail) = rest.split_at(size);
        rest = tail;
        if pairs.len() < 2 {
            continue;
        }
        let mut present: HashSet<usize> = pairs.iter().map(|&p| targets(p)).collect();
        let mut extra = Vec::new();
        if let Some(negatives) = negatives {
            for &p in pairs {
                let mut added = 0;
                for &n in negatives.of.get(&p).map(Vec::as_slice).unwrap_or_default() {
                    if added == negatives.per_query {
                        break;
                    }
                    if present.insert(n) {
                        extra.push(n);
                        added += 1;
                    }
                }
            }
        }
        out.push(ComposedBatch {
            pairs: pairs.to_vec(),
            negatives: extra,
        });
    }
    out
}

/// The composed query of already-projected reference and text vectors: their normalised sum's direction.
pub fn combine(reference: &Tensor, text: &Tensor) -> candle_core::Result<Tensor> {
    normalize_rows(reference)? + normalize_rows(text)?
}

/// The InfoNCE loss of composed queries (B × D) against `targets` ((B + M) × D: the batch's targets in query
/// order, then extra negatives), summed over the MRL `dims` (empty: the full width).
pub fn composed_loss(
    queries: &Tensor,
    targets: &Tensor,
    logit_scale: &Tensor,
    dims: &[usize],
) -> candle_core::Result<Tensor> {
    let full = queries.dim(1)?;
    let widths: Vec<usize> = if dims.is_empty() {
        vec![full]
    } else {
        dims.to_vec()
    };
    let b = queries.dim(0)?;
    let scale = logit_scale.exp()?;
    let mut total: Option<Tensor> = None;
    for d in widths {
        let q = normalize_rows(&queries.narrow(1, 0, d)?)?;
        let t = normalize_rows(&targets.narrow(1, 0, d)?)?;
        let logits = q.matmul(&t.t()?)?.broadcast_mul(&scale)?;
        let eye = Tensor::eye(b, logits.dtype(), logits.device())?;
        let positive = (logits.narrow(1, 0, b)? * eye)?.sum(1)?;
        let width = (logits.log_sum_exp(1)? - positive)?.mean_all()?;
        total = Some(match total {
            None => width,
            Some(t) => (t + width)?,
        });
    }
    total.ok_or_else(|| candle_core::Error::Msg("no widths".into()))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[derive(serde::Deserialize)]
    struct Reference {
        composed: Case,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        t: f64,
        reference: Vec<Vec<f64>>,
        text: Vec<Vec<f64>>,
        targets: Vec<Vec<f64>>,
        dims: Vec<usize>,
        value: f64,
        grad_reference: Vec<Vec<f64>>,
        grad_targets: Vec<Vec<f64>>,
        grad_t: f64,
    }

    fn matrix(rows: &[Vec<f64>]) -> Tensor {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).expect("tensor")
    }

    fn max_diff(a: &Tensor, b: &[Vec<f64>]) -> f64 {
        let a = a.to_vec2::<f64>().expect("2-d");
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    /// The composed loss and its gradients equal PyTorch's (`fixtures/train/make_reference.py`).
    #[test]
    fn composed_loss_equals_the_pytorch_reference() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/train/reference.json"
        ))
        .expect("reference");
        let case: Reference = serde_json::from_str(&text).expect("json");
        let c = case.composed;
        let reference = Var::from_tensor(&matrix(&c.reference)).expect("var");
        let targets = Var::from_tensor(&matrix(&c.targets)).expect("var");
        let t = Var::from_tensor(&Tensor::new(c.t, &Device::Cpu).expect("t")).expect("var");
        let queries = combine(reference.as_tensor(), &matrix(&c.text)).expect("combine");
        let dims = if c.dims.len() == 1 {
            vec![]
        } else {
            c.dims.clone()
        };
        let loss =
            composed_loss(&queries, targets.as_tensor(), t.as_tensor(), &dims).expect("loss");
        let value = loss.to_scalar::<f64>().expect("scalar");
        assert!((value - c.value).abs() < 1e-9, "{value} vs {}", c.value);
        let grads = loss.backward().expect("backward");
        assert!(
            max_diff(
                grads.get(reference.as_tensor()).expect("g"),
                &c.grad_reference
            ) < 1e-9
        );
        assert!(max_diff(grads.get(targets.as_tensor()).expect("g"), &c.grad_targets) < 1e-9);
        let gt = grads
            .get(t.as_tensor())
            .expect("g")
            .to_scalar::<f64>()
            .expect("scalar");
        assert!((gt - c.grad_t).abs() < 1e-9);
    }

    #[test]
    fn batches_hold_every_pair_once_and_their_negatives() {
        let targets = |p: usize| 100 + p;
        let mut of = HashMap::new();
        for p in 0..10 {
            of.insert(p, vec![200 + p, 100 + (p + 1) % 10, 300 + p]);
        }
        let negatives = ComposedNegatives { of, per_query: 2 };
        let batches = composed_batches(10, targets, Some(&negatives), 4, &mut Rng::new(1));
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.pairs.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        for batch in &batches {
            let own: HashSet<usize> = batch.pairs.iter().map(|&p| targets(p)).collect();
            assert!(batch.negatives.iter().all(|n| !own.contains(n)));
            for &p in &batch.pairs {
                assert!(batch.negatives.contains(&(200 + p)), "{batch:?}");
            }
        }
    }
}
