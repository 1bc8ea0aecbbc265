//! The `vlmdb` binary: parse arguments, run the library, map errors to exit codes (DESIGN §5: 0 ok,
//! 1 a check or some items failed, 2 usage or fatal error). A closed output pipe is not an error.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use clap::Parser;
use vlmdb::cli::{self, Cli};

/// Stack of the threads that plan and run statements: DataFusion plans expressions recursively, so a `WHERE` of
/// hundreds of `OR`s or a sum of hundreds of terms needs far more than the default 8 MiB (datafusion-cli does the
/// same).
const STACK_BYTES: usize = 256 << 20;

fn main() -> ExitCode {
    // Panics inside dependencies that vlmdb catches (Lance on damaged files) become one error line.
    vlmdb::error::quiet_caught_panics();
    // The whole command runs on a thread with a large stack (the main thread's size is fixed by the OS).
    match std::thread::Builder::new()
        .name("vlmdb".into())
        .stack_size(STACK_BYTES)
        .spawn(run)
        .map(|handle| handle.join())
    {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => {
            eprintln!("error: internal error (a panic, reported above)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: starting the command thread: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> ExitCode {
    let args = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(STACK_BYTES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let outcome = runtime.block_on(cli::run(args, &mut out));
    let flushed = out.flush();
    match outcome {
        Ok(code) => match flushed {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("error: output: {e}");
                ExitCode::from(2)
            }
            _ => ExitCode::from(code),
        },
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
