//! `portcullis-loadtest`: the command line over the load-test library. Parsing and
//! messages only; the work is in the library's modules.

use clap::{Args, Parser, Subcommand, ValueEnum};
use portcullis::server::Driver;
use portcullis::server::fd_limit::FdLimit;
use portcullis_loadtest::backend::{self, BackendConfig};
use portcullis_loadtest::compare::{self, CompareConfig, CpuPlan, GatewayUnderTest, OtherProxy};
use portcullis_loadtest::endpoint::{self, Endpoint};
use portcullis_loadtest::generator::{self, Mode, RunConfig, Target};
use portcullis_loadtest::report::{self, Stats};
use portcullis_loadtest::setup::{self, GatewaySettings};
use portcullis_loadtest::stop;
use portcullis_loadtest::swap::{SwapConfig, swap_storm};
use portcullis_loadtest::workload::{self, Mix};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Load generator for Portcullis: open-loop constant-rate runs (latency measured from each
/// request's intended send time, so coordinated omission is corrected), closed-loop
/// maximum-throughput runs, a realistic agent-fleet workload, built-in backends, and
/// interleaved comparisons of direct, Portcullis and other proxies.
#[derive(Parser)]
#[command(name = "portcullis-loadtest", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compare direct, Portcullis and other proxies in one interleaved run. With no
    /// options: starts the built-in backend and a gateway in this process and measures
    /// both at a few rates and at maximum throughput.
    Compare(CompareArgs),
    /// Measure one target (a running gateway, a backend, another proxy).
    Run(RunArgs),
    /// Latency through an in-process gateway while policy bundles are pushed to its admin
    /// API back to back, against the same run without pushes.
    SwapStorm(SwapArgs),
    /// Run the built-in backend: the example tools' HTTP routes and an MCP server.
    Backend(BackendArgs),
    /// Run a bare monoio TCP hop (bytes copied both ways, nothing else) in front of an
    /// upstream: the floor for any proxy on the same runtime.
    Hop(HopArgs),
    /// Write a gateway deployment (issuer key, vault, configuration) in front of a
    /// backend address, for a gateway run as its own process: `portcullis serve --config
    /// DIR/gateway.toml`.
    Setup(SetupArgs),
}

fn duration(s: &str) -> Result<Duration, String> {
    portcullis::clock::parse_duration(s)
}

#[derive(Clone, Copy)]
struct DriverArg(Driver);

fn driver(s: &str) -> Result<DriverArg, String> {
    Driver::parse(s)
        .map(DriverArg)
        .ok_or_else(|| format!("`{s}`: expected auto, io_uring or legacy"))
}

/// A CPU list from the command line. A newtype so that clap takes `0,1` as one value
/// (an `Option<Vec<usize>>` field would ask for a `usize` parser, and the derive panics
/// when the flag is given).
#[derive(Clone, Debug, PartialEq)]
struct Cpus(Vec<usize>);

/// `0,1`, or `none` for no pinning; CPUs this machine does not have are refused here.
fn cpu_list(s: &str) -> Result<Cpus, String> {
    if s == "none" {
        return Ok(Cpus(Vec::new()));
    }
    let allowed = portcullis_loadtest::cpu::allowed_cpus();
    let online = portcullis_loadtest::cpu::online_cpus();
    s.split(',')
        .map(|c| match c.trim().parse::<usize>() {
            Ok(c) if allowed.contains(&c) => Ok(c),
            Ok(c) if online.as_ref().is_some_and(|on| !on.contains(&c)) => Err(format!(
                "CPU {c} does not exist: this machine's CPUs are {:?}",
                online.as_deref().unwrap_or_default()
            )),
            Ok(c) => Err(format!(
                "CPU {c} is not one this process may run on (CPUs {allowed:?}; see taskset or the cgroup's cpuset)"
            )),
            Err(_) => Err(format!("`{c}` is not a CPU number")),
        })
        .collect::<Result<_, _>>()
        .map(Cpus)
}

/// Pins the calling thread (and the threads it spawns afterwards) to `cpus`, if given.
fn pin_here(cpus: &Option<Cpus>) -> Result<(), String> {
    match cpus {
        Some(Cpus(c)) if !c.is_empty() => monoio::utils::bind_to_cpu_set(c.iter().copied())
            .map_err(|e| format!("cannot pin to CPUs {c:?}: {e}")),
        _ => Ok(()),
    }
}

/// `NAME=HOST:PORT` (or `NAME=http://HOST:PORT`)
fn named_endpoint(s: &str) -> Result<(String, Endpoint), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or("expected NAME=HOST:PORT, e.g. nginx=127.0.0.1:18081")?;
    if name.is_empty() {
        return Err("the name before `=` is empty".into());
    }
    let e = endpoint::parse(addr).map_err(|e| format!("`{addr}`: {e}"))?;
    Ok((name.to_owned(), e))
}

/// Descriptors the process keeps for itself (runtimes, listeners, files).
const OWN_FILES: u64 = 64;

/// Whether `needed` descriptors fit under the open-file limit, and if not, what to do:
/// past it every connect fails, and the table would blame the target.
fn open_files_fit(limit: FdLimit, needed: u64, what: &str) -> Result<(), String> {
    let needed = needed + OWN_FILES;
    if needed <= limit.now {
        return Ok(());
    }
    Err(format!(
        "{what} needs about {needed} open files, and this process may open {} (the hard limit, `ulimit -Hn`): raise it, or use fewer connections",
        limit.now
    ))
}

/// `NAME=PID[,PID...]`
fn named_pids(s: &str) -> Result<(String, Vec<u32>), String> {
    let (name, pids) = s.split_once('=').ok_or("expected NAME=PID[,PID...]")?;
    let pids = pids
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{p}` is not a process id"))
        })
        .collect::<Result<_, _>>()?;
    Ok((name.to_owned(), pids))
}

#[derive(Args)]
struct Shape {
    /// Length of each measured run.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Keep-alive connections (open loop).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Generator threads (each a monoio runtime with its share of the connections).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Longest wait for an answer; slower ones count as `timeout` errors.
    #[arg(long, default_value = "5s", value_parser = duration)]
    timeout: Duration,
    /// Distinct envelopes (agents) the workload uses.
    #[arg(long, default_value_t = 500)]
    envelopes: usize,
    /// Write results (.hgrm, JSON, SVG) into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// Open-loop rates to measure, requests per second.
    #[arg(long, value_delimiter = ',', default_value = "2000,5000,10000,20000")]
    rates: Vec<f64>,
    /// Skip the closed-loop maximum-throughput run.
    #[arg(long)]
    no_max: bool,
    /// Do not measure the bare monoio TCP hop (a relay with no HTTP, policy or audit,
    /// on the gateway's CPUs: the floor for any proxy on the same runtime).
    #[arg(long)]
    no_hop: bool,
    /// Connections for the maximum-throughput run.
    #[arg(long, default_value_t = 32)]
    max_connections: usize,
    /// Times each target runs at each load (interleaved, the order rotating).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Another proxy in front of the built-in backend, as NAME=HOST:PORT or
    /// NAME=http://HOST:PORT (repeatable; a host name is resolved once, at start, and sent
    /// as the `Host` header). It must forward `GET /contracts/{id}` and the
    /// `Authorization` header unchanged.
    #[arg(long = "proxy", value_parser = named_endpoint)]
    proxies: Vec<(String, Endpoint)>,
    /// Process ids whose CPU time is a target's, as NAME=PID[,PID...] (for `--proxy`
    /// targets and an external gateway named `portcullis`).
    #[arg(long = "pids", value_parser = named_pids)]
    pids: Vec<(String, Vec<u32>)>,
    /// Where the built-in backend listens (a fixed port lets another proxy be
    /// configured in front of it). Port 0 (the default): any free port, or with --gateway
    /// the backend address its deployment's gateway.toml forwards to.
    #[arg(long, default_value = "127.0.0.1:0")]
    backend_listen: SocketAddr,
    /// Backend worker threads.
    #[arg(long, default_value_t = 1)]
    backend_threads: usize,
    /// Use a gateway already running at this address (started from `setup --out DIR`)
    /// instead of one in this process; needs --deployment. HOST:PORT or http://HOST:PORT.
    #[arg(long, requires = "deployment", value_parser = endpoint::parse)]
    gateway: Option<Endpoint>,
    /// The deployment directory the external gateway runs from.
    #[arg(long)]
    deployment: Option<PathBuf>,
    /// Worker threads of the in-process gateway.
    #[arg(long, default_value_t = 1)]
    gateway_cores: usize,
    /// CPUs for the in-process gateway ("none": unpinned). Default: CPU 0.
    #[arg(long, value_parser = cpu_list)]
    gateway_cpus: Option<Cpus>,
    /// CPUs for the backend. Default: CPU 0, beside the proxy under test.
    #[arg(long, value_parser = cpu_list)]
    backend_cpus: Option<Cpus>,
    /// CPUs for the load generator. Default: the last CPU.
    #[arg(long, value_parser = cpu_list)]
    client_cpus: Option<Cpus>,
    #[command(flatten)]
    shape: Shape,
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkloadKind {
    /// The agent-fleet mix through a gateway: allowed, denied (each reason), invalid and
    /// expired envelopes, delegated agents, MCP and plain HTTP (needs --deployment).
    Fleet,
    /// Allowed `contracts.read` calls through a gateway (needs --deployment).
    Allowed,
    /// The backend's own route, `GET /contracts/contract_7781`, with the credential: for
    /// the backend itself or a plain proxy in front of it.
    Direct,
}

#[derive(Args)]
struct RunArgs {
    /// Where to send: HOST:PORT, [V6]:PORT or http://HOST[:PORT]. A host name is resolved
    /// once, at start, and sent as the `Host` header.
    #[arg(long, value_parser = endpoint::parse)]
    target: Endpoint,
    /// What to send.
    #[arg(long, value_enum, default_value = "fleet")]
    workload: WorkloadKind,
    /// Deployment directory (from `setup`): the issuer key the gateway trusts and the
    /// backend's credentials.
    #[arg(long)]
    deployment: Option<PathBuf>,
    /// Credential to send with `--workload direct` when there is no deployment.
    #[arg(long)]
    credential: Option<String>,
    /// Open-loop rate, requests per second.
    #[arg(long, conflicts_with = "closed")]
    rate: Option<f64>,
    /// Closed loop: each connection sends as soon as its previous answer arrives.
    #[arg(long)]
    closed: bool,
    /// Closed loop for exactly this many requests instead of --duration.
    #[arg(long, conflicts_with = "rate")]
    requests: Option<u64>,
    /// CPUs to pin the generator threads to.
    #[arg(long, value_parser = cpu_list)]
    cpus: Option<Cpus>,
    /// A shell command run once the target is warmed up, before measuring (for example
    /// `callgrind_control -z PID` or starting a profiler); the run waits for it.
    #[arg(long, value_name = "CMD")]
    after_warmup: Option<String>,
    /// Interval of the latency-over-time log that --out writes (`NAME.hlog`, HdrHistogram's
    /// interval log). Long runs widen it to keep at most 1,200 intervals.
    #[arg(long, default_value = "1s", value_parser = duration)]
    log_interval: Duration,
    /// Name of the target in the report and output files.
    #[arg(long, default_value = "target")]
    name: String,
    /// Percent of calls the fleet mix expects to be denied by scope, purpose or policy.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100), default_value_t = 15)]
    denied_pct: u32,
    /// Percent with an expired or malformed envelope.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100), default_value_t = 2)]
    invalid_pct: u32,
    /// Percent of allowed calls made over MCP.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100), default_value_t = 20)]
    mcp_pct: u32,
    /// Percent of the envelopes that belong to delegated sub-agents.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100), default_value_t = 20)]
    delegated_pct: u32,
    /// Approximate request body size, bytes.
    #[arg(long, default_value_t = 512)]
    body_bytes: usize,
    #[command(flatten)]
    shape: Shape,
}

#[derive(Args)]
struct SwapArgs {
    /// Open-loop rate, requests per second.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Pause between bundle pushes (0ms: back to back).
    #[arg(long, default_value = "0ms", value_parser = duration)]
    interval: Duration,
    /// CPUs for the gateway (and backend) and for the generator, as in `compare`.
    #[arg(long, value_parser = cpu_list)]
    gateway_cpus: Option<Cpus>,
    #[arg(long, value_parser = cpu_list)]
    client_cpus: Option<Cpus>,
    #[command(flatten)]
    shape: Shape,
}

#[derive(Args)]
struct BackendArgs {
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Time spent on each request before answering (millisecond resolution).
    #[arg(long, default_value = "0ms", value_parser = duration)]
    service_time: Duration,
    /// Require the credentials of this deployment (from `setup`), as the gateway injects
    /// them; without it any credential is accepted.
    #[arg(long)]
    deployment: Option<PathBuf>,
    /// CPUs to pin the backend's threads to.
    #[arg(long, value_parser = cpu_list)]
    cpus: Option<Cpus>,
    /// I/O driver: auto, io_uring or legacy (epoll; what runs under valgrind).
    #[arg(long, default_value = "auto", value_parser = driver)]
    driver: DriverArg,
}

#[derive(Args)]
struct HopArgs {
    #[arg(long, default_value = "127.0.0.1:18082")]
    listen: SocketAddr,
    /// Where to relay to (the built-in backend, say): HOST:PORT, resolved once at start.
    #[arg(long, default_value = "127.0.0.1:18080", value_parser = endpoint::parse)]
    upstream: Endpoint,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CPUs to pin the hop's threads to.
    #[arg(long, value_parser = cpu_list)]
    cpus: Option<Cpus>,
    /// I/O driver: auto, io_uring or legacy.
    #[arg(long, default_value = "auto", value_parser = driver)]
    driver: DriverArg,
}

#[derive(Args)]
struct SetupArgs {
    /// Directory to write (gateway.toml, jwks.json, issuer.pem, vault.json, vault.key, ...).
    #[arg(long)]
    out: PathBuf,
    /// The backend's address (`portcullis-loadtest backend --listen`).
    #[arg(long, default_value = "127.0.0.1:18080")]
    backend: SocketAddr,
    /// The gateway's listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Gateway worker threads.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// The gateway's I/O driver: auto, io_uring or legacy (epoll; what runs under
    /// valgrind).
    #[arg(long, default_value = "auto", value_parser = driver)]
    driver: DriverArg,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A measuring command stopped by hand still reports what it measured; the servers
    // (`backend`, `hop`) keep the default, which ends them at once.
    if matches!(cli.cmd, Cmd::Compare(_) | Cmd::Run(_) | Cmd::SwapStorm(_))
        && let Err(e) = stop::install()
    {
        eprintln!("portcullis-loadtest: cannot install the Ctrl-C handler: {e}");
        return ExitCode::FAILURE;
    }
    // Many connections need many descriptors; the soft limit shells start with (1,024)
    // is far below the hard limit the process may raise itself to.
    let files = portcullis::server::fd_limit::raise();
    let r = match cli.cmd {
        Cmd::Compare(a) => cmd_compare(a, files),
        Cmd::Run(a) => cmd_run(a, files),
        Cmd::SwapStorm(a) => cmd_swap(a),
        Cmd::Backend(a) => cmd_backend(a),
        Cmd::Hop(a) => cmd_hop(a),
        Cmd::Setup(a) => cmd_setup(a),
    };
    match r {
        Ok(()) if stop::requested() => {
            eprintln!(
                "portcullis-loadtest: stopped early; the figures above cover what ran until then"
            );
            ExitCode::from(stop::EXIT_STOPPED)
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_compare(a: CompareArgs, files: FdLimit) -> Result<(), String> {
    if a.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err("--rates: every rate must be a positive number of requests per second".into());
    }
    // In this one process, each connection is the generator's socket, and behind it up
    // to four more: the in-process gateway's (its socket, a pooled upstream connection
    // and its idle-check duplicate) or the hop's two, and the backend's.
    let conns = a.shape.connections.max(a.max_connections) as u64;
    let at_once = if a.gateway.is_some() {
        4
    } else {
        2 + portcullis::server::fd_limit::PER_CONNECTION
    };
    open_files_fit(
        files,
        conns * at_once,
        &format!("a comparison with {conns} connections"),
    )?;
    let pids_of = |name: &str| {
        a.pids
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    };
    for (name, _) in &a.pids {
        if name != "portcullis" && !a.proxies.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "--pids {name}=...: no --proxy or gateway is named `{name}`"
            ));
        }
    }
    let gateway = match (a.gateway, &a.deployment) {
        (Some(endpoint), Some(d)) => GatewayUnderTest::External {
            endpoint,
            deployment: d.clone(),
            pids: pids_of("portcullis"),
        },
        (None, Some(_)) => {
            return Err(
                "--deployment is for an external gateway: give its address with --gateway".into(),
            );
        }
        _ => GatewayUnderTest::InProcess {
            cores: a.gateway_cores.max(1),
        },
    };
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let d = CpuPlan::default_for(n);
    let cfg = CompareConfig {
        rates: a.rates,
        max: !a.no_max,
        duration: a.shape.duration,
        rounds: a.rounds.max(1),
        connections: a.shape.connections,
        max_connections: a.max_connections,
        threads: a.shape.threads,
        timeout: a.shape.timeout,
        envelopes: a.shape.envelopes,
        backend_listen: a.backend_listen,
        backend_threads: a.backend_threads,
        gateway,
        hop: !a.no_hop,
        proxies: a
            .proxies
            .iter()
            .map(|(name, endpoint)| OtherProxy {
                name: name.clone(),
                endpoint: endpoint.clone(),
                pids: pids_of(name),
            })
            .collect(),
        cpus: CpuPlan {
            gateway: a.gateway_cpus.map_or(d.gateway, |c| c.0),
            backend: a.backend_cpus.map_or(d.backend, |c| c.0),
            client: a.client_cpus.map_or(d.client, |c| c.0),
        },
        out: a.shape.out,
        progress: !a.shape.quiet,
    };
    compare::compare(&cfg)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn cmd_run(a: RunArgs, files: FdLimit) -> Result<(), String> {
    open_files_fit(
        files,
        a.shape.connections as u64,
        &format!("--connections {}", a.shape.connections),
    )?;
    let mode = match (a.rate, a.closed, a.requests) {
        (Some(r), _, _) if r.is_finite() && r > 0.0 => Mode::Open(r),
        (Some(_), _, _) => {
            return Err("--rate must be a positive number of requests per second".into());
        }
        (None, _, Some(n)) => Mode::Requests(n),
        (None, true, None) => Mode::Closed,
        (None, false, None) => {
            return Err(
                "give --rate R (open loop), --closed (maximum throughput) or --requests N".into(),
            );
        }
    };
    let deployment = a
        .deployment
        .as_deref()
        .map(setup::load_deployment)
        .transpose()
        .map_err(|e| e.to_string())?;
    let host = a.target.authority.clone();
    let templates = match (a.workload, &deployment) {
        (WorkloadKind::Fleet, Some(d)) => {
            let mix = Mix {
                denied_pct: a.denied_pct,
                invalid_pct: a.invalid_pct,
                mcp_pct: a.mcp_pct,
                delegated_pct: a.delegated_pct,
                envelopes: a.shape.envelopes,
                body_bytes: a.body_bytes,
            };
            if mix.denied_pct + mix.invalid_pct > 100 {
                return Err("--denied-pct plus --invalid-pct must be at most 100".into());
            }
            workload::gateway_templates(&d.issuer, &host, &mix)
        }
        (WorkloadKind::Allowed, Some(d)) => {
            workload::gateway_allowed(&d.issuer, &host, a.shape.envelopes)
        }
        (WorkloadKind::Direct, d) => {
            let cred = a
                .credential
                .clone()
                .or_else(|| d.as_ref().map(|d| d.records_credential.clone()));
            workload::direct_allowed(&host, cred.as_deref().unwrap_or("none"))
        }
        (_, None) => {
            return Err("--workload fleet and allowed need --deployment DIR (from `portcullis-loadtest setup`): the issuer key the gateway trusts".into());
        }
    };
    let target = Target {
        name: a.name.clone(),
        addr: a.target.addr,
        templates: Arc::new(templates),
    };
    if let Some(out) = &a.shape.out {
        report::check_writable(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    }
    let status =
        generator::probe(&target).map_err(|e| format!("{} at {}: {e}", target.name, a.target))?;
    eprintln!(
        "{} at {} is up (a probe call answered {status}); warming up",
        target.name, a.target
    );
    if !(200..300).contains(&status) {
        // The probe is the workload's first template, an allowed call for every workload.
        eprintln!(
            "warning: an allowed call answered {status}: check --deployment (or --credential) and that the target forwards to the built-in backend"
        );
    }
    generator::warm_up(&target);
    if stop::requested() {
        eprintln!("stopped before the measured run: nothing to report");
        return Ok(());
    }
    if let Some(cmd) = &a.after_warmup {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .map_err(|e| format!("--after-warmup: cannot run `{cmd}`: {e}"))?;
        if !st.success() {
            return Err(format!("--after-warmup: `{cmd}` failed ({st})"));
        }
    }
    let cfg = RunConfig {
        duration: a.shape.duration,
        connections: a.shape.connections,
        threads: a.shape.threads,
        mode,
        timeout: a.shape.timeout,
        cpus: a.cpus.map(|c| c.0).unwrap_or_default(),
        // Kept even without --out: the report says when errors came.
        timeline: Some(a.log_interval),
    };
    let stats: Stats = generator::run(&target, &cfg, !a.shape.quiet);
    println!("{}", Stats::table_header());
    println!("{}", stats.table_row());
    print!("{}", stats.details());
    if let Some(out) = &a.shape.out {
        let files =
            report::write_run(out, &stats).map_err(|e| format!("{}: {e}", out.display()))?;
        for f in files {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}

fn cmd_swap(a: SwapArgs) -> Result<(), String> {
    if !(a.rate.is_finite() && a.rate > 0.0) {
        return Err("--rate must be a positive number of requests per second".into());
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let d = CpuPlan::default_for(n);
    let gateway = a.gateway_cpus.map_or(d.gateway, |c| c.0);
    let cfg = SwapConfig {
        rate: a.rate,
        duration: a.shape.duration,
        connections: a.shape.connections,
        interval: a.interval,
        envelopes: a.shape.envelopes,
        threads: a.shape.threads,
        timeout: a.shape.timeout,
        cpus: CpuPlan {
            backend: gateway.clone(),
            gateway,
            client: a.client_cpus.map_or(d.client, |c| c.0),
        },
        out: a.shape.out,
        progress: !a.shape.quiet,
    };
    let (_, stormy, pushes) = swap_storm(&cfg).map_err(|e| e.to_string())?;
    if pushes.failed > 0 || !stormy.errors.is_empty() || !stormy.unexpected.is_empty() {
        return Err(format!(
            "the storm failed calls or pushes: {} failed pushes, errors {:?}, unexpected {:?}",
            pushes.failed, stormy.errors, stormy.unexpected
        ));
    }
    Ok(())
}

fn cmd_hop(a: HopArgs) -> Result<(), String> {
    pin_here(&a.cpus)?;
    let h = portcullis_loadtest::hop::start(a.listen, a.upstream.addr, a.threads, a.driver.0)
        .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    eprintln!(
        "monoio hop on {} -> {} ({} thread(s)); Ctrl-C stops it",
        h.addr, a.upstream, a.threads
    );
    h.wait();
    Ok(())
}

fn cmd_backend(a: BackendArgs) -> Result<(), String> {
    let mut cfg = match &a.deployment {
        Some(d) => {
            let (records, mcp) = setup::load_backend_credentials(d).map_err(|e| e.to_string())?;
            BackendConfig::checking(&records, &mcp)
        }
        None => BackendConfig::default(),
    };
    cfg.service_time = a.service_time;
    cfg.driver = a.driver.0;
    pin_here(&a.cpus)?;
    let h = backend::start(a.listen, a.threads, cfg)
        .map_err(|e| format!("cannot listen on {}: {e}", a.listen))?;
    eprintln!(
        "built-in backend on http://{} ({} thread(s), {} driver); {}; Ctrl-C stops it",
        h.addr,
        a.threads,
        h.driver.name(),
        if a.deployment.is_some() {
            "checking the deployment's credentials"
        } else {
            "accepting any credential"
        }
    );
    for t in h.threads {
        let _ = t.join();
    }
    Ok(())
}

fn cmd_setup(a: SetupArgs) -> Result<(), String> {
    let d = setup::write_deployment(
        &a.out,
        &GatewaySettings {
            listen: a.listen,
            admin_listen: a.admin_listen,
            cores: a.cores.max(1),
            driver: a.driver.0,
            backend: a.backend,
            audit_on_full: "deny".into(),
        },
    )
    .map_err(|e| e.to_string())?;
    let dir = d.dir.display();
    println!("wrote a load-test deployment to {dir}");
    println!(
        "  backend:  portcullis-loadtest backend --listen {} --deployment {dir}",
        a.backend
    );
    println!(
        "  gateway:  portcullis serve --config {}",
        d.config.display()
    );
    println!(
        "  load:     portcullis-loadtest run --target {} --deployment {dir} --rate 5000",
        a.listen
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("portcullis-loadtest").chain(args.iter().copied()))
    }

    #[test]
    fn every_cpu_flag_takes_a_list_or_none() {
        let Cmd::Compare(a) = parse(&[
            "compare",
            "--gateway-cpus",
            "0",
            "--backend-cpus",
            "none",
            "--client-cpus",
            "0,0",
        ])
        .unwrap()
        .cmd
        else {
            panic!("not compare")
        };
        assert_eq!(a.gateway_cpus, Some(Cpus(vec![0])));
        assert_eq!(a.backend_cpus, Some(Cpus(vec![])));
        assert_eq!(a.client_cpus, Some(Cpus(vec![0, 0])));
        for args in [
            &["run", "--target", "127.0.0.1:1", "--cpus", "0"][..],
            &["backend", "--cpus", "0"],
            &["hop", "--cpus", "0"],
            &["swap-storm", "--gateway-cpus", "0", "--client-cpus", "0"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn cpus_the_machine_lacks_are_refused_when_parsing() {
        let e = parse(&["backend", "--cpus", "4096"]).err().unwrap();
        assert!(e.to_string().contains("CPU 4096 does not exist"), "{e}");
        let e = parse(&["hop", "--cpus", "one"]).err().unwrap();
        assert!(e.to_string().contains("`one` is not a CPU number"), "{e}");
    }
}
