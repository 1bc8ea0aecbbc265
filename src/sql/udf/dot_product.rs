//! `dot_product(a, b)`: the inner product of two vectors (the CLIP logit before scaling, for unit vectors).

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use super::vectors::{DOC_SECTION, PairwiseScore, dot};

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Dot product of two vectors: sum of a[i] * b[i]. Equals cosine similarity for unit vectors. NULL when either \
         vector is NULL; an error names the row when the lengths differ.",
        "dot_product(a, b)",
    )
    .with_argument("a", "A vector: a list of floats (an embedding column, or a literal like [1.0, 0.0]).")
    .with_argument("b", "A vector of the same length.")
    .with_sql_example(
        "> SELECT dot_product([1.0, 2.0], [3.0, 4.0]);\n+------+\n| 11.0 |\n+------+",
    )
    .build()
});

/// The `dot_product` SQL function.
pub fn udf() -> ScalarUDF {
    PairwiseScore::udf("dot_product", &DOC, dot)
}
