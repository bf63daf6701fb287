//! Prometheus metrics. Each core counts into its own cache-line-aligned block of relaxed
//! atomics (no sharing, no locks on the hot path); the admin endpoint sums the blocks when
//! scraped. Per-tool counts, whose keys change with the bundle, are kept per core and
//! published as snapshots once a second.

use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Decision outcomes: `allow` and every denial reason.
pub const REASONS: [&str; 16] = [
    "allow",
    "missing_envelope",
    "invalid_envelope",
    "expired",
    "revoked",
    "unknown_tool",
    "tool_not_in_envelope",
    "resource_out_of_scope",
    "data_class_out_of_scope",
    "record_limit",
    "drift",
    "policy_denied",
    "invalid_arguments",
    "audit_unavailable",
    "delegation_widening",
    "delegation_depth",
];

pub fn reason_index(reason: &str) -> usize {
    REASONS.iter().position(|r| *r == reason).unwrap_or(0)
}

/// Upstream failure kinds (`ProxyError::reason`).
pub const UPSTREAM_ERRORS: [&str; 8] = [
    "upstream_unreachable",
    "gateway_out_of_descriptors",
    "upstream_connect_timeout",
    "upstream_timeout",
    "upstream_closed",
    "upstream_bad_response",
    "upstream_response_too_large",
    "upstream_io_error",
];

/// Latency bucket upper bounds in microseconds.
pub const BUCKETS_US: [u64; 16] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, us: u64) {
        let i = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// One core's counters, aligned so two cores never write the same cache line.
#[repr(align(128))]
#[derive(Default)]
pub struct CoreMetrics {
    pub decisions: [AtomicU64; REASONS.len()],
    pub upstream_errors: [AtomicU64; UPSTREAM_ERRORS.len()],
    /// Time spent in the gateway itself (total minus upstream), per allowed call.
    pub overhead: Histogram,
    /// Upstream time (request sent to response relayed).
    pub upstream: Histogram,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub scrubbed: AtomicU64,
    /// Per-tool call counts, published by the core about once a second.
    pub tools: ArcSwap<BTreeMap<String, u64>>,
}

impl CoreMetrics {
    pub fn decision(&self, reason: &str) {
        self.decisions[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn upstream_error(&self, reason: &str) {
        if let Some(i) = UPSTREAM_ERRORS.iter().position(|r| *r == reason) {
            self.upstream_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// All cores' metrics.
pub struct Metrics {
    pub cores: Vec<CoreMetrics>,
}

/// Values not owned by the cores, supplied at scrape time.
pub struct Gauges<'a> {
    pub bundle_version: &'a str,
    pub bundle_digest: &'a str,
    pub audit_queue_depth: u64,
    pub audit_dropped: u64,
    pub audit_lines: u64,
    pub audit_write_errors: u64,
    pub revocations: u64,
    pub bundle_swaps: u64,
}

impl Metrics {
    pub fn new(cores: usize) -> Arc<Metrics> {
        Arc::new(Metrics {
            cores: (0..cores).map(|_| CoreMetrics::default()).collect(),
        })
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> u64) -> u64 {
        self.cores.iter().map(f).sum()
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, g: &Gauges<'_>) -> String {
        let mut o = String::with_capacity(8 * 1024);
        let _ = writeln!(
            o,
            "# HELP portcullis_decisions_total Decisions by outcome and reason."
        );
        let _ = writeln!(o, "# TYPE portcullis_decisions_total counter");
        for (i, r) in REASONS.iter().enumerate() {
            let outcome = if i == 0 { "allow" } else { "deny" };
            let n = self.sum(|c| c.decisions[i].load(Ordering::Relaxed));
            let _ = writeln!(
                o,
                "portcullis_decisions_total{{outcome=\"{outcome}\",reason=\"{r}\"}} {n}"
            );
        }
        let mut tools: BTreeMap<String, u64> = BTreeMap::new();
        for c in &self.cores {
            for (k, v) in c.tools.load().iter() {
                *tools.entry(k.clone()).or_default() += v;
            }
        }
        let _ = writeln!(
            o,
            "# HELP portcullis_tool_calls_total Decisions per tool (published once a second)."
        );
        let _ = writeln!(o, "# TYPE portcullis_tool_calls_total counter");
        for (t, n) in &tools {
            let _ = writeln!(
                o,
                "portcullis_tool_calls_total{{tool=\"{}\"}} {n}",
                escape(t)
            );
        }
        let _ = writeln!(
            o,
            "# HELP portcullis_upstream_errors_total Upstream failures by kind."
        );
        let _ = writeln!(o, "# TYPE portcullis_upstream_errors_total counter");
        for (i, r) in UPSTREAM_ERRORS.iter().enumerate() {
            let n = self.sum(|c| c.upstream_errors[i].load(Ordering::Relaxed));
            let _ = writeln!(o, "portcullis_upstream_errors_total{{kind=\"{r}\"}} {n}");
        }
        self.histogram(
            &mut o,
            "portcullis_gateway_overhead_seconds",
            "Time spent in the gateway per allowed call, excluding the upstream.",
            |c| &c.overhead,
        );
        self.histogram(
            &mut o,
            "portcullis_upstream_seconds",
            "Upstream time per allowed call.",
            |c| &c.upstream,
        );
        let counters = [
            (
                "portcullis_envelope_cache_hits_total",
                "Verified-envelope cache hits.",
                self.sum(|c| c.cache_hits.load(Ordering::Relaxed)),
            ),
            (
                "portcullis_envelope_cache_misses_total",
                "Verified-envelope cache misses (full Ed25519 verification).",
                self.sum(|c| c.cache_misses.load(Ordering::Relaxed)),
            ),
            (
                "portcullis_credentials_scrubbed_total",
                "Vaulted credentials masked out of upstream responses.",
                self.sum(|c| c.scrubbed.load(Ordering::Relaxed)),
            ),
            (
                "portcullis_audit_dropped_total",
                "Audit records lost because the queue was full (on_full = drop).",
                g.audit_dropped,
            ),
            (
                "portcullis_audit_lines_total",
                "Audit lines written.",
                g.audit_lines,
            ),
            (
                "portcullis_audit_write_errors_total",
                "Audit write or fsync failures.",
                g.audit_write_errors,
            ),
            (
                "portcullis_bundle_swaps_total",
                "Policy bundles activated since start.",
                g.bundle_swaps,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP portcullis_audit_queue_depth Batches waiting for the audit writer.\n# TYPE portcullis_audit_queue_depth gauge\nportcullis_audit_queue_depth {}",
            g.audit_queue_depth
        );
        let _ = writeln!(
            o,
            "# HELP portcullis_revocations Active revocations.\n# TYPE portcullis_revocations gauge\nportcullis_revocations {}",
            g.revocations
        );
        let _ = writeln!(
            o,
            "# HELP portcullis_bundle_info The active policy bundle.\n# TYPE portcullis_bundle_info gauge\nportcullis_bundle_info{{version=\"{}\",digest=\"{}\"}} 1",
            escape(g.bundle_version),
            escape(g.bundle_digest)
        );
        o
    }

    fn histogram(
        &self,
        o: &mut String,
        name: &str,
        help: &str,
        h: impl Fn(&CoreMetrics) -> &Histogram,
    ) {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cumulative += self.sum(|c| h(c).buckets[i].load(Ordering::Relaxed));
            let _ = writeln!(
                o,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        cumulative += self.sum(|c| h(c).buckets[BUCKETS_US.len()].load(Ordering::Relaxed));
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum(|c| h(c).sum_us.load(Ordering::Relaxed));
        let _ = writeln!(
            o,
            "{name}_sum {}\n{name}_count {cumulative}",
            sum as f64 / 1e6
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sums_across_cores() {
        let m = Metrics::new(2);
        m.cores[0].decision("allow");
        m.cores[1].decision("allow");
        m.cores[1].decision("drift");
        m.cores[0].overhead.observe(30);
        m.cores[1].overhead.observe(3_000_000);
        m.cores[0]
            .tools
            .store(Arc::new(BTreeMap::from([("crm.read".to_string(), 2)])));
        let g = Gauges {
            bundle_version: "v1",
            bundle_digest: "ab",
            audit_queue_depth: 0,
            audit_dropped: 0,
            audit_lines: 3,
            audit_write_errors: 0,
            revocations: 1,
            bundle_swaps: 0,
        };
        let text = m.render(&g);
        assert!(text.contains("portcullis_decisions_total{outcome=\"allow\",reason=\"allow\"} 2"));
        assert!(text.contains("portcullis_decisions_total{outcome=\"deny\",reason=\"drift\"} 1"));
        assert!(text.contains("portcullis_gateway_overhead_seconds_bucket{le=\"0.00005\"} 1"));
        assert!(text.contains("portcullis_gateway_overhead_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("portcullis_tool_calls_total{tool=\"crm.read\"} 2"));
        assert!(text.contains("portcullis_bundle_info{version=\"v1\",digest=\"ab\"} 1"));
    }
}
