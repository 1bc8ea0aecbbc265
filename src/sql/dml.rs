//! `INSERT`, `DELETE` and `UPDATE` on store tables. DataFusion plans them; vlmdb carries them out, so SQL writes
//! obey the rules the CLI's writers obey:
//!
//! - `INSERT` checks every row first and writes nothing when one fails: keys unique among the new rows and not
//!   in the table yet, references the schema files declare (`ref`: a caption's image, a pair's reference and
//!   target images) present, vectors of `emb_` tables finite (their width is the column's type). The rows then go in
//!   by key, as one version.
//! - `DELETE … [WHERE …]` and `UPDATE … SET … [WHERE …]` run through Lance's own delete and update, one version
//!   each. They do not cascade: deleting images leaves their captions and vectors (delete those too).
//!   `UPDATE` may not assign key columns (ids are stable) nor an `emb_` table's vectors (embed again instead).
//!   The run records are vlmdb's own: `runs` rows are not updated or deleted from SQL.
//!
//! Filters and assigned values are DataFusion expressions with parameters already bound as literals; Lance reads
//! the filter as an expression, and an assigned value is handed over as SQL unparsed from its expression.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Float32Type, Schema};
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::CustomDialectBuilder;

use super::StatementResult;
use crate::error::{Error, Result};
use crate::eval::space::SPACE_PREFIX;
use crate::store::Store;
use crate::store::columns::strings;
use crate::store::schema::{TableSpec, embedding_table, fixed_table};
use crate::store::write::insert_new;

/// Carry out `plan` when it is an INSERT, DELETE or UPDATE on a store table (`store_tables`); `None` for any
/// other statement.
pub async fn execute(
    ctx: &SessionContext,
    store: &Store,
    store_tables: &[String],
    plan: &LogicalPlan,
) -> Result<Option<StatementResult>> {
    let LogicalPlan::Dml(dml) = plan else {
        return Ok(None);
    };
    let name = dml.table_name.table().to_string();
    if !store_tables.contains(&name) {
        if let Some((base, _)) = name.split_once('@')
            && store_tables.iter().any(|t| t == base)
        {
            return Err(Error::Usage(format!(
                "'{name}' is a past version of '{base}': past versions are read-only"
            )));
        }
        return Ok(None);
    }
    let count = match &dml.op {
        WriteOp::Insert(_) => insert(ctx, store, &name, dml).await?,
        WriteOp::Delete => delete(ctx, store, &name, dml).await?,
        WriteOp::Update => update(store, &name, dml).await?,
        WriteOp::Ctas | WriteOp::Truncate => {
            return Err(Error::Usage(format!(
                "{} on store table '{name}' is not supported: DELETE FROM {name} removes rows",
                dml.op.name()
            )));
        }
    };
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt64Array::from(vec![count]))],
    )?;
    Ok(Some(StatementResult {
        schema,
        batches: vec![batch],
    }))
}

/// The spec of store table `name`: a fixed table, or a space (`emb_…`) of the width its vectors have.
async fn spec_of(store: &Store, name: &str) -> Result<TableSpec> {
    if let Some(spec) = fixed_table(name)? {
        return Ok(spec);
    }
    match name.strip_prefix(SPACE_PREFIX) {
        Some(space) => {
            let dim = crate::eval::space::dim(store, name).await?;
            embedding_table(space, dim)
        }
        None => Err(Error::UnknownTable { name: name.into() }),
    }
}

async fn insert(
    ctx: &SessionContext,
    store: &Store,
    name: &str,
    dml: &DmlStatement,
) -> Result<u64> {
    let spec = spec_of(store, name).await?;
    let frame = ctx
        .execute_logical_plan(dml.input.as_ref().clone())
        .await
        .map_err(Error::from_datafusion)?;
    let batches = frame.collect().await.map_err(Error::from_datafusion)?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => return Ok(0),
    };
    let rows = arrow::compute::concat_batches(&schema, &batches)?;
    if rows.num_rows() == 0 {
        return Ok(0);
    }
    check_keys(store, &spec, &rows).await?;
    check_refs(store, &spec, &rows).await?;
    if name.starts_with(SPACE_PREFIX) {
        check_vectors(name, &rows)?;
    }
    insert_new(store, &spec, rows.clone()).await?;
    Ok(rows.num_rows() as u64)
}

/// The key of each row as text, joined; the error names the first row whose key has a NULL.
fn keys(spec: &TableSpec, rows: &RecordBatch) -> Result<Vec<String>> {
    let columns = spec
        .key
        .iter()
        .map(|k| strings(rows, k))
        .collect::<Result<Vec<_>>>()?;
    (0..rows.num_rows())
        .map(|r| {
            columns
                .iter()
                .zip(&spec.key)
                .map(|(values, name)| {
                    values[r].clone().ok_or_else(|| Error::SchemaMismatch {
                        table: spec.name.clone(),
                        message: format!("row {}: key column '{name}' is NULL", r + 1),
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map(|parts| parts.join("', '"))
        })
        .collect()
}

/// Keys unique among `rows` and not in the table yet.
async fn check_keys(store: &Store, spec: &TableSpec, rows: &RecordBatch) -> Result<()> {
    if spec.key.is_empty() {
        return Ok(());
    }
    let new = keys(spec, rows)?;
    let mut seen = HashMap::new();
    for (r, key) in new.iter().enumerate() {
        if let Some(first) = seen.insert(key.as_str(), r) {
            return Err(Error::SchemaMismatch {
                table: spec.name.clone(),
                message: format!(
                    "rows {} and {} have the same key ('{key}'): {} must be unique",
                    first + 1,
                    r + 1,
                    spec.key.join(", ")
                ),
            });
        }
    }
    // Stored rows that share the first key column's value, then the whole key compared.
    let first = &spec.key[0];
    let firsts: HashSet<String> = strings(rows, first)?.into_iter().flatten().collect();
    let filter =
        col(first.as_str()).in_list(firsts.iter().map(|v| lit(v.as_str())).collect(), false);
    let columns: Vec<&str> = spec.key.iter().map(String::as_str).collect();
    for batch in store.scan(&spec.name, &columns, Some(filter)).await? {
        for stored in keys(spec, &batch)? {
            if let Some(r) = seen.get(stored.as_str()) {
                return Err(Error::SchemaMismatch {
                    table: spec.name.clone(),
                    message: format!(
                        "row {}: key ('{stored}') is already in the table; nothing was written",
                        r + 1
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Every non-NULL value of a referencing column (`ref` in the schema file) is in the table it references.
async fn check_refs(store: &Store, spec: &TableSpec, rows: &RecordBatch) -> Result<()> {
    for reference in &spec.refs {
        let values = strings(rows, &reference.column)?;
        let wanted: HashSet<&str> = values.iter().flatten().map(String::as_str).collect();
        if wanted.is_empty() {
            continue;
        }
        let mut found = HashSet::new();
        let filter =
            col(reference.target.as_str()).in_list(wanted.iter().map(|v| lit(*v)).collect(), false);
        for batch in store
            .scan_if_exists(&reference.table, &[reference.target.as_str()], Some(filter))
            .await?
        {
            found.extend(strings(&batch, &reference.target)?.into_iter().flatten());
        }
        if let Some((r, missing)) = values
            .iter()
            .enumerate()
            .find_map(|(r, v)| v.as_deref().filter(|v| !found.contains(*v)).map(|v| (r, v)))
        {
            return Err(Error::SchemaMismatch {
                table: spec.name.clone(),
                message: format!(
                    "row {}: {} '{missing}' is not in {} ({}.{} references {}.{}); nothing was written",
                    r + 1,
                    reference.column,
                    reference.table,
                    spec.name,
                    reference.column,
                    reference.table,
                    reference.target
                ),
            });
        }
    }
    Ok(())
}

/// Every value of every vector finite.
fn check_vectors(table: &str, rows: &RecordBatch) -> Result<()> {
    let Some(vectors) = rows.column_by_name("vector") else {
        return Ok(());
    };
    let Some(vectors) = vectors.as_fixed_size_list_opt() else {
        return Ok(());
    };
    let ids = strings(rows, "item_id")?;
    for (r, id) in ids.iter().enumerate() {
        if vectors.is_null(r) {
            continue;
        }
        let values = vectors.value(r);
        if values
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .any(|v| !v.is_finite())
        {
            return Err(Error::SchemaMismatch {
                table: table.to_string(),
                message: format!(
                    "row {} (item {}): the vector has a non-finite value; nothing was written",
                    r + 1,
                    id.as_deref().unwrap_or("NULL")
                ),
            });
        }
    }
    Ok(())
}

/// The WHERE of a DELETE or UPDATE plan (`None`: every row), with column names unqualified for Lance.
fn filter_of(name: &str, mut input: &LogicalPlan) -> Result<Option<Expr>> {
    if let LogicalPlan::Projection(projection) = input {
        input = projection.input.as_ref();
    }
    match input {
        LogicalPlan::Filter(filter)
            if matches!(filter.input.as_ref(), LogicalPlan::TableScan(_)) =>
        {
            Ok(Some(unnormalize_col(filter.predicate.clone())))
        }
        LogicalPlan::TableScan(_) => Ok(None),
        _ => Err(Error::Usage(format!(
            "this DELETE/UPDATE on '{name}' is not supported: use a WHERE on the table's own columns \
             (no FROM, no joins)"
        ))),
    }
}

/// `expr` as SQL that Lance reads back as the same expression: unparsed from the expression tree (values are
/// literals there, quoted by the unparser), identifiers in backticks, which Lance's parser reads as names (it
/// reads double quotes as a string).
fn lance_sql(expr: &Expr) -> Result<String> {
    let dialect = CustomDialectBuilder::new()
        .with_identifier_quote_style('`')
        .build();
    let sql = Unparser::new(&dialect).expr_to_sql(&unnormalize_col(expr.clone()))?;
    Ok(sql.to_string())
}

fn refuse_runs(name: &str, what: &str) -> Result<()> {
    if name == "runs" {
        return Err(Error::Usage(format!(
            "{what} on 'runs' is not allowed: run records are written by vlmdb (delete a run's outputs instead)"
        )));
    }
    Ok(())
}

async fn delete(
    ctx: &SessionContext,
    store: &Store,
    name: &str,
    dml: &DmlStatement,
) -> Result<u64> {
    refuse_runs(name, "DELETE")?;
    store.ensure_table_writable(name, "DELETE")?;
    let mut filter = filter_of(name, &dml.input)?.unwrap_or_else(|| lit(true));
    let has_subquery = filter
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::InSubquery(_) | Expr::ScalarSubquery(_) | Expr::Exists(_)
            ))
        })
        .unwrap_or(true);
    if has_subquery {
        // Lance evaluates plain expressions only: DataFusion finds the matching rows, Lance deletes their keys
        // (every row with such a key: how a table that holds a key twice is repaired).
        filter = matching_keys(ctx, store, name, dml).await?;
    }
    let table = store.open_table(name).await?;
    Ok(table.delete(&filter).await?.num_deleted_rows)
}

/// A filter on the keys of the rows the DELETE's own plan selects.
async fn matching_keys(
    ctx: &SessionContext,
    store: &Store,
    name: &str,
    dml: &DmlStatement,
) -> Result<Expr> {
    let spec = spec_of(store, name).await?;
    if spec.key.is_empty() {
        return Err(Error::Usage(format!(
            "DELETE on '{name}' with a subquery is not supported: the table has no key"
        )));
    }
    let frame = ctx
        .execute_logical_plan(dml.input.as_ref().clone())
        .await
        .map_err(Error::from_datafusion)?;
    let mut rows: Vec<Vec<String>> = Vec::new();
    for batch in frame.collect().await.map_err(Error::from_datafusion)? {
        let columns = spec
            .key
            .iter()
            .map(|k| strings(&batch, k))
            .collect::<Result<Vec<_>>>()?;
        for r in 0..batch.num_rows() {
            if let Some(key) = columns
                .iter()
                .map(|c| c[r].clone())
                .collect::<Option<Vec<_>>>()
            {
                rows.push(key);
            }
        }
    }
    rows.sort();
    rows.dedup();
    let matches = |key: &[String]| {
        spec.key
            .iter()
            .zip(key)
            .map(|(column, value)| col(column.as_str()).eq(lit(value.as_str())))
            .reduce(Expr::and)
            .unwrap_or_else(|| lit(false))
    };
    Ok(match spec.key.as_slice() {
        [single] => {
            col(single.as_str()).in_list(rows.iter().map(|k| lit(k[0].as_str())).collect(), false)
        }
        _ => rows
            .iter()
            .map(|k| matches(k))
            .reduce(Expr::or)
            .unwrap_or_else(|| lit(false)),
    })
}

async fn update(store: &Store, name: &str, dml: &DmlStatement) -> Result<u64> {
    refuse_runs(name, "UPDATE")?;
    store.ensure_table_writable(name, "UPDATE")?;
    let spec = spec_of(store, name).await?;
    let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
        return Err(Error::Usage(format!(
            "this UPDATE on '{name}' is not supported"
        )));
    };
    let mut assignments = Vec::new();
    for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
        let column = field.name();
        let value = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        if matches!(value, Expr::Column(c) if c.name == *column) {
            continue;
        }
        if spec.key.contains(column) {
            return Err(Error::Usage(format!(
                "UPDATE {name}: '{column}' is part of the key ({}); ids are stable and are not updated",
                spec.key.join(", ")
            )));
        }
        if name.starts_with(SPACE_PREFIX) && column == "vector" {
            return Err(Error::Usage(format!(
                "UPDATE {name}: vectors are not updated from SQL; embed the items again"
            )));
        }
        assignments.push((column.to_string(), lance_sql(value)?));
    }
    if assignments.is_empty() {
        return Ok(0);
    }
    let table = store.open_table(name).await?;
    let mut builder = table.update();
    if let Some(filter) = filter_of(name, &dml.input)? {
        builder = builder.only_if(lance_sql(&filter)?);
    }
    for (column, value) in assignments {
        builder = builder.column(column, value);
    }
    Ok(builder.execute().await?.rows_updated)
}
