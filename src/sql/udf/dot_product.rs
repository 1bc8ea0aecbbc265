//! `dot_product(a, b)`: the inner product of two vectors (the CLIP logit before scaling, for unit vectors).

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

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DotProduct {
    signature: Signature,
}

impl DotProduct {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for DotProduct {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for DotProduct {
    fn name(&self) -> &str {
        "dot_product"
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
        pairwise(self.name(), &args.args, args.number_rows, dot)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
