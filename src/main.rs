//! The `portcullis` binary: parses the command line and reports errors with an exit code
//! (1 for a failure or refusal, 2 for bad usage, as clap does).
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`portcullis inspect - | head -1`): stop
        // quietly with the status a shell reports for SIGPIPE.
        Err(e) if e.is_closed_stdout() => ExitCode::from(141),
        Err(e) => {
            eprintln!("portcullis: {e}");
            match e {
                cli::CliError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
