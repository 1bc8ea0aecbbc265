//! `l2_distance(a, b)`: the Euclidean distance between two vectors (k-means' metric).

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use super::vectors::{DOC_SECTION, PairwiseScore};
use crate::eval::scores::squared_distance;

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Euclidean (L2) distance between two vectors: sqrt(sum((a[i] - b[i])^2)). NULL when either vector is NULL; \
         an error names the row when the lengths differ.",
        "l2_distance(a, b)",
    )
    .with_argument("a", "A vector: a list of floats (an embedding column, or a literal like [1.0, 0.0]).")
    .with_argument("b", "A vector of the same length.")
    .with_sql_example(
        "> SELECT l2_distance([0.0, 0.0], [3.0, 4.0]);\n+-----+\n| 5.0 |\n+-----+",
    )
    .build()
});

/// sqrt(sum((a[i] - b[i])^2)), in f64.
fn score(a: &[f32], b: &[f32]) -> f64 {
    squared_distance(a, b).sqrt()
}

/// The `l2_distance` SQL function.
pub fn udf() -> ScalarUDF {
    PairwiseScore::udf("l2_distance", &DOC, score)
}
