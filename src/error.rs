//! The crate's one error type. Variants name the thing that went wrong (table, file, argument, row) and keep
//! the underlying error as their source, so callers can both print a one-line message and inspect the cause.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Everything that can fail in vlmdb.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command that works on an existing store was pointed at a path where there is none.
    #[error(
        "no vlmdb store at {path} (nothing was created there: `vlmdb init`, `vlmdb ingest` and `vlmdb import` create \
         a store; is --db mistyped?)"
    )]
    NoStore { path: PathBuf },

    /// The `--db` path exists but is not a directory.
    #[error("store path {path} is not a directory")]
    NotADirectory { path: PathBuf },

    /// The store directory does not allow writing (its permission bits have no write bit).
    #[error("store {path} is read-only: {action} needs to write to it")]
    ReadOnlyStore { path: PathBuf, action: String },

    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An input file (dataset annotations, SQL file, …) is malformed.
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },

    /// `--strict` ingest stopped at its first bad item.
    #[error(
        "{source_file}: {item}: {reason} (--strict stops at the first bad item; nothing was written)"
    )]
    Rejected {
        source_file: String,
        item: String,
        reason: String,
    },

    /// Lance could not open a version of a table: a damaged or unreadable manifest (Lance panics on some damage;
    /// the panic is caught where the table is opened).
    #[error("table '{table}' cannot be read at {version}: {reason}; its manifests are in {files}")]
    DamagedTable {
        table: String,
        version: String,
        files: PathBuf,
        reason: String,
    },

    /// A table the command needs is not in the store.
    #[error("table '{name}' not found in the store (run `vlmdb init`, or `\\d` to list tables)")]
    UnknownTable { name: String },

    /// A schema file under `schemas/` is malformed.
    #[error("schema file {file}, line {line}: {message}")]
    SchemaFile {
        file: String,
        line: usize,
        message: String,
    },

    /// Data does not fit the schema of the table it is written to.
    #[error("table '{table}': {message}")]
    SchemaMismatch { table: String, message: String },

    /// A `--param` argument or a `$name` placeholder is wrong.
    #[error("parameter {name}: {message}")]
    Param { name: String, message: String },

    /// A command-line argument or shell command is wrong.
    #[error("{0}")]
    Usage(String),

    /// The user interrupted a running statement (Ctrl-C in the shell); a write is either committed whole or not
    /// at all.
    #[error("cancelled (Ctrl-C)")]
    Cancelled,

    /// No embedding space by this name (nor a model whose space exists).
    #[error("unknown space '{name}'{}", known_spaces(.known))]
    UnknownSpace { name: String, known: Vec<String> },

    /// Two vectors (or a vector and a space) that must have the same width do not.
    #[error("dimension mismatch: {left} has {left_dim} dimensions but {right} has {right_dim}")]
    DimensionMismatch {
        left: String,
        left_dim: usize,
        right: String,
        right_dim: usize,
    },

    /// No run with this id.
    #[error("run '{id}' not found")]
    UnknownRun { id: String },

    /// A model could not be resolved, loaded or run; `model` is what the user named (alias, `hf:` id or directory).
    #[error("model {model}: {message}")]
    Model { model: String, message: String },

    /// One input of a model call is bad (an image that does not decode, a non-finite output); `input` is its
    /// position in the call, which callers translate to their row.
    #[error("model {model}: input {input}: {message}")]
    ModelInput {
        model: String,
        input: usize,
        message: String,
    },

    /// A model file is neither local nor in the Hugging Face cache, and downloading is not allowed or failed.
    #[error("model {repo}@{revision}: {file}: {message}")]
    ModelFile {
        repo: String,
        revision: String,
        file: String,
        message: String,
    },

    /// Candle failed while loading or running a model.
    #[error("model {model}: {source}")]
    Candle {
        model: String,
        #[source]
        source: candle_core::Error,
    },

    /// A tensor computation outside a model (similarity scores, clustering) failed.
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        #[source]
        source: candle_core::Error,
    },

    /// Drawing or encoding a plot failed.
    #[error("plot {plot}: {source}")]
    Plot {
        plot: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The store's object store could not be reached or refused the credentials (`--db s3://…`).
    #[error(
        "store {store}: {} (credentials and endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
         AWS_ENDPOINT_URL, AWS_REGION, or the GCS/Azure equivalents)",
        server_answer(&source.to_string())
    )]
    StoreUnreachable {
        store: String,
        #[source]
        source: Box<lancedb::Error>,
    },

    /// LanceDB failed.
    #[error("store: {}", without_location(&source.to_string()))]
    Lance {
        #[from]
        source: lancedb::Error,
    },

    /// DataFusion failed to parse, plan or execute SQL.
    #[error("{source}{hint}", hint = sql_hint(source))]
    Sql {
        #[from]
        source: DataFusionError,
    },

    /// Arrow failed (building or printing record batches).
    #[error("arrow: {source}")]
    Arrow {
        #[from]
        source: arrow::error::ArrowError,
    },

    /// Parquet failed (reading or writing a file).
    #[error("parquet: {source}")]
    Parquet {
        #[from]
        source: parquet::errors::ParquetError,
    },

    /// A background task (a model load or forward pass on a blocking thread) panicked or was cancelled.
    #[error("{what}: {source}")]
    Task {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },

    /// A tokenizer could not encode a text (`what` names it: "text 3", "the prompt \"a cat\"").
    #[error("tokenizing {what}: {source}")]
    Tokenizer {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Encoding or decoding safetensors (checkpoints) failed.
    #[error("{what}: {source}")]
    Safetensors {
        what: String,
        #[source]
        source: safetensors::SafeTensorError,
    },

    /// Encoding or decoding an image outside ingest (benchmark inputs, plots' thumbnails) failed.
    #[error("{what}: {source}")]
    Image {
        what: String,
        #[source]
        source: image::ImageError,
    },

    /// An error of a step that the user knows by another name (the validation split of a training run, …).
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },

    /// JSON encoding or decoding failed.
    #[error("json: {source}")]
    Json {
        #[from]
        source: serde_json::Error,
    },

    /// Writing results to the output failed (a closed pipe is reported as [`Error::is_broken_pipe`]).
    #[error("output: {source}")]
    Output {
        #[from]
        source: std::io::Error,
    },
}

/// What to do about a DataFusion error whose own message does not say.
fn sql_hint(error: &DataFusionError) -> &'static str {
    let text = error.to_string();
    if text.contains("non UTF-8") {
        " (a binary column such as images.data is not text: byte_length(column) gives its size in bytes)"
    } else if text.contains("Resources exhausted") {
        " (the query needs more memory than --memory-limit / VLMDB_MEMORY_LIMIT allows: raise it, or narrow the \
         query)"
    } else {
        ""
    }
}

/// A Lance message without the source location Lance appends (`…, /root/.cargo/registry/…/utils.rs:192:24`):
/// a path inside vlmdb's dependencies means nothing to a user.
pub fn without_location(message: &str) -> String {
    message
        .split(", ")
        .filter(|part| !(part.starts_with('/') && part.contains(".rs:")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An object store's refusal as its server put it (`NoSuchBucket: The specified bucket does not exist`), taken
/// from the XML error body S3-compatible servers answer with; else the whole message, less source locations.
fn server_answer(message: &str) -> String {
    let element = |tag: &str| {
        let open = format!("<{tag}>");
        let start = message.find(&open)? + open.len();
        let end = message[start..].find(&format!("</{tag}>"))?;
        Some(message[start..start + end].to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(text)) => format!("the server answered {code}: {text}"),
        (Some(code), None) => format!("the server answered {code}"),
        _ => without_location(message),
    }
}

fn known_spaces(known: &[String]) -> String {
    if known.is_empty() {
        " (the store has no spaces yet: `vlmdb embed` or `vlmdb import embeddings` makes one)"
            .to_string()
    } else {
        format!(" (spaces in the store: {})", known.join(", "))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A model-input error with the input's name (`f(position)`, e.g. "image 'shapes/scene_001'") put in front of
    /// its message; other errors pass unchanged.
    pub fn naming_input(self, f: impl FnOnce(usize) -> String) -> Error {
        match self {
            Error::ModelInput {
                model,
                input,
                message,
            } => Error::ModelInput {
                message: format!("{}: {message}", f(input)),
                model,
                input,
            },
            other => other,
        }
    }

    /// A mapper for a background task that failed (panicked or was cancelled), named by `what`.
    pub fn task(what: &'static str) -> impl Fn(tokio::task::JoinError) -> Error + Copy {
        move |source| Error::Task {
            what: what.to_string(),
            source,
        }
    }

    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A mapper for candle errors of a computation outside a model, named by `context`.
    pub fn tensor(context: &'static str) -> impl Fn(candle_core::Error) -> Error + Copy {
        move |source| Error::Tensor {
            context: context.to_string(),
            source,
        }
    }

    /// True when a write lost to another writer: Lance's commit conflict (its own retries used up) or write
    /// contention, and with `timeouts` also a merge that ran out of its retry time. lancedb wraps these in its own
    /// error type without a variant for them, so the message is what tells them apart.
    pub fn is_write_conflict(&self, timeouts: bool) -> bool {
        let Error::Lance { source } = self else {
            return false;
        };
        let text = source.to_string().to_ascii_lowercase();
        text.contains("commit conflict")
            || text.contains("write contention")
            || text.contains("too many concurrent writers")
            || (timeouts && text.contains("timed out"))
    }

    /// True when the error is a closed output pipe (`vlmdb sql … | head`), which is not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Output { source } => source.kind() == std::io::ErrorKind::BrokenPipe,
            Error::Arrow {
                source: arrow::error::ArrowError::IoError(_, e),
            } => e.kind() == std::io::ErrorKind::BrokenPipe,
            _ => false,
        }
    }

    /// The process exit code for this error (DESIGN §5: 2 = usage or fatal error).
    pub fn exit_code(&self) -> u8 {
        2
    }

    /// Unwrap DataFusion errors that merely carry one of ours or LanceDB's, so the message names the real cause.
    pub fn from_datafusion(err: DataFusionError) -> Self {
        match err {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(inner) => match inner.downcast::<lancedb::Error>() {
                    Ok(lance) => Error::Lance { source: *lance },
                    Err(inner) => Error::Sql {
                        source: DataFusionError::External(inner),
                    },
                },
            },
            DataFusionError::Context(_, inner)
                if matches!(*inner, DataFusionError::External(_)) =>
            {
                Error::from_datafusion(*inner)
            }
            other => Error::Sql { source: other },
        }
    }
}

/// Dependency panics being caught right now (see [`catch_panic`]): while any is, the panic hook that
/// [`quiet_caught_panics`] installs stays silent, so a caught panic reaches the user as one error line, not as a
/// backtrace.
static CATCHING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Run `work`, turning a panic inside it (Lance panics on some damaged files) into `Err(message)`.
pub async fn catch_panic<F: std::future::Future>(
    work: F,
) -> std::result::Result<F::Output, String> {
    use futures::FutureExt;
    use std::sync::atomic::Ordering;
    struct Catching;
    impl Drop for Catching {
        fn drop(&mut self) {
            CATCHING.fetch_sub(1, Ordering::SeqCst);
        }
    }
    CATCHING.fetch_add(1, Ordering::SeqCst);
    let _catching = Catching;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .map_or_else(|| "a panic".to_string(), without_location)
        })
}

/// Install a panic hook that prints nothing for the panics [`catch_panic`] catches (they become errors) and
/// reports any other as before. Called once by the binary.
pub fn quiet_caught_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if CATCHING.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            report(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::without_location;

    #[test]
    fn lance_source_locations_are_left_out() {
        assert_eq!(
            without_location(
                "LanceError(IO): file size is too small, /root/.cargo/registry/src/x/lance-io-14.0.2/src/utils.rs:192:24"
            ),
            "LanceError(IO): file size is too small"
        );
        assert_eq!(without_location("a, b"), "a, b");
    }
}
