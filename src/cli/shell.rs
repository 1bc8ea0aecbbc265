//! The SQL shell: line editing and persistent history on a terminal; plain line reading (no prompts on stdout)
//! when stdin is piped, so scripts can drive it. Statements end with `;` and may span lines; an error is printed
//! and the shell keeps going.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::args::ShellArgs;
use super::format::{Format, write_result};
use super::meta::{self, MetaCommand};
use crate::commands::sql::{bind_run_id, rebind_run_id, recorded, sql_run_spec};
use crate::error::{Error, Result};
use crate::sql::{Engine, Params, writes_store};
use crate::store::Store;

const PROMPT: &str = "vlmdb> ";
const CONTINUATION: &str = "  ...> ";

/// Where lines come from.
enum Input {
    Terminal {
        editor: Box<DefaultEditor>,
        history: Option<PathBuf>,
    },
    Piped(std::io::StdinLock<'static>),
}

/// What the user gave: a line, or Ctrl-C.
enum Line {
    Text(String),
    Interrupted,
}

impl Input {
    fn open() -> Input {
        let stdin = std::io::stdin();
        if stdin.is_terminal()
            && let Ok(mut editor) = DefaultEditor::new()
        {
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
        Input::Piped(stdin.lock())
    }

    /// The next line, or `None` at end of input.
    fn next_line(&mut self, prompt: &str) -> Result<Option<Line>> {
        match self {
            Input::Terminal { editor, .. } => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Ok(Some(Line::Text(line)))
                }
                // Ctrl-C abandons the statement being typed, Ctrl-D ends the session.
                Err(ReadlineError::Interrupted) => Ok(Some(Line::Interrupted)),
                Err(ReadlineError::Eof) => Ok(None),
                Err(ReadlineError::Io(e)) => Err(Error::io("standard input", e)),
                Err(e) => Err(Error::Usage(format!("reading input: {e}"))),
            },
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
    format: Format,
    timing: bool,
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
    let mut session = Session {
        engine: Engine::new(store.clone(), device)
            .await?
            .with_external_access(access),
        params,
        format: args.format,
        timing: false,
    };
    let mut input = Input::open();
    if input.interactive() {
        writeln!(
            out,
            "vlmdb shell on {} — \\? for help, \\q to quit",
            store.root().display()
        )?;
    }
    // What the session prints appears as soon as it is printed (stdout is buffered for result tables): the banner
    // now, every result and meta-command's output before the next prompt.
    out.flush()?;
    let mut buffer = String::new();
    let mut failed = false;
    loop {
        let prompt = if buffer.is_empty() {
            PROMPT
        } else {
            CONTINUATION
        };
        let line = match input.next_line(prompt)? {
            None => break,
            Some(Line::Interrupted) => {
                buffer.clear();
                continue;
            }
            Some(Line::Text(line)) => line,
        };
        if buffer.trim().is_empty() && line.trim_start().starts_with('\\') {
            buffer.clear();
            match line.parse::<MetaCommand>() {
                Ok(MetaCommand::Quit) => break,
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
            if let Err(e) = statements(&session, &sql, out).await {
                failed |= report(e)?;
            }
            out.flush()?;
        }
    }
    if !buffer.trim().is_empty()
        && let Err(e) = statements(&session, &buffer, out).await
    {
        failed |= report(e)?;
    }
    input.save_history();
    Ok(if failed && !input.interactive() { 1 } else { 0 })
}

/// Print an error and keep going; a closed output pipe ends the session instead.
fn report(error: Error) -> Result<bool> {
    if error.is_broken_pipe() {
        return Err(error);
    }
    eprintln!("error: {error}");
    Ok(true)
}

async fn statements(session: &Session, sql: &str, out: &mut dyn Write) -> Result<()> {
    for statement in session.engine.parse(sql)? {
        let started = Instant::now();
        let result = if writes_store(&statement) {
            let mut params = session.params.clone();
            let run_id = rebind_run_id(&mut params)?;
            let spec = sql_run_spec("shell", &statement.to_string(), &params);
            let work = session.engine.execute(statement, &params);
            recorded(&session.engine, run_id, spec, work).await?
        } else {
            session.engine.execute(statement, &session.params).await?
        };
        write_result(out, session.format, &result)?;
        if session.timing {
            eprintln!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(())
}

async fn meta_command(
    session: &mut Session,
    command: MetaCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        MetaCommand::ListTables => {
            let result = meta::list_tables(&session.engine).await?;
            write_result(out, session.format, &result)
        }
        MetaCommand::Describe(name) => {
            let result = meta::describe(&session.engine, &name).await?;
            write_result(out, session.format, &result)
        }
        MetaCommand::Functions(None) => {
            let result = meta::list_functions(&session.engine)?;
            write_result(out, session.format, &result)
        }
        MetaCommand::Functions(Some(name)) => meta::describe_function(&session.engine, &name, out),
        MetaCommand::SetFormat(format) => {
            session.format = format;
            eprintln!("Output format is {}.", format.as_str());
            Ok(())
        }
        MetaCommand::Timing => {
            session.timing = !session.timing;
            eprintln!("Timing is {}.", if session.timing { "on" } else { "off" });
            Ok(())
        }
        MetaCommand::Help => {
            writeln!(out, "{}", meta::HELP)?;
            Ok(())
        }
        MetaCommand::Quit => Ok(()),
    }
}
