//! The stored vector index in `vlmdb bench knn`: the index `vlmdb index --kind ivf_hnsw_sq` builds (Lance's
//! IVF-HNSW-SQ, cosine) over the bench's corpus in a scratch store, searched the way `knn(…, 'ann')` searches it.

use std::path::Path;
use std::sync::Arc;

use arrow::array::StringArray;

use super::conditions::timed_async;
use crate::commands::index::IndexKind;
use crate::error::Result;
use crate::eval::ann;
use crate::eval::recall::recall;
use crate::eval::space::{Filter, Vectors};
use crate::eval::topk::Hit;
use crate::store::Store;
use crate::store::arrays::vectors;
use crate::store::schema::embedding_table;
use crate::store::write::{append, batch_for};

/// What the stored index did: build seconds, recall@k against `truth`, queries per second (medians of the runs).
pub struct Measured {
    pub build: f64,
    pub recall: f64,
    pub qps: f64,
}

/// Store `corpus` as a space under `work`, build its stored index, and search it for every query.
pub async fn measure(
    work: &Path,
    corpus: &Vectors,
    queries: &Vectors,
    truth: &[Vec<Hit>],
    k: usize,
) -> Result<Measured> {
    let store = Store::open(&work.join("stored_index")).await?;
    let spec = embedding_table("bench", corpus.dim)?;
    let n = corpus.len();
    let batch = batch_for(
        &spec,
        vec![
            ("item_id", Arc::new(StringArray::from(corpus.ids.clone()))),
            ("kind", Arc::new(StringArray::from(vec!["image"; n]))),
            (
                "vector",
                Arc::new(vectors(corpus.data.clone(), corpus.dim)?),
            ),
            ("run_id", Arc::new(StringArray::from(vec!["bench"; n]))),
        ],
    )?;
    append(&store, &spec, batch).await?;
    let table = store.open_table(&spec.name).await?;
    let (build, ()) = timed_async(|| async {
        table
            .create_index(&["vector"], IndexKind::IvfHnswSq.index())
            .replace(true)
            .execute()
            .await?;
        Ok(())
    })
    .await?;
    let filter = Filter::default();
    let (search, hits) =
        timed_async(|| ann::top_k(&store, &spec.name, queries, corpus, k, &filter, None)).await?;
    Ok(Measured {
        build,
        recall: recall(&hits, truth),
        qps: queries.len() as f64 / search,
    })
}
