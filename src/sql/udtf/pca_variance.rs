//! `pca_variance(space, components [, dataset [, split [, kind]]])`: the variance each principal component explains.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float64Array, Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::pca::PcaCall;
use super::{Args, Computed, Context, DOC_SECTION, df};

const SIGNATURE: &str =
    "pca_variance(space, components [, dataset [, split [, kind [, run [, iteration]]]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The variance along each principal component of a space's items (scikit-learn's explained_variance_, \
         covariance ÷ n − 1) and its share of the total (explained_variance_ratio_). Rows: component (1-based), \
         variance, ratio. The arguments are pca()'s.",
        SIGNATURE,
    )
    .with_argument("space", "A space: emb_ table, space name, or the model that made it.")
    .with_argument("components", "How many components.")
    .with_argument("dataset", "Only items of this dataset (NULL: all).")
    .with_argument("split", "Only items of this split (NULL: all).")
    .with_argument("kind", "The kind of item (default image).")
    .with_argument("run", "Only the items this run wrote (a loop run: its hop images and captions, and the dataset images it started from; NULL: all).")
    .with_argument("iteration", "Only the items of this iteration (a loop hop; 0: the starting images and their captions; NULL: all).")
    .with_sql_example("> SELECT * FROM pca_variance('tiny_clip_c94a344', 5, 'shapes');")
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("component", DataType::Int32, false),
        Field::new("variance", DataType::Float64, false),
        Field::new("ratio", DataType::Float64, false),
    ]))
}

#[derive(Debug)]
pub struct PcaVariance(pub Context);

impl TableFunctionImpl for PcaVariance {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("pca_variance", SIGNATURE, &args, 2, 7).map_err(df)?;
        let call = PcaCall::parse(&args).map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let (context, call) = (context.clone(), call.clone());
                Box::pin(async move {
                    let (_, fitted) = call.fit(&context).await?;
                    let columns: Vec<ArrayRef> = vec![
                        Arc::new(Int32Array::from_iter_values(
                            1..=fitted.variance.len() as i32,
                        )),
                        Arc::new(Float64Array::from(fitted.variance)),
                        Arc::new(Float64Array::from(fitted.ratio)),
                    ];
                    Ok(RecordBatch::try_new(schema(), columns)?)
                })
            }),
        ))
    }
}
