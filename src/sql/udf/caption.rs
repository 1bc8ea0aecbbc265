//! `caption(model, image [, prompt [, max_new_tokens]])`: a BLIP or LLaVA model's greedy caption of an image given
//! as bytes.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::images::{DOC_SECTION, check_binary, image_bytes, row_bytes};
use super::text_constant;
use crate::error::Error;
use crate::models::{DeviceChoice, load_captioner};
use crate::store::Store;

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The greedy caption of an image by a captioning model, as transformers' generate() writes it: BLIP \
         (BlipForConditionalGeneration; a prompt is the prefix the caption starts with, \"an engraving depicting …\") \
         or LLaVA-1.5 (LlavaForConditionalGeneration; the prompt is the instruction in llava-1.5's \"USER: <image>\\n… \
         ASSISTANT:\" format, default \"Describe the image in one sentence.\", and the caption is the answer). At \
         most max_new_tokens new tokens (the model's generation_config.json, else 20), special tokens skipped. The \
         model is loaded once per process and captions are cached in model_cache by (model, revision, \
         preprocessing, prompt, token limit, sha256 of the bytes). NULL in, NULL out; bytes that are not an image \
         are an error naming the row.",
        "caption(model, image [, prompt [, max_new_tokens]])",
    )
    .with_argument(
        "model",
        "A text constant: hf:org/repo[@rev] (e.g. hf:Salesforce/blip-image-captioning-base, \
         hf:llava-hf/llava-1.5-7b-hf) or a local BLIP or LLaVA model directory.",
    )
    .with_argument("image", "Image bytes, e.g. images.data.")
    .with_argument(
        "prompt",
        "Optional text constant: BLIP's conditional prefix, LLaVA's instruction (NULL: none / the default).",
    )
    .with_argument(
        "max_new_tokens",
        "Optional positive integer constant: at most this many new tokens (default: the model's own).",
    )
    .with_sql_example(
        "> SELECT image_id, caption('fixtures/models/tiny-blip', data, 'an engraving depicting') AS text\n  FROM images LIMIT 3;",
    )
    .build()
});

/// The doc block `\\df` shows.
pub fn documentation() -> &'static Documentation {
    &DOC
}

#[derive(Debug)]
struct Caption {
    store: Option<Store>,
    device: DeviceChoice,
    signature: Signature,
}

impl PartialEq for Caption {
    fn eq(&self, other: &Self) -> bool {
        self.device == other.device
    }
}

impl Eq for Caption {}

impl std::hash::Hash for Caption {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "caption".hash(state);
        self.device.hash(state);
    }
}

/// The function, caching in `store` and running the model on `device`.
pub fn udf(store: Option<Store>, device: DeviceChoice) -> ScalarUDF {
    let function = Caption {
        store,
        device,
        signature: Signature::one_of(
            vec![
                datafusion::logical_expr::TypeSignature::Any(2),
                datafusion::logical_expr::TypeSignature::Any(3),
                datafusion::logical_expr::TypeSignature::Any(4),
            ],
            Volatility::Immutable,
        ),
    };
    AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()
}

impl ScalarUDFImpl for Caption {
    fn name(&self) -> &str {
        "caption"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        check_binary("caption", 1, &args[1])?;
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(
            "caption is evaluated asynchronously".into(),
        ))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for Caption {
    fn ideal_batch_size(&self) -> Option<usize> {
        Some(64)
    }

    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let spec = text_constant("caption", 1, "the model", &args.args[0])?;
        let prompt = match args.args.get(2) {
            Some(arg) if !is_null(arg) => Some(text_constant("caption", 3, "the prompt", arg)?),
            _ => None,
        };
        let max_new_tokens = match args.args.get(3) {
            Some(arg) => match super::integer_constant(arg) {
                Some(n) if n >= 1 => Some(n as usize),
                _ => {
                    return Err(DataFusionError::Execution(
                        "caption: max_new_tokens (argument 4) must be a positive integer constant"
                            .into(),
                    ));
                }
            },
            None => None,
        };
        let captioner = load_captioner(&spec, self.device)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let array = image_bytes(&args.args[1], args.number_rows)?;
        let inputs: Vec<Option<&[u8]>> = (0..args.number_rows)
            .map(|row| row_bytes(&array, row))
            .collect();
        let texts = crate::inference::captions::captions(
            self.store.as_ref(),
            &captioner,
            &inputs,
            prompt.as_deref(),
            max_new_tokens,
        )
        .await
        .map_err(|e| match e {
            Error::ModelInput { input, message, .. } => {
                DataFusionError::Execution(format!("caption: row {input}: {message}"))
            }
            other => DataFusionError::External(Box::new(other)),
        })?;
        let out: ArrayRef = Arc::new(StringArray::from(texts));
        Ok(ColumnarValue::Array(out))
    }
}

/// A NULL constant argument (an optional argument left out in the middle).
fn is_null(arg: &ColumnarValue) -> bool {
    matches!(arg, ColumnarValue::Scalar(v) if v.is_null())
}
