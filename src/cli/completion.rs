//! Tab completion in the shell: meta-commands, table names, the columns of the tables a statement names (of every
//! table while it names none), function names (vlmdb's and DataFusion's), SQL keywords, and file paths after `\i`
//! and `\o`. What the store holds is read between statements ([`Completions::refresh`]), so completing never
//! waits on the store.

use std::collections::{BTreeMap, BTreeSet};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use super::meta::COMMANDS;
use crate::error::Result;
use crate::sql::Engine;
use crate::sql::functions;

/// Keywords offered while typing SQL (in the case the word was started in).
const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "OUTER",
    "CROSS",
    "ON",
    "USING",
    "AS",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IS",
    "IN",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "DISTINCT",
    "HAVING",
    "UNION",
    "ALL",
    "WITH",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "INSERT",
    "INTO",
    "VALUES",
    "UPDATE",
    "SET",
    "DELETE",
    "CREATE",
    "VIEW",
    "TABLE",
    "DROP",
    "EXPLAIN",
    "ASC",
    "DESC",
    "OVER",
    "PARTITION",
    "COUNT",
    "CAST",
    "TRUE",
    "FALSE",
];

/// Words after which only a table name makes sense.
const TABLE_CONTEXT: &[&str] = &["from", "join", "into", "update", "table", "describe"];

/// What the shell completes from, and the lines of the statement typed so far.
#[derive(Default)]
pub struct Completions {
    /// Store tables and the columns of each.
    tables: BTreeMap<String, Vec<String>>,
    functions: BTreeSet<String>,
    /// The earlier lines of the statement being typed (their table names count).
    pending: String,
    files: FilenameCompleter,
}

impl Completions {
    /// Read the store's table names again (the session's functions the first time), and the columns of tables
    /// not seen before (of every table with `columns`: after a write, which may have added some).
    pub async fn refresh(&mut self, engine: &Engine, columns: bool) -> Result<()> {
        let store = engine.store();
        let mut tables = BTreeMap::new();
        for name in store.table_names().await? {
            if !columns && let Some(known) = self.tables.remove(&name) {
                tables.insert(name, known);
                continue;
            }
            // A table that cannot be opened just completes without its columns.
            let columns = match store.open_table(&name).await {
                Ok(table) => match table.schema().await {
                    Ok(schema) => schema.fields().iter().map(|f| f.name().clone()).collect(),
                    Err(_) => Vec::new(),
                },
                Err(_) => Vec::new(),
            };
            tables.insert(name, columns);
        }
        self.tables = tables;
        // A session's functions do not change: listed once.
        if self.functions.is_empty() {
            self.functions = functions::list(engine.context())
                .into_iter()
                .map(|d| d.name)
                .collect();
        }
        Ok(())
    }

    /// The lines of the statement typed before the current one.
    pub fn set_pending(&mut self, pending: &str) {
        self.pending = pending.to_string();
    }

    /// Candidates for the word that ends at `pos` of `line`: (start of the word, candidates).
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        if self.pending.trim().is_empty() && trimmed.starts_with('\\') {
            return self.meta(before);
        }
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !is_word_char(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let prefix = &before[start..];
        let statement = format!("{} {}", self.pending, line);
        let previous = before[..start]
            .split(|c: char| !is_word_char(c))
            .rfind(|w| !w.is_empty())
            .or_else(|| {
                self.pending
                    .split(|c: char| !is_word_char(c))
                    .rfind(|w| !w.is_empty())
            })
            .map(str::to_ascii_lowercase);
        let wants_table = previous
            .as_deref()
            .is_some_and(|w| TABLE_CONTEXT.contains(&w));
        let mut found = BTreeSet::new();
        let matches = |word: &str| {
            word.to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase())
        };
        found.extend(self.tables.keys().filter(|t| matches(t)).cloned());
        if !wants_table {
            if prefix.is_empty() {
                return (start, Vec::new());
            }
            let named: Vec<&Vec<String>> = statement
                .split(|c: char| !is_word_char(c))
                .filter_map(|w| self.tables.get(w))
                .collect();
            let columns: Box<dyn Iterator<Item = &String>> = if named.is_empty() {
                Box::new(self.tables.values().flatten())
            } else {
                Box::new(named.into_iter().flatten())
            };
            found.extend(columns.filter(|c| matches(c)).cloned());
            found.extend(self.functions.iter().filter(|f| matches(f)).cloned());
            let upper = prefix.chars().next().is_some_and(char::is_uppercase);
            found.extend(KEYWORDS.iter().filter(|k| matches(k)).map(|k| {
                if upper {
                    k.to_string()
                } else {
                    k.to_ascii_lowercase()
                }
            }));
        }
        (start, found.into_iter().collect())
    }

    /// A meta-command's name, a table after `\d`, a path after `\i` / `\o`.
    fn meta(&self, before: &str) -> (usize, Vec<String>) {
        let offset = before.len() - before.trim_start().len();
        let text = before.trim_start();
        match text.split_once(char::is_whitespace) {
            None => (
                offset,
                COMMANDS
                    .iter()
                    .filter(|c| c.starts_with(text))
                    .map(|c| c.to_string())
                    .collect(),
            ),
            Some(("\\d" | "\\dt", arg)) => {
                let arg = arg.trim_start();
                (
                    before.len() - arg.len(),
                    self.tables
                        .keys()
                        .filter(|t| t.starts_with(arg))
                        .cloned()
                        .collect(),
                )
            }
            Some(_) => (before.len(), Vec::new()),
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Completer for Completions {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line[..pos].trim_start();
        if self.pending.trim().is_empty()
            && (before.starts_with("\\i ") || before.starts_with("\\o "))
        {
            return self.files.complete_path(line, pos);
        }
        let (start, words) = self.candidates(line, pos);
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.clone(),
                    replacement: w,
                })
                .collect(),
        ))
    }
}

impl Hinter for Completions {
    type Hint = String;
}

impl Highlighter for Completions {}

impl Validator for Completions {}

impl Helper for Completions {}

#[cfg(test)]
mod tests {
    use super::*;

    fn completions() -> Completions {
        let mut c = Completions::default();
        c.tables.insert(
            "images".into(),
            vec!["image_id".into(), "orig_width".into(), "data".into()],
        );
        c.tables.insert(
            "captions".into(),
            vec!["caption_id".into(), "image_id".into(), "text".into()],
        );
        c.functions.insert("truncate_dim".into());
        c.functions.insert("count".into());
        c
    }

    #[test]
    fn tables_after_from_and_columns_of_named_tables() {
        let c = completions();
        assert_eq!(
            c.candidates("SELECT * FROM ca", 16),
            (14, vec!["captions".into()])
        );
        assert_eq!(
            c.candidates("SELECT * FROM ", 14),
            (14, vec!["captions".into(), "images".into()])
        );
        // Columns of the tables the statement names; of every table while it names none.
        let line = "SELECT te FROM captions";
        assert_eq!(c.candidates(line, 9), (7, vec!["text".into()]));
        assert_eq!(
            c.candidates("SELECT orig_w", 13),
            (7, vec!["orig_width".into()])
        );
        assert_eq!(
            c.candidates("SELECT trunc", 12),
            (7, vec!["truncate_dim".into()])
        );
        assert_eq!(c.candidates("sel", 3), (0, vec!["select".into()]));
        assert_eq!(c.candidates("SEL", 3), (0, vec!["SELECT".into()]));
    }

    #[test]
    fn earlier_lines_of_the_statement_count() {
        let mut c = completions();
        c.set_pending("SELECT *\nFROM images\n");
        assert_eq!(c.candidates("WHERE da", 8), (6, vec!["data".into()]));
    }

    #[test]
    fn meta_commands_and_their_tables() {
        let c = completions();
        assert_eq!(c.candidates("\\ma", 3), (0, vec!["\\maxrows".into()]));
        assert_eq!(c.candidates("\\d im", 5), (3, vec!["images".into()]));
    }
}
