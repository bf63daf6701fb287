//! Bundle swaps under load: the same open-loop run through the gateway twice, once steady
//! and once while policy bundles are pushed to the admin API back to back (a policy
//! pipeline gone wild), so the latency distribution during a swap storm can be read
//! against the steady one, with every failed call and push counted.

use crate::compare::{CompareError, CpuPlan, GatewayUnderTest, Stack};
use crate::generator::{self, Mode, RunConfig, Target};
use crate::report::{PERCENTILES, Stats};
use crate::workload;
use portcullis::decision::Bundle;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SwapConfig {
    pub rate: f64,
    pub duration: Duration,
    pub connections: usize,
    /// Pause between pushes (zero: back to back).
    pub interval: Duration,
    pub envelopes: usize,
    /// Generator threads and per-request timeout, as for `run`.
    pub threads: usize,
    pub timeout: Duration,
    pub cpus: CpuPlan,
    pub out: Option<PathBuf>,
    pub progress: bool,
}

/// What the storm did.
#[derive(Debug, Default)]
pub struct Pushes {
    pub ok: u64,
    pub failed: u64,
}

/// The example bundle under two version names: same policy, so both runs do the same
/// work, but every push is a real swap to a different bundle.
fn variants() -> Result<[Vec<u8>; 2], CompareError> {
    let example = Bundle::from_bytes(portcullis::gateway::boot::EXAMPLE_BUNDLE)
        .map_err(|e| CompareError::Gateway(format!("the built-in bundle does not load: {e}")))?;
    let mut out = [Vec::new(), Vec::new()];
    for (i, name) in ["swap-storm-a", "swap-storm-b"].iter().enumerate() {
        let mut data = example.data().clone();
        data.meta.version = (*name).to_owned();
        out[i] = portcullis::decision::bundle::encode(&data, &example.meta().compiler_version)
            .map_err(|e| CompareError::Gateway(format!("cannot re-encode the bundle: {e}")))?;
    }
    Ok(out)
}

/// Pushes the variants alternately until `stop`, counting the outcomes.
fn storm(
    admin: SocketAddr,
    token: String,
    bundles: [Vec<u8>; 2],
    interval: Duration,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    let auth = format!("Bearer {token}");
    let mut i = 0usize;
    while !stop.load(Ordering::Acquire) {
        let r = portcullis::demo::client::Client::connect(admin).and_then(|mut c| {
            c.request(
                "PUT",
                "/admin/bundle",
                &[("Authorization", &auth)],
                &bundles[i % 2],
            )
        });
        match r {
            Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
            _ => failed.fetch_add(1, Ordering::Relaxed),
        };
        i += 1;
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
}

/// Runs steady, then storm; prints both and returns them with the push counts.
pub fn swap_storm(cfg: &SwapConfig) -> Result<(Stats, Stats, Pushes), CompareError> {
    if let Some(out) = &cfg.out {
        crate::report::check_writable(out).map_err(|source| CompareError::Output {
            path: out.clone(),
            source,
        })?;
    }
    let stack = Stack::start(
        &GatewayUnderTest::InProcess { cores: 1 },
        "127.0.0.1:0".parse().expect("literal"),
        1,
        &cfg.cpus,
        false,
    )?;
    let admin = stack
        .running
        .as_ref()
        .and_then(|r| r.admin.as_ref())
        .map(|a| a.addr)
        .ok_or_else(|| CompareError::Gateway("the gateway has no admin listener".into()))?;
    let token = std::fs::read_to_string(stack.deployment.dir.join("admin.token"))
        .map_err(|e| CompareError::Gateway(format!("admin token: {e}")))?
        .trim()
        .to_owned();
    let bundles = variants()?;
    let target = Target {
        name: "steady".into(),
        addr: stack.gateway.addr,
        templates: Arc::new(workload::gateway_allowed(
            &stack.deployment.issuer,
            &stack.gateway.authority,
            cfg.envelopes,
        )),
    };
    let run = RunConfig {
        duration: cfg.duration,
        connections: cfg.connections,
        threads: cfg.threads,
        mode: Mode::Open(cfg.rate),
        timeout: cfg.timeout,
        cpus: cfg.cpus.client.clone(),
        // A spike at a swap shows within the tenth of a second it happened in.
        timeline: cfg.out.as_ref().map(|_| Duration::from_millis(100)),
    };
    generator::warm_up(&target);
    let steady = generator::run(&target, &run, cfg.progress);

    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let pusher = {
        let (stop, ok, failed, interval) = (
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
            cfg.interval,
        );
        // The pipeline pushing bundles is not the gateway: it runs beside the generator.
        let cpus = cfg.cpus.client.clone();
        std::thread::spawn(move || {
            if !cpus.is_empty() {
                let _ = monoio::utils::bind_to_cpu_set(cpus);
            }
            storm(admin, token, bundles, interval, stop, ok, failed)
        })
    };
    let storm_target = Target {
        name: "swap storm".into(),
        ..target
    };
    // Stopped during the steady run: no storm, and an empty run says so in the report.
    let stormy = if crate::stop::requested() {
        Stats::new(&storm_target.name)
    } else {
        generator::run(&storm_target, &run, cfg.progress)
    };
    stop.store(true, Ordering::Release);
    let _ = pusher.join();
    let pushes = Pushes {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    };
    stack.shutdown();

    println!("{}", render(cfg, &steady, &stormy, &pushes));
    if let Some(out) = &cfg.out {
        let mut written = Vec::new();
        for s in [&steady, &stormy] {
            let mut named = s.clone();
            named.name = s.name.replace(' ', "-");
            written.extend(crate::report::write_run(out, &named).map_err(|source| {
                CompareError::Output {
                    path: out.clone(),
                    source,
                }
            })?);
        }
        let p = out.join("swap-storm.svg");
        std::fs::write(
            &p,
            crate::report::svg(
                "Latency by percentile: steady vs bundle swap storm",
                &[&steady, &stormy],
            ),
        )
        .map_err(|source| CompareError::Output {
            path: p.clone(),
            source,
        })?;
        eprintln!("results written to {}", out.display());
    }
    Ok((steady, stormy, pushes))
}

fn render(cfg: &SwapConfig, steady: &Stats, stormy: &Stats, p: &Pushes) -> String {
    use std::fmt::Write;
    let secs = stormy.elapsed.as_secs_f64().max(1e-9);
    let mut o = format!(
        "\n== bundle swap storm: {:.0}/s open loop, {} connections, {:.0}s each; {} pushes ({:.0}/s), {} failed ==\n",
        cfg.rate,
        cfg.connections,
        cfg.duration.as_secs_f64(),
        p.ok,
        p.ok as f64 / secs,
        p.failed
    );
    let _ = writeln!(o, "{}", Stats::table_header());
    let _ = writeln!(o, "{}", steady.table_row());
    o.push_str(&steady.details());
    if stormy.sent == 0 && steady.stopped_early {
        o.push_str("  (stopped during the steady run: no storm was run)\n");
        return o;
    }
    let _ = writeln!(o, "{}", stormy.table_row());
    o.push_str(&stormy.details());
    let _ = write!(o, "storm - steady (µs):  ");
    for q in PERCENTILES {
        let _ = write!(o, " {:>+9.1}", stormy.us(q) - steady.us(q));
    }
    o.push('\n');
    o
}
