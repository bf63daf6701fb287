//! Latency over the time of a run: one histogram per interval of completion time, written
//! as HdrHistogram's interval log (`.hlog`), the format its Java `HistogramLogProcessor`,
//! HistogramLogAnalyzer and the other ports read. A run's single histogram hides when its
//! tail happened; this shows a stall once a second (an fsync, a GC, a noisy neighbour)
//! as the seconds it happened in.
//!
//! Memory stays bounded on long runs: past `MAX_INTERVALS` the intervals double in width,
//! neighbours merged, so an hour at one second per interval ends at about four seconds.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use std::time::{Duration, SystemTime};

/// Intervals kept before they are widened.
pub const MAX_INTERVALS: usize = 1200;

#[derive(Clone, Debug)]
pub struct Timeline {
    /// Wall-clock time of the run's start: the log's StartTime and BaseTime.
    pub start: SystemTime,
    pub width: Duration,
    pub intervals: Vec<Histogram<u64>>,
    /// Errors (error statuses, failed connections, timeouts) by the interval they ended
    /// in, as long as `intervals`: a backend restart shows as the seconds it failed in.
    pub errors: Vec<u64>,
}

/// One interval's histogram: latencies in nanoseconds, as the whole run's, at the
/// microsecond resolution a per-second view needs, so that a thousand of them fit in a
/// few tens of megabytes. It grows to whatever it is given.
fn interval_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1_000, 2_000_000, 3).expect("constant bounds are valid");
    h.auto(true);
    h
}

impl Timeline {
    /// A timeline of intervals `width` long (at least a millisecond).
    pub fn new(start: SystemTime, width: Duration) -> Timeline {
        Timeline {
            start,
            width: width.max(Duration::from_millis(1)),
            intervals: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Records `latency` for a request that completed `at` into the run.
    pub fn record(&mut self, at: Duration, latency: Duration) {
        let i = self.slot(at);
        // Auto-resizing: only a value beyond u64 could fail, and no latency is that long.
        let _ = self.intervals[i].record(latency.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    /// Counts an error that ended `at` into the run.
    pub fn error(&mut self, at: Duration) {
        let i = self.slot(at);
        self.errors[i] += 1;
    }

    /// The interval `at` falls in, widening and growing the timeline to hold it.
    fn slot(&mut self, at: Duration) -> usize {
        let mut i = self.index(at);
        while i >= MAX_INTERVALS {
            self.widen();
            i = self.index(at);
        }
        self.grow(i + 1);
        i
    }

    fn grow(&mut self, len: usize) {
        if self.intervals.len() < len {
            self.intervals.resize_with(len, interval_histogram);
            self.errors.resize(len, 0);
        }
    }

    /// The first and last interval with errors, and how many intervals had any.
    pub fn error_span(&self) -> Option<(usize, usize, usize)> {
        let first = self.errors.iter().position(|&n| n > 0)?;
        let last = self.errors.iter().rposition(|&n| n > 0)?;
        Some((first, last, self.errors.iter().filter(|&&n| n > 0).count()))
    }

    fn index(&self, at: Duration) -> usize {
        (at.as_nanos() / self.width.as_nanos()) as usize
    }

    /// Doubles the interval width, merging each pair of neighbours.
    fn widen(&mut self) {
        self.width *= 2;
        let old = std::mem::take(&mut self.intervals);
        let mut it = old.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                let _ = a.add(&b);
            }
            self.intervals.push(a);
        }
        self.errors = self.errors.chunks(2).map(|p| p.iter().sum()).collect();
    }

    /// Adds another thread's timeline of the same run.
    pub fn merge(&mut self, o: &Timeline) {
        while self.width < o.width {
            self.widen();
        }
        // Only a narrower timeline needs a widened copy; the common case adds in place.
        let widened;
        let o = if o.width < self.width {
            let mut w = o.clone();
            while w.width < self.width {
                w.widen();
            }
            widened = w;
            &widened
        } else {
            o
        };
        self.grow(o.intervals.len());
        for (a, b) in self.intervals.iter_mut().zip(&o.intervals) {
            let _ = a.add(b);
        }
        for (a, b) in self.errors.iter_mut().zip(&o.errors) {
            *a += b;
        }
    }

    /// One summary per interval, for scripts that plot without HdrHistogram's tools:
    /// start (s into the run), completions (error statuses included), errors, and p50, p99
    /// and max in µs.
    pub fn summary(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .intervals
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let us = |q: f64| {
                    if h.is_empty() {
                        0.0
                    } else {
                        h.value_at_quantile(q) as f64 / 1e3
                    }
                };
                serde_json::json!({
                    "start_s": (self.width * i as u32).as_secs_f64(),
                    "completed": h.len(),
                    "errors": self.errors[i],
                    "p50_us": us(0.5),
                    "p99_us": us(0.99),
                    "max_us": if h.is_empty() { 0.0 } else { h.max() as f64 / 1e3 },
                })
            })
            .collect();
        serde_json::json!({ "interval_s": self.width.as_secs_f64(), "intervals": rows })
    }

    /// A plot of each interval's p50, p99 and max over the run, on a log scale (a stall
    /// is orders of magnitude above the median). Intervals with nothing completed are
    /// gaps in the lines.
    pub fn svg(&self, title: &str) -> String {
        use std::fmt::Write;
        let (w, h, ml, mr, mt, mb) = (900.0f64, 420.0f64, 70.0, 20.0, 40.0, 50.0);
        let (pw, ph) = (w - ml - mr, h - mt - mb);
        let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q).max(1) as f64 / 1e3;
        let filled = || self.intervals.iter().filter(|h| !h.is_empty());
        let lo = filled().map(|h| us(h, 0.5)).fold(f64::MAX, f64::min);
        let hi = filled().map(|h| h.max() as f64 / 1e3).fold(0.0, f64::max);
        let (lo, hi) = if hi > 0.0 {
            (
                10f64.powf((lo / 1.5).log10().floor()),
                10f64.powf((hi * 1.5).log10().ceil()),
            )
        } else {
            (1.0, 10.0)
        };
        let span = self.width.as_secs_f64() * self.intervals.len().max(1) as f64;
        let x = |i: usize| ml + (i as f64 + 0.5) * self.width.as_secs_f64() / span * pw;
        let y =
            |v: f64| mt + ph - (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * ph;
        let mut o = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
            w / 2.0,
            crate::report::xml(title)
        );
        let mut decade = lo;
        while decade <= hi * 1.001 {
            let py = y(decade);
            let _ = write!(
                o,
                r##"<line x1="{ml}" y1="{py}" x2="{}" y2="{py}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{decade}</text>"##,
                ml + pw,
                ml - 6.0,
                py + 4.0
            );
            decade *= 10.0;
        }
        // Ticks at a round step (1, 2 or 5 times a power of ten) giving about five.
        let raw = span / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let decimals = if step >= 1.0 {
            0
        } else {
            (-step.log10()).ceil() as usize
        };
        for k in 0..=(span / step).floor() as usize {
            let secs = step * k as f64;
            let px = ml + secs / span * pw;
            let _ = write!(
                o,
                r##"<line x1="{px}" y1="{mt}" x2="{px}" y2="{}" stroke="#ddd"/><text x="{px}" y="{}" text-anchor="middle">{secs:.decimals$}</text>"##,
                mt + ph,
                mt + ph + 16.0
            );
        }
        let _ = write!(
            o,
            r#"<text x="{}" y="{}" text-anchor="middle">seconds into the run ({} ms intervals)</text><text transform="translate(16,{}) rotate(-90)" text-anchor="middle">latency (µs, log scale)</text>"#,
            ml + pw / 2.0,
            h - 10.0,
            self.width.as_millis(),
            mt + ph / 2.0
        );
        // Intervals with errors are shaded behind the lines, their count in a tooltip.
        let band = self.width.as_secs_f64() / span * pw;
        for (i, &n) in self.errors.iter().enumerate().filter(|(_, n)| **n > 0) {
            let _ = write!(
                o,
                r##"<rect x="{:.1}" y="{mt}" width="{band:.1}" height="{ph}" fill="#d62728" fill-opacity="0.12"><title>{n} errors</title></rect>"##,
                x(i) - band / 2.0
            );
        }
        if self.error_span().is_some() {
            let _ = write!(
                o,
                r##"<rect x="{}" y="{}" width="12" height="12" fill="#d62728" fill-opacity="0.12" stroke="#d62728" stroke-opacity="0.4"/><text x="{}" y="{}">errors</text>"##,
                ml + 12.0 + 70.0 * 3.0,
                mt + 4.0,
                ml + 30.0 + 70.0 * 3.0,
                mt + 14.0
            );
        }
        let lines: [(&str, &str, f64); 3] = [
            ("p50", "#1f77b4", 0.5),
            ("p99", "#ff7f0e", 0.99),
            ("max", "#d62728", 1.0),
        ];
        for (k, (label, color, q)) in lines.iter().enumerate() {
            let mut pts = String::new();
            for (i, hist) in self.intervals.iter().enumerate() {
                if hist.is_empty() {
                    let _ = write!(
                        o,
                        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>"#
                    );
                    pts.clear();
                    continue;
                }
                let _ = write!(pts, "{:.1},{:.1} ", x(i), y(us(hist, *q)));
            }
            let _ = write!(
                o,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/><rect x="{}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{label}</text>"#,
                ml + 12.0 + 70.0 * k as f64,
                mt + 4.0,
                ml + 30.0 + 70.0 * k as f64,
                mt + 14.0
            );
        }
        o.push_str("</svg>\n");
        o
    }

    /// The interval log: a comment naming the target, StartTime and BaseTime, then one
    /// compressed histogram per interval, empty ones included (they are time in which
    /// nothing completed). Interval_Max is in milliseconds, as the Java writer's default.
    pub fn hlog(&self, target: &str) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "portcullis-loadtest: latency of {target} in nanoseconds, by completion time, {} ms intervals",
                self.width.as_millis()
            ))
            .with_start_time(self.start)
            .with_base_time(self.start)
            .with_max_value_divisor(1e6)
            .begin_log_with(&mut out, &mut ser)?;
        for (i, h) in self.intervals.iter().enumerate() {
            w.write_histogram(h, self.width * i as u32, self.width, None)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::prelude::{BASE64_STANDARD, Engine};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_interval_holds_what_completed_in_it() {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH, ms(100));
        t.record(ms(10), Duration::from_micros(50));
        t.record(ms(99), Duration::from_micros(60));
        t.record(ms(350), Duration::from_millis(40));
        assert_eq!(t.intervals.len(), 4);
        let counts: Vec<u64> = t.intervals.iter().map(|h| h.len()).collect();
        assert_eq!(counts, [2, 0, 0, 1]);
        assert!(t.intervals[3].max() >= 40_000_000);
        let s = t.summary();
        assert_eq!(s["interval_s"], 0.1);
        let rows = s["intervals"].as_array().unwrap();
        assert_eq!(rows[0]["completed"], 2);
        assert_eq!(rows[1]["completed"], 0);
        assert!((rows[3]["start_s"].as_f64().unwrap() - 0.3).abs() < 1e-9);
        let max = rows[3]["max_us"].as_f64().unwrap();
        assert!((max - 40_000.0).abs() < 40.0, "{max}");
    }

    #[test]
    fn a_long_run_widens_its_intervals_and_keeps_every_sample() {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH, ms(1));
        for i in 0..(3 * MAX_INTERVALS as u64) {
            t.record(ms(i), Duration::from_micros(i + 1));
        }
        assert!(t.intervals.len() <= MAX_INTERVALS);
        assert_eq!(t.width, ms(4));
        let total: u64 = t.intervals.iter().map(|h| h.len()).sum();
        assert_eq!(total, 3 * MAX_INTERVALS as u64);
        assert_eq!(t.intervals[0].len(), 4, "the first four milliseconds");
    }

    #[test]
    fn threads_merge_into_one_timeline_even_at_different_widths() {
        let mut a = Timeline::new(SystemTime::UNIX_EPOCH, ms(1));
        let mut b = a.clone();
        a.record(ms(0), Duration::from_micros(5));
        b.record(ms(1), Duration::from_micros(5));
        b.widen();
        a.merge(&b);
        assert_eq!(a.width, ms(2));
        assert_eq!(a.intervals[0].len(), 2);
    }

    #[test]
    fn errors_are_placed_by_when_they_ended_through_widening_and_merging() {
        let mut a = Timeline::new(SystemTime::UNIX_EPOCH, ms(100));
        a.record(ms(50), Duration::from_micros(5));
        a.error(ms(250));
        a.error(ms(260));
        a.error(ms(390));
        assert_eq!(a.errors, [0, 0, 2, 1]);
        assert_eq!(a.error_span(), Some((2, 3, 2)));
        let rows = a.summary()["intervals"].as_array().unwrap().clone();
        let errors: Vec<u64> = rows.iter().map(|r| r["errors"].as_u64().unwrap()).collect();
        assert_eq!(errors, [0, 0, 2, 1]);
        // The plot shades the two intervals, with their counts.
        let svg = a.svg("t");
        assert_eq!(svg.matches("<title>").count(), 2, "{svg}");
        assert!(svg.contains("<title>2 errors</title>") && svg.contains(">errors<"));

        let mut b = Timeline::new(SystemTime::UNIX_EPOCH, ms(100));
        b.error(ms(10));
        b.widen();
        a.merge(&b);
        assert_eq!(a.width, ms(200));
        assert_eq!(a.errors, [1, 3]);
        assert_eq!(a.errors.len(), a.intervals.len());
        assert_eq!(
            Timeline::new(SystemTime::UNIX_EPOCH, ms(1)).error_span(),
            None
        );
    }

    #[test]
    fn the_plot_draws_each_percentile_over_round_seconds() {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH, ms(100));
        for i in 0..51 {
            t.record(ms(i * 100 + 5), Duration::from_micros(100 + i));
        }
        t.record(ms(2_005), Duration::from_millis(30));
        let svg = t.svg("run <1>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("run &lt;1&gt;"), "titles are escaped");
        for label in [">p50<", ">p99<", ">max<", ">0<", ">2<", ">4<"] {
            assert!(svg.contains(label), "{label} in {svg}");
        }
        assert!(!svg.contains(">5.1<") && !svg.contains("NaN"), "{svg}");
        assert!(!svg.contains(">errors<"), "no errors, no legend for them");
        // A log scale from the median's decade to past the stall's.
        assert!(svg.contains(">10<") && svg.contains(">100000<"), "{svg}");
    }

    #[test]
    fn the_interval_log_reads_back_interval_by_interval() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut t = Timeline::new(start, Duration::from_secs(1));
        for i in 0..100 {
            t.record(ms(i * 10), Duration::from_micros(100));
        }
        t.record(ms(2_500), Duration::from_millis(250));
        let log = t.hlog("gateway").unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        assert!(text.contains("#[BaseTime: 1700000000.000"), "{text}");
        let mut d = Deserializer::new();
        let mut seen = Vec::new();
        for entry in IntervalLogIterator::new(&log) {
            if let Ok(LogEntry::Interval(h)) = entry {
                let bytes = BASE64_STANDARD.decode(h.encoded_histogram()).unwrap();
                let hist: Histogram<u64> = d.deserialize(&mut bytes.as_slice()).unwrap();
                seen.push((h.start_timestamp(), hist.len(), h.max()));
            }
        }
        assert_eq!(seen.len(), 3);
        assert_eq!((seen[0].0, seen[0].1), (Duration::ZERO, 100));
        assert_eq!((seen[1].0, seen[1].1), (Duration::from_secs(1), 0));
        assert_eq!((seen[2].0, seen[2].1), (Duration::from_secs(2), 1));
        // Interval_Max in milliseconds.
        assert!((seen[2].2 - 250.0).abs() < 1.0, "{:?}", seen[2]);
    }
}
