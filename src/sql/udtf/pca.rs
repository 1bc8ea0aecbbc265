//! `pca(space, components [, dataset [, split [, kind]]])`: every item's coordinates on the principal components.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;

use super::{Args, Computed, Context, DOC_SECTION, df};
use crate::cluster::pca::{Pca, pca};
use crate::eval::space::Filter;

const SIGNATURE: &str =
    "pca(space, components [, dataset [, split [, kind [, run [, iteration]]]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Principal component analysis of a space's items, as scikit-learn's PCA: centred data, covariance from an \
         f64 Candle product, components by decreasing variance with the largest loading positive. Rows: item_id, \
         pc1 … pcN (coordinates). pca_variance() gives each component's explained variance.",
        SIGNATURE,
    )
    .with_argument("space", "A space: emb_ table, space name, or the model that made it.")
    .with_argument("components", "How many components (at most the width and the item count).")
    .with_argument("dataset", "Only items of this dataset (NULL: all).")
    .with_argument("split", "Only items of this split (NULL: all).")
    .with_argument("kind", "The kind of item (default image).")
    .with_argument("run", "Only the items this run wrote (a loop run: its hop images and captions, and the dataset images it started from; NULL: all).")
    .with_argument("iteration", "Only the items of this iteration (a loop hop; 0: the starting images and their captions; NULL: all).")
    .with_sql_example("> SELECT item_id, pc1, pc2 FROM pca('tiny_clip_c94a344', 2, 'shapes') LIMIT 3;")
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

/// The arguments both PCA functions take.
/// The most components asked of `pca`/`pca_variance`: wider than any embedding space vlmdb makes.
pub const MAX_COMPONENTS: usize = 16_384;

#[derive(Debug, Clone)]
pub struct PcaCall {
    pub space: String,
    pub components: usize,
    pub filter: Filter,
}

impl PcaCall {
    pub fn parse(args: &Args) -> crate::Result<PcaCall> {
        let components = args.required_count(1, "components")?;
        // The result has a column per component, made before the space is read: bound it by the widest space.
        if components == 0 || components > MAX_COMPONENTS {
            return Err(crate::Error::Usage(format!(
                "pca: components must be between 1 and {MAX_COMPONENTS} (and at most the space's width), got {components}"
            )));
        }
        Ok(PcaCall {
            space: args.required_text(0, "space")?,
            components,
            filter: args.filter_with_lineage(2, Some("image"), 5)?,
        })
    }

    /// Load the items and fit: (item ids, the fit).
    pub async fn fit(&self, context: &Context) -> crate::Result<(Vec<String>, Pca)> {
        let (_, data) = context.load_named(&self.space, &self.filter).await?;
        let fitted = pca(&data, self.components, &context.device.device()?)?;
        Ok((data.ids, fitted))
    }
}

fn schema(components: usize) -> SchemaRef {
    let mut fields = vec![Field::new("item_id", DataType::Utf8, false)];
    fields.extend((1..=components).map(|c| Field::new(format!("pc{c}"), DataType::Float64, false)));
    Arc::new(Schema::new(fields))
}

#[derive(Debug)]
pub struct PcaFunction(pub Context);

impl TableFunctionImpl for PcaFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("pca", SIGNATURE, &args, 2, 7).map_err(df)?;
        let call = PcaCall::parse(&args).map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(call.components),
            Box::new(move |_| {
                let (context, call) = (context.clone(), call.clone());
                Box::pin(async move {
                    let (ids, fitted) = call.fit(&context).await?;
                    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
                        ids.iter().map(String::as_str),
                    ))];
                    for c in 0..call.components {
                        columns.push(Arc::new(Float64Array::from_iter_values(
                            fitted.coords.iter().map(|row| row[c]),
                        )));
                    }
                    Ok(arrow::array::RecordBatch::try_new(
                        schema(call.components),
                        columns,
                    )?)
                })
            }),
        ))
    }
}
