//! The `vlmdb` binary: parse arguments, run the library, map errors to exit codes (DESIGN §5: 0 ok,
//! 1 a check or some items failed, 2 usage or fatal error). A closed output pipe is not an error.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use clap::Parser;
use vlmdb::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
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
