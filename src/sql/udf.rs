//! vlmdb's scalar SQL functions, one per file, each with the documentation `\df NAME` shows. Vector arguments are
//! read through one helper ([`vectors`]) that accepts any list of floats (`List`, `LargeList`, `FixedSizeList` of
//! `Float32`/`Float64`), so embedding columns and `[0.1, 0.2]` literals both work; image functions read any binary
//! column through [`images`].

pub mod bounded;
pub mod byte_length;
pub mod caption;
pub mod cosine_similarity;
pub mod dot_product;
pub mod embed_image;
pub mod embed_text;
pub mod embedding;
pub mod generate_image;
pub mod image_size;
pub mod images;
pub mod l2_distance;
pub mod l2_normalize;
pub mod thumbnail;
pub mod truncate_dim;
pub mod vectors;

use datafusion::logical_expr::ScalarUDF;

/// Every scalar function vlmdb adds to a session.
pub fn functions() -> Vec<ScalarUDF> {
    vec![
        cosine_similarity::udf(),
        dot_product::udf(),
        l2_distance::udf(),
        ScalarUDF::from(l2_normalize::L2Normalize::new()),
        ScalarUDF::from(truncate_dim::TruncateDim::new()),
        ScalarUDF::from(image_size::ImageSize::new()),
        ScalarUDF::from(byte_length::ByteLength::new()),
        ScalarUDF::from(thumbnail::Thumbnail::new()),
    ]
}

/// The docs of vlmdb's async functions (`embed_text`, `embed_image`, `caption`, `generate_image`): DataFusion's `AsyncScalarUDF` wrapper does
/// not pass its inner function's documentation on, so `\df` asks here when a scalar function has none.
pub fn async_documentation(name: &str) -> Option<&'static datafusion::logical_expr::Documentation> {
    match name {
        "embed_text" => Some(embed_text::documentation()),
        "embed_image" => Some(embed_image::documentation()),
        "caption" => Some(caption::documentation()),
        "generate_image" => Some(generate_image::documentation()),
        _ => None,
    }
}

/// An integer argument given as a constant (the same for every row), e.g. `truncate_dim`'s `d`.
pub fn integer_constant(arg: &datafusion::logical_expr::ColumnarValue) -> Option<i64> {
    use datafusion::scalar::ScalarValue;
    let datafusion::logical_expr::ColumnarValue::Scalar(scalar) = arg else {
        return None;
    };
    match scalar {
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt8(Some(v)) => Some(i64::from(*v)),
        _ => None,
    }
}

/// A text argument given as a constant, e.g. a model name: argument `position` (1-based) of `function`.
pub fn text_constant(
    function: &str,
    position: usize,
    what: &str,
    arg: &datafusion::logical_expr::ColumnarValue,
) -> datafusion::error::Result<String> {
    use datafusion::scalar::ScalarValue;
    match arg {
        datafusion::logical_expr::ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Ok(s.clone()),
        _ => Err(datafusion::error::DataFusionError::Execution(format!(
            "{function}: {what} (argument {position}) must be a text constant"
        ))),
    }
}

/// A number argument given as a constant (integer or float).
pub fn float_constant(arg: &datafusion::logical_expr::ColumnarValue) -> Option<f64> {
    use datafusion::scalar::ScalarValue;
    match arg {
        datafusion::logical_expr::ColumnarValue::Scalar(ScalarValue::Float64(Some(v))) => Some(*v),
        datafusion::logical_expr::ColumnarValue::Scalar(ScalarValue::Float32(Some(v))) => {
            Some(f64::from(*v))
        }
        other => integer_constant(other).map(|v| v as f64),
    }
}
