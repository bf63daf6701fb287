//! Offline verification of audit segments (`portcullis audit verify FILE...`): walks the
//! chain across the files in order and reports the first line that does not verify.

use super::chain::{Broken, Chain, Verified, verify_line};
use crate::envelope::TrustedKeys;
use std::path::{Path, PathBuf};

/// The result of checking a set of segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub lines: u64,
    pub checkpoints: u64,
    pub signatures_checked: u64,
    /// Lines after the last checkpoint (the active segment of a running gateway).
    pub unsealed_tail: u64,
    /// When the files do not start with segment 1, the chain is checked from the first
    /// line given, whose `seq` this is: what came before is not proven.
    pub trusted_start: Option<u64>,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub file: PathBuf,
    /// 1-based line number within the file.
    pub line: u64,
    pub why: Broken,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.why)
    }
}

/// The number of a segment file named like `portcullis-audit-000007.jsonl`.
fn segment_number(p: &Path) -> Option<u64> {
    p.file_name()?
        .to_str()?
        .strip_prefix("portcullis-audit-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

/// Verifies `files` as consecutive segments of one chain (sorted by the caller).
///
/// A trail that starts with segment 1 must start at the chain's genesis: deleting its
/// first lines is a break at the first line left. Segment files named by number must
/// follow each other without a gap. A set of files that starts later (older segments
/// archived away) is checked from its first line on, and the report says so.
pub fn verify_files(files: &[PathBuf], keys: Option<&TrustedKeys>) -> Result<Report, VerifyError> {
    let mut chain = Chain::default();
    let mut first = files.first().and_then(|f| segment_number(f)) != Some(1);
    let mut report = Report {
        lines: 0,
        checkpoints: 0,
        signatures_checked: 0,
        unsealed_tail: 0,
        trusted_start: None,
    };
    let mut last_segment: Option<u64> = None;
    for f in files {
        if let Some(n) = segment_number(f) {
            if let Some(prev) = last_segment
                && n != prev + 1
            {
                return Err(VerifyError::Broken(Failure {
                    file: f.clone(),
                    line: 1,
                    why: Broken::MissingSegment {
                        expected: prev + 1,
                        found: n,
                    },
                }));
            }
            last_segment = Some(n);
        }
        let text = std::fs::read(f).map_err(|e| VerifyError::Io(f.clone(), e.to_string()))?;
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            if first {
                // Start from whatever the first given line says, so a later segment can
                // be checked on its own (its start is then trusted, not proven).
                first = false;
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
                    && let (Some(seq), Some(prev)) = (v["seq"].as_u64(), v["prev"].as_str())
                {
                    report.trusted_start = Some(seq);
                    chain.seq = seq;
                    for (k, c) in prev.as_bytes().chunks(2).take(32).enumerate() {
                        chain.last[k] =
                            u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16)
                                .unwrap_or(0);
                    }
                }
            }
            match verify_line(&mut chain, line, keys) {
                Ok(Verified::Record) => {
                    report.lines += 1;
                    report.unsealed_tail += 1;
                }
                Ok(Verified::Checkpoint { signature_checked }) => {
                    report.lines += 1;
                    report.checkpoints += 1;
                    report.signatures_checked += u64::from(signature_checked);
                    report.unsealed_tail = 0;
                }
                Err(why) => {
                    return Err(VerifyError::Broken(Failure {
                        file: f.clone(),
                        line: i as u64 + 1,
                        why,
                    }));
                }
            }
        }
    }
    Ok(report)
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}: {1}")]
    Io(PathBuf, String),
    #[error("{0}")]
    Broken(Failure),
}

/// The segments in a directory, in chain order.
pub fn segments_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("portcullis-audit-") && n.ends_with(".jsonl"))
        })
        .collect();
    v.sort();
    Ok(v)
}
