//! `cosine_similarity(a, b)`: the cosine of the angle between two vectors, the score of CLIP-style retrieval.

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use super::vectors::{DOC_SECTION, PairwiseScore, dot};

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Cosine similarity of two vectors: dot(a, b) / (|a| |b|), in [-1, 1]. NULL when either vector is NULL; an \
         error names the row when the lengths differ or a vector is all zeros.",
        "cosine_similarity(a, b)",
    )
    .with_argument("a", "A vector: a list of floats (an embedding column, or a literal like [1.0, 0.0]).")
    .with_argument("b", "A vector of the same length.")
    .with_sql_example(
        "> SELECT cosine_similarity([1.0, 0.0], [1.0, 1.0]);\n+--------------------+\n| 0.7071067811865475 |\n+--------------------+",
    )
    .build()
});

/// dot(a, b) / (|a| |b|); a zero vector gives a non-finite result, which `pairwise` reports with its row.
fn score(a: &[f32], b: &[f32]) -> f64 {
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

/// The `cosine_similarity` SQL function.
pub fn udf() -> ScalarUDF {
    PairwiseScore::udf("cosine_similarity", &DOC, score)
}
