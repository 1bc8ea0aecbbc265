//! `vector_search(space, query, k [, dataset [, split [, kind]]])`: the k items of a space nearest to one query.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Documentation, Expr, LogicalPlan};
use datafusion::scalar::ScalarValue;

use super::{Args, Computed, Context, DOC_SECTION, constant, df};
use crate::error::{Error, Result};
use crate::eval::space::resolve;
use crate::inference::cache::Input;

use crate::eval::ann::StoredIndex;
use crate::eval::nearest::{Search, nearest};
use crate::inference::embed_one;

const SIGNATURE: &str = "vector_search(space, query, k [, dataset [, split [, kind [, method]]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The k items of a space nearest to one query vector by cosine similarity, exact (the vector index is \
         bypassed) unless method is 'ann'. The dataset/split/kind filter is applied before ranking, so k rows come back whenever k items \
         match. The query is a vector literal ([0.1, 0.2, …]), any constant vector expression, a scalar subquery \
         ((SELECT vector FROM vectors('space') WHERE item_id = 'x')), or embed_text(model, text) / \
         embed_image(model, bytes) whose input is a constant or a scalar subquery ((SELECT data FROM images \
         WHERE image_id = 'x')), embedded once, through the model cache. A NULL query gives no rows; a query of another width is an error naming both widths. \
         Rows: rank, item_id, kind, dataset, split, score; ties by item id.",
        SIGNATURE,
    )
    .with_argument("space", "A space: emb_ table, space name, or the model that made it.")
    .with_argument("query", "The query vector, or embed_text(...) / embed_image(...).")
    .with_argument("k", "How many items.")
    .with_argument("dataset", "Only items of this dataset (NULL: all).")
    .with_argument("split", "Only items of this split (NULL: all).")
    .with_argument("kind", "Only items of this kind: image, caption, pair_text, text (NULL: all).")
    .with_argument(
        "method",
        "'exact' (default) or 'ann': through the space's stored vector index (`vlmdb index`; an error when it \
         has none), rows written since it was built searched exactly beside it; stderr names the index and the \
         recall@10 its build measured.",
    )
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
    /// The value of a scalar subquery, run when the table is scanned, read by `embed` (or as a vector).
    Deferred {
        embed: Option<Embed>,
    },
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

/// `embed_text(model, …)` or `embed_image(model, …)`.
#[derive(Debug, Clone)]
struct Embed {
    function: String,
    model: String,
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

fn bad(message: impl std::fmt::Display) -> Error {
    Error::Usage(format!("vector_search: argument query: {message}"))
}

/// What a query value means: a vector, or the input of `embed`.
fn interpret(embed: Option<&Embed>, value: ScalarValue) -> Result<Query> {
    if value.is_null() {
        return Ok(Query::Null);
    }
    let Some(embed) = embed else {
        return Ok(vector(&value)
            .map_err(bad)?
            .map_or(Query::Null, Query::Vector));
    };
    let model = embed.model.clone();
    match (embed.function.as_str(), value) {
        (
            "embed_text",
            ScalarValue::Utf8(Some(text))
            | ScalarValue::LargeUtf8(Some(text))
            | ScalarValue::Utf8View(Some(text)),
        ) => Ok(Query::Text { model, text }),
        (
            "embed_image",
            ScalarValue::Binary(Some(bytes))
            | ScalarValue::LargeBinary(Some(bytes))
            | ScalarValue::BinaryView(Some(bytes)),
        ) => Ok(Query::Image { model, bytes }),
        (function, other) => Err(bad(format!(
            "{function} got {other}, which it cannot embed"
        ))),
    }
}

/// The query, and the scalar subquery whose value it waits for, if any.
fn query(args: &Args, expr: &Expr) -> Result<(Query, Option<LogicalPlan>)> {
    if let Expr::ScalarSubquery(sq) = expr {
        return Ok((
            Query::Deferred { embed: None },
            Some(sq.subquery.as_ref().clone()),
        ));
    }
    if let Expr::ScalarFunction(f) = expr {
        let name = f.func.name();
        if (name == "embed_text" || name == "embed_image") && f.args.len() == 2 {
            let model = match constant_of(args, &f.args[0])
                .map_err(|e| bad(format!("{name}'s model {e}")))?
            {
                ScalarValue::Utf8(Some(m))
                | ScalarValue::LargeUtf8(Some(m))
                | ScalarValue::Utf8View(Some(m)) => m,
                other => return Err(bad(format!("{name}'s model must be text, got {other}"))),
            };
            let embed = Embed {
                function: name.to_string(),
                model,
            };
            if let Expr::ScalarSubquery(sq) = &f.args[1] {
                return Ok((
                    Query::Deferred { embed: Some(embed) },
                    Some(sq.subquery.as_ref().clone()),
                ));
            }
            let input =
                constant_of(args, &f.args[1]).map_err(|e| bad(format!("{name}'s input {e}")))?;
            return Ok((interpret(Some(&embed), input)?, None));
        }
    }
    Ok((interpret(None, args.scalar(1, "query")?)?, None))
}

fn constant_of(args: &Args, expr: &Expr) -> std::result::Result<ScalarValue, String> {
    constant(args.session(), expr)
}

#[derive(Debug)]
pub struct VectorSearch(pub Context);

impl TableFunctionImpl for VectorSearch {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("vector_search", SIGNATURE, &args, 3, 7).map_err(df)?;
        let space = args.required_text(0, "space").map_err(df)?;
        let query_expr = args
            .expr(1)
            .cloned()
            .unwrap_or(Expr::Literal(ScalarValue::Null, None));
        let (query, subquery) = query(&args, &query_expr).map_err(df)?;
        let k = args.required_count(2, "k").map_err(df)?;
        let filter = args.filter(3, None).map_err(df)?;
        let search: Search = match args.text(6, "method").map_err(df)? {
            Some(m) => m.parse().map_err(df)?,
            None => Search::Exact,
        };
        let context = self.0.clone();
        let compute: super::Compute = Box::new(move |subquery_value| {
            let context = context.clone();
            let (space, query, filter) = (space.clone(), query.clone(), filter.clone());
            Box::pin(async move {
                let store = &context.store;
                let table = resolve(store, &space).await?;
                context.reading_space(&table, &filter).await?;
                let query = match (query, subquery_value) {
                    (Query::Deferred { embed }, Some(value)) => interpret(embed.as_ref(), value)?,
                    (query, _) => query,
                };
                let vector = match query {
                    Query::Null | Query::Deferred { .. } => {
                        return Ok(RecordBatch::new_empty(schema()));
                    }
                    Query::Vector(v) => v,
                    Query::Text { model, text } => {
                        let m = crate::inference::load_model(Some(store), &model, context.device)
                            .await?;
                        embed_one(store, &m, &model, Input::Text(&text)).await?
                    }
                    Query::Image { model, bytes } => {
                        let m = crate::inference::load_model(Some(store), &model, context.device)
                            .await?;
                        embed_one(store, &m, &model, Input::Image(&bytes)).await?
                    }
                };
                if k == 0 {
                    return Ok(RecordBatch::new_empty(schema()));
                }
                if search == Search::Ann {
                    let index = StoredIndex::of(store, &table).await?;
                    eprintln!("vector_search: through {}", index.describe());
                }
                nearest(store, &table, vector, k, &filter, search).await
            })
        });
        Ok(match subquery {
            Some(plan) => Computed::table_with_subquery(schema(), plan, compute),
            None => Computed::table(schema(), compute),
        })
    }
}
