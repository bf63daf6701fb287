//! CPU time of the process under test, read from `/proc` (utime + stime of its threads,
//! in clock ticks). Divided by the requests it served, it gives the CPU cost per request,
//! and so the throughput one core would sustain: a per-core figure that holds even when,
//! on a small machine, the load generator saturates before the proxy does. Also which
//! CPUs this process may run on, for checking the CPUs a user asks to pin to.

use std::path::Path;
use std::time::Duration;

/// Which threads' CPU time belongs to a target.
#[derive(Debug, Clone)]
pub enum CpuSource {
    /// Threads of this process whose name starts with one of the prefixes (an
    /// in-process gateway).
    OwnThreads(Vec<String>),
    /// Every thread of these processes (an external proxy: nginx workers, a gateway
    /// started with `portcullis serve`).
    Pids(Vec<u32>),
}

/// Clock ticks per second of `/proc/*/stat` times. Linux has reported USER_HZ = 100 to
/// user space on every architecture for decades, whatever the kernel's own HZ.
const TICKS_PER_SEC: u64 = 100;

/// utime + stime of one `/proc/.../stat` line: fields 14 and 15, counted after the
/// parenthesised command name (which may itself hold spaces or parentheses).
fn ticks_of_stat(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    let mut f = after.split_ascii_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th field from here.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

fn comm_of(task_dir: &Path) -> String {
    std::fs::read_to_string(task_dir.join("comm"))
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

fn ticks_of_tasks(proc_dir: &Path, keep: impl Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(proc_dir.join("task")) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| keep(&comm_of(&e.path())))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| ticks_of_stat(&s))
        .sum()
}

impl CpuSource {
    /// CPU time consumed so far. Threads that have exited are not counted, so read it
    /// while the target is running.
    pub fn read(&self) -> Duration {
        let ticks = match self {
            CpuSource::OwnThreads(prefixes) => ticks_of_tasks(Path::new("/proc/self"), |comm| {
                prefixes.iter().any(|p| comm.starts_with(p.as_str()))
            }),
            CpuSource::Pids(pids) => pids
                .iter()
                .map(|p| ticks_of_tasks(&Path::new("/proc").join(p.to_string()), |_| true))
                .sum(),
        };
        Duration::from_millis(ticks * 1000 / TICKS_PER_SEC)
    }

    /// Whether anything is there to measure (the threads or processes exist).
    pub fn is_measurable(&self) -> bool {
        match self {
            CpuSource::OwnThreads(prefixes) => std::fs::read_dir("/proc/self/task")
                .map(|d| {
                    d.flatten().any(|e| {
                        prefixes
                            .iter()
                            .any(|p| comm_of(&e.path()).starts_with(p.as_str()))
                    })
                })
                .unwrap_or(false),
            CpuSource::Pids(pids) => {
                !pids.is_empty()
                    && pids
                        .iter()
                        .all(|p| Path::new(&format!("/proc/{p}/stat")).exists())
            }
        }
    }
}

/// A kernel CPU list (`0-3,8,10-11`, as in `Cpus_allowed_list`), or `None` if malformed.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The CPUs this process may run on: its affinity (`taskset`, cgroup cpusets), which is
/// what pinning a thread is checked against. Where `/proc` does not say, CPUs 0..n for
/// the parallelism the standard library sees.
pub fn allowed_cpus() -> Vec<usize> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(parse_cpu_list)
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
        })
}

/// The machine's online CPUs (`/sys/devices/system/cpu/online`), if the kernel says.
pub fn online_cpus() -> Option<Vec<usize>> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("1"), Some(vec![1]));
        assert_eq!(parse_cpu_list("0-2,5,7-8"), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn stat_times_are_found_after_an_awkward_command_name() {
        let line = "4242 (nginx: worker) process) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 1 0";
        assert_eq!(ticks_of_stat(line), Some(281));
        assert_eq!(ticks_of_stat("garbage"), None);
    }

    #[test]
    fn a_busy_thread_of_this_process_is_measured() {
        let src = CpuSource::OwnThreads(vec!["lt-test-burn".into()]);
        let before = src.read();
        let t = std::thread::Builder::new()
            .name("lt-test-burn".into())
            .spawn(move || {
                let src = CpuSource::OwnThreads(vec!["lt-test-burn".into()]);
                let mut x = 0u64;
                // Burn until the kernel has charged this thread at least 50 ms.
                while src.read() < Duration::from_millis(50) {
                    for i in 0..100_000u64 {
                        x = x.wrapping_mul(31).wrapping_add(i);
                    }
                    std::hint::black_box(x);
                }
                src.read()
            })
            .unwrap();
        let during = t.join().unwrap();
        assert_eq!(before, Duration::ZERO, "no such thread before");
        assert!(during >= Duration::from_millis(50));
    }
}
