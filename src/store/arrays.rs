//! Building the Arrow columns of rows to write: one text repeated down a column, a vector column from flat
//! values, and a column of text lists.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, ListBuilder, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field};

use crate::error::Result;

/// A text column of `n` rows, each `value`.
pub fn repeated(value: &str, n: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(value, n)))
}

/// A `list<utf8>` column: one list per row, NULL where a row has none (e.g. pairs' candidate sets).
pub fn text_lists<I, L, S>(rows: I) -> ArrayRef
where
    I: IntoIterator<Item = Option<L>>,
    L: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut lists = ListBuilder::new(StringBuilder::new());
    for row in rows {
        match row {
            Some(items) => {
                for item in items {
                    lists.values().append_value(item);
                }
                lists.append(true);
            }
            None => lists.append(false),
        }
    }
    Arc::new(lists.finish())
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
