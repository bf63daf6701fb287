//! Where decisions meet the audit trail and the metrics: every tool call (plain HTTP or
//! MCP) and every delegation produces exactly one audit line and one decision count.

use super::service::Gateway;
use super::state::Active;
use crate::audit::record::{NO_WHO, PolicyVisitor, Record, claims_who, encode};
use crate::decision::PolicyRef;
use crate::envelope::Claims;
use crate::pipeline::deny::DecisionId;
use std::time::Instant;

/// What a decision was about.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub claims: Option<&'a Claims>,
    pub tool: &'a str,
    pub resource: &'a str,
    pub data_classes: &'a [String],
    pub record_count: u64,
    pub via: &'a str,
}

/// The record of a decision about `s`, as `record::encode` writes it.
fn record<'r>(
    time_us: u64,
    did: &'r DecisionId,
    allowed: bool,
    reason: &'r str,
    s: &Subject<'r>,
    active: &'r Active,
    policies: PolicyVisitor<'r>,
) -> Record<'r> {
    Record {
        time_us,
        decision_id: did.as_str(),
        allowed,
        reason,
        who: s.claims.map_or(NO_WHO, claims_who),
        tool: s.tool,
        resource: s.resource,
        data_classes: s.data_classes,
        record_count: s.record_count,
        policy_version: &active.audit_version,
        policies,
        via: s.via,
    }
}

impl Gateway {
    /// Encodes the decision part of an audit record into `out` (cleared first).
    #[allow(clippy::too_many_arguments)]
    pub fn audit_decision(
        &self,
        out: &mut Vec<u8>,
        did: &DecisionId,
        allowed: bool,
        reason: &str,
        s: &Subject<'_>,
        active: &Active,
        policies: PolicyVisitor<'_>,
    ) {
        out.clear();
        let now = crate::clock::now_unix_micros();
        encode(out, &record(now, did, allowed, reason, s, active, policies));
        self.count_decision(reason, s.tool);
    }

    fn count_decision(&self, reason: &str, tool: &str) {
        self.metrics().decision(reason);
        if !tool.is_empty() {
            *self.tool_counts.borrow_mut().entry_ref(tool) += 1;
        }
    }

    /// Queues a record whose decision part is in `decision`, with its outcome. `allowed`
    /// records are never dropped when the gateway fails closed (see `CoreAudit`).
    pub fn audit_commit(
        &self,
        decision: &[u8],
        started: Instant,
        upstream_status: u16,
        allowed: bool,
    ) {
        let us = started.elapsed().as_micros() as u64;
        self.audit
            .borrow_mut()
            .push(decision, us, upstream_status, allowed);
    }

    /// Whether the audit trail can take another record (always, unless the queue is full
    /// or this core holds a batch the queue refused, and the gateway fails closed).
    pub fn audit_has_room(&self) -> bool {
        self.audit.borrow().has_room()
    }
}

/// An allowed call's decision, held while the upstream answers and encoded only once the
/// response is on its way to the agent: formatting the record (timestamp, escaping, the
/// envelope's fields) is then off the path the agent waits on. What the call borrows from
/// its parsed arguments (the resource) and from the per-core decision scratch (the
/// determining policies) cannot outlive the decision, so it is copied into the
/// connection's `note` buffer: the resource's bytes, then each policy's index.
pub struct Held {
    time_us: u64,
    record_count: u64,
    resource_len: usize,
}

impl Held {
    /// Copies what the record needs from the decision into `note` (cleared first).
    pub fn new(
        note: &mut Vec<u8>,
        resource: &str,
        record_count: u64,
        policies: &[PolicyRef],
    ) -> Self {
        note.clear();
        note.extend_from_slice(resource.as_bytes());
        for p in policies {
            note.extend_from_slice(&p.0.to_le_bytes());
        }
        Held {
            time_us: crate::clock::now_unix_micros(),
            record_count,
            resource_len: resource.len(),
        }
    }
}

/// What a held decision was about, beyond what `Held` copied: all of it lives as long as
/// the call (the envelope's claims, the tool's registry entry, the active bundle).
pub struct HeldSubject<'a> {
    pub claims: &'a Claims,
    pub tool: &'a str,
    pub data_classes: &'a [String],
    pub via: &'a str,
}

impl Gateway {
    /// Encodes a held allowed decision with its outcome straight into this core's audit
    /// batch.
    #[allow(clippy::too_many_arguments)]
    pub fn audit_held(
        &self,
        note: &[u8],
        held: &Held,
        did: &DecisionId,
        s: &HeldSubject<'_>,
        active: &Active,
        started: Instant,
        upstream_status: u16,
    ) {
        let (resource, policies) = note.split_at(held.resource_len.min(note.len()));
        let visit = |f: &mut dyn FnMut(&str)| {
            for p in policies.chunks_exact(4) {
                let i = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                f(active.bundle.policy_id(PolicyRef(i)));
            }
        };
        let about = Subject {
            claims: Some(s.claims),
            tool: s.tool,
            // Copied from a `&str` in `Held::new`.
            resource: std::str::from_utf8(resource).unwrap_or_default(),
            data_classes: s.data_classes,
            record_count: held.record_count,
            via: s.via,
        };
        let r = record(held.time_us, did, true, "allow", &about, active, &visit);
        let us = started.elapsed().as_micros() as u64;
        self.audit
            .borrow_mut()
            .push_with(|out| encode(out, &r), us, upstream_status, true);
        self.count_decision("allow", s.tool);
    }
}

/// `BTreeMap::entry` without allocating a key for tools already counted.
pub trait EntryRef {
    fn entry_ref(&mut self, key: &str) -> &mut u64;
}

impl EntryRef for std::collections::BTreeMap<String, u64> {
    fn entry_ref(&mut self, key: &str) -> &mut u64 {
        if !self.contains_key(key) {
            self.insert(key.to_owned(), 0);
        }
        self.get_mut(key)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }
}
