//! `truncate_dim(v, d)`: the Matryoshka (MRL) view of an embedding — its first `d` dimensions, re-normalised.

use std::sync::LazyLock;

use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::integer_constant;
use super::vectors::{
    DOC_SECTION, check_vector, columnar, normalized, vector_array, vector_type, vectors,
};

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The first d dimensions of a vector, scaled back to unit length: how Matryoshka (MRL) embeddings are \
         evaluated at a smaller width. NULL for NULL; an error when d is not a positive integer constant, when a \
         vector is shorter than d (naming the row), or when its prefix is all zeros.",
        "truncate_dim(v, d)",
    )
    .with_argument("v", "A vector: a list of floats.")
    .with_argument("d", "The number of leading dimensions to keep (a positive integer constant).")
    .with_sql_example(
        "> SELECT truncate_dim([3.0, 4.0, 12.0], 2);\n+------------+\n| [0.6, 0.8] |\n+------------+",
    )
    .build()
});

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TruncateDim {
    signature: Signature,
}

impl TruncateDim {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for TruncateDim {
    fn default() -> Self {
        Self::new()
    }
}

/// `d` as a positive width; it must be the same for every row (a constant).
fn width(arg: &ColumnarValue) -> Result<usize> {
    integer_constant(arg)
        .and_then(|d| usize::try_from(d).ok())
        .filter(|d| *d > 0)
        .ok_or_else(|| {
            DataFusionError::Execution("truncate_dim: d must be a positive integer constant".into())
        })
}

impl ScalarUDFImpl for TruncateDim {
    fn name(&self) -> &str {
        "truncate_dim"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_vector(self.name(), 0, &args[0])?;
        if !args[1].is_integer() {
            return Err(DataFusionError::Plan(format!(
                "truncate_dim: argument 2 must be an integer, got {}",
                args[1]
            )));
        }
        Ok(vector_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let d = width(&args.args[1])?;
        let input = vectors(self.name(), 0, &args.args[0], args.number_rows)?;
        let mut out = Vec::with_capacity(input.len());
        for (row, v) in input.into_iter().enumerate() {
            out.push(match v {
                None => None,
                Some(v) if v.len() < d => {
                    return Err(DataFusionError::Execution(format!(
                        "truncate_dim: the vector in row {row} has {} dimensions, fewer than {d}",
                        v.len()
                    )));
                }
                Some(v) => Some(normalized(&v[..d]).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "truncate_dim: the first {d} dimensions in row {row} are all zero"
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
