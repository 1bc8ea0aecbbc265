//! `generate_image(model, prompt, seed [, steps [, guidance [, negative_prompt]]])`: a Stable Diffusion image of a
//! prompt, as PNG bytes.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, LargeBinaryBuilder};
use arrow::datatypes::{DataType, Int64Type};
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::images::DOC_SECTION;
use super::{integer_constant, text_constant};
use crate::models::diffusion::{DEFAULT_GUIDANCE, DEFAULT_STEPS, GenerateOptions};
use crate::models::{DeviceChoice, load_generator};

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "An image of a prompt by a Stable Diffusion pipeline (SD 1.x, 2.x, SDXL, SDXL-Turbo; diffusers layout), as \
         PNG bytes: the scheduler the pipeline names (Euler ancestral, as diffusers' EulerAncestralDiscreteScheduler; \
         DDIM with η = 0 for DDIMScheduler and, over the pipeline's noise schedule, for schedulers vlmdb lacks) with \
         classifier-free guidance against the negative prompt or the unconditional embeddings (SDXL-Turbo: steps \
         1, guidance 0). The initial latent and any ancestral noise come from vlmdb's RNG seeded by the row's seed, \
         so the same (model, prompt, seed, steps, guidance, negative prompt) gives identical bytes on every run and \
         another seed a different image. Size: the UNet's sample_size times the VAE's scale. NULL prompt or seed \
         in, NULL out.",
        "generate_image(model, prompt, seed [, steps [, guidance [, negative_prompt]]])",
    )
    .with_argument(
        "model",
        "A text constant: hf:org/repo[@rev] (e.g. hf:stable-diffusion-v1-5/stable-diffusion-v1-5, \
         hf:stabilityai/sdxl-turbo) or a local diffusers pipeline directory.",
    )
    .with_argument("prompt", "The text to draw, e.g. captions.text.")
    .with_argument("seed", "An integer per row: the initial latent's seed.")
    .with_argument("steps", "Optional integer constant: denoising steps (default 50).")
    .with_argument("guidance", "Optional number constant: guidance scale (default 7.5; ≤ 1 turns guidance off).")
    .with_argument(
        "negative_prompt",
        "Optional text constant: what guidance steers away from (diffusers' negative_prompt; default none).",
    )
    .with_sql_example(
        "> SELECT caption_id, generate_image('fixtures/models/tiny-sd', text, 7, 10) AS png FROM captions LIMIT 2;",
    )
    .build()
});

/// The doc block `\\df` shows.
pub fn documentation() -> &'static Documentation {
    &DOC
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct GenerateImage {
    device: DeviceChoice,
    signature: Signature,
}

/// The function, running the pipeline on `device`.
pub fn udf(device: DeviceChoice) -> ScalarUDF {
    let function = GenerateImage {
        device,
        signature: Signature::one_of(
            vec![
                TypeSignature::Any(3),
                TypeSignature::Any(4),
                TypeSignature::Any(5),
                TypeSignature::Any(6),
            ],
            Volatility::Immutable,
        ),
    };
    AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()
}

impl ScalarUDFImpl for GenerateImage {
    fn name(&self) -> &str {
        "generate_image"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !matches!(
            args[1],
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
        ) {
            return Err(DataFusionError::Plan(format!(
                "generate_image: argument 2 (the prompt) must be text, got {}",
                args[1]
            )));
        }
        if !args[2].is_integer() && args[2] != DataType::Null {
            return Err(DataFusionError::Plan(format!(
                "generate_image: argument 3 (the seed) must be an integer, got {}",
                args[2]
            )));
        }
        Ok(DataType::LargeBinary)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(
            "generate_image is evaluated asynchronously".into(),
        ))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for GenerateImage {
    fn ideal_batch_size(&self) -> Option<usize> {
        Some(16)
    }

    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let spec = text_constant("generate_image", 1, "the model", &args.args[0])?;
        let steps = match args.args.get(3) {
            Some(arg) => match integer_constant(arg) {
                Some(n) if n >= 1 => n as usize,
                _ => {
                    return Err(DataFusionError::Execution(
                        "generate_image: steps (argument 4) must be a positive integer constant"
                            .into(),
                    ));
                }
            },
            None => DEFAULT_STEPS,
        };
        let guidance = match args.args.get(4) {
            Some(arg) => super::float_constant(arg).ok_or_else(|| {
                DataFusionError::Execution(
                    "generate_image: guidance (argument 5) must be a number constant".into(),
                )
            })?,
            None => DEFAULT_GUIDANCE,
        };
        let negative_prompt = match args.args.get(5) {
            Some(arg) => Some(text_constant(
                "generate_image",
                6,
                "the negative prompt",
                arg,
            )?),
            None => None,
        };
        let options = GenerateOptions {
            steps,
            guidance,
            negative_prompt,
        };
        let generator = load_generator(&spec, self.device)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let rows = args.number_rows;
        let prompts = arrow::compute::cast(&args.args[1].to_array(rows)?, &DataType::Utf8)?;
        let seeds = arrow::compute::cast(&args.args[2].to_array(rows)?, &DataType::Int64)?;
        let jobs: Vec<Option<(String, u64)>> = (0..rows)
            .map(|r| {
                let prompts = prompts.as_string::<i32>();
                let seeds = seeds.as_primitive::<Int64Type>();
                (prompts.is_valid(r) && seeds.is_valid(r))
                    .then(|| (prompts.value(r).to_string(), seeds.value(r) as u64))
            })
            .collect();
        let images = tokio::task::spawn_blocking(move || {
            jobs.into_iter()
                .enumerate()
                .map(|(row, job)| match job {
                    Some((prompt, seed)) => generator
                        .generate(&prompt, seed, &options)
                        .map(Some)
                        .map_err(|e| {
                            DataFusionError::Execution(format!("generate_image: row {row}: {e}"))
                        }),
                    None => Ok(None),
                })
                .collect::<Result<Vec<Option<Vec<u8>>>>>()
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("generate_image failed: {e}")))??;
        let mut builder = LargeBinaryBuilder::new();
        for image in images {
            builder.append_option(image);
        }
        let out: ArrayRef = Arc::new(builder.finish());
        Ok(ColumnarValue::Array(out))
    }
}
