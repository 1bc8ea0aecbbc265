//! The shell's backslash commands, parsed into one enum and executed against the session.

use std::io::Write;
use std::path::PathBuf;
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
    /// `\df`: vlmdb's functions (`\df+`: DataFusion's built-ins too).
    Functions { all: bool },
    /// `\df NAME`: one function's documentation.
    Function(String),
    /// `\format table|csv|json|ndjson`.
    SetFormat(Format),
    /// `\timing`: toggle printing each statement's time.
    Timing,
    /// `\x [on|off]`: expanded display (one line per column), toggled without an argument.
    Expanded(Option<bool>),
    /// `\maxrows N|off`: rows a table shows on a terminal.
    MaxRows(Option<usize>),
    /// `\o FILE`: results to FILE (appended); `\o`: back to standard output.
    Output(Option<PathBuf>),
    /// `\i FILE`: run the statements and commands of FILE.
    Include(PathBuf),
    /// `\?`: help.
    Help,
    /// `\q`: quit.
    Quit,
}

/// The meta-commands, for help and completion.
pub const COMMANDS: &[&str] = &[
    "\\d",
    "\\dt",
    "\\df",
    "\\df+",
    "\\format",
    "\\timing",
    "\\x",
    "\\maxrows",
    "\\o",
    "\\i",
    "\\?",
    "\\q",
];

/// The help text `\?` prints.
pub const HELP: &str = "\
\\d            list tables with row counts and versions
\\d NAME       show a table's columns (NAME@VERSION for an earlier version)
\\df           list vlmdb's functions (\\df+ adds DataFusion's built-ins)
\\df NAME      show one function's documentation
\\format FMT   print results as table, csv, json or ndjson
\\x [on|off]   expanded display: one line per column (toggles without an argument)
\\maxrows N    rows a table shows on a terminal (default 40; off shows all)
\\o FILE       write results to FILE (appended); \\o alone goes back to the screen
\\i FILE       run the statements and commands in FILE
\\timing       toggle printing how long each statement took
\\?            this help
\\q            quit (or Ctrl-D)
Statements end with ';' and may span lines; Ctrl-C discards the statement being typed or cancels the running
one. Tab completes tables, columns, functions, commands and paths. \"images@3\" reads table images at version 3.";

impl std::str::FromStr for MetaCommand {
    type Err = Error;
    fn from_str(line: &str) -> Result<MetaCommand> {
        let line = line.trim().trim_end_matches(';').trim_end();
        let (command, rest) = match line.split_once(char::is_whitespace) {
            Some((command, rest)) => (command, rest.trim()),
            None => (line, ""),
        };
        let arg = (!rest.is_empty()).then_some(rest);
        // Commands that take at most one word.
        let word = || -> Result<Option<&str>> {
            match arg {
                Some(a) if a.split_whitespace().nth(1).is_some() => Err(Error::Usage(format!(
                    "{command}: unexpected argument '{}'",
                    a.split_whitespace().nth(1).unwrap_or_default()
                ))),
                other => Ok(other),
            }
        };
        let none = || -> Result<()> {
            match arg {
                Some(a) => Err(Error::Usage(format!(
                    "{command}: unexpected argument '{a}'"
                ))),
                None => Ok(()),
            }
        };
        match command {
            "\\d" | "\\dt" => Ok(match word()? {
                None => MetaCommand::ListTables,
                Some(name) => MetaCommand::Describe(name.to_string()),
            }),
            "\\df" => Ok(match word()? {
                None => MetaCommand::Functions { all: false },
                Some(name) => MetaCommand::Function(name.to_string()),
            }),
            "\\df+" => none().map(|()| MetaCommand::Functions { all: true }),
            "\\format" => match word()? {
                Some(f) => Ok(MetaCommand::SetFormat(f.parse()?)),
                None => Err(Error::Usage(
                    "\\format needs one of table, csv, json, ndjson".into(),
                )),
            },
            "\\timing" => none().map(|()| MetaCommand::Timing),
            "\\x" => match word()? {
                None => Ok(MetaCommand::Expanded(None)),
                Some("on") => Ok(MetaCommand::Expanded(Some(true))),
                Some("off") => Ok(MetaCommand::Expanded(Some(false))),
                Some(other) => Err(Error::Usage(format!("\\x takes on or off, not '{other}'"))),
            },
            "\\maxrows" => match word()? {
                Some("off") => Ok(MetaCommand::MaxRows(None)),
                Some(n) => match n.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(MetaCommand::MaxRows(Some(n))),
                    _ => Err(Error::Usage(format!(
                        "\\maxrows takes a number of rows (1 or more) or off, not '{n}'"
                    ))),
                },
                None => Err(Error::Usage(
                    "\\maxrows needs a number of rows or off".into(),
                )),
            },
            "\\o" => Ok(MetaCommand::Output(arg.map(PathBuf::from))),
            "\\i" => match arg {
                Some(path) => Ok(MetaCommand::Include(PathBuf::from(path))),
                None => Err(Error::Usage("\\i needs a FILE to run".into())),
            },
            "\\?" | "\\h" | "\\help" => none().map(|()| MetaCommand::Help),
            "\\q" | "\\quit" => none().map(|()| MetaCommand::Quit),
            other => Err(Error::Usage(format!(
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

/// `\df`: vlmdb's functions, one line each with its kind and a one-line description; with `all`, DataFusion's
/// built-ins follow them (the `from` column tells the two apart).
pub fn list_functions(engine: &Engine, all: bool) -> Result<StatementResult> {
    let mut docs: Vec<FunctionDoc> = functions::list(engine.context())
        .into_iter()
        .filter(|d| all || d.vlmdb)
        .collect();
    // vlmdb's first; each section by name (the sort is stable).
    docs.sort_by_key(|d| !d.vlmdb);
    let schema = Arc::new(Schema::new(vec![
        Field::new("function", DataType::Utf8, false),
        Field::new("from", DataType::Utf8, false),
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
                docs.iter()
                    .map(|d| if d.vlmdb { "vlmdb" } else { "datafusion" }),
            )),
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
        let parse = |line: &str| line.parse::<MetaCommand>().expect(line);
        assert_eq!(parse("\\d"), MetaCommand::ListTables);
        assert_eq!(parse("\\d images"), MetaCommand::Describe("images".into()));
        assert_eq!(parse("\\df"), MetaCommand::Functions { all: false });
        assert_eq!(parse("\\df+"), MetaCommand::Functions { all: true });
        assert_eq!(parse("\\df knn"), MetaCommand::Function("knn".into()));
        assert_eq!(parse("\\format csv"), MetaCommand::SetFormat(Format::Csv));
        assert_eq!(parse("\\timing"), MetaCommand::Timing);
        assert_eq!(parse("\\x"), MetaCommand::Expanded(None));
        assert_eq!(parse("\\x on"), MetaCommand::Expanded(Some(true)));
        assert_eq!(parse("\\maxrows 5"), MetaCommand::MaxRows(Some(5)));
        assert_eq!(parse("\\maxrows off"), MetaCommand::MaxRows(None));
        assert_eq!(
            parse("\\o my results.csv"),
            MetaCommand::Output(Some(PathBuf::from("my results.csv")))
        );
        assert_eq!(parse("\\o"), MetaCommand::Output(None));
        assert_eq!(
            parse("\\i setup.sql"),
            MetaCommand::Include("setup.sql".into())
        );
        assert_eq!(parse("\\?"), MetaCommand::Help);
        assert_eq!(parse("\\q"), MetaCommand::Quit);
        let error = |line: &str| line.parse::<MetaCommand>().unwrap_err().to_string();
        assert_eq!(
            error("\\format xml"),
            "unknown format 'xml' (use table, csv, json or ndjson)"
        );
        assert_eq!(error("\\d a b"), "\\d: unexpected argument 'b'");
        assert!(error("\\maxrows 0").contains("not '0'"));
        assert!(error("\\i").contains("needs a FILE"));
        assert!(error("\\zz").contains("unknown command \\zz"));
    }
}
