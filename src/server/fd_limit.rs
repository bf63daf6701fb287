//! The process's open-file limit. Every agent connection holds descriptors (its socket,
//! and while it is served a pooled upstream connection with the duplicate the idle check
//! peeks through), so the soft limit most shells and systemd units start with (1,024)
//! caps a gateway at a few hundred agents, far below what its hard limit allows. The
//! binaries raise the soft limit to the hard one at start, as Go's runtime and nginx's
//! `worker_rlimit_nofile` do; a library never changes it behind its caller's back.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Linux's default ceiling (`fs.nr_open`) for a hard limit reported as unlimited.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// Descriptors one agent connection can hold at once: its socket, a pooled upstream
/// connection and that connection's idle-check duplicate.
pub const PER_CONNECTION: u64 = 3;

/// What to raise when descriptors run out, for messages that tell the operator.
pub const RAISE_HINT: &str = "raise the hard limit: `ulimit -Hn`, systemd `LimitNOFILE=`";

/// Whether `e` says the process (EMFILE) or the system (ENFILE) has no descriptor left:
/// this process's own fault, not the peer's.
pub fn is_exhausted(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The open-file limit before and after `raise`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub now: u64,
}

impl FdLimit {
    /// About how many agent connections fit, keeping a hundred descriptors for the
    /// listeners, the audit trail and the runtime.
    pub fn connections(&self) -> u64 {
        self.now.saturating_sub(100) / PER_CONNECTION
    }
}

/// Raises the soft open-file limit to the hard limit, and says what it was and is.
/// A refusal leaves the limit where it was (the result says so), since the process
/// still runs, with fewer connections.
pub fn raise() -> FdLimit {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let before = current.unwrap_or(NR_OPEN_DEFAULT);
    let want = maximum.unwrap_or(NR_OPEN_DEFAULT);
    if want <= before {
        return FdLimit {
            before,
            now: before,
        };
    }
    let raised = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum,
        },
    );
    let now = match raised {
        Ok(()) => want,
        Err(_) => before,
    };
    FdLimit { before, now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let first = raise();
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        assert_eq!(current, Some(first.now));
        if let Some(hard) = maximum {
            assert_eq!(first.now, hard);
        }
        assert!(first.now >= first.before);
        let again = raise();
        assert_eq!(
            again,
            FdLimit {
                before: first.now,
                now: first.now
            }
        );
    }

    #[test]
    fn connections_leave_room_for_the_process_itself() {
        let l = FdLimit {
            before: 1024,
            now: 1024,
        };
        assert_eq!(l.connections(), 308);
        assert_eq!(
            FdLimit {
                before: 10,
                now: 10
            }
            .connections(),
            0
        );
    }
}
