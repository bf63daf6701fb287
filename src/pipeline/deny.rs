//! Why a call was refused: one variant per reason of DESIGN.md, each with its stable
//! machine-readable code, its HTTP status and a message that tells the agent's operator
//! what was wrong. The mapping to status codes lives here and nowhere else.

use crate::envelope::EnvelopeError;

/// A refused call. Reasons caused by the presented credential are 401; reasons where a
/// valid envelope asked for something it may not have are 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    MissingEnvelope,
    Envelope(EnvelopeError),
    Revoked {
        jti: String,
    },
    UnknownTool {
        tool: String,
    },
    ToolNotInEnvelope {
        tool: String,
    },
    ResourceOutOfScope {
        arg: String,
        value: String,
        constraint: String,
    },
    DataClassOutOfScope {
        class: String,
    },
    RecordLimit {
        requested: u64,
        max: u64,
    },
    /// The declared purpose does not admit this tool or data class (intent drift).
    Drift {
        purpose: String,
        what: String,
    },
    PolicyDenied,
    /// The call's arguments do not fit the tool (missing resource id, wrong type).
    BadArguments(String),
    /// The audit trail cannot take the record and the gateway is configured to fail
    /// closed.
    AuditUnavailable,
}

impl Denial {
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::MissingEnvelope => "missing_envelope",
            Denial::Envelope(e) => e.decision_reason(),
            Denial::Revoked { .. } => "revoked",
            Denial::UnknownTool { .. } => "unknown_tool",
            Denial::ToolNotInEnvelope { .. } => "tool_not_in_envelope",
            Denial::ResourceOutOfScope { .. } => "resource_out_of_scope",
            Denial::DataClassOutOfScope { .. } => "data_class_out_of_scope",
            Denial::RecordLimit { .. } => "record_limit",
            Denial::Drift { .. } => "drift",
            Denial::PolicyDenied => "policy_denied",
            Denial::BadArguments(_) => "invalid_arguments",
            Denial::AuditUnavailable => "audit_unavailable",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Denial::MissingEnvelope | Denial::Envelope(_) | Denial::Revoked { .. } => 401,
            Denial::UnknownTool { .. } => 404,
            Denial::BadArguments(_) => 400,
            Denial::AuditUnavailable => 503,
            _ => 403,
        }
    }

    /// A human-readable explanation.
    pub fn message(&self) -> String {
        match self {
            Denial::MissingEnvelope => {
                "no identity envelope: send `Authorization: Bearer <envelope>`".into()
            }
            Denial::Envelope(e) => format!("envelope refused ({}): {e}", e.code()),
            Denial::Revoked { jti } => {
                format!("envelope `{jti}` or one of its ancestors has been revoked")
            }
            Denial::UnknownTool { tool } => format!("no tool named `{tool}` in the registry"),
            Denial::ToolNotInEnvelope { tool } => {
                format!("tool `{tool}` is not in the envelope's allowed_tools")
            }
            Denial::ResourceOutOfScope {
                arg,
                value,
                constraint,
            } => format!(
                "argument `{arg}` = `{value}` is outside the envelope's resource_constraints.{constraint}"
            ),
            Denial::DataClassOutOfScope { class } => {
                format!("the tool touches data class `{class}`, which the envelope does not grant")
            }
            Denial::RecordLimit { requested, max } => {
                format!("{requested} records requested; the envelope allows at most {max}")
            }
            Denial::Drift { purpose, what } => {
                format!("the declared purpose `{purpose}` does not admit {what}")
            }
            Denial::PolicyDenied => "the policy does not permit this call".into(),
            Denial::BadArguments(m) => m.clone(),
            Denial::AuditUnavailable => {
                "the audit trail cannot record this decision; refusing (fail closed)".into()
            }
        }
    }
}

/// A decision id: unique per gateway process, shared by the response and the audit line.
/// `d-<process start, µs, hex>-<core>-<sequence>`; built without allocating.
#[derive(Clone, Copy)]
pub struct DecisionId {
    buf: [u8; 48],
    len: u8,
}

impl DecisionId {
    pub fn new(epoch: u64, core: usize, seq: u64) -> Self {
        let mut buf = [0u8; 48];
        let mut len = 0usize;
        let mut put = |b: u8| {
            buf[len] = b;
            len += 1;
        };
        put(b'd');
        put(b'-');
        for shift in (0..12).rev() {
            put(b"0123456789abcdef"[((epoch >> (shift * 4)) & 15) as usize]);
        }
        put(b'-');
        let hex = |v: u64, put: &mut dyn FnMut(u8)| {
            let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
            for shift in (0..digits).rev() {
                put(b"0123456789abcdef"[((v >> (shift * 4)) & 15) as usize]);
            }
        };
        hex(core as u64, &mut put);
        put(b'-');
        hex(seq, &mut put);
        DecisionId {
            buf,
            len: len as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and '-' are ever written.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("d-invalid")
    }
}

impl std::fmt::Display for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_are_distinct_and_readable() {
        let a = DecisionId::new(0x1234_5678_9abc, 1, 255);
        assert_eq!(a.as_str(), "d-123456789abc-1-ff");
        let b = DecisionId::new(u64::MAX, usize::MAX, u64::MAX);
        assert_eq!(b.as_str().len(), 2 + 12 + 1 + 16 + 1 + 16);
        assert_ne!(
            DecisionId::new(1, 0, 1).as_str(),
            DecisionId::new(1, 0, 2).as_str()
        );
    }
}
