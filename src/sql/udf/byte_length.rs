//! `byte_length(bytes)`: the size in bytes of a binary value, such as an image's `data` (DataFusion 54's
//! `length` and `octet_length` take text only, and `length(data)` fails with "non UTF-8 data").

use std::sync::{Arc, LazyLock};

use arrow::array::Int64Array;
use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::images::{DOC_SECTION, check_binary, image_bytes, row_bytes};
use super::vectors::columnar;

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The size in bytes of a binary value (an image's stored file, a thumbnail). NULL for NULL.",
        "byte_length(bytes)",
    )
    .with_argument("bytes", "A binary value, e.g. images.data.")
    .with_sql_example(
        "> SELECT format, sum(byte_length(data)) AS bytes FROM images GROUP BY format ORDER BY format DESC;\n\
         +--------+-------+\n| format | bytes |\n+--------+-------+\n| png    | 3749  |\n| jpeg   | 13197 |\n\
         +--------+-------+",
    )
    .build()
});

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ByteLength {
    signature: Signature,
}

impl ByteLength {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for ByteLength {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ByteLength {
    fn name(&self) -> &str {
        "byte_length"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_binary(self.name(), 0, &args[0])?;
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = image_bytes(&args.args[0], args.number_rows)?;
        let lengths: Int64Array = (0..args.number_rows)
            .map(|row| row_bytes(&bytes, row).map(|b| b.len() as i64))
            .collect();
        Ok(columnar(Arc::new(lengths), &args.args))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
