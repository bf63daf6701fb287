//! Operational log lines on standard error: `<RFC 3339 time> <level> <message>`.
//!
//! Deliberately tiny: the audit trail is where decisions go; this is for start-up,
//! shutdown and faults. Nothing here ever formats a credential or an envelope: callers
//! log names, reasons and counts.

use std::fmt::Arguments;
use std::sync::atomic::{AtomicBool, Ordering};

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
