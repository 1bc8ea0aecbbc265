//! `cosine_similarity(a, b)`: the cosine of the angle between two vectors, the score of CLIP-style retrieval.

use std::sync::LazyLock;

use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::vectors::{DOC_SECTION, check_vector, dot, pairwise};

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

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CosineSimilarity {
    signature: Signature,
}

impl CosineSimilarity {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for CosineSimilarity {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for CosineSimilarity {
    fn name(&self) -> &str {
        "cosine_similarity"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        for (i, t) in args.iter().enumerate() {
            check_vector(self.name(), i, t)?;
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        pairwise(self.name(), &args.args, args.number_rows, |a, b| {
            dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
