//! The audit trail at the process's open-file limit, which a gateway with many agent
//! connections reaches: a segment rotation that cannot open its next file must not stop
//! the writer (which lost every queued record and refused every call after), and must
//! not lose or misplace a line. This binary holds one test because it lowers its own
//! process's limit and uses up every descriptor.

use portcullis::audit::writer::{WriterConfig, segment_path};
use portcullis::audit::{AuditSink, CoreAudit, OnFull};
use portcullis::envelope::{SigningKey, TrustedKeys};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn record(i: usize) -> Vec<u8> {
    format!("{{\"decision_id\":\"d-{i}\",\"decision\":\"allow\"").into_bytes()
}

/// Waits until the writer has taken every queued batch and chained `lines` lines.
fn drained(sink: &AuditSink, lines: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.depth() > 0 || sink.stats.lines.load(Ordering::Relaxed) < lines {
        assert!(
            Instant::now() < deadline,
            "the writer stopped taking batches: {} queued, {} of {lines} lines",
            sink.depth(),
            sink.stats.lines.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_rotation_out_of_descriptors_waits_and_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        dir: dir.path().to_owned(),
        max_segment_bytes: 4096,
        fsync_interval: Duration::from_millis(10),
    };
    let key = Arc::new(SigningKey::generate(Some("audit-fd".into())).unwrap());
    let mut keys = TrustedKeys::new();
    keys.add("audit-fd", key.public_key());
    let (sink, writer) = AuditSink::start(cfg, key, 64, OnFull::Deny).unwrap();
    let mut core = CoreAudit::new(Arc::clone(&sink));
    let push = |core: &mut CoreAudit, range: std::ops::Range<usize>| {
        for i in range {
            core.push(&record(i), 10, 200, true);
            // A batch per line, so the writer gets a chance to rotate after each.
            core.flush();
            drained(&sink, i as u64 + 1);
        }
    };
    push(&mut core, 0..20);
    let before = sink.stats.segments.load(Ordering::Relaxed);
    assert!(before >= 2, "4 KiB segments rotate within 20 lines");

    // Use up every descriptor the process may open.
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(limit.maximum.map_or(256, |hard| hard.min(256))),
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let mut hoard = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hoard.push(f),
            Err(e) => break e,
        }
    };
    assert_eq!(exhausted.raw_os_error(), Some(libc::EMFILE), "{exhausted}");

    // Many segments' worth of lines: every one is written, into the open segment.
    push(&mut core, 20..120);
    assert_eq!(
        sink.stats.segments.load(Ordering::Relaxed),
        before,
        "no segment could be opened"
    );
    assert!(core.has_room(), "calls are still let through");

    // Descriptors come back: rotation resumes, and the trail seals at close.
    drop(hoard);
    setrlimit(Resource::Nofile, limit).unwrap();
    push(&mut core, 120..140);
    assert!(sink.stats.segments.load(Ordering::Relaxed) > before);
    assert!(sink.close(Duration::from_secs(10)));
    writer.join().unwrap();

    let files = portcullis::audit::verify::segments_in(dir.path()).unwrap();
    assert!(files.contains(&segment_path(dir.path(), before + 1)));
    let r = portcullis::audit::verify::verify_files(&files, Some(&keys)).unwrap();
    assert_eq!(r.lines - r.checkpoints, 140, "{r:?}");
    assert_eq!(
        r.checkpoints as usize,
        files.len(),
        "every segment sealed: {r:?}"
    );
    assert_eq!(r.unsealed_tail, 0);
    // Each line in order, once.
    let mut ids = Vec::new();
    for f in &files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(id) = v["decision_id"].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    let want: Vec<String> = (0..140).map(|i| format!("d-{i}")).collect();
    assert_eq!(ids, want);
}
