//! Table schemas, read from the files under `schemas/` (embedded at build time so the binary does not depend on
//! the working directory). Those files are the single source of truth: tables are created from them and every
//! write is checked against them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{Error, Result};

/// The schema files, by file name. `emb_space.schema` is the template for per-model embedding tables.
const FILES: &[(&str, &str)] = &[
    ("images.schema", include_str!("../../schemas/images.schema")),
    (
        "captions.schema",
        include_str!("../../schemas/captions.schema"),
    ),
    ("pairs.schema", include_str!("../../schemas/pairs.schema")),
    (
        "ingest_errors.schema",
        include_str!("../../schemas/ingest_errors.schema"),
    ),
    ("runs.schema", include_str!("../../schemas/runs.schema")),
    (
        "metrics.schema",
        include_str!("../../schemas/metrics.schema"),
    ),
    (
        "hard_negatives.schema",
        include_str!("../../schemas/hard_negatives.schema"),
    ),
    (
        "clusters.schema",
        include_str!("../../schemas/clusters.schema"),
    ),
    (
        "centroids.schema",
        include_str!("../../schemas/centroids.schema"),
    ),
    (
        "artifacts.schema",
        include_str!("../../schemas/artifacts.schema"),
    ),
    (
        "model_cache.schema",
        include_str!("../../schemas/model_cache.schema"),
    ),
    (
        "emb_space.schema",
        include_str!("../../schemas/emb_space.schema"),
    ),
];

/// The template file for embedding-space tables.
const SPACE_TEMPLATE: &str = "emb_space.schema";

/// One column: name, Arrow type, nullability and the documentation written beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    pub doc: String,
}

/// One table as its schema file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub name: String,
    pub doc: String,
    /// Upsert key columns; empty for append-only tables.
    pub key: Vec<String>,
    pub columns: Vec<ColumnSpec>,
    /// Schema-level metadata the table is created with (an embedding space's model id, revision, width, …).
    pub metadata: std::collections::HashMap<String, String>,
    /// Columns whose non-NULL values must be keys of another table (checked on SQL `INSERT`).
    pub refs: Vec<Reference>,
    /// Columns that had another name in earlier stores (renamed when the store is opened).
    pub renames: Vec<Rename>,
}

/// `ref <column> -> <table>.<column>`: every non-NULL value of `column` is a value of `table.target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub column: String,
    pub table: String,
    pub target: String,
}

/// `renamed <from> -> <to>`: column `to` was called `from` in stores written before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

impl TableSpec {
    /// The Arrow schema tables are created with (column docs kept as field metadata `doc`).
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                let field = Field::new(&c.name, c.data_type.clone(), c.nullable);
                // Key columns are Lance's (unenforced) primary key: two writers inserting the same key at once
                // then conflict at commit, and the later one retries against the earlier one's rows.
                match self.key.iter().position(|k| *k == c.name) {
                    Some(i) => field.with_metadata(HashMap::from([(
                        PRIMARY_KEY_POSITION.to_string(),
                        (i + 1).to_string(),
                    )])),
                    None => field,
                }
            })
            .collect();
        Arc::new(Schema::new_with_metadata(fields, self.metadata.clone()))
    }

    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Lance's field metadata naming a column's place in the table's primary key (1-based).
const PRIMARY_KEY_POSITION: &str = "lance-schema:unenforced-primary-key:position";

/// The fixed tables every store has (all schema files but the embedding-space template), in file order.
pub fn fixed_tables() -> Result<Vec<TableSpec>> {
    FILES
        .iter()
        .filter(|(file, _)| *file != SPACE_TEMPLATE)
        .map(|(file, text)| parse(file, text, &HashMap::new()))
        .collect()
}

/// The spec of the fixed table `name`, or `None` when the name is not one of them.
pub fn fixed_table(name: &str) -> Result<Option<TableSpec>> {
    Ok(fixed_tables()?.into_iter().find(|t| t.name == name))
}

/// The spec of the embedding table of `space` (a slug in `[a-z0-9_]`) with vectors of width `dim`.
pub fn embedding_table(space: &str, dim: usize) -> Result<TableSpec> {
    if space.is_empty()
        || !space
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::Usage(format!(
            "space name '{space}' must be a non-empty slug of [a-z0-9_]"
        )));
    }
    if dim == 0 {
        return Err(Error::Usage(format!(
            "space '{space}': vector width must be positive"
        )));
    }
    let (file, text) = FILES
        .iter()
        .find(|(f, _)| *f == SPACE_TEMPLATE)
        .ok_or_else(|| Error::Usage(format!("schema template {SPACE_TEMPLATE} missing")))?;
    let vars = HashMap::from([("space", space.to_string()), ("dim", dim.to_string())]);
    parse(file, text, &vars)
}

/// The spec a table of the store follows: a fixed table or an `emb_*` space (whose width is read from `schema`).
pub fn spec_for(name: &str, schema: &Schema) -> Result<Option<TableSpec>> {
    if let Some(spec) = fixed_table(name)? {
        return Ok(Some(spec));
    }
    if let Some(space) = name.strip_prefix("emb_")
        && let Ok(field) = schema.field_with_name("vector")
        && let DataType::FixedSizeList(_, dim) = field.data_type()
    {
        return embedding_table(space, *dim as usize).map(Some);
    }
    Ok(None)
}

/// Parse one schema file, substituting `{var}` placeholders from `vars`.
pub fn parse(file: &str, text: &str, vars: &HashMap<&str, String>) -> Result<TableSpec> {
    let err = |line: usize, message: String| Error::SchemaFile {
        file: file.to_string(),
        line,
        message,
    };
    let mut name = None;
    let mut key = Vec::new();
    let mut refs = Vec::new();
    let mut renames = Vec::new();
    let mut columns: Vec<ColumnSpec> = Vec::new();
    let mut doc = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let (body, comment) = match raw.split_once('#') {
            Some((b, c)) => (b.trim(), c.trim()),
            None => (raw.trim(), ""),
        };
        let body = substitute(body, vars).map_err(|m| err(line_no, m))?;
        if body.is_empty() {
            if name.is_none() && !comment.is_empty() {
                doc.push(comment.to_string());
            }
            continue;
        }
        let (word, rest) = body.split_once(char::is_whitespace).unwrap_or((&body, ""));
        let rest = rest.trim();
        match word {
            "table" => {
                if rest.is_empty() {
                    return Err(err(line_no, "`table` needs a name".into()));
                }
                name = Some(rest.to_string());
            }
            "key" => {
                key = rest.split(',').map(|k| k.trim().to_string()).collect();
                if key.iter().any(String::is_empty) {
                    return Err(err(line_no, format!("bad key list '{rest}'")));
                }
            }
            "ref" => {
                let parsed = rest.split_once("->").and_then(|(column, target)| {
                    let (table, target) = target.trim().split_once('.')?;
                    Some(Reference {
                        column: column.trim().to_string(),
                        table: table.trim().to_string(),
                        target: target.trim().to_string(),
                    })
                });
                match parsed {
                    Some(r)
                        if ![&r.column, &r.table, &r.target]
                            .iter()
                            .any(|p| p.is_empty()) =>
                    {
                        refs.push(r)
                    }
                    _ => {
                        return Err(err(
                            line_no,
                            format!(
                                "bad reference '{rest}' (expected `ref <column> -> <table>.<column>`)"
                            ),
                        ));
                    }
                }
            }
            "renamed" => match rest.split_once("->") {
                Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => renames
                    .push(Rename {
                        from: from.trim().to_string(),
                        to: to.trim().to_string(),
                    }),
                _ => {
                    return Err(err(
                        line_no,
                        format!("bad rename '{rest}' (expected `renamed <old> -> <column>`)"),
                    ));
                }
            },
            column => {
                let (type_text, nullable) = match rest.strip_suffix("not null") {
                    Some(t) => (t.trim(), false),
                    None => (rest, true),
                };
                let data_type = parse_type(type_text).map_err(|m| err(line_no, m))?;
                if columns.iter().any(|c| c.name == column) {
                    return Err(err(line_no, format!("column '{column}' declared twice")));
                }
                columns.push(ColumnSpec {
                    name: column.to_string(),
                    data_type,
                    nullable,
                    doc: comment.to_string(),
                });
            }
        }
    }
    let name = name.ok_or_else(|| err(1, "no `table <name>` line".into()))?;
    if columns.is_empty() {
        return Err(err(1, format!("table '{name}' has no columns")));
    }
    if let Some(missing) = key.iter().find(|k| !columns.iter().any(|c| &c.name == *k)) {
        return Err(err(1, format!("key column '{missing}' is not a column")));
    }
    if let Some(bad) = refs
        .iter()
        .find(|r| !columns.iter().any(|c| c.name == r.column))
    {
        return Err(err(
            1,
            format!("reference column '{}' is not a column", bad.column),
        ));
    }
    if let Some(bad) = renames.iter().find(|r| {
        !columns.iter().any(|c| c.name == r.to) || columns.iter().any(|c| c.name == r.from)
    }) {
        return Err(err(
            1,
            format!(
                "rename '{}' -> '{}' must name a current column and a name no column has",
                bad.from, bad.to
            ),
        ));
    }
    Ok(TableSpec {
        name,
        doc: doc.join(" "),
        key,
        columns,
        metadata: HashMap::new(),
        refs,
        renames,
    })
}

fn substitute(text: &str, vars: &HashMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in '{text}'"))?;
        let var = &after[..end];
        let value = vars
            .get(var)
            .ok_or_else(|| format!("template variable {{{var}}} has no value here"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse a type name of the schema-file language into an Arrow type.
pub fn parse_type(text: &str) -> Result<DataType, String> {
    let text = text.trim();
    let simple = match text {
        "utf8" => Some(DataType::Utf8),
        "large_binary" => Some(DataType::LargeBinary),
        "bool" => Some(DataType::Boolean),
        "int32" => Some(DataType::Int32),
        "int64" => Some(DataType::Int64),
        "float32" => Some(DataType::Float32),
        "float64" => Some(DataType::Float64),
        "timestamp" => Some(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        )),
        _ => None,
    };
    if let Some(t) = simple {
        return Ok(t);
    }
    if let Some(inner) = text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
        let item = parse_type(inner)?;
        return Ok(DataType::List(Arc::new(Field::new("item", item, true))));
    }
    if let Some(inner) = text
        .strip_prefix("vector<")
        .and_then(|t| t.strip_suffix('>'))
    {
        let (item, dim) = inner
            .split_once(',')
            .ok_or_else(|| format!("vector type '{text}' needs <type, width>"))?;
        let item = parse_type(item)?;
        let dim: i32 = dim
            .trim()
            .parse()
            .map_err(|_| format!("vector width '{}' is not a number", dim.trim()))?;
        if dim <= 0 {
            return Err(format!("vector width {dim} must be positive"));
        }
        return Ok(DataType::FixedSizeList(
            Arc::new(Field::new("item", item, true)),
            dim,
        ));
    }
    Err(format!("unknown type '{text}'"))
}

/// Check that `actual` (data about to be written, or a table's schema) has the columns of `spec` with their types.
/// Nullability is checked one way only: a column declared `not null` must not be nullable in the data, unless
/// the data simply has no nulls (checked at write time by Lance).
pub fn check_compatible(spec: &TableSpec, actual: &Schema) -> Result<()> {
    let mismatch = |message: String| Error::SchemaMismatch {
        table: spec.name.clone(),
        message,
    };
    for column in &spec.columns {
        let field = actual
            .field_with_name(&column.name)
            .map_err(|_| mismatch(format!("missing column '{}'", column.name)))?;
        if !types_match(field.data_type(), &column.data_type) {
            return Err(mismatch(format!(
                "column '{}' has type {}, expected {}",
                column.name,
                field.data_type(),
                column.data_type
            )));
        }
    }
    if let Some(extra) = actual
        .fields()
        .iter()
        .find(|f| spec.column(f.name()).is_none())
    {
        return Err(mismatch(format!("unexpected column '{}'", extra.name())));
    }
    Ok(())
}

/// Types are equal up to the names and nullability of list item fields.
fn types_match(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::List(x), DataType::List(y)) => types_match(x.data_type(), y.data_type()),
        (DataType::FixedSizeList(x, n), DataType::FixedSizeList(y, m)) => {
            n == m && types_match(x.data_type(), y.data_type())
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_parses() {
        let tables = fixed_tables().expect("schema files parse");
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "images",
                "captions",
                "pairs",
                "ingest_errors",
                "runs",
                "metrics",
                "hard_negatives",
                "clusters",
                "centroids",
                "artifacts",
                "model_cache"
            ]
        );
        let images = &tables[0];
        assert_eq!(images.key, ["image_id"]);
        let data = images.column("data").expect("images.data");
        assert_eq!(data.data_type, DataType::LargeBinary);
        assert!(!data.nullable);
        assert!(images.column("split").expect("split").nullable);
        let pairs = tables.iter().find(|t| t.name == "pairs").expect("pairs");
        let targets: Vec<(&str, &str, &str)> = pairs
            .refs
            .iter()
            .map(|r| (r.column.as_str(), r.table.as_str(), r.target.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                ("reference_id", "images", "image_id"),
                ("target_id", "images", "image_id"),
                ("parent_id", "pairs", "pair_id")
            ]
        );
        // Every reference points at a key column of a fixed table.
        for table in &tables {
            for r in &table.refs {
                let target = tables.iter().find(|t| t.name == r.table).expect("table");
                assert_eq!(
                    target.key,
                    std::slice::from_ref(&r.target),
                    "{}.{}",
                    table.name,
                    r.column
                );
            }
        }
    }

    #[test]
    fn references_are_checked_when_parsed() {
        let vars = HashMap::new();
        let ok = parse(
            "x.schema",
            "table t
ref a -> u.id
a utf8
",
            &vars,
        )
        .expect("ref");
        assert_eq!(ok.refs[0].table, "u");
        let e = parse(
            "x.schema",
            "table t
ref a u.id
a utf8
",
            &vars,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad reference"), "{e}");
        let e = parse(
            "x.schema",
            "table t
ref b -> u.id
a utf8
",
            &vars,
        )
        .unwrap_err();
        assert!(e.to_string().contains("reference column 'b'"), "{e}");
    }

    #[test]
    fn renames_are_checked_when_parsed() {
        for table in ["clusters", "centroids"] {
            let spec = fixed_table(table).expect("parses").expect("fixed");
            assert_eq!(
                spec.renames,
                [Rename {
                    from: "cluster".into(),
                    to: "cluster_id".into()
                }],
                "{table}"
            );
        }
        let vars = HashMap::new();
        for (text, message) in [
            ("table t\nrenamed a b\nb utf8\n", "bad rename"),
            ("table t\nrenamed a -> c\nb utf8\n", "rename 'a' -> 'c'"),
            (
                "table t\nrenamed a -> b\na utf8\nb utf8\n",
                "rename 'a' -> 'b'",
            ),
        ] {
            let e = parse("x.schema", text, &vars).unwrap_err();
            assert!(e.to_string().contains(message), "{text:?}: {e}");
        }
    }

    #[test]
    fn embedding_template_takes_the_width() {
        let spec = embedding_table("minilm_1a2b3c4", 384).expect("template");
        assert_eq!(spec.name, "emb_minilm_1a2b3c4");
        assert_eq!(spec.key, ["item_id", "kind"]);
        let vector = spec.column("vector").expect("vector");
        match &vector.data_type {
            DataType::FixedSizeList(item, 384) => assert_eq!(item.data_type(), &DataType::Float32),
            other => panic!("vector type {other}"),
        }
        assert!(embedding_table("Bad-Name", 3).is_err());
        assert!(embedding_table("ok", 0).is_err());
    }

    #[test]
    fn malformed_files_name_the_line() {
        let e = parse("x.schema", "table t\na utf8\nb decimal\n", &HashMap::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "schema file x.schema, line 3: unknown type 'decimal'"
        );
        let e = parse("x.schema", "a utf8\n", &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("no `table <name>` line"), "{e}");
        let e = parse("x.schema", "table t\nkey z\na utf8\n", &HashMap::new()).unwrap_err();
        assert!(e.to_string().contains("key column 'z'"), "{e}");
    }

    #[test]
    fn compatibility_names_the_column() {
        let spec = parse(
            "t.schema",
            "table t\na utf8 not null\nb int32\n",
            &HashMap::new(),
        )
        .expect("parse");
        let ok = Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Int32, true),
        ]);
        check_compatible(&spec, &ok).expect("compatible");
        let wrong = Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Int64, true),
        ]);
        let e = check_compatible(&spec, &wrong).unwrap_err();
        assert_eq!(
            e.to_string(),
            "table 't': column 'b' has type Int64, expected Int32"
        );
    }
}
