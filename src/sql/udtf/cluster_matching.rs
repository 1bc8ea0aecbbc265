//! `cluster_matching(from_run, to_run)`: the clusters of two `vlmdb cluster` runs matched one-to-one.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::{Args, Computed, Context, DOC_SECTION, df};
use crate::cluster::tracking::matching;

const SIGNATURE: &str = "cluster_matching(from_run, to_run)";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The clusters of one clustering run matched one-to-one to another's (e.g. iteration i-1 to i) by the \
         Hungarian algorithm on centroid cosine similarity. Rows: from_cluster, to_cluster, similarity (cosine of \
         the centroids), drift (Euclidean distance between them), from_size, to_size. When the runs have \
         different k, the extra clusters stay unmatched.",
        SIGNATURE,
    )
    .with_argument("from_run", "Run id of the earlier `vlmdb cluster` run.")
    .with_argument("to_run", "Run id of the later one.")
    .with_sql_example("> SELECT * FROM cluster_matching($from_run, $to_run) ORDER BY drift DESC;")
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("from_cluster", DataType::Int32, false),
        Field::new("to_cluster", DataType::Int32, false),
        Field::new("similarity", DataType::Float64, false),
        Field::new("drift", DataType::Float64, false),
        Field::new("from_size", DataType::Int64, false),
        Field::new("to_size", DataType::Int64, false),
    ]))
}

/// The (from_run, to_run) arguments both cluster-tracking functions take.
pub fn run_pair(
    function: &'static str,
    signature: &str,
    args: &TableFunctionArgs,
) -> crate::Result<(String, String)> {
    let args = Args::new(function, signature, args, 2, 2)?;
    Ok((
        args.required_text(0, "from_run")?,
        args.required_text(1, "to_run")?,
    ))
}

#[derive(Debug)]
pub struct ClusterMatching(pub Context);

impl TableFunctionImpl for ClusterMatching {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let (from, to) = run_pair("cluster_matching", SIGNATURE, &args).map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let (context, from, to) = (context.clone(), from.clone(), to.clone());
                Box::pin(async move {
                    context.reading(&["centroids"]).await?;
                    let m = matching(&context.store, &from, &to).await?;
                    let columns: Vec<ArrayRef> = vec![
                        Arc::new(Int32Array::from_iter_values(
                            m.iter().map(|r| r.from_cluster),
                        )),
                        Arc::new(Int32Array::from_iter_values(m.iter().map(|r| r.to_cluster))),
                        Arc::new(Float64Array::from_iter_values(
                            m.iter().map(|r| r.similarity),
                        )),
                        Arc::new(Float64Array::from_iter_values(m.iter().map(|r| r.drift))),
                        Arc::new(Int64Array::from_iter_values(m.iter().map(|r| r.from_size))),
                        Arc::new(Int64Array::from_iter_values(m.iter().map(|r| r.to_size))),
                    ];
                    Ok(RecordBatch::try_new(schema(), columns)?)
                })
            }),
        ))
    }
}
