//! Where decisions meet the audit trail and the metrics: every tool call (plain HTTP or
//! MCP) and every delegation produces exactly one audit line and one decision count.

use super::service::Gateway;
use super::state::Active;
use crate::audit::record::{NO_WHO, PolicyVisitor, Record, claims_who, encode};
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
        let r = Record {
            time_us: crate::clock::now_unix_micros(),
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
        };
        encode(out, &r);
        self.metrics().decision(reason);
        if !s.tool.is_empty() {
            *self.tool_counts.borrow_mut().entry_ref(s.tool) += 1;
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
