//! vlmdb's scalar SQL functions, one per file, each with the documentation `\df NAME` shows. Vector arguments are
//! read through one helper ([`vectors`]) that accepts any list of floats (`List`, `LargeList`, `FixedSizeList` of
//! `Float32`/`Float64`), so embedding columns and `[0.1, 0.2]` literals both work; image functions read any binary
//! column through [`images`].

pub mod cosine_similarity;
pub mod dot_product;
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
        ScalarUDF::from(thumbnail::Thumbnail::new()),
    ]
}
