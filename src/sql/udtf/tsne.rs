//! `tsne(space, perplexity, iterations, seed [, dataset [, split [, kind [, method]]]])`: a 2-D t-SNE view of a space's items.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::{Args, Computed, Context, DOC_SECTION, df};
use crate::cluster::tsne::{Method, TsneOptions, tsne};

const SIGNATURE: &str = "tsne(space, perplexity, iterations, seed [, dataset [, split [, kind [, method [, run [, iteration]]]]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "A 2-D t-SNE view of a space's items: perplexity-calibrated affinities, early exaggeration, momentum and \
         gains, scikit-learn's automatic learning rate, start from the seeded RNG (the same seed gives the same \
         view). Exact (every pair, up to 5,000 items) or Barnes-Hut (nearest-neighbour affinities and a quadtree, \
         angle 0.5, any number of items). Rows: item_id, x, y.",
        SIGNATURE,
    )
    .with_argument("space", "A space: emb_ table, space name, or the model that made it.")
    .with_argument(
        "perplexity",
        "Effective neighbours per item (typically 5 to 50; below the item count). NULL: 30, or (n - 1) / 3 on sets \
         of fewer than 91 items.",
    )
    .with_argument("iterations", "Gradient steps (e.g. 1000; the first 250 are exaggerated).")
    .with_argument("seed", "Seed of the RNG.")
    .with_argument("dataset", "Only items of this dataset (NULL: all).")
    .with_argument("split", "Only items of this split (NULL: all).")
    .with_argument("kind", "The kind of item (default image).")
    .with_argument(
        "method",
        "'auto' (default: exact up to 1,000 items, Barnes-Hut above), 'exact' or 'barnes_hut'.",
    )
    .with_argument("run", "Only the items this run wrote (a loop run: its hop images and captions, and the dataset images it started from; NULL: all).")
    .with_argument("iteration", "Only the items of this iteration (a loop hop; 0: the starting images and their captions; NULL: all).")
    .with_sql_example("> SELECT t.item_id, t.x, t.y, k.cluster_id FROM tsne('tiny_clip_c94a344', 10, 500, 0, 'shapes') t\n  JOIN kmeans('tiny_clip_c94a344', 3, 20, 0, 'shapes') k USING (item_id);")
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
    ]))
}

#[derive(Debug)]
pub struct TsneFunction(pub Context);

impl TableFunctionImpl for TsneFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("tsne", SIGNATURE, &args, 4, 10).map_err(df)?;
        let space = args.required_text(0, "space").map_err(df)?;
        let options = TsneOptions {
            perplexity: args.number(1, "perplexity").map_err(df)?,
            iterations: args.required_count(2, "iterations").map_err(df)?,
            seed: args.required_count(3, "seed").map_err(df)? as u64,
            method: match args.text(7, "method").map_err(df)? {
                Some(m) => m.parse().map_err(df)?,
                None => Method::Auto,
            },
        };
        let filter = args.filter_with_lineage(4, Some("image"), 8).map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let (context, space, filter) = (context.clone(), space.clone(), filter.clone());
                Box::pin(async move {
                    let (_, data) = context.load_named(&space, &filter).await?;
                    let view = tsne(&data, &options)?;
                    let columns: Vec<ArrayRef> = vec![
                        Arc::new(StringArray::from_iter_values(
                            data.ids.iter().map(String::as_str),
                        )),
                        Arc::new(Float64Array::from_iter_values(view.iter().map(|p| p[0]))),
                        Arc::new(Float64Array::from_iter_values(view.iter().map(|p| p[1]))),
                    ];
                    Ok(RecordBatch::try_new(schema(), columns)?)
                })
            }),
        ))
    }
}
