//! The `portcullis` command line: argument parsing and dispatch. Each subcommand lives in
//! its own module and returns a `CliError`; `main` prints it and picks the exit code.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use thiserror::Error;

/// Everything a subcommand can fail with. The message says what to fix.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Envelope {
        context: String,
        source: portcullis::envelope::EnvelopeError,
    },
    #[error("{0}")]
    Usage(String),
    /// A verification refusal: printed as `refused: <code>: <message>`.
    #[error("refused: {code}: {0}", code = .0.code())]
    Refused(portcullis::envelope::EnvelopeError),
    /// Standard output could not be written; a closed pipe (`... | head -1`) ends the
    /// command quietly rather than with a panic.
    #[error("cannot write to standard output: {0}")]
    Stdout(std::io::Error),
}

impl CliError {
    /// True when the reader of standard output went away: nothing to report.
    pub fn is_closed_stdout(&self) -> bool {
        matches!(self, CliError::Stdout(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Writes formatted text to standard output, returning `CliError::Stdout` on failure
/// (`println!` panics instead, for example when piped into `head`).
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)
}

/// `println!` for the CLI: `outln!(...)?` propagates a write failure as a `CliError`.
macro_rules! outln {
    () => {
        $crate::cli::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the CLI, as `outln!` without the newline.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

impl CliError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.into(),
            source,
        }
    }
}

// After the macros above, which the subcommands use.
pub mod envelope_cmds;
pub mod ops;
pub mod serve;
pub mod vault_cmds;
pub mod walkthrough;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Least-privilege gateway for AI agents",
    long_about = "Portcullis sits between AI agents and the tools they call. Agents carry a signed \
identity envelope (who they act for, in which task, for what purpose, within which limits); \
the gateway verifies it, decides each call against compiled Cedar policy, and calls the tool \
with a credential from its own vault.\n\nStart with `portcullis demo`, or create keys with \
`portcullis keygen --out keys`, then `portcullis mint` an envelope and `portcullis verify` it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Generate an Ed25519 issuer key pair: private.pem (PKCS#8, mode 0600), public.pem (SPKI)
    /// and jwks.json.
    Keygen(envelope_cmds::KeygenArgs),
    /// Sign an identity envelope from a claims file (the seed's JSON shape) and print the token.
    Mint(envelope_cmds::MintArgs),
    /// Verify a token against trusted keys; print its claims (exit 0) or the refusal (exit 1).
    Verify(envelope_cmds::VerifyArgs),
    /// Decode a token's header and claims WITHOUT verifying anything.
    Inspect(envelope_cmds::InspectArgs),
    /// Run the gateway (with no --config: the embedded default, example policies and
    /// built-in demo backends).
    Serve(serve::ServeArgs),
    /// Print or check gateway configuration.
    #[command(subcommand)]
    Config(serve::ConfigCmd),
    /// Manage the encrypted credential vault (init, put, list, rm).
    Vault(vault_cmds::VaultArgs),
    /// Check a tamper-evident audit trail.
    #[command(subcommand)]
    Audit(ops::AuditCmd),
    /// Push a compiled policy bundle to a running gateway (admin API); swapped atomically.
    Push(ops::PushArgs),
    /// Revoke an envelope (and its descendants), a session or a task on a running gateway.
    Revoke(ops::RevokeArgs),
    /// Walk through the renewal-review scenario: mint the seed's envelope, verify it, and
    /// watch a tampered copy get refused.
    Demo(walkthrough::DemoArgs),
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Keygen(a) => envelope_cmds::keygen(a),
        Command::Mint(a) => envelope_cmds::mint(a),
        Command::Verify(a) => envelope_cmds::verify(a),
        Command::Inspect(a) => envelope_cmds::inspect(a),
        Command::Demo(a) => walkthrough::run(a),
        Command::Serve(a) => serve::serve(a),
        Command::Config(c) => serve::config(c),
        Command::Vault(a) => vault_cmds::run(a),
        Command::Audit(c) => ops::audit(c),
        Command::Push(a) => ops::push(a),
        Command::Revoke(a) => ops::revoke(a),
    }
}
