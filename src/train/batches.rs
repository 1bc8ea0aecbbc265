//! How an epoch's pairs are grouped into batches. An epoch visits **every caption–image pair** once (Flickr8k's
//! train split is 30,000 samples, as CLIPSE and open_clip count; two captions of one image can then meet in a
//! batch, as they do there), or — `one_caption_per_image` — every training image once, paired with one of its
//! captions drawn from the run's RNG (so two captions of one image never meet as each other's negatives). The
//! pairs are then ordered one of two ways, and cut into batches of near-equal size ([`chunk_sizes`]):
//! - **random**: one shuffle of all pairs, cut into batches;
//! - **topical** (seed S1): the pairs of each k-means cluster (their image's) shuffled and cut into batches of that
//!   cluster alone, then the batches shuffled — so every batch holds one topic and its negatives are on-topic.
//!
//! With **mined hard negatives** (seed S4), each batch is then extended with the negatives a mining run found for
//! its images (in rank order, up to `per_query` per image, each with its caption of the epoch), so every query
//! meets its hard negatives in its own batch. Batches of fewer than two pairs have nothing to contrast and are
//! dropped.

use std::collections::{BTreeMap, HashMap};

use crate::rng::Rng;

/// One training pair: (image index, caption index) into the training set.
pub type Pair = (usize, usize);

/// How images are ordered into batches.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Order {
    #[default]
    Random,
    /// The cluster of each image (by image index); images without one form a group of their own.
    Topical(Vec<Option<i32>>),
}

/// Mined negatives: for each image (by index), negative images in rank order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Negatives {
    pub of: HashMap<usize, Vec<usize>>,
    pub per_query: usize,
}

/// How `n` items are cut into batches of at most `batch_size`: as few batches as that allows, of sizes that
/// differ by at most one (18 items in batches of 8 are 6 + 6 + 6, not 8 + 8 + 2), so every step's loss is over a
/// batch of about the same size and losses stay comparable from step to step.
pub fn chunk_sizes(n: usize, batch_size: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let batches = n.div_ceil(batch_size.max(1));
    (0..batches)
        .map(|i| n / batches + usize::from(i < n % batches))
        .collect()
}

/// The pairs an epoch visits, grouped by topic (one group when the order is random).
fn epoch_groups(
    captions: &[Vec<usize>],
    caption_of: &[Option<usize>],
    order: &Order,
    one_caption_per_image: bool,
) -> Vec<Vec<Pair>> {
    let pairs: Vec<Pair> = if one_caption_per_image {
        (0..captions.len())
            .filter_map(|i| caption_of[i].map(|c| (i, c)))
            .collect()
    } else {
        captions
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.iter().map(move |&c| (i, c)))
            .collect()
    };
    match order {
        Order::Random => vec![pairs],
        Order::Topical(cluster) => {
            let mut by_cluster: BTreeMap<Option<i32>, Vec<Pair>> = BTreeMap::new();
            for pair in pairs {
                by_cluster
                    .entry(cluster.get(pair.0).copied().flatten())
                    .or_default()
                    .push(pair);
            }
            by_cluster.into_values().collect()
        }
    }
}

/// How many pairs each group of an epoch holds (the batch count follows from it; the same for every seed).
pub fn group_sizes(
    captions: &[Vec<usize>],
    order: &Order,
    one_caption_per_image: bool,
) -> Vec<usize> {
    let caption_of: Vec<Option<usize>> = captions.iter().map(|c| c.first().copied()).collect();
    epoch_groups(captions, &caption_of, order, one_caption_per_image)
        .iter()
        .map(Vec::len)
        .collect()
}

/// The batches of one epoch. `captions[i]` lists the caption indices of image `i` (none: the image is skipped).
pub fn epoch_batches(
    captions: &[Vec<usize>],
    order: &Order,
    negatives: Option<&Negatives>,
    batch_size: usize,
    one_caption_per_image: bool,
    rng: &mut Rng,
) -> Vec<Vec<Pair>> {
    let batch_size = batch_size.max(2);
    // The caption an image brings along this epoch (its pair in one-caption mode, and as a mined negative).
    let caption_of: Vec<Option<usize>> = captions
        .iter()
        .map(|c| (!c.is_empty()).then(|| c[rng.below(c.len())]))
        .collect();
    let mut groups = epoch_groups(captions, &caption_of, order, one_caption_per_image);
    let mut batches: Vec<Vec<Pair>> = Vec::new();
    for group in &mut groups {
        rng.shuffle(group);
        let mut rest = group.as_slice();
        for size in chunk_sizes(rest.len(), batch_size) {
            let (batch, tail) = rest.split_at(size);
            batches.push(batch.to_vec());
            rest = tail;
        }
    }
    if matches!(order, Order::Topical(_)) {
        rng.shuffle(&mut batches);
    }
    batches
        .into_iter()
        .filter(|b| b.len() >= 2)
        .map(|mut pairs| {
            if let Some(negatives) = negatives {
                let images: Vec<usize> = pairs.iter().map(|p| p.0).collect();
                let mut present: std::collections::HashSet<usize> =
                    images.iter().copied().collect();
                for &i in &images {
                    let mut added = 0;
                    for &n in negatives.of.get(&i).map(Vec::as_slice).unwrap_or_default() {
                        if added == negatives.per_query {
                            break;
                        }
                        if let Some(c) = caption_of.get(n).copied().flatten()
                            && present.insert(n)
                        {
                            pairs.push((n, c));
                            added += 1;
                        }
                    }
                }
            }
            pairs
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captions(n: usize) -> Vec<Vec<usize>> {
        (0..n).map(|i| vec![2 * i, 2 * i + 1]).collect()
    }

    #[test]
    fn every_image_once_with_one_of_its_captions() {
        let caps = captions(10);
        let batches = epoch_batches(&caps, &Order::Random, None, 4, true, &mut Rng::new(1));
        let mut seen: Vec<usize> = batches.iter().flatten().map(|p| p.0).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert!(batches.iter().flatten().all(|&(i, c)| caps[i].contains(&c)));
        assert_eq!(
            batches,
            epoch_batches(&caps, &Order::Random, None, 4, true, &mut Rng::new(1))
        );
        assert_ne!(
            batches,
            epoch_batches(&caps, &Order::Random, None, 4, true, &mut Rng::new(2))
        );
    }

    #[test]
    fn batches_are_as_even_as_they_can_be() {
        assert_eq!(chunk_sizes(18, 8), [6, 6, 6]);
        assert_eq!(chunk_sizes(16, 8), [8, 8]);
        assert_eq!(chunk_sizes(17, 8), [6, 6, 5]);
        assert_eq!(chunk_sizes(3, 8), [3]);
        assert!(chunk_sizes(0, 8).is_empty());
    }

    #[test]
    fn topical_batches_hold_one_cluster_each() {
        let caps = captions(40);
        let clusters: Vec<Option<i32>> = (0..40).map(|i: i32| Some(i % 3)).collect();
        let batches = epoch_batches(
            &caps,
            &Order::Topical(clusters.clone()),
            None,
            5,
            true,
            &mut Rng::new(7),
        );
        assert!(batches.len() >= 8);
        for batch in &batches {
            let first = clusters[batch[0].0];
            assert!(batch.iter().all(|p| clusters[p.0] == first), "{batch:?}");
        }
    }

    #[test]
    fn mined_negatives_join_their_queries_batches() {
        let caps = captions(30);
        let mut of = HashMap::new();
        for i in 0..30 {
            of.insert(i, vec![(i + 7) % 30, (i + 11) % 30, (i + 13) % 30]);
        }
        let negatives = Negatives { of, per_query: 2 };
        let batches = epoch_batches(
            &caps,
            &Order::Random,
            Some(&negatives),
            4,
            true,
            &mut Rng::new(3),
        );
        // Negatives draw nothing from the RNG, so the same seed without them gives each batch's own images.
        let own = epoch_batches(&caps, &Order::Random, None, 4, true, &mut Rng::new(3));
        assert_eq!(batches.len(), own.len());
        for (batch, own) in batches.iter().zip(&own) {
            let members: Vec<usize> = batch.iter().map(|p| p.0).collect();
            assert_eq!(&batch[..own.len()], own.as_slice());
            for &(i, _) in own {
                for n in &negatives.of[&i][..2] {
                    assert!(
                        members.contains(n),
                        "negative {n} of {i} missing from {members:?}"
                    );
                }
            }
            let mut unique = members.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), members.len(), "an image twice in {members:?}");
        }
    }

    /// By default an epoch visits every caption–image pair once (5 captions of 10 images: 50 samples).
    #[test]
    fn an_epoch_visits_every_pair() {
        let caps: Vec<Vec<usize>> = (0..10).map(|i| (5 * i..5 * i + 5).collect()).collect();
        let batches = epoch_batches(&caps, &Order::Random, None, 8, false, &mut Rng::new(4));
        let mut seen: Vec<Pair> = batches.iter().flatten().copied().collect();
        seen.sort();
        let all: Vec<Pair> = (0..10)
            .flat_map(|i| (5 * i..5 * i + 5).map(move |c| (i, c)))
            .collect();
        assert_eq!(seen, all);
        assert_eq!(group_sizes(&caps, &Order::Random, false), [50]);
        assert_eq!(group_sizes(&caps, &Order::Random, true), [10]);
    }
}
