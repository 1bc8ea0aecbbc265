//! The shared argument handling of the image functions: image bytes row by row from any binary column.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, DocSection};

/// The `\df` section of the image functions.
pub const DOC_SECTION: DocSection = DocSection {
    include: true,
    label: "Image Functions",
    description: Some("Functions over image bytes, such as the images.data column."),
};

/// Plan-time check that argument `position` (0-based) of `function` holds bytes.
pub fn check_binary(function: &str, position: usize, data_type: &DataType) -> Result<()> {
    match data_type {
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::Null => Ok(()),
        other => Err(DataFusionError::Plan(format!(
            "{function}: argument {} must be image bytes (a binary column such as images.data), got {other}",
            position + 1
        ))),
    }
}

/// Argument `position` as a LargeBinary array of `rows` rows.
pub fn image_bytes(arg: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = arg.to_array(rows)?;
    Ok(arrow::compute::cast(&array, &DataType::LargeBinary)?)
}

/// Row `row` of a LargeBinary array, `None` when NULL.
pub fn row_bytes(array: &ArrayRef, row: usize) -> Option<&[u8]> {
    let binary = array.as_binary::<i64>();
    binary.is_valid(row).then(|| binary.value(row))
}

/// An image that cannot be read is an error naming the function and the row.
pub fn unreadable(function: &str, row: usize, reason: &str) -> DataFusionError {
    DataFusionError::Execution(format!(
        "{function}: the image in row {row} cannot be read: {reason}"
    ))
}
