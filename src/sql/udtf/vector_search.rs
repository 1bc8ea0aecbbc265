//! `vector_search(space, query, k [, dataset [, split [, kind]]])`: the k items of a space nearest to one query.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Documentation, Expr};
use datafusion::scalar::ScalarValue;

use super::{Args, Computed, Context, DOC_SECTION, constant, df};
use crate::error::{Error, Result};
use crate::eval::space::{Filter, resolve};
use crate::models::cache::Input;
use crate::models::load_shared;
use crate::search::{embed_one, nearest};

const SIGNATURE: &str = "vector_search(space, query, k [, dataset [, split [, kind]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The k items of a space nearest to one query vector by cosine similarity, exact (the vector index is \
         bypassed). The dataset/split/kind filter is applied before ranking, so k rows come back whenever k items \
         match. The query is a vector literal ([0.1, 0.2, …]), any constant vector expression, or \
         embed_text(model, 'text') / embed_image(model, bytes) with constant arguments (embedded once, through \
         the model cache). A NULL query gives no rows; a query of another width is an error naming both widths. \
         Rows: rank, item_id, kind, dataset, split, score; ties by item id.",
        SIGNATURE,
    )
    .with_argument("space", "A space: emb_ table, space name, or the model that made it.")
    .with_argument("query", "The query vector, or embed_text(...) / embed_image(...).")
    .with_argument("k", "How many items.")
    .with_argument("dataset", "Only items of this dataset (NULL: all).")
    .with_argument("split", "Only items of this split (NULL: all).")
    .with_argument("kind", "Only items of this kind: image, caption, pair_text, text (NULL: all).")
    .with_sql_example(
        "> SELECT item_id, score FROM vector_search('minilm', embed_text('minilm', 'a red square'), 5, 'shapes', NULL, 'caption');",
    )
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("rank", DataType::Int64, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("dataset", DataType::Utf8, true),
        Field::new("split", DataType::Utf8, true),
        Field::new("score", DataType::Float32, false),
    ]))
}

/// The query, as far as planning can take it.
#[derive(Debug, Clone)]
enum Query {
    Null,
    /// A scalar subquery, run when the table is scanned.
    Subquery,
    Vector(Vec<f32>),
    Text {
        model: String,
        text: String,
    },
    Image {
        model: String,
        bytes: Vec<u8>,
    },
}

fn vector(value: &ScalarValue) -> std::result::Result<Option<Vec<f32>>, String> {
    let list = match value {
        v if v.is_null() => return Ok(None),
        ScalarValue::List(a) => a.value(0),
        ScalarValue::LargeList(a) => a.value(0),
        ScalarValue::FixedSizeList(a) => a.value(0),
        other => {
            return Err(format!(
                "expected a vector (a list of numbers), got {other}"
            ));
        }
    };
    let values = arrow::compute::cast(&list, &DataType::Float32).map_err(|e| e.to_string())?;
    let values = values.as_primitive::<Float32Type>();
    if values.null_count() > 0 {
        return Err("the query vector has a NULL element".into());
    }
    Ok(Some(values.values().to_vec()))
}

fn query(args: &Args, session_expr: &Expr) -> Result<Query> {
    if let Expr::ScalarSubquery(_) = session_expr {
        return Ok(Query::Subquery);
    }
    if let Expr::ScalarFunction(f) = session_expr {
        let name = f.func.name();
        if (name == "embed_text" || name == "embed_image") && f.args.len() == 2 {
            let inner = |i: usize, what: &str| {
                constant_of(args, &f.args[i]).map_err(|e| {
                    Error::Usage(format!(
                        "vector_search: argument query: {name}'s {what} {e}"
                    ))
                })
            };
            let model = match inner(0, "model")? {
                ScalarValue::Utf8(Some(m))
                | ScalarValue::LargeUtf8(Some(m))
                | ScalarValue::Utf8View(Some(m)) => m,
                other => {
                    return Err(Error::Usage(format!(
                        "vector_search: argument query: {name}'s model must be text, got {other}"
                    )));
                }
            };
            let input = inner(1, "input")?;
            if input.is_null() {
                return Ok(Query::Null);
            }
            return match (name, input) {
                (
                    "embed_text",
                    ScalarValue::Utf8(Some(t))
                    | ScalarValue::LargeUtf8(Some(t))
                    | ScalarValue::Utf8View(Some(t)),
                ) => Ok(Query::Text { model, text: t }),
                (
                    "embed_image",
                    ScalarValue::Binary(Some(b))
                    | ScalarValue::LargeBinary(Some(b))
                    | ScalarValue::BinaryView(Some(b)),
                ) => Ok(Query::Image { model, bytes: b }),
                (_, other) => Err(Error::Usage(format!(
                    "vector_search: argument query: {name} got {other}, which it cannot embed"
                ))),
            };
        }
    }
    let value = args.scalar(1, "query")?;
    Ok(
        match vector(&value)
            .map_err(|e| Error::Usage(format!("vector_search: argument query: {e}")))?
        {
            Some(v) => Query::Vector(v),
            None => Query::Null,
        },
    )
}

fn constant_of(args: &Args, expr: &Expr) -> std::result::Result<ScalarValue, String> {
    constant(args.session(), expr)
}

#[derive(Debug)]
pub struct VectorSearch(pub Context);

impl TableFunctionImpl for VectorSearch {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("vector_search", SIGNATURE, &args, 3, 6).map_err(df)?;
        let space = args.required_text(0, "space").map_err(df)?;
        let query_expr = args
            .expr(1)
            .cloned()
            .unwrap_or(Expr::Literal(ScalarValue::Null, None));
        let query = query(&args, &query_expr).map_err(df)?;
        let k = args.required_count(2, "k").map_err(df)?;
        let filter = Filter {
            dataset: args.text(3, "dataset").map_err(df)?,
            split: args.text(4, "split").map_err(df)?,
            kind: args.text(5, "kind").map_err(df)?,
        };
        let context = self.0.clone();
        let compute: super::Compute = Box::new(move |subquery_value| {
            let context = context.clone();
            let (space, query, filter) = (space.clone(), query.clone(), filter.clone());
            Box::pin(async move {
                let store = &context.store;
                let table = resolve(store, &space).await?;
                let query = match (query, subquery_value) {
                    (Query::Subquery, Some(value)) => match vector(&value)
                        .map_err(|e| Error::Usage(format!("vector_search: argument query: {e}")))?
                    {
                        Some(v) => Query::Vector(v),
                        None => Query::Null,
                    },
                    (query, _) => query,
                };
                let vector = match query {
                    Query::Null | Query::Subquery => return Ok(RecordBatch::new_empty(schema())),
                    Query::Vector(v) => v,
                    Query::Text { model, text } => {
                        let m = load_shared(&model, context.device).await?;
                        embed_one(store, &m, &model, Input::Text(&text)).await?
                    }
                    Query::Image { model, bytes } => {
                        let m = load_shared(&model, context.device).await?;
                        embed_one(store, &m, &model, Input::Image(&bytes)).await?
                    }
                };
                if k == 0 {
                    return Ok(RecordBatch::new_empty(schema()));
                }
                nearest(store, &table, vector, k, &filter).await
            })
        });
        Ok(match query_expr {
            Expr::ScalarSubquery(subquery) => {
                Computed::with_subquery(schema(), subquery.subquery.as_ref().clone(), compute)
            }
            _ => Computed::new(schema(), compute),
        })
    }
}
