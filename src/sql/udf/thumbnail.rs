//! `thumbnail(image, px)`: a PNG no larger than px×px (aspect kept), for contact sheets and quick looks.

use std::io::Cursor;
use std::sync::{Arc, LazyLock};

use arrow::array::LargeBinaryArray;
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::images::{DOC_SECTION, check_binary, image_bytes, row_bytes, unreadable};
use super::integer_constant;
use super::vectors::columnar;
use crate::image::decode;

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "A PNG thumbnail that fits in px × px, keeping the aspect ratio (images already that small are re-encoded \
         at their size). Decoding uses the same limits as ingest, so a decompression bomb is an error naming its row.",
        "thumbnail(image, px)",
    )
    .with_argument("image", "Image bytes, e.g. images.data.")
    .with_argument("px", "The largest side of the thumbnail in pixels (a positive integer constant, at most 4096).")
    .with_sql_example(
        "> SELECT image_size(thumbnail(data, 32))['width'] AS w FROM images LIMIT 1;\n+----+\n| w  |\n+----+\n| 32 |\n+----+",
    )
    .build()
});

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Thumbnail {
    signature: Signature,
}

impl Thumbnail {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for Thumbnail {
    fn default() -> Self {
        Self::new()
    }
}

/// `px` as a side length from 1 to 4096, the same for every row (a constant).
fn side(arg: &ColumnarValue) -> Result<u32> {
    integer_constant(arg)
        .and_then(|px| u32::try_from(px).ok())
        .filter(|px| (1..=4096).contains(px))
        .ok_or_else(|| {
            DataFusionError::Execution(
                "thumbnail: px must be an integer constant from 1 to 4096".into(),
            )
        })
}

impl ScalarUDFImpl for Thumbnail {
    fn name(&self) -> &str {
        "thumbnail"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_binary(self.name(), 0, &args[0])?;
        if !args[1].is_integer() {
            return Err(DataFusionError::Plan(format!(
                "thumbnail: argument 2 must be an integer, got {}",
                args[1]
            )));
        }
        Ok(DataType::LargeBinary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let px = side(&args.args[1])?;
        let bytes = image_bytes(&args.args[0], args.number_rows)?;
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let Some(data) = row_bytes(&bytes, row) else {
                out.push(None);
                continue;
            };
            let (image, _) =
                decode(data).map_err(|reason| unreadable(self.name(), row, &reason))?;
            let mut png = Cursor::new(Vec::new());
            image
                .thumbnail(px, px)
                .write_to(&mut png, image::ImageFormat::Png)
                .map_err(|e| unreadable(self.name(), row, &e.to_string()))?;
            out.push(Some(png.into_inner()));
        }
        let array = LargeBinaryArray::from_iter(out.iter().map(|o| o.as_deref()));
        Ok(columnar(Arc::new(array), &args.args))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}
