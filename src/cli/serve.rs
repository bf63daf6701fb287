//! `portcullis serve` and `portcullis config`: run the gateway from a configuration file
//! or the embedded default, and print that default to start a real one from.

use super::CliError;
use clap::{Args, Subcommand};
use portcullis::config::{Config, DEFAULT_TOML};
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Gateway configuration (TOML). Without it, the embedded default runs: the example
    /// renewal-review policies and built-in demo backends on loopback.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Override `server.listen`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Override `server.cores` (worker threads; 0 = one per core).
    #[arg(long)]
    pub cores: Option<usize>,
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the embedded default configuration (every field documented).
    Default,
    /// Check a configuration file and report the first problem, naming the field.
    Check { file: PathBuf },
}

pub fn load(args: &ServeArgs) -> Result<Config, CliError> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p).map_err(|e| CliError::Usage(e.to_string()))?,
        None => Config::embedded().map_err(|e| CliError::Usage(e.to_string()))?,
    };
    if let Some(l) = &args.listen {
        cfg.server.listen = l.clone();
        cfg.listen_addr()
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    if let Some(c) = args.cores {
        cfg.server.cores = c;
    }
    Ok(cfg)
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    let cfg = load(&args)?;
    let running = portcullis::gateway::start(&cfg).map_err(|e| CliError::Usage(e.to_string()))?;
    let active = running.shared.active.load();
    portcullis::info!(
        "portcullis {} listening on http://{} ({} worker(s), {} driver)",
        env!("CARGO_PKG_VERSION"),
        running.server.addr,
        running.workers,
        running.server.driver.name()
    );
    portcullis::info!(
        "policy bundle {} ({} tools), config {}",
        active.bundle.meta_version(),
        active.bundle.tools().count(),
        cfg.source
    );
    if let Some(dir) = &running.demo_issuer_dir {
        portcullis::info!(
            "demo issuer key: {} (private.pem, jwks.json)",
            dir.display()
        );
        portcullis::info!(
            "mint an envelope: portcullis mint --key {}/private.pem --claims policies/envelopes/renewal-review.json --ttl 15m",
            dir.display()
        );
    }
    for t in running.server.threads {
        let _ = t.join();
    }
    Ok(())
}

pub fn config(cmd: ConfigCmd) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Default => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        ConfigCmd::Check { file } => {
            let cfg = Config::load(&file).map_err(|e| CliError::Usage(e.to_string()))?;
            println!("{}: ok ({} upstreams)", cfg.source, cfg.upstreams.len());
            Ok(())
        }
    }
}
