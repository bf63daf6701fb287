//! Bridging a 2026-07-28 agent and an upstream MCP server session that speaks an earlier
//! revision. The gateway forwards `tools/call` bodies and relays the answers, so when the
//! two sides speak different eras the messages are adjusted on the way:
//!
//! - towards the upstream, the 2026-07-28 per-request `_meta` keys that declare the era
//!   (`io.modelcontextprotocol/protocolVersion`, `…/clientCapabilities`, `…/clientInfo`)
//!   are removed: the upstream session has its own negotiated revision in the
//!   `MCP-Protocol-Version` header, and a dual-era server must refuse a body whose `_meta`
//!   names another revision than the header;
//! - towards the agent, a result without `resultType` gets `"resultType": "complete"`,
//!   which 2026-07-28 requires on every result (earlier revisions have none).
//!
//! The answer is rewritten message by message while it streams: each SSE event is passed
//! on as soon as it is complete; a JSON answer (one message) is held until its end.

use crate::proxy::exchange::Rewrite;
use serde_json::Value;

/// `_meta` keys through which a 2026-07-28 request declares its era.
const ERA_META: [&str; 3] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/clientInfo",
];

/// The request body with the era keys removed from `params._meta` (and `_meta` itself
/// when nothing else is left in it), and `params.name` set to `rename` when given.
/// `None` when the body is not a JSON object (it was validated before; nothing to do).
pub fn request_for_legacy(body: &[u8], strip_era: bool, rename: Option<&str>) -> Option<String> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let params = v.get_mut("params")?.as_object_mut()?;
    if let Some(name) = rename {
        params.insert("name".into(), Value::from(name));
    }
    if strip_era && let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        for k in ERA_META {
            meta.remove(k);
        }
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    Some(v.to_string())
}

/// Adds `resultType: "complete"` to a JSON-RPC result that lacks one. `None` when the
/// message needs no change (not a result, already typed, or not JSON).
fn typed_result(message: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(message).ok()?;
    let result = v.get_mut("result")?.as_object_mut()?;
    if result.contains_key("resultType") {
        return None;
    }
    result.insert("resultType".into(), Value::from("complete"));
    serde_json::to_vec(&v).ok()
}

/// Where an SSE event ends: the index just past its blank line.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// One SSE event, rewritten when its data is a result to type; otherwise as it came.
fn rewrite_event(event: &[u8], out: &mut Vec<u8>) {
    let mut data: Vec<u8> = Vec::new();
    let mut lines = 0;
    for raw in event.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if let Some(v) = line.strip_prefix(b"data:") {
            if lines > 0 {
                data.push(b'\n');
            }
            data.extend_from_slice(v.strip_prefix(b" ").unwrap_or(v));
            lines += 1;
        }
    }
    let Some(typed) = (lines > 0).then(|| typed_result(&data)).flatten() else {
        out.extend_from_slice(event);
        return;
    };
    // The other fields (event, id, retry, comments) keep their place; the data lines are
    // replaced by one line (serde_json output holds no newline).
    let mut wrote_data = false;
    for raw in event.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b"data:") {
            if !wrote_data {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&typed);
                out.push(b'\n');
                wrote_data = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Rewrites an upstream MCP answer for a 2026-07-28 agent (see the module docs).
pub struct ModernResults {
    sse: bool,
    pending: Vec<u8>,
    out: Vec<u8>,
    /// Longest message held back; beyond it the rest is relayed untouched (a message
    /// that large is not worth rewriting, and holding it would defeat streaming).
    limit: usize,
    passthrough: bool,
}

impl ModernResults {
    pub fn new(limit: usize) -> Self {
        ModernResults {
            sse: false,
            pending: Vec::new(),
            out: Vec::new(),
            limit,
            passthrough: false,
        }
    }

    fn give_up(&mut self) {
        self.out.append(&mut self.pending);
        self.passthrough = true;
    }
}

impl Rewrite for ModernResults {
    fn begin(&mut self, content_type: Option<&[u8]>) {
        self.sse = content_type.is_some_and(|c| c.starts_with(b"text/event-stream"));
        self.pending.clear();
        self.passthrough = false;
    }

    fn feed(&mut self, piece: &[u8]) -> &[u8] {
        self.out.clear();
        if self.passthrough {
            self.out.extend_from_slice(piece);
            return &self.out;
        }
        self.pending.extend_from_slice(piece);
        if self.sse {
            let mut start = 0;
            while let Some(n) = event_end(&self.pending[start..]) {
                rewrite_event(&self.pending[start..start + n], &mut self.out);
                start += n;
            }
            self.pending.drain(..start);
        }
        if self.pending.len() > self.limit {
            self.give_up();
        }
        &self.out
    }

    fn finish(&mut self) -> &[u8] {
        self.out.clear();
        if !self.passthrough && !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            if self.sse {
                rewrite_event(&pending, &mut self.out);
            } else {
                match typed_result(&pending) {
                    Some(typed) => self.out.extend_from_slice(&typed),
                    None => self.out.extend_from_slice(&pending),
                }
            }
        }
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ct: &str, pieces: &[&[u8]]) -> String {
        let mut r = ModernResults::new(1 << 20);
        r.begin(Some(ct.as_bytes()));
        let mut all = Vec::new();
        for p in pieces {
            all.extend_from_slice(r.feed(p));
        }
        all.extend_from_slice(r.finish());
        String::from_utf8(all).unwrap()
    }

    #[test]
    fn json_results_get_a_result_type_and_others_pass_untouched() {
        let out = run(
            "application/json",
            &[
                br#"{"jsonrpc":"2.0","id":1,"res"#,
                br#"ult":{"content":[]}}"#,
            ],
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["id"], 1);
        for untouched in [
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required"}}"#,
            "not json",
        ] {
            assert_eq!(run("application/json", &[untouched.as_bytes()]), untouched);
        }
    }

    #[test]
    fn sse_events_are_rewritten_one_by_one_as_they_complete() {
        let mut r = ModernResults::new(1 << 20);
        r.begin(Some(b"text/event-stream"));
        let note =
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        // A complete notification goes out at once, untouched; a partial event waits.
        let first = format!("{note}event: message\nid: 7\ndata: {{\"jsonrpc\":\"2.0\",");
        assert_eq!(r.feed(first.as_bytes()), note.as_bytes());
        let rest = r
            .feed(b"\"id\":1,\"result\":{\"isError\":false}}\r\n\r\n")
            .to_vec();
        let rest = String::from_utf8(rest).unwrap();
        assert!(rest.starts_with("event: message\nid: 7\ndata: "), "{rest}");
        assert!(rest.ends_with("\n\n"));
        let data = rest.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["result"]["resultType"], "complete");
        assert!(r.finish().is_empty());
    }

    #[test]
    fn a_message_over_the_limit_is_relayed_as_it_is() {
        let mut r = ModernResults::new(8);
        r.begin(Some(b"application/json"));
        let mut all = r.feed(br#"{"jsonrpc":"2.0","id":1,"#).to_vec();
        all.extend_from_slice(r.feed(br#""result":{}}"#));
        all.extend_from_slice(r.finish());
        assert_eq!(all, br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    }

    #[test]
    fn era_metadata_is_removed_for_a_legacy_session() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"progressToken":5}}}"#;
        let v: Value =
            serde_json::from_str(&request_for_legacy(body, true, None).unwrap()).unwrap();
        assert_eq!(
            v["params"]["_meta"],
            serde_json::json!({"progressToken": 5})
        );
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let v: Value =
            serde_json::from_str(&request_for_legacy(body, true, Some("remote")).unwrap()).unwrap();
        assert!(v["params"].get("_meta").is_none());
        assert_eq!(v["params"]["name"], "remote");
    }
}
