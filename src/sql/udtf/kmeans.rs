//! `kmeans(space, k, iterations, seed [, dataset [, split [, kind [, metric]]]])`: k-means of a space's items.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::{Args, Computed, Context, DOC_SECTION, df};
use crate::cluster::kmeans::{KMeansOptions, kmeans};

const SIGNATURE: &str = "kmeans(space, k, iterations, seed [, dataset [, split [, kind [, metric [, run [, iteration]]]]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "k-means of a space's items (L2-normalised vectors): k-means++ seeding from one seeded RNG (the same seed \
         gives the same clusters), Lloyd iterations with assignment by blocked Candle matrix products, empty \
         clusters re-seeded with the farthest points. Rows: item_id, cluster_id (0-based), distance to its centroid \
         (Euclidean for l2, 1 - cosine for cosine). `vlmdb cluster` stores the same under a run.",
        SIGNATURE,
    )
    .with_argument("space", "A space: emb_ table, space name, or the model that made it.")
    .with_argument("k", "Number of clusters.")
    .with_argument("iterations", "Most Lloyd iterations (stops early when no assignment changes).")
    .with_argument("seed", "Seed of the RNG.")
    .with_argument("dataset", "Only items of this dataset (NULL: all).")
    .with_argument("split", "Only items of this split (NULL: all).")
    .with_argument("kind", "The kind of item clustered (default image).")
    .with_argument("metric", "'l2' (default, scikit-learn's objective) or 'cosine' (spherical k-means).")
    .with_argument("run", "Only the items this run wrote (a loop run: its hop images and captions, and the dataset images it started from; NULL: all).")
    .with_argument("iteration", "Only the items of this iteration (a loop hop; 0: the starting images and their captions; NULL: all).")
    .with_sql_example("> SELECT cluster_id, count(*) FROM kmeans('tiny_clip_c94a344', 3, 20, 0, 'shapes') GROUP BY cluster_id;")
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("cluster_id", DataType::Int32, false),
        Field::new("distance", DataType::Float32, false),
    ]))
}

#[derive(Debug)]
pub struct KMeansFunction(pub Context);

impl TableFunctionImpl for KMeansFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("kmeans", SIGNATURE, &args, 4, 10).map_err(df)?;
        let space = args.required_text(0, "space").map_err(df)?;
        let options = KMeansOptions {
            k: args.required_count(1, "k").map_err(df)?,
            iterations: args.required_count(2, "iterations").map_err(df)?,
            seed: args.required_count(3, "seed").map_err(df)? as u64,
            metric: match args.text(7, "metric").map_err(df)? {
                Some(m) => m.parse().map_err(df)?,
                None => KMeansOptions::default().metric,
            },
            ..KMeansOptions::default()
        };
        let filter = args.filter_with_lineage(4, Some("image"), 8).map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let context = context.clone();
                let (space, filter) = (space.clone(), filter.clone());
                Box::pin(async move {
                    let (_, data) = context.load_named(&space, &filter).await?;
                    let result = kmeans(&data, &options, &context.device.device()?)?;
                    let columns: Vec<ArrayRef> = vec![
                        Arc::new(StringArray::from_iter_values(
                            data.ids.iter().map(String::as_str),
                        )),
                        Arc::new(Int32Array::from_iter_values(
                            result.assignment.iter().map(|c| *c as i32),
                        )),
                        Arc::new(Float32Array::from(result.distance)),
                    ];
                    Ok(RecordBatch::try_new(schema(), columns)?)
                })
            }),
        ))
    }
}
