//! JSON-RPC 2.0 framing for MCP: classifying a parsed message (request, notification,
//! response) and writing results and errors into a reused buffer.

use crate::http::write::{json_str, push_u64};
use crate::pipeline::args::Args;
use simd_json::prelude::*;

/// Standard JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Server-defined range (-32000..-32099): the gateway refused the call.
pub const DENIED: i64 = -32003;
/// Server-defined: the envelope is missing or invalid.
pub const UNAUTHENTICATED: i64 = -32001;
/// Server-defined: the upstream failed.
pub const UPSTREAM_ERROR: i64 = -32004;

/// A request id, owned so it survives the parse buffers (string ids are rare; MCP SDKs
/// number their requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcId {
    Int(i64),
    UInt(u64),
    Str(String),
}

/// What a POSTed message is.
#[derive(Debug)]
pub enum Message<'t> {
    Request {
        id: RpcId,
        method: &'t str,
    },
    Notification {
        method: &'t str,
    },
    /// A response from the client to a server-initiated request.
    Response,
    Invalid {
        id: Option<RpcId>,
        why: &'static str,
    },
}

/// Classifies a parsed JSON object per JSON-RPC 2.0 §4-5.
pub fn classify<'t>(m: &Args<'t, '_>) -> Message<'t> {
    let id = m.get("id").map(|v| {
        if let Some(s) = v.into_string() {
            Some(RpcId::Str(s.to_owned()))
        } else if v.value_type() == ValueType::U64 {
            v.as_u64().map(RpcId::UInt)
        } else {
            v.as_i64().map(RpcId::Int)
        }
    });
    let id = match id {
        None => None,
        Some(Some(id)) => Some(id),
        // MCP forbids null ids, and fractional ids are not ids.
        Some(None) => {
            return Message::Invalid {
                id: None,
                why: "`id` must be a string or an integer",
            };
        }
    };
    if m.get("jsonrpc").and_then(|v| v.into_string()) != Some("2.0") {
        return Message::Invalid {
            id,
            why: "`jsonrpc` must be \"2.0\"",
        };
    }
    match m.get("method") {
        Some(v) => match v.into_string() {
            Some(method) => match id {
                Some(id) => Message::Request { id, method },
                None => Message::Notification { method },
            },
            None => Message::Invalid {
                id,
                why: "`method` must be a string",
            },
        },
        None if id.is_some() && (m.get("result").is_some() || m.get("error").is_some()) => {
            Message::Response
        }
        None => Message::Invalid {
            id,
            why: "not a request, notification or response",
        },
    }
}

pub fn write_id(out: &mut Vec<u8>, id: Option<&RpcId>) {
    match id {
        None => out.extend_from_slice(b"null"),
        Some(RpcId::Int(n)) => {
            if *n < 0 {
                out.push(b'-');
            }
            push_u64(out, n.unsigned_abs());
        }
        Some(RpcId::UInt(n)) => push_u64(out, *n),
        Some(RpcId::Str(s)) => json_str(out, s),
    }
}

/// Opens a result: `{"jsonrpc":"2.0","id":<id>,"result":` — the caller writes the result
/// value and then `}`.
pub fn open_result(out: &mut Vec<u8>, id: &RpcId) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    write_id(out, Some(id));
    out.extend_from_slice(b",\"result\":");
}

/// Opens an error: `{"jsonrpc":"2.0","id":..,"error":{"code":..,"message":..` — the
/// caller may add fields and closes with `}}`.
pub fn open_error(out: &mut Vec<u8>, id: Option<&RpcId>, code: i64, message: &str) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    write_id(out, id);
    out.extend_from_slice(b",\"error\":{\"code\":");
    if code < 0 {
        out.push(b'-');
    }
    push_u64(out, code.unsigned_abs());
    out.extend_from_slice(b",\"message\":");
    json_str(out, message);
}

/// A complete error response. `data` carries the gateway's reason and decision id when a
/// decision was made.
pub fn write_error(
    out: &mut Vec<u8>,
    id: Option<&RpcId>,
    code: i64,
    message: &str,
    data: Option<(&str, Option<&str>)>,
) {
    open_error(out, id, code, message);
    if let Some((reason, decision)) = data {
        out.extend_from_slice(b",\"data\":{\"reason\":");
        json_str(out, reason);
        if let Some(d) = decision {
            out.extend_from_slice(b",\"decision_id\":");
            json_str(out, d);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::args::ArgParser;

    fn kind(body: &str) -> String {
        let mut p = ArgParser::default();
        p.with_args(body.as_bytes(), |a| match a {
            Err(e) => format!("err:{e}"),
            Ok(a) => match classify(&a) {
                Message::Request { id, method } => format!("req:{id:?}:{method}"),
                Message::Notification { method } => format!("note:{method}"),
                Message::Response => "resp".into(),
                Message::Invalid { why, .. } => format!("invalid:{why}"),
            },
        })
    }

    #[test]
    fn classifies_messages() {
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#),
            "req:UInt(7):tools/list"
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":"a","method":"x"}"#),
            "req:Str(\"a\"):x"
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            "note:notifications/initialized"
        );
        assert_eq!(kind(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#), "resp");
        assert!(kind(r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#).starts_with("invalid"));
        assert!(kind(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).starts_with("invalid"));
        assert!(kind(r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#).starts_with("invalid"));
        assert!(kind(r#"{"jsonrpc":"2.0","id":1,"method":3}"#).starts_with("invalid"));
    }

    #[test]
    fn errors_are_valid_json() {
        let mut out = Vec::new();
        write_error(
            &mut out,
            Some(&RpcId::Int(-3)),
            DENIED,
            "denied: \"x\"",
            Some(("drift", Some("d-1"))),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], -3);
        assert_eq!(v["error"]["code"], -32003);
        assert_eq!(v["error"]["data"]["reason"], "drift");
        assert_eq!(v["error"]["data"]["decision_id"], "d-1");
    }
}
