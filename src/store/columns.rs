//! Reading the columns of result batches (SQL results, table scans) as plain Rust values, whatever the Arrow type
//! they came in (text of any width, integers of any width).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use crate::error::{Error, Result};

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<arrow::array::ArrayRef> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| Error::SchemaMismatch {
            table: "a query result".into(),
            message: format!("no column '{name}'"),
        })?;
    Ok(arrow::compute::cast(column, to)?)
}

/// Text values of column `name` (cast to text).
pub fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let column = column(batch, name, &DataType::Utf8)?;
    let column = column.as_string::<i32>();
    Ok((0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i).to_string()))
        .collect())
}

/// Integer values of column `name` (cast to 64-bit integers).
pub fn integers(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>> {
    let column = column(batch, name, &DataType::Int64)?;
    let column = column.as_primitive::<Int64Type>();
    Ok((0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i)))
        .collect())
}

/// Float values of column `name` (cast to 64-bit floats).
pub fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let column = column(batch, name, &DataType::Float64)?;
    let column = column.as_primitive::<Float64Type>();
    Ok((0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i)))
        .collect())
}

/// Binary values of column `name` (image bytes of any binary width).
pub fn binaries(batch: &RecordBatch, name: &str) -> Result<Vec<Option<Vec<u8>>>> {
    let column = column(batch, name, &DataType::LargeBinary)?;
    let column = column.as_binary::<i64>();
    Ok((0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i).to_vec()))
        .collect())
}
