//! What a training run reads from the store: the caption–image pairs of a split with their frozen vectors from the
//! image space and the text space, the clusters of a k-means run (topical batches), and the negatives of a mining
//! run. Every read is a filtered scan of the store (no SQL session).

use std::collections::HashMap;

use datafusion::prelude::{col, lit};

use super::batches::Negatives;
use crate::error::{Error, Result};
use crate::eval::retrieval::caption_truth;
use crate::eval::space::{Filter, Vectors, load};
use crate::store::Store;
use crate::store::columns::{integers, strings};

/// The pairs of one split: image vectors, caption vectors, and which captions belong to which image.
#[derive(Debug, Clone)]
pub struct PairedSet {
    pub images: Vectors,
    pub texts: Vectors,
    /// Caption rows (into `texts`) of each image row (into `images`).
    pub captions: Vec<Vec<usize>>,
    /// Image row of each caption id of the split (captions without a vector included).
    pub image_of_caption: HashMap<String, usize>,
}

/// Which training image (by row) an image id or a caption id belongs to: what clusters and mined negatives are
/// mapped through.
#[derive(Debug)]
pub struct ImageRows<'a> {
    pub image: HashMap<&'a str, u32>,
    pub of_caption: &'a HashMap<String, usize>,
    pub len: usize,
}

impl ImageRows<'_> {
    fn image(&self, id: &str) -> Option<usize> {
        self.image.get(id).map(|&i| i as usize)
    }
}

impl PairedSet {
    /// The image rows of the set's ids.
    pub fn rows(&self) -> ImageRows<'_> {
        ImageRows {
            image: self.images.index(),
            of_caption: &self.image_of_caption,
            len: self.images.len(),
        }
    }

    /// Number of images with at least one caption.
    pub fn paired_images(&self) -> usize {
        self.captions.iter().filter(|c| !c.is_empty()).count()
    }
}

/// The image vectors (from `tables.0`) and the `text_kind` vectors (from `tables.1`) of `dataset`/`split`.
pub async fn load_split_vectors(
    store: &Store,
    tables: (&str, &str),
    dataset: &str,
    split: &str,
    text_kind: &str,
) -> Result<(Vectors, Vectors)> {
    let images = load(
        store,
        tables.0,
        &Filter::new(Some("image"), Some(dataset), Some(split)),
    )
    .await?;
    let texts = load(
        store,
        tables.1,
        &Filter::new(Some(text_kind), Some(dataset), Some(split)),
    )
    .await?;
    Ok((images, texts))
}

/// The pairs of `dataset`/`split` whose image has a vector in `image_table` and caption one in `text_table`.
pub async fn load_pairs(
    store: &Store,
    image_table: &str,
    text_table: &str,
    dataset: &str,
    split: &str,
) -> Result<PairedSet> {
    let (images, texts) =
        load_split_vectors(store, (image_table, text_table), dataset, split, "caption").await?;
    let image_row = images.index();
    let text_row = texts.index();
    let mut captions = vec![Vec::new(); images.len()];
    let mut image_of_caption = HashMap::new();
    for (caption, image) in caption_truth(store, dataset, Some(split)).await? {
        let Some(&i) = image_row.get(image.as_str()) else {
            continue;
        };
        if let Some(&t) = text_row.get(caption.as_str()) {
            captions[i as usize].push(t as usize);
        }
        image_of_caption.insert(caption, i as usize);
    }
    captions.iter_mut().for_each(|c| c.sort_unstable());
    let set = PairedSet {
        images,
        texts,
        captions,
        image_of_caption,
    };
    if set.paired_images() < 2 {
        return Err(Error::Usage(format!(
            "dataset '{dataset}' split '{split}' has {} caption–image pairs with vectors in both spaces (image space \
             {image_table}: {} image vectors; text space {text_table}: {} caption vectors); training needs at least 2 \
             (embed or import the split's images and captions first)",
            set.paired_images(),
            set.images.len(),
            set.texts.len()
        )));
    }
    Ok(set)
}

/// The cluster of each training image, from the `clusters` rows of a k-means run (items may be images or
/// captions; a caption's cluster is given to its image).
pub async fn load_clusters(
    store: &Store,
    run_id: &str,
    set: &ImageRows<'_>,
) -> Result<Vec<Option<i32>>> {
    store.upgrade_tables(&["clusters"]).await?;
    let batches = store
        .scan(
            "clusters",
            &["item_id", "cluster_id"],
            Some(col("run_id").eq(lit(run_id))),
        )
        .await?;
    let mut assigned = Vec::new();
    for batch in &batches {
        assigned.extend(
            strings(batch, "item_id")?
                .into_iter()
                .zip(integers(batch, "cluster_id")?),
        );
    }
    // By item id, so an image whose captions sit in different clusters always gets the same one.
    assigned.sort();
    let rows = assigned.len();
    let mut cluster = vec![None; set.len];
    for (item, c) in assigned {
        let (Some(item), Some(c)) = (item, c) else {
            continue;
        };
        let row = set
            .image(&item)
            .or_else(|| set.of_caption.get(&item).copied());
        if let Some(row) = row {
            cluster[row].get_or_insert(c as i32);
        }
    }
    if rows == 0 {
        return Err(Error::Usage(format!(
            "--topical {run_id}: that run has no rows in `clusters` (give the id of a `vlmdb cluster` run)"
        )));
    }
    Ok(cluster)
}

/// The negatives of a mining run, by training image, in rank order: caption queries give their image the mined
/// negative images; image queries get the images of their mined negative captions.
pub async fn load_negatives(
    store: &Store,
    run_id: &str,
    set: &ImageRows<'_>,
    per_query: usize,
) -> Result<Negatives> {
    let batches = store
        .scan(
            "hard_negatives",
            &["query_id", "query_kind", "negative_id", "rank"],
            Some(col("run_id").eq(lit(run_id))),
        )
        .await?;
    let mut mined = Vec::new();
    for batch in &batches {
        let ranks = integers(batch, "rank")?;
        let queries = strings(batch, "query_id")?;
        let kinds = strings(batch, "query_kind")?;
        let negatives = strings(batch, "negative_id")?;
        for (((rank, q), kind), n) in ranks.into_iter().zip(queries).zip(kinds).zip(negatives) {
            mined.push((rank, q, n, kind));
        }
    }
    // Rank order (ties by query, then negative), so each image's list starts with its hardest negatives.
    mined.sort();
    let rows = mined.len();
    let image = |id: &str| set.image(id);
    let mut of: HashMap<usize, Vec<usize>> = HashMap::new();
    for (_, q, n, kind) in mined {
        let (Some(q), Some(kind), Some(n)) = (q, kind, n) else {
            continue;
        };
        let pair = match kind.as_str() {
            "caption" => set.of_caption.get(&q).copied().zip(image(&n)),
            "image" => image(&q).zip(set.of_caption.get(&n).copied()),
            _ => None,
        };
        if let Some((query, negative)) = pair
            && query != negative
        {
            let list = of.entry(query).or_default();
            if !list.contains(&negative) {
                list.push(negative);
            }
        }
    }
    if rows == 0 {
        return Err(Error::Usage(format!(
            "--negatives {run_id}: that run has no rows in `hard_negatives` (give the id of a `vlmdb mine` run)"
        )));
    }
    Ok(Negatives { of, per_query })
}
