//! Comparison runs: the same allowed calls sent straight to the built-in backend, through
//! Portcullis, and through any other proxy given by address, interleaved (every rate runs
//! each target in turn, the order rotating between rounds) so that drift on a shared
//! machine lands on all of them alike. Reports each target and the latency it adds over
//! the direct path at every percentile, plus the CPU each spent per request.

use crate::backend::{self, BackendConfig};
use crate::cpu::CpuSource;
use crate::endpoint::Endpoint;
use crate::generator::{self, Mode, RunConfig, Target};
use crate::report::{self, PERCENTILES, Stats};
use crate::setup::{self, Deployment, GatewaySettings};
use crate::stop;
use crate::workload;
use portcullis::server::ServerHandle;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the Portcullis under test comes from.
#[derive(Debug, Clone)]
pub enum GatewayUnderTest {
    /// Started in this process, with this many worker threads.
    InProcess { cores: usize },
    /// Already running (from `setup`'s configuration), at `addr`; `pids` for CPU time.
    External {
        endpoint: Endpoint,
        deployment: PathBuf,
        pids: Vec<u32>,
    },
}

/// Another proxy in front of the same backend.
#[derive(Debug, Clone)]
pub struct OtherProxy {
    pub name: String,
    pub endpoint: Endpoint,
    pub pids: Vec<u32>,
}

/// CPUs (by index) for each party; empty = let the kernel place it.
#[derive(Debug, Clone, Default)]
pub struct CpuPlan {
    pub gateway: Vec<usize>,
    pub backend: Vec<usize>,
    pub client: Vec<usize>,
}

impl CpuPlan {
    /// The default on a machine with `n` CPUs: the load generator alone on the last CPU
    /// (it spins for microsecond-precise send times, which would starve anything sharing
    /// its CPU), the proxy under test and the backend on CPU 0, so every proxy is measured
    /// with the same backend beside it on one core. With one CPU, nothing is pinned.
    pub fn default_for(n: usize) -> CpuPlan {
        if n < 2 {
            return CpuPlan::default();
        }
        CpuPlan {
            gateway: vec![0],
            backend: vec![0],
            client: vec![n - 1],
        }
    }
}

#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Open-loop rates, requests per second.
    pub rates: Vec<f64>,
    /// Also a closed-loop maximum-throughput run.
    pub max: bool,
    pub duration: Duration,
    pub rounds: usize,
    pub connections: usize,
    pub max_connections: usize,
    pub threads: usize,
    pub timeout: Duration,
    pub envelopes: usize,
    pub backend_listen: SocketAddr,
    pub backend_threads: usize,
    pub gateway: GatewayUnderTest,
    /// Also measure a bare monoio TCP hop (`hop`) on the gateway's CPUs.
    pub hop: bool,
    pub proxies: Vec<OtherProxy>,
    pub cpus: CpuPlan,
    pub out: Option<PathBuf>,
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("cannot start the built-in backend on {addr}: {source}")]
    Backend {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error("cannot start the gateway: {0}")]
    Gateway(String),
    #[error("cannot start the bare monoio hop: {0}")]
    Hop(std::io::Error),
    #[error("{0}")]
    Target(String),
    #[error("{path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One measured (load, target) cell.
pub struct Cell {
    pub load: String,
    /// Rounds merged into `stats`: fewer than asked when the run was stopped early.
    pub rounds: usize,
    pub stats: Stats,
    /// CPU time of the target's own process or threads, per completed request.
    pub cpu_us_per_req: Option<f64>,
}

struct Measured {
    target: Target,
    /// Where `target.addr` came from, for messages.
    at: Endpoint,
    cpu: Option<CpuSource>,
}

fn pin(cpus: &[usize]) {
    if !cpus.is_empty() {
        let _ = monoio::utils::bind_to_cpu_set(cpus.iter().copied());
    }
}

fn all_cpus() -> Vec<usize> {
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// The system under test: the built-in backend checking the deployment's credentials,
/// and the gateway in front of it (started here, or already running).
pub struct Stack {
    pub deployment: Deployment,
    pub backend: ServerHandle,
    pub gateway: Endpoint,
    pub running: Option<portcullis::gateway::Running>,
    pub hop: Option<crate::hop::HopHandle>,
    /// Holds an in-process gateway's deployment files for as long as it runs.
    _dir: Option<tempfile::TempDir>,
}

impl Stack {
    pub fn start(
        gateway: &GatewayUnderTest,
        backend_listen: SocketAddr,
        backend_threads: usize,
        cpus: &CpuPlan,
        hop: bool,
    ) -> Result<Stack, CompareError> {
        // Threads inherit the CPU mask of the thread that spawns them: set it before each
        // server starts, and restore it after.
        pin(&cpus.backend);
        let stack =
            Self::start_pinned(gateway, backend_listen, backend_threads, cpus).and_then(|s| {
                if hop {
                    s.with_hop(gateway, cpus)
                } else {
                    Ok(s)
                }
            });
        pin(&all_cpus());
        stack
    }

    /// Adds the bare hop in front of the backend: as many threads as the gateway has
    /// workers, on the gateway's CPUs. On failure what already runs is stopped.
    fn with_hop(
        mut self,
        gateway: &GatewayUnderTest,
        cpus: &CpuPlan,
    ) -> Result<Stack, CompareError> {
        pin(&cpus.gateway);
        let threads = match gateway {
            GatewayUnderTest::InProcess { cores } => *cores,
            GatewayUnderTest::External { .. } => 1,
        };
        let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
        match crate::hop::start(
            any,
            self.backend.addr,
            threads,
            portcullis::server::Driver::Auto,
        ) {
            Ok(h) => {
                self.hop = Some(h);
                Ok(self)
            }
            Err(e) => {
                self.shutdown();
                Err(CompareError::Hop(e))
            }
        }
    }

    fn start_pinned(
        gateway: &GatewayUnderTest,
        backend_listen: SocketAddr,
        backend_threads: usize,
        cpus: &CpuPlan,
    ) -> Result<Stack, CompareError> {
        let checking =
            |d: &Deployment| BackendConfig::checking(&d.records_credential, &d.mcp_credential);
        match gateway {
            GatewayUnderTest::External {
                endpoint,
                deployment,
                ..
            } => {
                let d = setup::load_deployment(deployment)?;
                // The running gateway forwards where its deployment says: the backend
                // listens there, unless told otherwise.
                let backend_listen = if backend_listen.port() == 0 {
                    setup::backend_addr(&d)?
                } else {
                    backend_listen
                };
                let b = backend::start(backend_listen, backend_threads, checking(&d)).map_err(
                    |source| CompareError::Backend {
                        addr: backend_listen,
                        source,
                    },
                )?;
                Ok(Stack {
                    deployment: d,
                    backend: b,
                    gateway: endpoint.clone(),
                    running: None,
                    hop: None,
                    _dir: None,
                })
            }
            GatewayUnderTest::InProcess { cores } => {
                let dir = tempfile::tempdir()
                    .map_err(|e| CompareError::Gateway(format!("temporary directory: {e}")))?;
                // The backend checks the deployment's credentials and the deployment names
                // the backend's address: write it, start the backend, then point the
                // gateway at the port it got. (Taking a port with a probe listener and
                // dropping it let a concurrent server be handed the same port.)
                let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
                let mut settings = GatewaySettings {
                    listen: any,
                    admin_listen: any,
                    cores: *cores,
                    driver: portcullis::server::Driver::Auto,
                    backend: backend_listen,
                    audit_on_full: "deny".into(),
                };
                let d = setup::write_deployment(dir.path(), &settings)?;
                let b = backend::start(backend_listen, backend_threads, checking(&d)).map_err(
                    |source| CompareError::Backend {
                        addr: backend_listen,
                        source,
                    },
                )?;
                if b.addr != settings.backend {
                    settings.backend = b.addr;
                    if let Err(e) = setup::write_gateway_config(&d, &settings) {
                        b.shutdown();
                        return Err(e.into());
                    }
                }
                pin(&cpus.gateway);
                let gw = portcullis::config::Config::load(&d.config)
                    .map_err(|e| CompareError::Gateway(e.to_string()))?;
                portcullis::log::set_quiet(true);
                let running = portcullis::gateway::start(&gw)
                    .map_err(|e| CompareError::Gateway(e.to_string()))?;
                let addr = running.server.addr;
                Ok(Stack {
                    deployment: d,
                    backend: b,
                    gateway: Endpoint::literal(addr),
                    running: Some(running),
                    hop: None,
                    _dir: Some(dir),
                })
            }
        }
    }

    pub fn shutdown(self) {
        if let Some(h) = self.hop {
            h.shutdown();
        }
        if let Some(r) = self.running {
            r.shutdown();
        }
        self.backend.shutdown();
    }
}

/// Runs the comparison and prints the report; returns every cell.
pub fn compare(cfg: &CompareConfig) -> Result<Vec<Cell>, CompareError> {
    if let Some(out) = &cfg.out {
        report::check_writable(out).map_err(|source| CompareError::Output {
            path: out.clone(),
            source,
        })?;
    }
    let stack = Stack::start(
        &cfg.gateway,
        cfg.backend_listen,
        cfg.backend_threads,
        &cfg.cpus,
        cfg.hop,
    )?;
    let (deployment, backend, gateway) = (&stack.deployment, &stack.backend, &stack.gateway);
    let hop_addr = stack.hop.as_ref().map(|h| h.addr);
    let targets = build_targets(cfg, deployment, backend.addr, gateway, hop_addr);
    if let Err(e) = targets.iter().try_for_each(check_target) {
        stack.shutdown();
        return Err(e);
    }
    eprintln!(
        "comparing {} in runs of {} s each (backend {}, gateway {}; CPUs: gateway {:?}, backend {:?}, client {:?})",
        targets
            .iter()
            .map(|m| m.target.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.duration.as_secs_f64(),
        backend.addr,
        gateway,
        cfg.cpus.gateway,
        cfg.cpus.backend,
        cfg.cpus.client
    );
    let mut loads: Vec<(String, Mode, usize)> = cfg
        .rates
        .iter()
        .map(|r| (format!("{r:.0}/s"), Mode::Open(*r), cfg.connections))
        .collect();
    if cfg.max {
        loads.push(("max".into(), Mode::Closed, cfg.max_connections));
    }
    let mut cells = Vec::new();
    for (label, mode, connections) in &loads {
        let run_cfg = RunConfig {
            duration: cfg.duration,
            connections: *connections,
            threads: cfg.threads,
            mode: *mode,
            timeout: cfg.timeout,
            cpus: cfg.cpus.client.clone(),
            timeline: None,
        };
        let mut per_target: Vec<(Stats, Duration)> = targets
            .iter()
            .map(|m| (Stats::new(&m.target.name), Duration::ZERO))
            .collect();
        let mut rounds_done = 0;
        for round in 0..cfg.rounds.max(1) {
            let mut this_round = Vec::with_capacity(targets.len());
            for k in 0..targets.len() {
                if stop::requested() {
                    break;
                }
                let idx = (k + round) % targets.len();
                let m = &targets[idx];
                generator::warm_up(&m.target);
                let cpu0 = m.cpu.as_ref().map(CpuSource::read);
                let s = generator::run(&m.target, &run_cfg, cfg.progress);
                let cpu = match (&m.cpu, cpu0) {
                    (Some(src), Some(c0)) => src.read().saturating_sub(c0),
                    _ => Duration::ZERO,
                };
                this_round.push((idx, s, cpu));
            }
            // A round cut short would weigh the targets over different stretches of the
            // host's drift: it is dropped whole.
            if stop::requested() {
                break;
            }
            for (idx, s, cpu) in this_round {
                per_target[idx].0.merge_run(&s);
                per_target[idx].1 += cpu;
            }
            rounds_done += 1;
        }
        if rounds_done == 0 {
            break;
        }
        let row: Vec<Cell> = per_target
            .into_iter()
            .zip(&targets)
            .map(|((stats, cpu), m)| Cell {
                load: label.clone(),
                rounds: rounds_done,
                cpu_us_per_req: (m.cpu.is_some() && stats.completed() > 0)
                    .then(|| cpu.as_secs_f64() * 1e6 / stats.completed() as f64),
                stats,
            })
            .collect();
        println!("{}", render_load(label, &run_cfg, rounds_done, &row));
        cells.extend(row);
        if stop::requested() {
            break;
        }
    }
    if stop::requested() {
        eprintln!(
            "stopped early (Ctrl-C): the report covers the {} load(s) with at least one whole round; a round in progress was dropped",
            cells.len() / targets.len().max(1)
        );
    }
    if let Some(out) = &cfg.out {
        write_outputs(out, cfg, &cells)?;
        eprintln!("results written to {}", out.display());
    }
    stack.shutdown();
    Ok(cells)
}

fn build_targets(
    cfg: &CompareConfig,
    d: &Deployment,
    backend: SocketAddr,
    gateway: &Endpoint,
    hop: Option<SocketAddr>,
) -> Vec<Measured> {
    let plain = |name: &str, at: Endpoint, cpu: Option<CpuSource>| Measured {
        target: Target {
            name: name.into(),
            addr: at.addr,
            templates: Arc::new(workload::direct_allowed(
                &at.authority,
                &d.records_credential,
            )),
        },
        at,
        cpu: cpu.filter(CpuSource::is_measurable),
    };
    let mut out = vec![
        plain(
            "direct",
            Endpoint::literal(backend),
            Some(CpuSource::OwnThreads(vec!["loadtest-backen".into()])),
        ),
        Measured {
            target: Target {
                name: "portcullis".into(),
                addr: gateway.addr,
                templates: Arc::new(workload::gateway_allowed(
                    &d.issuer,
                    &gateway.authority,
                    cfg.envelopes,
                )),
            },
            at: gateway.clone(),
            cpu: Some(match &cfg.gateway {
                GatewayUnderTest::InProcess { .. } => {
                    // The gateway's workers ("portcullis-N") and its audit writer.
                    CpuSource::OwnThreads(
                        (0..10)
                            .map(|i| format!("portcullis-{i}"))
                            .chain(["portcullis-audi".into()])
                            .collect(),
                    )
                }
                GatewayUnderTest::External { pids, .. } => CpuSource::Pids(pids.clone()),
            })
            .filter(CpuSource::is_measurable),
        },
    ];
    if let Some(addr) = hop {
        out.insert(
            1,
            plain(
                "monoio-hop",
                Endpoint::literal(addr),
                Some(CpuSource::OwnThreads(vec!["loadtest-hop-".into()])),
            ),
        );
    }
    for p in &cfg.proxies {
        out.push(plain(
            &p.name,
            p.endpoint.clone(),
            Some(CpuSource::Pids(p.pids.clone())),
        ));
    }
    out
}

/// One call through the target must succeed before it is measured, so a dead or
/// misconfigured target is a clear error, not a table of failures.
fn check_target(m: &Measured) -> Result<(), CompareError> {
    let name = &m.target.name;
    match generator::probe(&m.target) {
        Ok(200) => Ok(()),
        Ok(status) => Err(CompareError::Target(format!(
            "{name} at {} answered {status} to an allowed call; check that it forwards to the built-in backend",
            m.at
        ))),
        Err(e) => Err(CompareError::Target(format!("{name} at {}: {e}", m.at))),
    }
}

/// The per-load table: each target, then the latency each proxy adds over direct.
pub fn render_load(label: &str, run: &RunConfig, rounds: usize, row: &[Cell]) -> String {
    use std::fmt::Write;
    let mode = match run.mode {
        Mode::Open(_) => "open loop",
        Mode::Closed | Mode::Requests(_) => "closed loop, maximum throughput",
    };
    let mut o = format!(
        "\n== {label} ({mode}; {} connections, {:.0}s x {} round(s) per target) ==\n",
        run.connections,
        run.duration.as_secs_f64(),
        rounds.max(1)
    );
    let _ = writeln!(o, "{}   cpu µs/req  req/s per core", Stats::table_header());
    for c in row {
        let cpu = c
            .cpu_us_per_req
            .map_or("         -".into(), |v| format!("{v:>10.1}"));
        let per_core = c
            .cpu_us_per_req
            .filter(|v| *v > 0.0)
            .map_or("-".into(), |v| format!("{:.0}", 1e6 / v));
        let _ = writeln!(o, "{}   {cpu}  {per_core:>14}", c.stats.table_row());
    }
    if let Some(base) = row.first() {
        let _ = write!(o, "added over {} (µs):", base.stats.name);
        for p in PERCENTILES {
            let _ = write!(
                o,
                " {:>9}",
                if p >= 100.0 {
                    "max".into()
                } else {
                    format!("p{p}")
                }
            );
        }
        let _ = writeln!(o);
        for c in &row[1..] {
            let _ = write!(o, "  {:<18}", c.stats.name);
            for p in PERCENTILES {
                let _ = write!(o, " {:>+9.1}", c.stats.us(p) - base.stats.us(p));
            }
            let _ = writeln!(o);
        }
    }
    o
}

fn write_outputs(
    out: &std::path::Path,
    cfg: &CompareConfig,
    cells: &[Cell],
) -> Result<(), CompareError> {
    let err = |path: PathBuf| move |source| CompareError::Output { path, source };
    std::fs::create_dir_all(out).map_err(err(out.to_path_buf()))?;
    let mut results = Vec::new();
    let mut loads: Vec<&str> = cells.iter().map(|c| c.load.as_str()).collect();
    loads.dedup();
    for load in &loads {
        let row: Vec<&Cell> = cells.iter().filter(|c| c.load == *load).collect();
        let slug = load.replace("/s", "rps");
        for c in &row {
            let p = out.join(format!("{}-{slug}.hgrm", c.stats.name));
            std::fs::write(&p, c.stats.hgrm()).map_err(err(p.clone()))?;
            let mut j = c.stats.to_json();
            j["load"] = (*load).into();
            j["rounds"] = c.rounds.into();
            j["cpu_us_per_req"] = c.cpu_us_per_req.into();
            if let Some(base) = row.first() {
                let added: serde_json::Map<String, serde_json::Value> = PERCENTILES
                    .iter()
                    .map(|p| {
                        (
                            report::percentile_key(*p),
                            (c.stats.us(*p) - base.stats.us(*p)).into(),
                        )
                    })
                    .collect();
                j["added_over_direct_us"] = added.into();
            }
            results.push(j);
        }
        let series: Vec<&Stats> = row.iter().map(|c| &c.stats).collect();
        let p = out.join(format!("latency-{slug}.svg"));
        std::fs::write(
            &p,
            report::svg(&format!("Latency by percentile at {load}"), &series),
        )
        .map_err(err(p.clone()))?;
    }
    let summary = serde_json::json!({
        "machine": report::machine(),
        "duration_s": cfg.duration.as_secs_f64(),
        "rounds": cfg.rounds,
        "stopped_early": stop::requested(),
        "connections": cfg.connections,
        "max_connections": cfg.max_connections,
        "envelopes": cfg.envelopes,
        "cpus": {"gateway": cfg.cpus.gateway, "backend": cfg.cpus.backend, "client": cfg.cpus.client},
        "results": results,
    });
    let p = out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(&p, text).map_err(err(p.clone()))?;
    Ok(())
}
