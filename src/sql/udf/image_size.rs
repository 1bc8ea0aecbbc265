//! `image_size(image)`: the width and height of image bytes, read from the header (no pixels are decoded).

use std::io::Cursor;
use std::sync::{Arc, LazyLock};

use arrow::array::{Int32Array, StructArray};
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::images::{DOC_SECTION, check_binary, image_bytes, row_bytes, unreadable};
use super::vectors::columnar;

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Width and height of an image, read from its header without decoding the pixels: a struct {width, height}. \
         NULL for NULL; an error names the row of bytes that are not an image.",
        "image_size(image)",
    )
    .with_argument("image", "Image bytes (PNG, JPEG, WebP, GIF, BMP, TIFF), e.g. images.data.")
    .with_sql_example(
        "> SELECT image_size(data)['width'] AS w, image_size(data)['height'] AS h FROM images LIMIT 1;\n\
         +----+----+\n| w  | h  |\n+----+----+\n| 64 | 48 |\n+----+----+",
    )
    .build()
});

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
    ])
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ImageSize {
    signature: Signature,
}

impl ImageSize {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for ImageSize {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ImageSize {
    fn name(&self) -> &str {
        "image_size"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_binary(self.name(), 0, &args[0])?;
        Ok(DataType::Struct(fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = image_bytes(&args.args[0], args.number_rows)?;
        let mut widths = Vec::with_capacity(args.number_rows);
        let mut heights = Vec::with_capacity(args.number_rows);
        let mut valid = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let Some(data) = row_bytes(&bytes, row) else {
                widths.push(0);
                heights.push(0);
                valid.push(false);
                continue;
            };
            let reader = image::ImageReader::new(Cursor::new(data))
                .with_guessed_format()
                .map_err(|e| unreadable(self.name(), row, &e.to_string()))?;
            let (w, h) = reader
                .into_dimensions()
                .map_err(|e| unreadable(self.name(), row, &e.to_string()))?;
            widths.push(i32::try_from(w).unwrap_or(i32::MAX));
            heights.push(i32::try_from(h).unwrap_or(i32::MAX));
            valid.push(true);
        }
        let array = StructArray::try_new(
            fields(),
            vec![
                Arc::new(Int32Array::from(widths)),
                Arc::new(Int32Array::from(heights)),
            ],
            Some(valid.into()),
        )?;
        Ok(columnar(Arc::new(array), &args.args))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
