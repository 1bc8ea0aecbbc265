//! `embed_image(model, image)`: the model's L2-normalised embedding of an image given as bytes.

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use super::embedding::EmbedFunction;
use super::vectors::DOC_SECTION;
use crate::models::{DeviceChoice, Modality};
use crate::store::Store;

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The L2-normalised embedding of an image by a model's image tower (CLIP or SigLIP), with the model's own \
         preprocessing. The image is the encoded bytes (PNG, JPEG, WebP, …), e.g. images.data. The model is loaded \
         once per process and results are cached in model_cache by (model, revision, preprocessing, sha256 of the \
         bytes). NULL in, NULL out; bytes that are not an image are an error naming the row.",
        "embed_image(model, image)",
    )
    .with_argument(
        "model",
        "A text constant: an alias (clip-vit-b32, clip-vit-l14, laion-vit-b32, laion-vit-h14, siglip-b16), hf:org/repo[@rev], or a local \
         Hugging Face model directory, or head:<run_id> — a `vlmdb train` run's best image head over its base \
         model.",
    )
    .with_argument("image", "Image bytes, e.g. images.data.")
    .with_sql_example(
        "> SELECT i.image_id, cosine_similarity(embed_image('clip-vit-b32', i.data), embed_text('clip-vit-b32', 'a red circle')) AS s\n  FROM images i ORDER BY s DESC LIMIT 3;",
    )
    .build()
});

/// The doc block `\\df` shows.
pub fn documentation() -> &'static Documentation {
    &DOC
}

/// The function, caching in `store` and running models on `device`.
pub fn udf(store: Option<Store>, device: DeviceChoice) -> ScalarUDF {
    EmbedFunction::udf("embed_image", Modality::Image, &DOC, store, device)
}
