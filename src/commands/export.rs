//! `vlmdb export`: a dataset's captions (JSON Lines as Hugging Face ImageFolder's `metadata.jsonl`, so an export
//! ingests back with `vlmdb ingest jsonl`), or any table, written out as JSONL, CSV or Parquet.

use crate::error::{Error, Result};
use crate::sql::{Engine, ParamValue, Params, StatementResult};
use crate::store::Store;

/// Export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Parquet,
    Csv,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// Captions of this dataset (or, with `table`, only its rows).
    pub dataset: Option<String>,
    /// A whole table instead of captions.
    pub table: Option<String>,
    pub split: Option<String>,
}

const CAPTIONS: &str = "SELECT i.path AS file_name, c.text, c.caption_id, c.image_id, c.split \
    FROM captions c JOIN images i ON c.image_id = i.image_id \
    WHERE c.dataset = $dataset";

/// Run the export query; returns the result to write.
pub async fn query(store: &Store, options: &ExportOptions) -> Result<StatementResult> {
    let engine = Engine::for_reads(store.clone()).await?;
    let mut params = Params::default();
    let mut filters = Vec::new();
    if let Some(split) = &options.split {
        params.set("split", ParamValue::Text(split.clone()))?;
    }
    if let Some(dataset) = &options.dataset {
        params.set("dataset", ParamValue::Text(dataset.clone()))?;
    }
    let sql = match (&options.table, &options.dataset) {
        (None, Some(_)) => {
            let split = if options.split.is_some() {
                " AND c.split = $split"
            } else {
                ""
            };
            format!("{CAPTIONS}{split} ORDER BY c.caption_id")
        }
        (Some(table), _) => {
            // A table name cannot be bound; it is checked against the store's tables and quoted.
            let tables = store.table_names().await?;
            if !tables.contains(table) {
                return Err(Error::UnknownTable {
                    name: table.clone(),
                });
            }
            let schema = store.open_table(table).await?.schema().await?;
            let has = |c: &str| schema.field_with_name(c).is_ok();
            for (column, option) in [("dataset", &options.dataset), ("split", &options.split)] {
                if option.is_some() {
                    if !has(column) {
                        return Err(Error::Usage(format!(
                            "table '{table}' has no {column} column to filter on"
                        )));
                    }
                    filters.push(format!("{column} = ${column}"));
                }
            }
            let filter = if filters.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", filters.join(" AND "))
            };
            format!("SELECT * FROM \"{table}\"{filter}")
        }
        (None, None) => return Err(Error::Usage("export needs --dataset D or --table T".into())),
    };
    let mut results = engine.execute_sql(&sql, &params).await?;
    results
        .pop()
        .ok_or_else(|| Error::Usage("export query returned nothing".into()))
}
