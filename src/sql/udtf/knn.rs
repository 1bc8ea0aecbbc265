//! `knn(query, corpus, k [, dataset [, split]])`: the exact top-k corpus items of every query item.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::{Args, Computed, Context, DOC_SECTION, df};
use crate::eval::knn::{KnnRequest, Method, NeighborRow, RECALL_SAMPLE, Side, knn, parse_side};
use crate::eval::space::resolve;

const SIGNATURE: &str = "knn(query, corpus, k [, dataset [, split [, method]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "For every query item, its k nearest corpus items by cosine similarity: exact, computed as Candle matrix \
         products over blocks with a running top-k per query (never the full score matrix), on the session's \
         device. Rows: query_id, neighbor_id, rank (1 = best), score. Ties are broken by neighbour id, ascending. \
         k larger than the corpus returns the whole corpus. The query kind 'pair' makes composed queries (each \
         pair's reference image + modification text, summed and normalised), whose reference is left out of their \
         results. When query and corpus are the same items, each item is its own first neighbour.",
        SIGNATURE,
    )
    .with_argument(
        "query",
        "'space[:kind]': a space (emb_ table, space name, or the model that made it) and the kind of the query \
         items: caption (default), image, pair_text, text, or pair (composed).",
    )
    .with_argument("corpus", "'space[:kind]' of the corpus: image (default), caption, pair_text or text.")
    .with_argument("k", "Neighbours per query.")
    .with_argument("dataset", "Only items of this dataset (NULL: all).")
    .with_argument("split", "Only items of this split (NULL: all).")
    .with_argument(
        "method",
        "'exact' (default); 'hnsw': an HNSW graph (hnsw_rs, M = 32, efSearch = 128) built over the corpus for \
         this call; or 'ann': the corpus space's stored vector index (`vlmdb index`; an error when it has none), \
         with rows written since the index was built searched exactly beside it. Both print to stderr which \
         graph or index answered and its recall@k against exact search on up to 200 of the queries (a k that \
         covers the whole corpus is answered exactly by 'hnsw').",
    )
    .with_sql_example(
        "> SELECT * FROM knn('tiny_clip_c94a344:caption', 'tiny_clip_c94a344:image', 5, 'shapes', 'test')\n  WHERE rank = 1 LIMIT 3;",
    )
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Utf8, false),
        Field::new("neighbor_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int64, false),
        Field::new("score", DataType::Float32, false),
    ]))
}

/// The rows as a batch.
pub fn batch(rows: &[NeighborRow]) -> crate::Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.query_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.neighbor_id.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.rank as i64),
        )),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

#[derive(Debug)]
pub struct Knn(pub Context);

impl TableFunctionImpl for Knn {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("knn", SIGNATURE, &args, 3, 6).map_err(df)?;
        let (query_space, query_kind) =
            parse_side(&args.required_text(0, "query").map_err(df)?, "caption").map_err(df)?;
        let (corpus_space, corpus_kind) =
            parse_side(&args.required_text(1, "corpus").map_err(df)?, "image").map_err(df)?;
        let k = args.required_count(2, "k").map_err(df)?;
        let dataset = args.text(3, "dataset").map_err(df)?;
        let split = args.text(4, "split").map_err(df)?;
        let method: Method = match args.text(5, "method").map_err(df)? {
            Some(m) => m.parse().map_err(df)?,
            None => Method::Exact,
        };
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let context = context.clone();
                let (query_space, query_kind) = (query_space.clone(), query_kind.clone());
                let (corpus_space, corpus_kind) = (corpus_space.clone(), corpus_kind.clone());
                let (dataset, split) = (dataset.clone(), split.clone());
                Box::pin(async move {
                    let store = &context.store;
                    let request = KnnRequest {
                        queries: Side {
                            table: resolve(store, &query_space).await?,
                            kind: query_kind,
                        },
                        corpus: Side {
                            table: resolve(store, &corpus_space).await?,
                            kind: corpus_kind,
                        },
                        k,
                        dataset,
                        split,
                        method,
                    };
                    context
                        .reading(&[&request.queries.table, &request.corpus.table])
                        .await?;
                    let result = knn(store, &request, &context.device.device()?).await?;
                    if let Some(recall) = result.recall {
                        let (method, through) = match &result.index {
                            Some(index) => ("ann", format!(", through {}", index.describe())),
                            None => ("hnsw", String::new()),
                        };
                        eprintln!(
                            "knn: {method} recall@{k} = {recall:.4} (against exact search on up to \
                             {RECALL_SAMPLE} queries){through}"
                        );
                    }
                    batch(&result.rows)
                })
            }),
        ))
    }
}
