//! The shared implementation of `embed_text` and `embed_image`: an async scalar function (DataFusion evaluates it
//! batch by batch outside the expression evaluator) that loads the model once per process, looks every distinct
//! input up in `model_cache`, computes the misses in batches, and returns L2-normalised vectors.

use std::sync::Arc;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use super::images::check_binary;
use super::vectors::{vector_array, vector_type};
use crate::error::Error;
use crate::inference::cache::{Input, InputColumn, embed};
use crate::models::{DEFAULT_BATCH, DeviceChoice, Modality};
use crate::store::Store;

/// `embed_text` or `embed_image`.
#[derive(Debug)]
pub struct EmbedFunction {
    name: &'static str,
    modality: Modality,
    store: Option<Store>,
    device: DeviceChoice,
    signature: Signature,
    doc: &'static Documentation,
}

impl PartialEq for EmbedFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.device == other.device
    }
}

impl Eq for EmbedFunction {}

impl std::hash::Hash for EmbedFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.device.hash(state);
    }
}

impl EmbedFunction {
    /// The function as a UDF: results are cached in `store`'s `model_cache` (when given), models run on `device`.
    pub fn udf(
        name: &'static str,
        modality: Modality,
        doc: &'static Documentation,
        store: Option<Store>,
        device: DeviceChoice,
    ) -> ScalarUDF {
        let function = EmbedFunction {
            name,
            modality,
            store,
            device,
            signature: Signature::any(2, Volatility::Immutable),
            doc,
        };
        AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()
    }
}

impl ScalarUDFImpl for EmbedFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !matches!(
            args[0],
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return Err(DataFusionError::Plan(format!(
                "{}: argument 1 must be the model name (text), got {}",
                self.name, args[0]
            )));
        }
        match self.modality {
            Modality::Image => check_binary(self.name, 1, &args[1])?,
            Modality::Text => {
                if !matches!(
                    args[1],
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
                ) {
                    return Err(DataFusionError::Plan(format!(
                        "{}: argument 2 must be text, got {}",
                        self.name, args[1]
                    )));
                }
            }
        }
        Ok(vector_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} is evaluated asynchronously",
            self.name
        )))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(self.doc)
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for EmbedFunction {
    fn ideal_batch_size(&self) -> Option<usize> {
        Some(DEFAULT_BATCH * 16)
    }

    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let spec = super::text_constant(self.name, 1, "the model", &args.args[0])?;
        let model = crate::inference::load_model(self.store.as_ref(), &spec, self.device)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let input = args.args[1].to_array(args.number_rows)?;
        let column = InputColumn::new(self.modality, &input)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.finish(&model, column.inputs()).await
    }
}

impl EmbedFunction {
    async fn finish(
        &self,
        model: &Arc<crate::models::Model>,
        inputs: Vec<Option<Input<'_>>>,
    ) -> Result<ColumnarValue> {
        if !model.supports(self.modality) {
            return Err(DataFusionError::Execution(format!(
                "{}: model {} ({}) has no {} tower",
                self.name,
                model.files.spec,
                model.family,
                match self.modality {
                    Modality::Text => "text",
                    Modality::Image => "image",
                }
            )));
        }
        let (vectors, _) = embed(
            self.store.as_ref(),
            model,
            self.modality,
            &inputs,
            DEFAULT_BATCH,
        )
        .await
        .map_err(|e| match e {
            Error::ModelInput { input, message, .. } => {
                DataFusionError::Execution(format!("{}: row {input}: {message}", self.name))
            }
            other => DataFusionError::External(Box::new(other)),
        })?;
        Ok(ColumnarValue::Array(vector_array(vectors)))
    }
}
