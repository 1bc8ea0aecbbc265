//! `cluster_agreement(from_run, to_run)`: how much two clusterings of the same items agree.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::cluster_matching::run_pair;
use super::{Computed, Context, DOC_SECTION, df};
use crate::cluster::tracking::agreement;

const SIGNATURE: &str = "cluster_agreement(from_run, to_run)";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Stability between two clustering runs over the items both clustered: one row with items, ari (adjusted \
         Rand index) and nmi (normalised mutual information, arithmetic mean), as scikit-learn computes them. \
         1 = the same partition, ~0 = chance.",
        SIGNATURE,
    )
    .with_argument("from_run", "Run id of one `vlmdb cluster` run.")
    .with_argument("to_run", "Run id of the other.")
    .with_sql_example("> SELECT * FROM cluster_agreement($from_run, $to_run);")
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("items", DataType::Int64, false),
        Field::new("ari", DataType::Float64, false),
        Field::new("nmi", DataType::Float64, false),
    ]))
}

#[derive(Debug)]
pub struct ClusterAgreement(pub Context);

impl TableFunctionImpl for ClusterAgreement {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let (from, to) = run_pair("cluster_agreement", SIGNATURE, &args).map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let (context, from, to) = (context.clone(), from.clone(), to.clone());
                Box::pin(async move {
                    context.reading(&["clusters"]).await?;
                    let a = agreement(&context.store, &from, &to).await?;
                    let columns: Vec<ArrayRef> = vec![
                        Arc::new(Int64Array::from(vec![a.items as i64])),
                        Arc::new(Float64Array::from(vec![a.ari])),
                        Arc::new(Float64Array::from(vec![a.nmi])),
                    ];
                    Ok(RecordBatch::try_new(schema(), columns)?)
                })
            }),
        ))
    }
}
