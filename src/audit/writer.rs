//! The audit writer thread: receives batches of encoded records from the cores, chains
//! them, appends them to the active segment, fsyncs on an interval, rotates segments by
//! size (closing each with a signed checkpoint), and on shutdown writes a final checkpoint
//! and syncs. The only thread that touches the audit files.

use super::chain::Chain;
use crate::envelope::SigningKey;
use crate::log::Repeating;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub dir: PathBuf,
    pub max_segment_bytes: u64,
    pub fsync_interval: Duration,
}

/// Counters the writer updates and the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub lines: AtomicU64,
    pub segments: AtomicU64,
    pub write_errors: AtomicU64,
}

/// `portcullis-audit-000001.jsonl`: segments sort by name in chain order.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("portcullis-audit-{n:06}.jsonl"))
}

/// The highest existing segment number in `dir` and the chain state at its end, so a
/// restarted gateway continues the chain instead of starting a second one.
fn resume(dir: &Path) -> std::io::Result<(u64, Chain)> {
    let mut last = 0u64;
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("portcullis-audit-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            last = last.max(n);
        }
    }
    if last == 0 {
        return Ok((0, Chain::default()));
    }
    let text = std::fs::read(segment_path(dir, last))?;
    let mut chain = Chain::default();
    if let Some(line) = text.split(|b| *b == b'\n').rfind(|l| !l.is_empty())
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
        && let (Some(seq), Some(hash)) = (v["seq"].as_u64(), v["hash"].as_str())
    {
        chain.seq = seq + 1;
        for (i, c) in hash.as_bytes().chunks(2).take(32).enumerate() {
            chain.last[i] =
                u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0);
        }
    }
    Ok((last, chain))
}

struct Segment {
    n: u64,
    file: File,
    bytes: u64,
}

/// Appends all of `buf` to the segment, retrying what did not land until it does. The
/// chain already counts these lines: one skipped would break verification of every line
/// after it, and an allowed call's line must not be lost. While this waits, batches queue
/// up behind it and the full-queue policy applies (fail closed refuses calls).
fn write_all_retrying(seg: &mut Segment, buf: &[u8], stats: &WriterStats, warned: &mut Repeating) {
    let mut done = 0;
    while done < buf.len() {
        match seg.file.write(&buf[done..]) {
            Ok(0) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                warned.warn(format_args!("audit: write wrote nothing, retrying"));
                std::thread::sleep(RETRY);
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                warned.warn(format_args!("audit: write failed, retrying: {e}"));
                std::thread::sleep(RETRY);
            }
        }
    }
    seg.bytes += buf.len() as u64;
}

/// How long a failed write or segment open waits before it is tried again.
const RETRY: Duration = Duration::from_millis(50);

fn open_segment(dir: &Path, n: u64) -> std::io::Result<Segment> {
    let path = segment_path(dir, n);
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o640);
    }
    let file = opts.open(&path)?;
    let bytes = file.metadata()?.len();
    Ok(Segment { n, file, bytes })
}

/// Runs the writer until every sender is gone. The previous segment (if the gateway is
/// resuming) was closed with a checkpoint or not; either way new lines go to a new
/// segment so each file's checkpoint covers exactly the lines before it.
pub fn run(
    cfg: WriterConfig,
    key: Arc<SigningKey>,
    rx: Receiver<super::Msg>,
    depth: Arc<AtomicUsize>,
    stats: Arc<WriterStats>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&cfg.dir)?;
    let (last, mut chain) = resume(&cfg.dir)?;
    let mut seg = open_segment(&cfg.dir, last + 1)?;
    stats.segments.fetch_add(1, Ordering::Relaxed);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut last_sync = Instant::now();
    let mut dirty = false;
    let (mut write_warned, mut open_warned) = (Repeating::default(), Repeating::default());
    loop {
        // Clean, there is nothing to sync: sleep until a batch comes. Polling here used to
        // wake this thread every millisecond, on the workers' CPU, with nothing to do.
        let msg = if dirty {
            let wait = cfg
                .fsync_interval
                .saturating_sub(last_sync.elapsed())
                .max(Duration::from_millis(1));
            rx.recv_timeout(wait)
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match msg {
            Ok(super::Msg::Batch(batch)) => {
                depth.fetch_sub(1, Ordering::Relaxed);
                // memchr: a byte-by-byte split cost ~2 instructions a byte here.
                let mut from = 0;
                for end in memchr::memchr_iter(b'\n', &batch).chain([batch.len()]) {
                    if end > from {
                        chain.append(&batch[from..end], &mut out);
                        stats.lines.fetch_add(1, Ordering::Relaxed);
                    }
                    from = end + 1;
                }
                write_all_retrying(&mut seg, &out, &stats, &mut write_warned);
                out.clear();
                dirty = true;
                // The next segment is opened before this one is sealed: when it cannot be
                // (out of descriptors, say), lines keep going to this one, whose checkpoint
                // then still covers all of them, and the rotation is tried at the next batch.
                if seg.bytes >= cfg.max_segment_bytes {
                    match open_segment(&cfg.dir, seg.n + 1) {
                        Ok(next) => {
                            chain.checkpoint(
                                seg.n,
                                crate::clock::now_unix_micros(),
                                &key,
                                &mut out,
                            );
                            write_all_retrying(&mut seg, &out, &stats, &mut write_warned);
                            out.clear();
                            // As the interval sync below: a failure is counted and said,
                            // and the writer goes on (stopping would lose the queue).
                            if let Err(e) = seg.file.sync_data() {
                                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                                crate::warn!(
                                    "audit: fsync of sealed segment {} failed: {e}",
                                    seg.n
                                );
                            }
                            seg = next;
                            stats.segments.fetch_add(1, Ordering::Relaxed);
                            last_sync = Instant::now();
                            dirty = false;
                        }
                        Err(e) => {
                            stats.write_errors.fetch_add(1, Ordering::Relaxed);
                            open_warned.warn(format_args!(
                                "audit: cannot open segment {} yet, lines stay in segment {}: {e}",
                                seg.n + 1,
                                seg.n
                            ));
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Ok(super::Msg::Close) | Err(RecvTimeoutError::Disconnected) => {
                chain.checkpoint(seg.n, crate::clock::now_unix_micros(), &key, &mut out);
                write_all_retrying(&mut seg, &out, &stats, &mut write_warned);
                seg.file.sync_data()?;
                return Ok(());
            }
        }
        if dirty && last_sync.elapsed() >= cfg.fsync_interval {
            if let Err(e) = seg.file.sync_data() {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                crate::warn!("audit: fsync failed: {e}");
            }
            last_sync = Instant::now();
            dirty = false;
        }
    }
}
