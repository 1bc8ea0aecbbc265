//! vlmdb's aggregate SQL functions, one per file, each with the documentation `\df NAME` shows.

pub mod vector_mean;

use datafusion::logical_expr::AggregateUDF;

/// Every aggregate function vlmdb adds to a session.
pub fn functions() -> Vec<AggregateUDF> {
    vec![AggregateUDF::from(vector_mean::VectorMean::new())]
}
