//! `l2_normalize(v)`: a vector scaled to unit length, as CLIP_benchmark normalises embeddings before scoring.

use std::sync::LazyLock;

use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::vectors::{
    DOC_SECTION, check_vector, columnar, normalized, vector_array, vector_type, vectors,
};

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The vector divided by its L2 norm (unit length), as a list of float32. NULL for NULL; an error names the \
         row of an all-zero vector, which has no direction.",
        "l2_normalize(v)",
    )
    .with_argument("v", "A vector: a list of floats.")
    .with_sql_example("> SELECT l2_normalize([3.0, 4.0]);\n+------------+\n| [0.6, 0.8] |\n+------------+")
    .build()
});

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct L2Normalize {
    signature: Signature,
}

impl L2Normalize {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for L2Normalize {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for L2Normalize {
    fn name(&self) -> &str {
        "l2_normalize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_vector(self.name(), 0, &args[0])?;
        Ok(vector_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = vectors(self.name(), 0, &args.args[0], args.number_rows)?;
        let mut out = Vec::with_capacity(input.len());
        for (row, v) in input.into_iter().enumerate() {
            out.push(match v {
                None => None,
                Some(v) => Some(normalized(&v).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "l2_normalize: the vector in row {row} has no finite, non-zero norm"
                    ))
                })?),
            });
        }
        Ok(columnar(vector_array(out), &args.args))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
