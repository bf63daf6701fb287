//! Operational log lines on standard error: `<RFC 3339 time> <level> <message>`.
//!
//! Deliberately tiny: the audit trail is where decisions go; this is for start-up,
//! shutdown and faults. Nothing here ever formats a credential or an envelope: callers
//! log names, reasons and counts.

use std::fmt::Arguments;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences `info` lines (warnings still print); used by the demo to keep its output clean.
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

pub fn write(level: &str, args: Arguments<'_>) {
    if level == "info" && QUIET.load(Ordering::Relaxed) {
        return;
    }
    eprintln!(
        "{} {level:<5} {args}",
        crate::clock::format_rfc3339(crate::clock::now_unix())
    );
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::write("info", format_args!($($t)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::write("warn", format_args!($($t)*)) };
}

/// A warning that can repeat many times a second (a full disk, the open-file limit):
/// printed at most once a second, with how many times it happened in between.
#[derive(Default)]
pub struct Repeating {
    last: Option<Instant>,
    since: u64,
}

impl Repeating {
    /// Whether this one was printed.
    pub fn warn(&mut self, args: Arguments<'_>) -> bool {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return false;
        }
        match self.since - 1 {
            0 => write("warn", args),
            n => write(
                "warn",
                format_args!("{args} ({n} more since the last report)"),
            ),
        }
        (self.last, self.since) = (Some(Instant::now()), 0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_warning_prints_once_a_second_and_counts_the_rest() {
        let mut r = Repeating::default();
        assert!(r.warn(format_args!("first")));
        assert!(!r.warn(format_args!("again")));
        assert!(!r.warn(format_args!("again")));
        assert_eq!(r.since, 2);
        r.last = r.last.map(|t| t - Duration::from_secs(1));
        assert!(r.warn(format_args!("a second later")));
        assert_eq!(r.since, 0);
    }
}
