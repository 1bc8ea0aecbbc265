//! The SQL shell: line editing, tab completion and persistent history (one entry per statement) on a terminal;
//! plain line reading (no prompts on stdout) when stdin is piped, so scripts can drive it. Statements end with `;`
//! and may span lines; an error is printed and the shell keeps going. On a terminal Ctrl-C discards the statement
//! being typed or cancels the one running, and Ctrl-D ends the session.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};

use super::args::ShellArgs;
use super::completion::Completions;
use super::display::{DEFAULT_MAX_ROWS, TableStyle};
use super::format::Printer;
use super::meta::{self, MetaCommand};
use crate::commands::sql::{bind_run_id, rebind_run_id, recorded, sql_run_spec};
use crate::error::{Error, Result};
use crate::sql::{Engine, Params, writes_store};
use crate::store::Store;

const PROMPT: &str = "vlmdb> ";
const CONTINUATION: &str = "  ...> ";
/// How deeply `\i` files may include each other.
const MAX_INCLUDE_DEPTH: usize = 16;

type LineEditor = Editor<Completions, DefaultHistory>;

/// Where lines come from.
enum Input {
    Terminal {
        editor: Box<LineEditor>,
        history: Option<PathBuf>,
    },
    Piped(std::io::StdinLock<'static>),
}

/// What the user gave: a line, or Ctrl-C.
enum Line {
    Text(String),
    Interrupted,
    /// The end of a file run with `\i`: a statement left without `;` runs.
    EndOfInclude,
}

impl Input {
    fn open() -> Input {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            let config = Config::builder()
                .completion_type(CompletionType::List)
                .auto_add_history(false)
                .build();
            if let Ok(mut editor) = LineEditor::with_config(config) {
                editor.set_helper(Some(Completions::default()));
                let history = history_path();
                if let Some(path) = &history {
                    // A missing history file is normal on first use.
                    let _ = editor.load_history(path);
                }
                return Input::Terminal {
                    editor: Box::new(editor),
                    history,
                };
            }
        }
        Input::Piped(stdin.lock())
    }

    /// The next line, or `None` at end of input. `pending` is the statement typed so far (for completion).
    fn next_line(&mut self, prompt: &str, pending: &str) -> Result<Option<Line>> {
        match self {
            Input::Terminal { editor, .. } => {
                if let Some(helper) = editor.helper_mut() {
                    helper.set_pending(pending);
                }
                match editor.readline(prompt) {
                    Ok(line) => Ok(Some(Line::Text(line))),
                    // Ctrl-C abandons the statement being typed, Ctrl-D ends the session.
                    Err(ReadlineError::Interrupted) => Ok(Some(Line::Interrupted)),
                    Err(ReadlineError::Eof) => Ok(None),
                    Err(ReadlineError::Io(e)) => Err(Error::io("standard input", e)),
                    Err(e) => Err(Error::Usage(format!("reading input: {e}"))),
                }
            }
            Input::Piped(stdin) => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some(Line::Text(
                        line.trim_end_matches(['\n', '\r']).to_string(),
                    ))),
                    Err(e) => Err(Error::io("<stdin>", e)),
                }
            }
        }
    }

    /// Remember a whole statement (or meta-command) as one history entry.
    fn remember(&mut self, entry: &str) {
        if let Input::Terminal { editor, .. } = self {
            let entry = entry.trim();
            if !entry.is_empty() {
                let _ = editor.add_history_entry(entry);
            }
        }
    }

    fn completions(&mut self) -> Option<&mut Completions> {
        match self {
            Input::Terminal { editor, .. } => editor.helper_mut(),
            Input::Piped(_) => None,
        }
    }

    fn interactive(&self) -> bool {
        matches!(self, Input::Terminal { .. })
    }

    fn save_history(&mut self) {
        if let Input::Terminal {
            editor,
            history: Some(path),
        } = self
        {
            // Losing history is not worth failing the session over.
            let _ = editor.save_history(path);
        }
    }
}

/// `$VLMDB_HISTORY`, else `~/.vlmdb_history`.
fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VLMDB_HISTORY") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".vlmdb_history"))
}

/// Session state that backslash commands change.
struct Session {
    engine: Engine,
    params: Params,
    printer: Printer,
    timing: bool,
    /// Rows a table shows on a terminal (`\maxrows`); `None`: all.
    max_rows: Option<usize>,
    /// `\x`.
    expanded: bool,
    /// `\o FILE`: results go there instead of standard output.
    output: Option<(PathBuf, std::fs::File)>,
    /// Ctrl-C cancels the running statement (on a terminal; a script is stopped by it as usual).
    cancellable: bool,
}

impl Session {
    /// The table layout for where results go now.
    fn style(&self) -> TableStyle {
        let mut style = if self.output.is_some() {
            TableStyle::complete()
        } else {
            TableStyle::for_stdout()
        };
        if style.width.is_some() {
            style.max_rows = self.max_rows;
        }
        style.expanded = self.expanded;
        style
    }

    /// Print a result where results go now.
    fn print(&mut self, out: &mut dyn Write, result: &crate::sql::StatementResult) -> Result<()> {
        self.printer.style = self.style();
        match &mut self.output {
            Some((path, file)) => self.printer.print(file, result).map_err(|e| match e {
                Error::Output { source } => Error::io(path.clone(), source),
                other => other,
            }),
            None => self.printer.print(out, result),
        }
    }
}

/// `vlmdb shell`. Returns exit code 1 when a statement failed in a non-interactive session, else 0.
pub async fn run(
    store: &Store,
    args: ShellArgs,
    device: crate::models::DeviceChoice,
    access: crate::sql::ExternalAccess,
    out: &mut dyn Write,
) -> Result<u8> {
    let mut params = Params::from_args(&args.params)?;
    bind_run_id(&mut params)?;
    let mut input = Input::open();
    let mut session = Session {
        engine: Engine::new(store.clone(), device)
            .await?
            .with_external_access(access),
        params,
        printer: Printer::new(args.format, TableStyle::complete()),
        timing: false,
        max_rows: Some(DEFAULT_MAX_ROWS),
        expanded: false,
        output: None,
        cancellable: input.interactive(),
    };
    if input.interactive() {
        writeln!(
            out,
            "vlmdb shell on {} — \\? for help, \\q to quit",
            store.location()
        )?;
    }
    // What the session prints appears as soon as it is printed (stdout is buffered for result tables): the banner
    // now, every result and meta-command's output before the next prompt.
    out.flush()?;
    let mut buffer = String::new();
    let mut failed = false;
    // Lines of files run with `\i`, read before the next input line; their depth of inclusion.
    let mut included: VecDeque<Line> = VecDeque::new();
    let mut depth = 0usize;
    // The store's table names are read again for completion before the next statement is typed, and the columns
    // of every table after a statement that wrote (only new tables' otherwise).
    let (mut stale, mut wrote) = (true, true);
    loop {
        if stale && buffer.is_empty() && included.is_empty() {
            let engine = &session.engine;
            if let Some(completions) = input.completions() {
                // Completion without the newest tables is better than no session.
                let _ = completions.refresh(engine, wrote).await;
            }
            (stale, wrote) = (false, false);
        }
        let prompt = if buffer.is_empty() {
            PROMPT
        } else {
            CONTINUATION
        };
        let from_file = !included.is_empty();
        let line = match included.pop_front() {
            Some(line) => line,
            None => match input.next_line(prompt, &buffer)? {
                None => break,
                Some(line) => line,
            },
        };
        let line = match line {
            Line::Interrupted => {
                buffer.clear();
                continue;
            }
            Line::EndOfInclude => {
                depth -= 1;
                if !buffer.trim().is_empty() {
                    let sql = std::mem::take(&mut buffer);
                    let ran = run_sql(&mut session, &sql, out).await?;
                    failed |= ran.failed;
                    wrote |= ran.wrote;
                    stale = true;
                }
                buffer.clear();
                continue;
            }
            Line::Text(line) => line,
        };
        if buffer.trim().is_empty() && line.trim_start().starts_with('\\') {
            buffer.clear();
            if !from_file {
                input.remember(&line);
            }
            match line.parse::<MetaCommand>() {
                Ok(MetaCommand::Quit) => break,
                Ok(MetaCommand::Include(path)) => match read_include(&path, depth) {
                    Ok(lines) => {
                        depth += 1;
                        included.push_front(Line::EndOfInclude);
                        for line in lines.into_iter().rev() {
                            included.push_front(Line::Text(line));
                        }
                    }
                    Err(e) => failed |= report(e)?,
                },
                Ok(command) => {
                    if let Err(e) = meta_command(&mut session, command, out).await {
                        failed |= report(e)?;
                    }
                }
                Err(e) => failed |= report(e)?,
            }
            out.flush()?;
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if buffer.trim_end().ends_with(';') {
            let sql = std::mem::take(&mut buffer);
            if !from_file {
                input.remember(&sql);
            }
            let ran = run_sql(&mut session, &sql, out).await?;
            failed |= ran.failed;
            wrote |= ran.wrote;
            stale = true;
            out.flush()?;
        }
    }
    if !buffer.trim().is_empty() {
        failed |= run_sql(&mut session, &buffer, out).await?.failed;
    }
    input.save_history();
    Ok(if failed && !input.interactive() { 1 } else { 0 })
}

/// The lines of a file run with `\i`.
fn read_include(path: &Path, depth: usize) -> Result<Vec<String>> {
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(Error::Usage(format!(
            "\\i {}: files include each other more than {MAX_INCLUDE_DEPTH} deep (a file that runs itself?)",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// How running a statement or several went.
struct Ran {
    failed: bool,
    /// A statement may have changed the store (a write ran, or an error came after one might have).
    wrote: bool,
}

/// Run the statements of `sql`, printing an error and going on.
async fn run_sql(session: &mut Session, sql: &str, out: &mut dyn Write) -> Result<Ran> {
    match statements(session, sql, out).await {
        Ok(wrote) => Ok(Ran {
            failed: false,
            wrote,
        }),
        Err(e) => Ok(Ran {
            failed: report(e)?,
            wrote: true,
        }),
    }
}

/// Print an error and keep going; a closed output pipe ends the session instead.
fn report(error: Error) -> Result<bool> {
    if error.is_broken_pipe() {
        return Err(error);
    }
    eprintln!("error: {error}");
    Ok(true)
}

/// `work`, ended early by Ctrl-C when the session is interactive.
async fn cancellable<T>(
    enabled: bool,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if !enabled {
        return work.await;
    }
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Err(Error::Cancelled),
    }
}

/// Run the statements of `sql` in order; returns whether any wrote to the store.
async fn statements(session: &mut Session, sql: &str, out: &mut dyn Write) -> Result<bool> {
    let mut wrote = false;
    for statement in session.engine.parse(sql)? {
        let started = Instant::now();
        let result = if writes_store(&statement) {
            wrote = true;
            let mut params = session.params.clone();
            let run_id = rebind_run_id(&mut params)?;
            let spec = sql_run_spec("shell", &statement.to_string(), &params);
            // A cancelled write closes its run as failed; Lance commits a statement whole or not at all.
            let work = cancellable(
                session.cancellable,
                session.engine.execute(statement, &params),
            );
            recorded(&session.engine, run_id, spec, work).await?
        } else {
            cancellable(
                session.cancellable,
                session.engine.execute(statement, &session.params),
            )
            .await?
        };
        session.print(out, &result)?;
        if session.timing {
            eprintln!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(wrote)
}

async fn meta_command(
    session: &mut Session,
    command: MetaCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        MetaCommand::ListTables => {
            let result = meta::list_tables(&session.engine).await?;
            session.print(out, &result)
        }
        MetaCommand::Describe(name) => {
            let result = meta::describe(&session.engine, &name).await?;
            session.print(out, &result)
        }
        MetaCommand::Functions { all } => {
            let result = meta::list_functions(&session.engine, all)?;
            session.print(out, &result)
        }
        MetaCommand::Function(name) => match &mut session.output {
            Some((_, file)) => meta::describe_function(&session.engine, &name, file),
            None => meta::describe_function(&session.engine, &name, out),
        },
        MetaCommand::SetFormat(format) => {
            session.printer.format = format;
            eprintln!("Output format is {}.", format.as_str());
            Ok(())
        }
        MetaCommand::Timing => {
            session.timing = !session.timing;
            eprintln!("Timing is {}.", on_off(session.timing));
            Ok(())
        }
        MetaCommand::Expanded(setting) => {
            session.expanded = setting.unwrap_or(!session.expanded);
            eprintln!("Expanded display is {}.", on_off(session.expanded));
            Ok(())
        }
        MetaCommand::MaxRows(rows) => {
            session.max_rows = rows;
            match rows {
                Some(n) => eprintln!("Tables on the terminal show at most {n} rows."),
                None => eprintln!("Tables on the terminal show every row."),
            }
            Ok(())
        }
        MetaCommand::Output(None) => {
            if let Some((path, mut file)) = session.output.take() {
                file.flush().map_err(|e| Error::io(&path, e))?;
                eprintln!(
                    "Results go to the screen again ({} closed).",
                    path.display()
                );
            }
            Ok(())
        }
        MetaCommand::Output(Some(path)) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            eprintln!("Results go to {} (\\o alone ends).", path.display());
            session.output = Some((path, file));
            Ok(())
        }
        MetaCommand::Help => {
            writeln!(out, "{}", meta::HELP)?;
            Ok(())
        }
        // Handled by the loop.
        MetaCommand::Include(_) | MetaCommand::Quit => Ok(()),
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
