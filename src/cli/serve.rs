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
    // Signals are handled on this thread: SIGHUP reloads the bundle file, SIGTERM and
    // SIGINT shut down gracefully. Installed before the gateway says it is listening: a
    // SIGHUP sent on that word must reload, not kill the process (its default action).
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .map_err(|e| CliError::Usage(format!("cannot install signal handlers: {e}")))?;
    let files = portcullis::server::fd_limit::raise();
    let running = portcullis::gateway::start(&cfg).map_err(|e| CliError::Usage(e.to_string()))?;
    banner(&cfg, &running);
    open_files(files);
    for sig in signals.forever() {
        if sig == SIGHUP {
            reload(&cfg, &running);
            continue;
        }
        portcullis::info!("shutting down: draining in-flight calls and sealing the audit trail");
        running.shutdown();
        portcullis::info!("stopped");
        return Ok(());
    }
    Ok(())
}

fn banner(cfg: &Config, running: &portcullis::gateway::Running) {
    let active = running.shared.active.load();
    let meta = active.bundle.meta();
    portcullis::info!(
        "portcullis {} listening on http://{} ({} worker(s), {} driver)",
        env!("CARGO_PKG_VERSION"),
        running.server.addr,
        running.workers,
        running.server.driver.name()
    );
    if let Some(a) = &running.admin {
        portcullis::info!("admin API on http://{} (bearer token required)", a.addr);
    }
    if let Some(t) = &running.admin_token_file {
        portcullis::info!("generated admin token: {}", t.display());
    }
    portcullis::info!(
        "policy bundle {} ({} tools), config {}",
        meta.version,
        active.bundle.tools().len(),
        cfg.source
    );
    portcullis::info!("audit trail: {}", running.audit_dir.display());
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
}

/// The open-file limit bounds how many agents can be connected at once: said at start,
/// so a gateway that will refuse connections at a few hundred says so before it does.
fn open_files(l: portcullis::server::fd_limit::FdLimit) {
    let raised = if l.now > l.before {
        format!(" (raised from {})", l.before)
    } else {
        String::new()
    };
    if l.now < 4096 {
        portcullis::warn!(
            "open files: at most {}{raised}, about {} agent connections at once; for more, {}",
            l.now,
            l.connections(),
            portcullis::server::fd_limit::RAISE_HINT
        );
    } else {
        portcullis::info!(
            "open files: at most {}{raised}, about {} agent connections at once",
            l.now,
            l.connections()
        );
    }
}

fn reload(cfg: &Config, running: &portcullis::gateway::Running) {
    let portcullis::config::Source::File(path) = cfg.source_of(&cfg.policy.bundle) else {
        portcullis::warn!("SIGHUP: policy.bundle is built in; nothing to reload");
        return;
    };
    match std::fs::read(&path) {
        Ok(bytes) => match running.shared.activate_bytes(&bytes, None) {
            Ok(()) => {}
            Err(e) => portcullis::warn!(
                "SIGHUP: {}: {e}; the previous bundle keeps serving",
                path.display()
            ),
        },
        Err(e) => portcullis::warn!(
            "SIGHUP: {}: {e}; the previous bundle keeps serving",
            path.display()
        ),
    }
}

pub fn config(cmd: ConfigCmd) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Default => {
            out!("{DEFAULT_TOML}")?;
            Ok(())
        }
        ConfigCmd::Check { file } => {
            let cfg = Config::load(&file).map_err(|e| CliError::Usage(e.to_string()))?;
            outln!("{}: ok ({} upstreams)", cfg.source, cfg.upstreams.len())?;
            Ok(())
        }
    }
}
