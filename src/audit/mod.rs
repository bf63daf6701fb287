//! The audit trail: one JSON line per decision, allowed or denied, written off the hot
//! path. Each core encodes records into its own buffer (`CoreAudit`) and hands full
//! batches to the writer thread over a bounded queue; the writer chains, writes, syncs
//! and rotates (`writer`, `chain`). When the queue is full the configured policy applies:
//! fail closed (the call is denied with `audit_unavailable`) or drop and count. Never
//! silent: both outcomes are counted and exported as metrics.
//!
//! Failing closed means no allowed call goes unrecorded. A core decides a call when the
//! queue has room, but hands its batch over later (on a timer, or when the batch is
//! full), and by then another core may have taken the last slot. So a core whose batch
//! finds the queue full keeps it and hands it over first at its next flush; while it
//! holds one, its own calls are refused. What piles up meanwhile is refusals (and calls
//! that were already in flight); the records of refusals beyond a bound are dropped and
//! counted, those of allowed calls never are.
//!
//! `verify` checks files offline (`portcullis audit verify`).

pub mod chain;
pub mod record;
pub mod verify;
pub mod writer;

pub use record::Record;

use crate::envelope::SigningKey;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

/// What to do when the writer cannot keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Refuse calls (`audit_unavailable`) until there is room: no unaudited action.
    Deny,
    /// Let calls through and count the lost records.
    Drop,
}

/// The shared side of the audit trail: the queue to the writer and its counters.
/// What the cores send the writer.
pub enum Msg {
    /// Encoded record bodies separated by newlines.
    Batch(Vec<u8>),
    /// Write the final checkpoint, sync, and stop.
    Close,
}

pub struct AuditSink {
    tx: SyncSender<Msg>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
    pub on_full: OnFull,
    pub dropped: AtomicU64,
    pub stats: Arc<writer::WriterStats>,
}

impl AuditSink {
    /// Starts the writer thread. `capacity` is in batches.
    pub fn start(
        cfg: writer::WriterConfig,
        key: Arc<SigningKey>,
        capacity: usize,
        on_full: OnFull,
    ) -> std::io::Result<(Arc<AuditSink>, std::thread::JoinHandle<()>)> {
        std::fs::create_dir_all(&cfg.dir)?;
        let (tx, rx) = sync_channel(capacity.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(writer::WriterStats::default());
        let (d, s) = (Arc::clone(&depth), Arc::clone(&stats));
        let dir = cfg.dir.clone();
        let handle = std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || {
                if let Err(e) = writer::run(cfg, key, rx, d, s) {
                    crate::warn!("audit writer stopped: {}: {e}", dir.display());
                }
            })?;
        Ok((
            Arc::new(AuditSink {
                tx,
                depth,
                capacity: capacity.max(1),
                on_full,
                dropped: AtomicU64::new(0),
                stats,
            }),
            handle,
        ))
    }

    /// Asks the writer to seal the segment (final checkpoint, fsync) and stop. Call after
    /// every core has flushed; waits up to `patience` for room in the queue (a stuck
    /// writer must not hang shutdown). Whether the request was queued.
    pub fn close(&self, patience: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.tx.try_send(Msg::Close) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(_)) if std::time::Instant::now() >= deadline => {
                    return false;
                }
                Err(TrySendError::Full(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    }

    /// Batches waiting for the writer.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Whether a fail-closed gateway may let a call through: the queue has room.
    pub fn has_room(&self) -> bool {
        self.on_full == OnFull::Drop || self.depth() < self.capacity
    }

    /// Queues a batch, or gives it back when the queue is full (or the writer is gone).
    fn try_send(&self, batch: Vec<u8>) -> Result<(), Vec<u8>> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Batch(batch)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Msg::Batch(b)))
            | Err(TrySendError::Disconnected(Msg::Batch(b))) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(b)
            }
            Err(_) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(Vec::new())
            }
        }
    }
}

/// A core's batch of encoded records. Single-threaded; flushed when it grows past a size
/// or on the core's flush timer.
pub struct CoreAudit {
    sink: Arc<AuditSink>,
    buf: Vec<u8>,
    records: u64,
    /// Fail closed only: a batch the queue had no room for, handed over before anything
    /// else (its record count alongside).
    held: Option<(Vec<u8>, u64)>,
}

/// Records per batch before a flush is forced.
const BATCH_RECORDS: u64 = 64;
const BATCH_BYTES: usize = 64 * 1024;
/// While a core holds a refused batch, its new batch may grow to this before the records
/// of further refusals are dropped (and counted). Allowed calls' records always stay.
const HELD_BYTES: usize = 4 * BATCH_BYTES;

impl CoreAudit {
    pub fn new(sink: Arc<AuditSink>) -> Self {
        CoreAudit {
            sink,
            buf: Vec::with_capacity(BATCH_BYTES),
            records: 0,
            held: None,
        }
    }

    pub fn sink(&self) -> &AuditSink {
        &self.sink
    }

    /// Whether this core may let a call through: always when dropping; when failing
    /// closed, only if it holds no refused batch and the queue has room.
    pub fn has_room(&self) -> bool {
        self.sink.on_full == OnFull::Drop || (self.held.is_none() && self.sink.has_room())
    }

    /// Queues one record: `decision` from `record::encode`, then the outcome.
    pub fn push(&mut self, decision: &[u8], latency_us: u64, upstream_status: u16, allowed: bool) {
        self.push_with(
            |out| out.extend_from_slice(decision),
            latency_us,
            upstream_status,
            allowed,
        );
    }

    /// Queues one record whose decision part `encode` appends (as `record::encode` does)
    /// straight into the batch.
    pub fn push_with(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>),
        latency_us: u64,
        upstream_status: u16,
        allowed: bool,
    ) {
        if self.held.is_some() && !allowed && self.buf.len() >= HELD_BYTES {
            self.sink.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        encode(&mut self.buf);
        record::encode_outcome(&mut self.buf, latency_us, upstream_status);
        self.buf.push(b'\n');
        self.records += 1;
        if self.records >= BATCH_RECORDS || self.buf.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Hands the held batch (if any) and then the current one to the writer. Failing
    /// closed, a batch that finds the queue full is kept; dropping, it is counted lost.
    pub fn flush(&mut self) {
        if let Some((batch, n)) = self.held.take()
            && let Err(back) = self.sink.try_send(batch)
        {
            self.held = Some((back, n));
            return;
        }
        if self.records == 0 {
            return;
        }
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH_BYTES));
        let n = std::mem::take(&mut self.records);
        if let Err(back) = self.sink.try_send(batch) {
            match self.sink.on_full {
                OnFull::Deny => self.held = Some((back, n)),
                OnFull::Drop => {
                    self.sink.dropped.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }

    /// At shutdown: flushes, waiting up to `patience` for the writer to make room for
    /// what this core holds. Whatever still cannot be handed over is counted as dropped
    /// (and logged): the writer is stuck, and shutdown must not hang on it.
    pub fn flush_before_stop(&mut self, patience: std::time::Duration) {
        let deadline = std::time::Instant::now() + patience;
        loop {
            self.flush();
            let pending = self.held.is_some() || self.records > 0;
            if !pending {
                return;
            }
            if std::time::Instant::now() >= deadline {
                let lost =
                    self.held.take().map_or(0, |(_, n)| n) + std::mem::take(&mut self.records);
                self.buf.clear();
                self.sink.dropped.fetch_add(lost, Ordering::Relaxed);
                crate::warn!(
                    "audit: the writer did not take {lost} record(s) before shutdown; counted as dropped"
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A sink with room for one batch whose writer is stuck reading the last segment to
    /// resume its chain: a FIFO nobody writes to yet. Opening the FIFO for writing and
    /// closing it again unblocks the writer, which then writes to segment 3.
    struct Stuck {
        sink: Arc<AuditSink>,
        fifo: std::path::PathBuf,
        dir: tempfile::TempDir,
        writer: std::thread::JoinHandle<()>,
    }

    fn stuck_sink(on_full: OnFull) -> Stuck {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(writer::segment_path(dir.path(), 1), "").unwrap();
        let fifo = writer::segment_path(dir.path(), 2);
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let cfg = writer::WriterConfig {
            dir: dir.path().to_owned(),
            max_segment_bytes: 1 << 30,
            fsync_interval: Duration::from_secs(3600),
        };
        let key = Arc::new(SigningKey::generate(Some("audit-test".into())).unwrap());
        let (sink, writer) = AuditSink::start(cfg, key, 1, on_full).unwrap();
        Stuck {
            sink,
            fifo,
            dir,
            writer,
        }
    }

    fn record(id: &str) -> Vec<u8> {
        format!("{{\"decision_id\":\"{id}\",\"decision\":\"allow\"").into_bytes()
    }

    #[test]
    fn failing_closed_a_core_keeps_a_batch_the_queue_refused() {
        let Stuck {
            sink,
            fifo,
            dir,
            writer,
        } = stuck_sink(OnFull::Deny);
        // Two cores each let a call through while the queue had room.
        let (mut a, mut b) = (CoreAudit::new(sink.clone()), CoreAudit::new(sink.clone()));
        assert!(a.has_room() && b.has_room());
        a.push(&record("d-a"), 10, 200, true);
        b.push(&record("d-b"), 10, 200, true);
        a.flush(); // takes the only slot
        b.flush(); // finds the queue full: keeps its batch
        assert_eq!(
            sink.dropped.load(Ordering::Relaxed),
            0,
            "nothing allowed is lost"
        );
        assert!(!b.has_room(), "a core holding a batch refuses calls");
        assert!(!a.has_room(), "the queue is full");
        // A refusal recorded meanwhile is kept too (within a bound).
        b.push(&record("d-refused"), 10, 0, false);

        // The writer comes back: everything held goes through, once.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        while (b.held.is_some() || b.records > 0) && Instant::now() < deadline {
            b.flush();
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(b.has_room());
        assert!(sink.close(Duration::from_secs(60)));
        writer.join().unwrap();
        let text = std::fs::read_to_string(writer::segment_path(dir.path(), 3)).unwrap();
        for id in ["d-a", "d-b", "d-refused"] {
            assert_eq!(
                text.matches(&format!("\"decision_id\":\"{id}\"")).count(),
                1,
                "{id} written once: {text}"
            );
        }
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn dropping_a_core_counts_what_the_full_queue_refused() {
        let stuck = stuck_sink(OnFull::Drop);
        let sink = stuck.sink.clone();
        let (mut a, mut b) = (CoreAudit::new(sink.clone()), CoreAudit::new(sink.clone()));
        a.push(&record("d-a"), 10, 200, true);
        b.push(&record("d-b"), 10, 200, true);
        b.push(&record("d-c"), 10, 200, true);
        a.flush();
        b.flush();
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 2);
        assert!(a.has_room() && b.has_room(), "dropping never refuses calls");
        // Let the writer go so the test leaves no thread blocked on the FIFO.
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&stuck.fifo)
                .unwrap(),
        );
        assert!(sink.close(Duration::from_secs(60)));
        stuck.writer.join().unwrap();
    }
}
