//! `l2_distance(a, b)`: the Euclidean distance between two vectors (k-means' metric).

use std::sync::LazyLock;

use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::vectors::{DOC_SECTION, check_vector, pairwise};

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

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct L2Distance {
    signature: Signature,
}

impl L2Distance {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for L2Distance {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for L2Distance {
    fn name(&self) -> &str {
        "l2_distance"
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
            a.iter()
                .zip(b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum::<f64>()
                .sqrt()
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
