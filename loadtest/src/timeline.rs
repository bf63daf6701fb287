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
        }
    }

    /// Records `latency` for a request that completed `at` into the run.
    pub fn record(&mut self, at: Duration, latency: Duration) {
        let mut i = self.index(at);
        while i >= MAX_INTERVALS {
            self.widen();
            i = self.index(at);
        }
        if self.intervals.len() <= i {
            self.intervals.resize_with(i + 1, interval_histogram);
        }
        // Auto-resizing: only a value beyond u64 could fail, and no latency is that long.
        let _ = self.intervals[i].record(latency.as_nanos().min(u128::from(u64::MAX)) as u64);
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
    }

    /// Adds another thread's timeline of the same run.
    pub fn merge(&mut self, o: &Timeline) {
        let mut o = o.clone();
        while o.width < self.width {
            o.widen();
        }
        while self.width < o.width {
            self.widen();
        }
        if self.intervals.len() < o.intervals.len() {
            self.intervals
                .resize_with(o.intervals.len(), interval_histogram);
        }
        for (a, b) in self.intervals.iter_mut().zip(&o.intervals) {
            let _ = a.add(b);
        }
    }

    /// One summary per interval, for scripts that plot without HdrHistogram's tools:
    /// start (s into the run), completions, and p50, p99 and max in µs.
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
                    "p50_us": us(0.5),
                    "p99_us": us(0.99),
                    "max_us": if h.is_empty() { 0.0 } else { h.max() as f64 / 1e3 },
                })
            })
            .collect();
        serde_json::json!({ "interval_s": self.width.as_secs_f64(), "intervals": rows })
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
