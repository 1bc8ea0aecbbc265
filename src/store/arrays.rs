//! Building the Arrow columns of rows to write: one text repeated down a column, and a vector column from flat
//! values.

use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, StringArray};
use arrow::datatypes::{DataType, Field};

use crate::error::Result;

/// A text column of `n` rows, each `value`.
pub fn repeated(value: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(value, n)))
}

/// A vector column of `values.len() / dim` rows of width `dim` (the layout of a space's `vector` column).
pub fn vectors(values: Vec<f32>, dim: usize) -> Result<FixedSizeListArray> {
    Ok(FixedSizeListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dim as i32,
        Arc::new(Float32Array::from(values)),
        None,
    )?)
}
