//! Results: latencies in an HDR histogram (nanoseconds, three significant digits), counts
//! of outcomes (answers, denials by reason) and errors by kind, and their renderings: a
//! percentile table, HdrHistogram's `.hgrm` percentile distribution, a JSON summary and an
//! SVG latency-by-percentile plot.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// Counts one more `key`, allocating its name only the first time it is seen (these run
/// once per answer).
fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// The percentiles every report shows.
pub const PERCENTILES: [f64; 6] = [50.0, 90.0, 99.0, 99.9, 99.99, 100.0];

#[derive(Debug, Clone)]
pub struct Stats {
    pub name: String,
    pub hist: Histogram<u64>,
    pub sent: u64,
    /// Answered with 2xx and no denial.
    pub ok: u64,
    /// Expected refusals, by the gateway's reason.
    pub denials: BTreeMap<String, u64>,
    /// Failures, by kind (`connect_refused`, `reset`, `timeout`, `http_5xx`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Answers that were not what the workload expected of the request ("expected
    /// drift, got allow"): a wrong decision, or a wrong workload.
    pub unexpected: BTreeMap<String, u64>,
    /// Requests sent more than a millisecond after their intended time: the generator
    /// (or the connection count) could not keep up with the schedule.
    pub late_sends: u64,
    pub elapsed: Duration,
    /// The operator stopped the run before its end (Ctrl-C): the figures cover what was
    /// sent until then.
    pub stopped_early: bool,
    /// Requests already due when the run was stopped, never sent: a saturated target's
    /// backlog, whose latency these figures do not hold.
    pub unsent_at_stop: u64,
    /// Latency by completion time, when the run keeps one (`run`, for its `.hlog`).
    pub timeline: Option<crate::timeline::Timeline>,
}

impl Stats {
    pub fn new(name: &str) -> Stats {
        Stats {
            name: name.into(),
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("valid histogram bounds"),
            sent: 0,
            ok: 0,
            denials: BTreeMap::new(),
            errors: BTreeMap::new(),
            unexpected: BTreeMap::new(),
            late_sends: 0,
            stopped_early: false,
            unsent_at_stop: 0,
            timeline: None,
            elapsed: Duration::ZERO,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        self.hist
            .saturating_record(latency.as_nanos().max(1) as u64);
    }

    /// Records `latency` for a request that completed `at` into the run, into the
    /// timeline too when there is one.
    pub fn record_at(&mut self, latency: Duration, at: Duration) {
        self.record(latency);
        if let Some(t) = &mut self.timeline {
            t.record(at, latency);
        }
    }

    pub fn error(&mut self, kind: &str) {
        bump(&mut self.errors, kind);
    }

    /// An error that ended `at` into the run: counted, and placed in the timeline.
    pub fn error_at(&mut self, kind: &str, at: Duration) {
        self.error(kind);
        if let Some(t) = &mut self.timeline {
            t.error(at);
        }
    }

    pub fn denial(&mut self, reason: &str) {
        bump(&mut self.denials, reason);
    }

    /// Counts an answer the workload did not expect (`expected allow, got policy_denied`),
    /// allocating its key only the first time it is seen.
    pub fn unexpected_answer(&mut self, want: &str, got: &str) {
        let mut buf = [0u8; 96];
        let mut w = std::io::Cursor::new(&mut buf[..]);
        use std::io::Write;
        let fits = write!(w, "expected {want}, got {got}").is_ok();
        let len = w.position() as usize;
        // Longer than the buffer (rare): allocate.
        let key = fits
            .then(|| std::str::from_utf8(&buf[..len]).ok())
            .flatten();
        match key {
            Some(k) => bump(&mut self.unexpected, k),
            None => bump(&mut self.unexpected, &format!("expected {want}, got {got}")),
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        let _ = self.hist.add(&o.hist);
        self.sent += o.sent;
        self.ok += o.ok;
        self.late_sends += o.late_sends;
        for (k, v) in &o.denials {
            *self.denials.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.unexpected {
            *self.unexpected.entry(k.clone()).or_default() += v;
        }
        self.elapsed = self.elapsed.max(o.elapsed);
        self.stopped_early |= o.stopped_early;
        self.unsent_at_stop += o.unsent_at_stop;
        match (&mut self.timeline, &o.timeline) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.timeline = Some(b.clone()),
            _ => {}
        }
    }

    /// Adds another run of the same target (a later round): counts and histograms add
    /// up, and so do the run times, so throughput stays completed / time spent.
    pub fn merge_run(&mut self, o: &Stats) {
        let elapsed = self.elapsed + o.elapsed;
        self.merge(o);
        self.elapsed = elapsed;
        // Rounds are separate stretches of time: one timeline cannot hold them.
        self.timeline = None;
    }

    pub fn completed(&self) -> u64 {
        self.hist.len()
    }

    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.completed() as f64 / self.elapsed.as_secs_f64()
        }
    }

    /// Latency at percentile `p` (0..=100), in microseconds.
    pub fn us(&self, p: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        let v = if p >= 100.0 {
            self.hist.max()
        } else {
            self.hist.value_at_quantile(p / 100.0)
        };
        v as f64 / 1e3
    }

    pub fn table_row(&self) -> String {
        let mut s = format!("{:<12} {:>9.0}/s ", self.name, self.throughput());
        for p in PERCENTILES {
            let _ = write!(s, " {:>9.1}", self.us(p));
        }
        let errors: u64 = self.errors.values().sum();
        let denied: u64 = self.denials.values().sum();
        let _ = write!(s, "  ok {} denied {} errors {}", self.ok, denied, errors);
        s
    }

    /// Denials by reason, errors by kind, unexpected answers and late sends, a line each.
    pub fn details(&self) -> String {
        let list = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut o = String::new();
        if !self.denials.is_empty() {
            let _ = writeln!(o, "  denied by reason: {}", list(&self.denials));
        }
        if !self.errors.is_empty() {
            let _ = writeln!(o, "  errors by kind: {}", list(&self.errors));
        }
        if !self.unexpected.is_empty() {
            // Count first: each key has a comma of its own.
            let answers = self
                .unexpected
                .iter()
                .map(|(k, v)| format!("{v} x {k}"))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(o, "  UNEXPECTED answers: {answers}");
        }
        if let Some(t) = &self.timeline
            && let Some((first, last, with)) = t.error_span()
        {
            // When they came: a backend restart and a steady trickle read differently.
            let w = t.width.as_secs_f64();
            let _ = writeln!(
                o,
                "  errors came in {with} of {} intervals of {} ms, from {:.1} s to {:.1} s into the run",
                t.intervals.len(),
                t.width.as_millis(),
                first as f64 * w,
                (last + 1) as f64 * w
            );
        }
        if self.late_sends > 0 {
            let _ = writeln!(
                o,
                "  {} of {} requests were sent over 1 ms late (the generator or its connections could not keep the schedule; latency still counts from the intended time)",
                self.late_sends, self.sent
            );
        }
        if self.stopped_early {
            let _ = writeln!(
                o,
                "  stopped early (Ctrl-C) after {:.1} s: these figures cover the {} requests sent until then",
                self.elapsed.as_secs_f64(),
                self.sent
            );
            if self.unsent_at_stop > 0 {
                let _ = writeln!(
                    o,
                    "  {} requests were due but not yet sent at the stop (the target was behind): their latency is not in these figures",
                    self.unsent_at_stop
                );
            }
        }
        o
    }

    pub fn table_header() -> String {
        let mut s = format!("{:<12} {:>11} ", "target", "throughput");
        for p in PERCENTILES {
            let label = if p >= 100.0 {
                "max µs".to_string()
            } else {
                format!("p{p} µs")
            };
            let _ = write!(s, " {label:>9}");
        }
        s
    }

    /// HdrHistogram's percentile distribution text (what its plotter reads), in
    /// microseconds.
    pub fn hgrm(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0u64;
        for v in self.hist.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let inv = if q < 1.0 {
                format!("{:>14.2}", 1.0 / (1.0 - q))
            } else {
                format!("{:>14}", "inf")
            };
            let _ = writeln!(
                o,
                "{:>12.3} {:>14.12} {:>10} {inv}",
                v.value_iterated_to() as f64 / 1e3,
                q,
                total
            );
        }
        let _ = writeln!(
            o,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            self.hist.mean() / 1e3,
            self.hist.stdev() / 1e3
        );
        let _ = writeln!(
            o,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            self.hist.max() as f64 / 1e3,
            self.hist.len()
        );
        let _ = writeln!(
            o,
            "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
            self.hist.buckets(),
            sub_bucket_count(self.hist.sigfig())
        );
        o
    }

    pub fn to_json(&self) -> Value {
        let pct: BTreeMap<String, f64> = PERCENTILES
            .iter()
            .map(|p| (percentile_key(*p), self.us(*p)))
            .collect();
        json!({
            "target": self.name,
            "sent": self.sent,
            "completed": self.completed(),
            "ok": self.ok,
            "throughput_per_s": self.throughput(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "latency_us": pct,
            "mean_us": self.hist.mean() / 1e3,
            "denials": self.denials,
            "errors": self.errors,
            "unexpected": self.unexpected,
            "late_sends": self.late_sends,
            "stopped_early": self.stopped_early,
            "unsent_at_stop": self.unsent_at_stop,
            "timeline": self.timeline.as_ref().map(crate::timeline::Timeline::summary),
        })
    }
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits: the power of two
/// that resolves single units up to 2 × 10^sigfig. The `.hgrm` footer reports it, and
/// readers of the file take it for the histogram's precision (2048 for three digits).
fn sub_bucket_count(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

/// Fails now, not after a long run, when results could not be written into `out`: creates
/// it if needed and writes (and removes) a probe file.
pub fn check_writable(out: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let probe = out.join(".portcullis-loadtest-probe");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

/// Writes one run's `.hgrm`, JSON summary and SVG plot into `out`, named after the target.
pub fn write_run(out: &std::path::Path, stats: &Stats) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let mut json = stats.to_json();
    json["machine"] = machine();
    for (ext, body) in [
        ("hgrm", stats.hgrm()),
        (
            "json",
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ),
        (
            "svg",
            svg(&format!("Latency by percentile: {}", stats.name), &[stats]),
        ),
    ] {
        let p = out.join(format!("{}.{ext}", stats.name));
        std::fs::write(&p, body)?;
        written.push(p);
    }
    if let Some(t) = &stats.timeline {
        let p = out.join(format!("{}.hlog", stats.name));
        std::fs::write(&p, t.hlog(&stats.name)?)?;
        written.push(p);
        let p = out.join(format!("{}-timeline.svg", stats.name));
        std::fs::write(&p, t.svg(&format!("Latency over the run: {}", stats.name)))?;
        written.push(p);
    }
    Ok(written)
}

/// `p50`, `p99.9`, ..., `max`: the keys of percentiles in JSON outputs.
pub fn percentile_key(p: f64) -> String {
    if p >= 100.0 {
        "max".into()
    } else {
        format!("p{p}")
    }
}

/// What the numbers were measured on: CPU model, CPU count, kernel.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu": model,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "kernel": kernel.trim(),
    })
}

/// An SVG plot of latency against percentile (log scale, 0%..99.999%) for each series.
pub fn svg(title: &str, series: &[&Stats]) -> String {
    let (w, h, ml, mr, mt, mb) = (900.0f64, 520.0f64, 70.0, 20.0, 40.0, 60.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let max_x = 5.0f64; // 99.999%
    let mut max_us = 1.0f64;
    for s in series {
        max_us = max_us.max(s.us(99.999));
    }
    let ymax = max_us * 1.1;
    let x = |q: f64| ml + (-(1.0 - q).max(1e-5).log10()).min(max_x) / max_x * pw;
    let y = |us: f64| mt + ph - (us / ymax).min(1.0) * ph;
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"];
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        o,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        w / 2.0,
        xml(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let px = ml + i as f64 / max_x * pw;
        let _ = write!(
            o,
            r##"<line x1="{px}" y1="{mt}" x2="{px}" y2="{}" stroke="#ddd"/><text x="{px}" y="{}" text-anchor="middle">{label}</text>"##,
            mt + ph,
            mt + ph + 18.0
        );
    }
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let py = y(v);
        let _ = write!(
            o,
            r##"<line x1="{ml}" y1="{py}" x2="{}" y2="{py}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{:.0}</text>"##,
            ml + pw,
            ml - 6.0,
            py + 4.0,
            v
        );
    }
    let _ = write!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        ml + pw / 2.0,
        h - 14.0
    );
    let _ = write!(
        o,
        r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">latency (µs)</text>"#,
        mt + ph / 2.0
    );
    for (k, s) in series.iter().enumerate() {
        let color = colors[k % colors.len()];
        let mut pts = String::new();
        if !s.hist.is_empty() {
            for v in s.hist.iter_quantiles(10) {
                let q = v.quantile_iterated_to();
                if q > 0.99999 {
                    break;
                }
                let _ = write!(
                    pts,
                    "{:.1},{:.1} ",
                    x(q),
                    y(v.value_iterated_to() as f64 / 1e3)
                );
            }
        }
        let _ = write!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>"#
        );
        let ly = mt + 14.0 + 18.0 * k as f64;
        let _ = write!(
            o,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{}  p50 {:.0} µs  p99 {:.0} µs</text>"#,
            ml + 12.0,
            ly - 10.0,
            ml + 30.0,
            ly,
            xml(&s.name),
            s.us(50.0),
            s.us(99.0)
        );
    }
    o.push_str("</svg>\n");
    o
}

pub(crate) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_well_formed_outputs() {
        let mut s = Stats::new("gateway");
        for i in 1..=1000u64 {
            s.record(Duration::from_micros(i));
        }
        s.elapsed = Duration::from_secs(1);
        s.denial("drift");
        s.error("reset");
        assert!((s.us(50.0) - 500.0).abs() < 2.0);
        assert_eq!(s.us(100.0).round(), 1000.0);
        let h = s.hgrm();
        assert!(h.lines().next().unwrap().contains("Percentile"));
        assert!(h.contains("#[Max     ="));
        let v = s.to_json();
        assert_eq!(v["completed"], 1000);
        assert_eq!(v["denials"]["drift"], 1);
        let svg = svg("t", &[&s]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn the_details_say_when_errors_came() {
        let mut s = Stats::new("t");
        s.timeline = Some(crate::timeline::Timeline::new(
            std::time::SystemTime::UNIX_EPOCH,
            Duration::from_millis(100),
        ));
        s.record_at(Duration::from_micros(80), Duration::from_millis(20));
        s.error_at("http_502", Duration::from_millis(210));
        s.error_at("connect_refused", Duration::from_millis(290));
        s.record_at(Duration::from_micros(80), Duration::from_millis(420));
        let d = s.details();
        assert!(
            d.contains("errors by kind: connect_refused 1, http_502 1"),
            "{d}"
        );
        assert!(
            d.contains(
                "errors came in 1 of 5 intervals of 100 ms, from 0.2 s to 0.3 s into the run"
            ),
            "{d}"
        );
    }

    /// A saturated open-loop run has latencies of many seconds: each column must still
    /// stand apart, for the reader and for scripts that split the row on whitespace.
    #[test]
    fn table_columns_stay_apart_for_long_latencies() {
        let mut s = Stats::new("target");
        for secs in [30u64, 45, 46] {
            s.record(Duration::from_secs(secs));
        }
        s.elapsed = Duration::from_secs(1);
        let row = s.table_row();
        let fields: Vec<&str> = row.split_whitespace().collect();
        let header = Stats::table_header();
        assert_eq!(fields[0], "target");
        assert_eq!(fields.len(), 2 + PERCENTILES.len() + 6, "{row}");
        let p50: f64 = fields[2].parse().unwrap();
        assert!((p50 - 45e6).abs() < 45e3, "the p50 is 45 s: {row}");
        // At everyday widths the header's columns end where the row's do.
        let mut quick = Stats::new("target");
        quick.record(Duration::from_micros(123));
        quick.elapsed = Duration::from_secs(1);
        let row = quick.table_row();
        assert_eq!(
            header.chars().count(),
            row.find("  ok").unwrap(),
            "{header}\n{row}"
        );
    }

    /// The `.hgrm` is read by HdrHistogram's plotter and by people used to the Java and C
    /// libraries' output: same columns, percentile steps, value rounding and footer.
    #[test]
    fn hgrm_is_hdrhistograms_percentile_distribution() {
        let mut s = Stats::new("gateway");
        for i in 1..=1000u64 {
            s.record(Duration::from_micros(i));
        }
        for ns in [5_000_000, 123_456_789] {
            s.record(Duration::from_nanos(ns));
        }
        let text = s.hgrm();
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let (rows, footer): (Vec<&str>, Vec<&str>) = lines.partition(|l| !l.starts_with('#'));
        let rows: Vec<Vec<&str>> = rows
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let pct: Vec<f64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
        // Five ticks per halving of the distance to 100%, as the Java library prints them.
        assert_eq!(pct[..8], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6]);
        assert_eq!(*pct.last().unwrap(), 1.0);
        // Values are each bucket's highest equivalent value, in µs with three decimals.
        let median = rows.iter().find(|r| r[1] == "0.500000000000").unwrap();
        assert_eq!(median[..3], ["501.247", "0.500000000000", "501"]);
        for r in &rows[..rows.len() - 1] {
            let p: f64 = r[1].parse().unwrap();
            assert_eq!(r[3], format!("{:.2}", 1.0 / (1.0 - p)), "row {r:?}");
        }
        assert_eq!(
            rows.last().unwrap()[..],
            ["123469.823", "1.000000000000", "1002", "inf"]
        );
        let footer: Vec<Vec<&str>> = footer
            .iter()
            .map(|l| l.split(['[', ']', '=', ',']).map(str::trim).collect())
            .collect();
        assert_eq!(
            footer[1][..5],
            ["#", "Max", "123469.823", "Total count", "1002"]
        );
        assert_eq!(footer[2][..5], ["#", "Buckets", "32", "SubBuckets", "2048"]);
    }
}
