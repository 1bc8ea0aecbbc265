//! The shell's backslash commands, parsed into one enum and executed against the session.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};

use super::format::Format;
use crate::error::{Error, Result};
use crate::sql::catalog::split_version;
use crate::sql::functions::{self, FunctionDoc};
use crate::sql::{Engine, StatementResult};
use crate::store::schema::spec_for;

/// A backslash command.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaCommand {
    /// `\d` / `\dt`: tables with row counts and versions.
    ListTables,
    /// `\d NAME`: a table's columns.
    Describe(String),
    /// `\df [NAME]`: functions, or one function's documentation.
    Functions(Option<String>),
    /// `\format table|csv|json|ndjson`.
    SetFormat(Format),
    /// `\timing`: toggle printing each statement's time.
    Timing,
    /// `\?`: help.
    Help,
    /// `\q`: quit.
    Quit,
}

/// The help text `\?` prints.
pub const HELP: &str = "\
\\d            list tables with row counts and versions
\\d NAME       show a table's columns (NAME@VERSION for an earlier version)
\\df [NAME]    list functions, or show one function's documentation
\\format FMT   print results as table, csv, json or ndjson
\\timing       toggle printing how long each statement took
\\?            this help
\\q            quit
Statements end with ';' and may span lines. \"images@3\" reads table images at version 3.";

impl std::str::FromStr for MetaCommand {
    type Err = Error;
    fn from_str(line: &str) -> Result<MetaCommand> {
        let line = line.trim().trim_end_matches(';');
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let arg = words.next().map(str::to_string);
        if let Some(extra) = words.next() {
            return Err(Error::Usage(format!(
                "{command}: unexpected argument '{extra}'"
            )));
        }
        match (command, arg) {
            ("\\d" | "\\dt", None) => Ok(MetaCommand::ListTables),
            ("\\d" | "\\dt", Some(name)) => Ok(MetaCommand::Describe(name)),
            ("\\df", name) => Ok(MetaCommand::Functions(name)),
            ("\\format", Some(f)) => Ok(MetaCommand::SetFormat(f.parse()?)),
            ("\\format", None) => Err(Error::Usage(
                "\\format needs one of table, csv, json, ndjson".into(),
            )),
            ("\\timing", None) => Ok(MetaCommand::Timing),
            ("\\?" | "\\h" | "\\help", None) => Ok(MetaCommand::Help),
            ("\\q" | "\\quit", None) => Ok(MetaCommand::Quit),
            (other, _) => Err(Error::Usage(format!(
                "unknown command {other} (\\? lists them)"
            ))),
        }
    }
}

/// `\d`: one row per store table.
pub async fn list_tables(engine: &Engine) -> Result<StatementResult> {
    let store = engine.store();
    let mut names = Vec::new();
    let mut rows = Vec::new();
    let mut versions = Vec::new();
    for name in store.table_names().await? {
        let table = store.open_table(&name).await?;
        rows.push(table.count_rows(None).await? as i64);
        versions.push(table.version().await?);
        names.push(name);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("version", DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(names)) as ArrayRef,
            Arc::new(Int64Array::from(rows)),
            Arc::new(UInt64Array::from(versions)),
        ],
    )?;
    Ok(StatementResult {
        schema,
        batches: vec![batch],
    })
}

/// `\d NAME`: the table's columns with their types and the documentation from its schema file.
pub async fn describe(engine: &Engine, name: &str) -> Result<StatementResult> {
    let store = engine.store();
    let (base, version) = split_version(name);
    let table = match version {
        Some(v) => store.open_table_at(base, v).await?,
        None => store.open_table(base).await?,
    };
    let schema = table.schema().await?;
    let spec = spec_for(base, &schema)?;
    let mut columns = Vec::new();
    let mut types = Vec::new();
    let mut nullable = Vec::new();
    let mut docs = Vec::new();
    for field in schema.fields() {
        columns.push(field.name().clone());
        types.push(field.data_type().to_string());
        nullable.push(field.is_nullable());
        docs.push(
            spec.as_ref()
                .and_then(|s| s.column(field.name()))
                .map(|c| c.doc.clone())
                .unwrap_or_default(),
        );
    }
    let out_schema = Arc::new(Schema::new(vec![
        Field::new("column", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("nullable", DataType::Boolean, false),
        Field::new("description", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        out_schema.clone(),
        vec![
            Arc::new(StringArray::from(columns)) as ArrayRef,
            Arc::new(StringArray::from(types)),
            Arc::new(BooleanArray::from(nullable)),
            Arc::new(StringArray::from(docs)),
        ],
    )?;
    Ok(StatementResult {
        schema: out_schema,
        batches: vec![batch],
    })
}

/// `\df`: every function with its kind and a one-line description.
pub fn list_functions(engine: &Engine) -> Result<StatementResult> {
    let docs = functions::list(engine.context());
    let schema = Arc::new(Schema::new(vec![
        Field::new("function", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]));
    let first_line = |d: &FunctionDoc| d.description.lines().next().unwrap_or_default().to_string();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                docs.iter().map(|d| d.name.clone()),
            )) as ArrayRef,
            Arc::new(StringArray::from_iter_values(
                docs.iter().map(|d| d.kind.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(docs.iter().map(first_line))),
        ],
    )?;
    Ok(StatementResult {
        schema,
        batches: vec![batch],
    })
}

/// `\df NAME`: the full documentation of a function, as text.
pub fn describe_function(engine: &Engine, name: &str, out: &mut dyn Write) -> Result<()> {
    let docs = functions::find(engine.context(), name);
    if docs.is_empty() {
        return Err(Error::Usage(format!(
            "no function named '{name}' (\\df lists them)"
        )));
    }
    for doc in docs {
        writeln!(out, "{} ({} function)", doc.name, doc.kind.as_str())?;
        if !doc.description.is_empty() {
            writeln!(out, "{}", doc.description)?;
        }
        if !doc.syntax.is_empty() {
            writeln!(out, "\nSyntax: {}", doc.syntax)?;
        }
        if !doc.arguments.is_empty() {
            writeln!(out, "\nArguments:")?;
            for (arg, text) in &doc.arguments {
                writeln!(out, "  {arg}: {text}")?;
            }
        }
        if let Some(example) = &doc.example {
            writeln!(out, "\nExample:\n{example}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(
            "\\d".parse::<MetaCommand>().expect("\\d"),
            MetaCommand::ListTables
        );
        assert_eq!(
            "\\d images".parse::<MetaCommand>().expect("\\d images"),
            MetaCommand::Describe("images".into())
        );
        assert_eq!(
            "\\df".parse::<MetaCommand>().expect("\\df"),
            MetaCommand::Functions(None)
        );
        assert_eq!(
            "\\format csv".parse::<MetaCommand>().expect("\\format"),
            MetaCommand::SetFormat(Format::Csv)
        );
        assert_eq!(
            "\\timing".parse::<MetaCommand>().expect("\\timing"),
            MetaCommand::Timing
        );
        assert_eq!(
            "\\?".parse::<MetaCommand>().expect("\\?"),
            MetaCommand::Help
        );
        assert_eq!(
            "\\q".parse::<MetaCommand>().expect("\\q"),
            MetaCommand::Quit
        );
        let e = "\\format xml".parse::<MetaCommand>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown format 'xml' (use table, csv, json or ndjson)"
        );
        assert!("\\zz".parse::<MetaCommand>().is_err());
    }
}
