//! `embed_text(model, text)`: the model's L2-normalised embedding of a text.

use std::sync::LazyLock;

use datafusion::logical_expr::{Documentation, ScalarUDF};

use super::embedding::EmbedFunction;
use super::vectors::DOC_SECTION;
use crate::models::{DeviceChoice, Modality};
use crate::store::Store;

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The L2-normalised embedding of a text by a model (Candle, on the session's device). The model is loaded \
         once per process; texts are embedded in batches of similar length, and every result is cached in \
         model_cache by (model, revision, preprocessing, sha256 of the text), so the same text is never computed \
         twice, in this process or another. NULL in, NULL out.",
        "embed_text(model, text)",
    )
    .with_argument(
        "model",
        "A text constant: an alias (minilm, clip-vit-b32, clip-vit-l14, laion-vit-b32, laion-vit-h14, siglip-b16), hf:org/repo[@rev], or a \
         local Hugging Face model directory, or head:<run_id> — a `vlmdb train` run's best heads over \
         its base model (the base space's model, output normalised, then projected).",
    )
    .with_argument("text", "The text, e.g. captions.text.")
    .with_sql_example(
        "> SELECT caption_id, cosine_similarity(embed_text('minilm', text), embed_text('minilm', 'a red square')) AS s\n  FROM captions ORDER BY s DESC LIMIT 3;",
    )
    .build()
});

/// The doc block `\\df` shows.
pub fn documentation() -> &'static Documentation {
    &DOC
}

/// The function, caching in `store` and running models on `device`.
pub fn udf(store: Option<Store>, device: DeviceChoice) -> ScalarUDF {
    EmbedFunction::udf("embed_text", Modality::Text, &DOC, store, device)
}
