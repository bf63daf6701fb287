//! An early stop asked for by the operator (Ctrl-C, SIGTERM). A long run stopped by hand
//! must still report what it measured: runs end at their next send, requests in flight
//! are answered or time out, and the report covers what was sent. A second signal exits
//! at once, for a target that never answers.
//!
//! The flag is process-wide because signals are. Only the binary installs the handlers;
//! in-process tests never set it.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status after an early stop, as a shell reports a command ended by SIGINT.
pub const EXIT_STOPPED: u8 = 130;

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether a stop has been asked for.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Makes SIGINT and SIGTERM ask for a stop, and a second one exit with
/// [`EXIT_STOPPED`] straight away.
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(
            sig,
            i32::from(EXIT_STOPPED),
            Arc::clone(flag()),
        )?;
        signal_hook::flag::register(sig, Arc::clone(flag()))?;
    }
    Ok(())
}
