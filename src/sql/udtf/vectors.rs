//! `vectors(space [, dataset [, split [, kind]]])`: a space's rows by the space's name, for SQL that is given the
//! space as a parameter (a table name cannot be bound).

use std::sync::{Arc, LazyLock};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Documentation;
use futures::TryStreamExt;
use lancedb::query::{ExecutableQuery, QueryBase, Select};

use super::{Args, Computed, Context, DOC_SECTION, df};
use crate::eval::space::resolve;

const SIGNATURE: &str = "vectors(space [, dataset [, split [, kind [, run [, iteration]]]]])";

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The rows of a space (item_id, kind, dataset, split, vector as a list of float32), optionally filtered. \
         Useful where the space is a parameter, e.g. in sql/mine/hard_negatives.sql, since a table name cannot \
         be a bound parameter.",
        SIGNATURE,
    )
    .with_argument("space", "A space: emb_ table, space name, or the model that made it.")
    .with_argument("dataset", "Only items of this dataset (NULL: all).")
    .with_argument("split", "Only items of this split (NULL: all).")
    .with_argument("kind", "Only items of this kind (NULL: all).")
    .with_argument("run", "Only the items this run wrote (a loop run: its hop images and captions, and the dataset images it started from; NULL: all).")
    .with_argument("iteration", "Only the items of this iteration (a loop hop; 0: the starting images and their captions; NULL: all).")
    .with_sql_example("> SELECT kind, count(*) FROM vectors('tiny_clip_c94a344', 'shapes') GROUP BY kind;")
    .build()
});

pub fn documentation() -> &'static Documentation {
    &DOC
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("dataset", DataType::Utf8, true),
        Field::new("split", DataType::Utf8, true),
        Field::new(
            "vector",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            false,
        ),
    ]))
}

#[derive(Debug)]
pub struct VectorsOf(pub Context);

impl TableFunctionImpl for VectorsOf {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let args = Args::new("vectors", SIGNATURE, &args, 1, 6).map_err(df)?;
        let space = args.required_text(0, "space").map_err(df)?;
        let filter = args.filter_with_lineage(1, None, 4).map_err(df)?;
        let context = self.0.clone();
        Ok(Computed::table(
            schema(),
            Box::new(move |_| {
                let context = context.clone();
                let (space, filter) = (space.clone(), filter.clone());
                Box::pin(async move {
                    let table = resolve(&context.store, &space).await?;
                    context.reading_space(&table, &filter).await?;
                    let handle = context.store.open_table(&table).await?;
                    let mut query = handle.query().select(Select::columns(&[
                        "item_id", "kind", "dataset", "split", "vector",
                    ]));
                    if let Some(predicate) = filter.expr() {
                        query = query.only_if_expr(predicate);
                    }
                    let batches: Vec<RecordBatch> = query.execute().await?.try_collect().await?;
                    let lineage = filter.lineage_ids(&context.store).await?;
                    let target = schema();
                    let mut out = Vec::with_capacity(batches.len());
                    for batch in batches {
                        let columns = target
                            .fields()
                            .iter()
                            .map(|f| {
                                let c = batch.column_by_name(f.name()).ok_or_else(|| {
                                    crate::Error::SchemaMismatch {
                                        table: table.clone(),
                                        message: format!("no column '{}'", f.name()),
                                    }
                                })?;
                                Ok(arrow::compute::cast(c, f.data_type())?)
                            })
                            .collect::<crate::Result<Vec<_>>>()?;
                        let mut rows = RecordBatch::try_new(target.clone(), columns)?;
                        if let Some(keep) = &lineage {
                            let ids = crate::store::columns::strings(&rows, "item_id")?;
                            let mask: BooleanArray = ids
                                .iter()
                                .map(|id| Some(id.as_ref().is_some_and(|id| keep.contains(id))))
                                .collect();
                            rows = arrow::compute::filter_record_batch(&rows, &mask)?;
                        }
                        out.push(rows);
                    }
                    Ok(arrow::compute::concat_batches(&target, &out)?)
                })
            }),
        ))
    }
}
