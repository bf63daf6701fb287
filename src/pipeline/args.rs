//! Tool-call arguments: the JSON object an agent sends, parsed with simd-json into a tape
//! whose buffers are reused call after call. simd-json parses in place, so the body is
//! copied into a scratch buffer first: the original bytes are what gets forwarded.
//!
//! Because the original bytes are forwarded, the gateway and the upstream must read them
//! the same way. JSON leaves duplicate member names undefined (RFC 8259 §4): this parser
//! would see the first `customer_id` of `{"customer_id":"mine","customer_id":"theirs"}`
//! and most upstream parsers the last, so the scope check would pass on one value and the
//! upstream act on the other. A body with a duplicate name in any object, at any depth
//! (after unescaping, so `"a"` and `"\u0061"` are the same name), is refused.

use crate::proxy::request::{NotScalar, Scalar};
use simd_json::Buffers;
use simd_json::prelude::*;
use simd_json::tape::{Node, Tape, Value};

/// Reused parse state (one per core; never held across an await).
pub struct ArgParser {
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    copy: Vec<u8>,
}

impl Default for ArgParser {
    fn default() -> Self {
        ArgParser {
            buffers: Buffers::new(4096),
            tape: Some(Tape::null().reset()),
            copy: Vec::new(),
        }
    }
}

/// Why a body is not usable as tool arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("request body is not valid JSON")]
    InvalidJson,
    #[error("tool arguments must be a JSON object")]
    NotAnObject,
    #[error("argument `{0}` must be a string")]
    NotAString(String),
    #[error("argument `{0}` must be a non-negative integer")]
    NotACount(String),
    #[error("member name `{0}` appears more than once in one JSON object")]
    DuplicateKey(String),
}

/// Parsed arguments, borrowing the parser's tape (`None`: an empty object).
#[derive(Clone, Copy)]
pub struct Args<'t, 'i> {
    root: Option<Value<'t, 'i>>,
}

impl ArgParser {
    /// Parses `body` and runs `f` over the arguments found at `path` (an empty path is the
    /// whole body; `["params", "arguments"]` reaches into a JSON-RPC request). An empty
    /// body is an empty object.
    pub fn with_args<R>(
        &mut self,
        body: &[u8],
        f: impl for<'t, 'i> FnOnce(Result<Args<'t, 'i>, ArgsError>) -> R,
    ) -> R {
        let body = trim_ws(body);
        if body.is_empty() {
            self.copy.clear();
            self.copy.extend_from_slice(b"{}");
        } else {
            self.copy.clear();
            self.copy.extend_from_slice(body);
        }
        let mut tape = self
            .tape
            .take()
            .unwrap_or_else(|| Tape::null().reset())
            .reset();
        let parsed = simd_json::fill_tape(&mut self.copy, &mut self.buffers, &mut tape);
        let out = match parsed {
            Err(_) => f(Err(ArgsError::InvalidJson)),
            Ok(()) => {
                let root = tape.as_value();
                if let Some(k) = duplicate_key(&tape.0) {
                    f(Err(ArgsError::DuplicateKey(k.to_owned())))
                } else if root.as_object().is_none() {
                    f(Err(ArgsError::NotAnObject))
                } else {
                    f(Ok(Args { root: Some(root) }))
                }
            }
        };
        self.tape = Some(tape.reset());
        out
    }
}

/// Nodes a value occupies on the tape, itself included.
fn span(n: &Node<'_>) -> usize {
    match n {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// The first member name that appears twice in one object, anywhere on the tape. One
/// linear pass: each object's keys are reached by hopping over its values, so every node
/// is looked at a bounded number of times; no recursion, whatever the nesting.
fn duplicate_key<'i>(nodes: &[Node<'i>]) -> Option<&'i str> {
    const SMALL: usize = 16;
    let mut large: Vec<&'i str> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let Node::Object { len, .. } = *n else {
            continue;
        };
        if len < 2 {
            continue;
        }
        let mut small: [&str; SMALL] = [""; SMALL];
        large.clear();
        let mut at = i + 1;
        for k in 0..len {
            let Some(Node::String(key)) = nodes.get(at) else {
                return None; // not a tape simd-json produces; nothing to compare
            };
            let key: &'i str = key;
            if len <= SMALL {
                if small[..k].contains(&key) {
                    return Some(key);
                }
                small[k] = key;
            } else {
                large.push(key);
            }
            at += 1;
            at += nodes.get(at).map_or(1, span);
        }
        if len > SMALL {
            large.sort_unstable();
            if let Some(w) = large.windows(2).find(|w| w[0] == w[1]) {
                return Some(w[0]);
            }
        }
    }
    None
}

fn trim_ws(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let e = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &b[s..e]
}

impl<'t, 'i> Args<'t, 'i> {
    /// No arguments at all (a JSON-RPC call without `arguments`).
    pub fn empty() -> Self {
        Args { root: None }
    }

    /// A nested object (e.g. JSON-RPC `params.arguments`) as arguments.
    pub fn object_at(&self, key: &str) -> Option<Args<'t, 'i>> {
        let v = self.get(key)?;
        v.as_object().map(|_| Args { root: Some(v) })
    }

    pub fn get(&self, key: &str) -> Option<Value<'t, 'i>> {
        self.root.and_then(|r| r.get(key))
    }

    /// The arguments re-encoded as JSON text, for translating a call whose original
    /// bytes are not the body to forward (MCP `arguments` going to a plain HTTP API).
    pub fn to_json(&self) -> String {
        use simd_json::prelude::Writable;
        self.root.map_or_else(|| "{}".to_owned(), |r| r.encode())
    }

    /// A string argument; `Ok(None)` when absent.
    pub fn str(&self, key: &str) -> Result<Option<&'t str>, ArgsError>
    where
        'i: 't,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .into_string()
                .map(Some)
                .ok_or_else(|| ArgsError::NotAString(key.to_owned())),
        }
    }

    /// A non-negative integer argument; `Ok(None)` when absent.
    pub fn count(&self, key: &str) -> Result<Option<u64>, ArgsError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| ArgsError::NotACount(key.to_owned())),
        }
    }

    /// A scalar argument for a path or query: `Ok(None)` when absent, `Err(NotScalar)` when it is
    /// an array, object or null.
    pub fn scalar(&self, key: &str) -> Result<Option<Scalar<'t>>, NotScalar>
    where
        'i: 't,
    {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        if let Some(s) = v.into_string() {
            return Ok(Some(Scalar::Str(s)));
        }
        if let Some(b) = v.as_bool() {
            return Ok(Some(Scalar::Bool(b)));
        }
        match v.value_type() {
            ValueType::I64 => v.as_i64().map(|n| Some(Scalar::Int(n))).ok_or(NotScalar),
            ValueType::U64 => v.as_u64().map(|n| Some(Scalar::UInt(n))).ok_or(NotScalar),
            ValueType::F64 => v.as_f64().map(|f| Some(Scalar::Float(f))).ok_or(NotScalar),
            _ => Err(NotScalar),
        }
    }

    /// Argument names, in the order they appear.
    pub fn keys(&self) -> impl Iterator<Item = &'t str> + '_
    where
        'i: 't,
    {
        self.root
            .and_then(|r| r.as_object())
            .into_iter()
            .flat_map(|o| o.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_arguments_and_reuses_buffers() {
        let mut p = ArgParser::default();
        for _ in 0..3 {
            let body = br#" {"contract_id":"contract_7781","limit":25,"flag":true,"nested":{"a":1},"esc":"a\"b"} "#;
            p.with_args(body, |a| {
                let a = a.unwrap();
                assert_eq!(a.str("contract_id").unwrap(), Some("contract_7781"));
                assert_eq!(a.count("limit").unwrap(), Some(25));
                assert_eq!(a.str("missing").unwrap(), None);
                assert!(a.str("limit").is_err());
                assert_eq!(a.scalar("flag"), Ok(Some(Scalar::Bool(true))));
                assert_eq!(a.scalar("nested"), Err(NotScalar));
                assert_eq!(a.str("esc").unwrap(), Some("a\"b"));
                let keys: Vec<&str> = a.keys().collect();
                assert_eq!(keys, ["contract_id", "limit", "flag", "nested", "esc"]);
            });
        }
        assert_eq!(
            p.with_args(b"[1]", |a| a.err()),
            Some(ArgsError::NotAnObject)
        );
        assert_eq!(
            p.with_args(b"{\"a\":", |a| a.err()),
            Some(ArgsError::InvalidJson)
        );
        assert!(p.with_args(b"", |a| a.is_ok()));
        assert_eq!(
            p.with_args(br#"{"limit":-1}"#, |a| a.unwrap().count("limit")),
            Err(ArgsError::NotACount("limit".into()))
        );
    }

    #[test]
    fn duplicate_member_names_are_refused_at_any_depth() {
        let mut p = ArgParser::default();
        let dup = |p: &mut ArgParser, body: &str| p.with_args(body.as_bytes(), |a| a.err());
        for (body, key) in [
            (
                r#"{"customer_id":"a","subject":"x","customer_id":"b"}"#,
                "customer_id",
            ),
            (
                r#"{"customer_id":"a","customer\u005fid":"b"}"#,
                "customer_id",
            ),
            (r#"{"params":{"arguments":{"k":1,"k":2}}}"#, "k"),
            (r#"{"params":{"name":"t"},"params":{"name":"u"}}"#, "params"),
            (r#"{"a":[{"x":{"y":[1,{"z":1,"z":2}]}}]}"#, "z"),
        ] {
            assert_eq!(
                dup(&mut p, body),
                Some(ArgsError::DuplicateKey(key.into())),
                "{body}"
            );
        }
        // Many members (the sorted path) and nested objects reusing a name (not a duplicate).
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", many.join(","));
        assert_eq!(dup(&mut p, &ok), None);
        let bad = format!("{{{},\"k7\":0}}", many.join(","));
        assert_eq!(
            dup(&mut p, &bad),
            Some(ArgsError::DuplicateKey("k7".into()))
        );
        for body in [
            r#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}"#,
            r#"{"k":{"x":1,"y":2},"j":{"x":1,"y":2}}"#,
            r#"{}"#,
        ] {
            assert_eq!(dup(&mut p, body), None, "{body}");
        }
    }
}
