//! `retrieval_ranks(space, dataset [, split [, dim [, combiner [, run [, iteration]]]]])`: the rank of every
//! positive of every query, text→image, image→text and composed (a loop run's hop: its captions and images).

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::{Args, Computed, Context, DOC_SECTION, df};
use crate::eval::retrieval::{Combiner, RankRequest, RankRow, retrieval_ranks};
use crate::eval::space::resolve;

const SIGNATURE: &str =
    "retrieval_ranks(space, dataset [, split [, dim [, combiner [, run [, iteration]]]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The rank of every positive of every query among all candidates of the split, in each direction: t2i \
         (each caption's image among the split's images), i2t (each of an image's captions among the split's \
         captions) and composed (each pair with a target: reference image + modification text against the split's \
         images minus the reference; subset_rank ranks the target within the pair's own candidate set, CIRR's \
         Recall_subset). Scores are cosine similarities of L2-normalised vectors. rank = 1 + the number of \
         candidates scoring higher, + those scoring equal with a smaller item id (ties broken by id, ascending). \
         Exact, from blocked Candle matrix products. Every caption and image of the split must have a vector. \
         Rows: direction, query_id, positive_id, rank, score, subset_rank.",
        SIGNATURE,
    )
    .with_argument("space", "A space: emb_ table, space name, or the model that made it.")
    .with_argument("dataset", "The dataset whose captions/pairs are the ground truth.")
    .with_argument("split", "The split (NULL: the whole dataset as one pool).")
    .with_argument(
        "dim",
        "Matryoshka (MRL): use the first dim dimensions of every vector, re-normalised (NULL: all).",
    )
    .with_argument(
        "combiner",
        "How composed queries combine the reference image r and the text t: 'sum' (normalise(r + t), default), \
         'image' (r only) or 'text' (t only).",
    )
    .with_argument(
        "run",
        "Only a loop run's items: its captions (of the dataset, e.g. 'shapes/loop') as queries, the images they \
         describe as candidates (NULL: the dataset's).",
    )
    .with_argument("iteration", "Only the loop hop (NULL: every hop of the run).")
    .with_sql_example(
        "> SELECT direction, avg(CASE WHEN rank <= 5 THEN 1.0 ELSE 0.0 END) AS hit_at_5\n  FROM retrieval_ranks('tiny_clip_c94a344', 'shapes', 'test') GROUP BY direction;",
    )
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("direction", DataType::Utf8, false),
        Field::new("query_id", DataType::Utf8, false),
        Field::new("positive_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int64, false),
        Field::new("score", DataType::Float32, false),
        Field::new("subset_rank", DataType::Int64, true),
    ]))
}

fn batch(rows: &[RankRow]) -> crate::Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.direction),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.query_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.positive_id.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.rank as i64),
        )),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score))),
        Arc::new(Int64Array::from_iter(
            rows.iter().map(|r| r.subset_rank.map(|s| s as i64)),
        )),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

#[derive(Debug)]
pub struct RetrievalRanks(pub Context);

impl TableFunctionImpl for RetrievalRanks {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("retrieval_ranks", SIGNATURE, &args, 2, 7).map_err(df)?;
        let space = args.required_text(0, "space").map_err(df)?;
        let dataset = args.required_text(1, "dataset").map_err(df)?;
        let split = args.text(2, "split").map_err(df)?;
        let dim = args.count(3, "dim").map_err(df)?;
        let combiner: Combiner = match args.text(4, "combiner").map_err(df)? {
            Some(c) => c.parse().map_err(df)?,
            None => Combiner::default(),
        };
        let (run, iteration) = args.lineage(5).map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let context = context.clone();
                let (space, dataset, split) = (space.clone(), dataset.clone(), split.clone());
                let (run, iteration) = (run.clone(), iteration);
                Box::pin(async move {
                    let request = RankRequest {
                        table: resolve(&context.store, &space).await?,
                        dataset,
                        split,
                        dim,
                        combiner,
                        run,
                        iteration,
                    };
                    context.reading(&request.tables()).await?;
                    let rows = retrieval_ranks(&context.store, &request, &context.device.device()?)
                        .await?;
                    batch(&rows)
                })
            }),
        ))
    }
}
