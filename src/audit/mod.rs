//! The audit trail: one JSON line per decision, allowed or denied, written off the hot
//! path. Each core encodes records into its own buffer (`CoreAudit`) and hands full
//! batches to the writer thread over a bounded queue; the writer chains, writes, syncs
//! and rotates (`writer`, `chain`). When the queue is full the configured policy applies:
//! fail closed (the call is denied with `audit_unavailable`) or drop and count. Never
//! silent: both outcomes are counted and exported as metrics.
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
    /// every core has flushed; waits for room in the queue rather than dropping it.
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
    }

    /// Batches waiting for the writer.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Whether a fail-closed gateway may let a call through: the queue has room.
    pub fn has_room(&self) -> bool {
        self.on_full == OnFull::Drop || self.depth() < self.capacity
    }

    fn send(&self, batch: Vec<u8>, records: u64) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Batch(batch)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                self.dropped.fetch_add(records, Ordering::Relaxed);
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
}

/// Records per batch before a flush is forced.
const BATCH_RECORDS: u64 = 64;
const BATCH_BYTES: usize = 64 * 1024;

impl CoreAudit {
    pub fn new(sink: Arc<AuditSink>) -> Self {
        CoreAudit {
            sink,
            buf: Vec::with_capacity(BATCH_BYTES),
            records: 0,
        }
    }

    pub fn sink(&self) -> &AuditSink {
        &self.sink
    }

    /// Queues one record: `decision` from `record::encode`, then the outcome.
    pub fn push(&mut self, decision: &[u8], latency_us: u64, upstream_status: u16) {
        self.buf.extend_from_slice(decision);
        record::encode_outcome(&mut self.buf, latency_us, upstream_status);
        self.buf.push(b'\n');
        self.records += 1;
        if self.records >= BATCH_RECORDS || self.buf.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.records == 0 {
            return;
        }
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH_BYTES));
        self.sink.send(batch, self.records);
        self.records = 0;
    }
}
