//! Building the upstream request: the tool registry's method and path template filled from
//! the call's arguments, the vaulted credential injected, and nothing of the agent's own
//! head carried over (its `Authorization` envelope least of all). Sans-IO: writes bytes
//! into a reused buffer.

use crate::http::write::{header, push_u64};

/// A scalar tool argument, borrowed from the parsed call body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Str(&'a str),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

/// An argument that is present but not a scalar (an array, object or null).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotScalar;

/// Why the upstream request could not be built: the call's arguments do not fit the tool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("argument `{0}` is required by the tool's path and is missing")]
    MissingPathArg(String),
    #[error("argument `{0}` must be a string, number or boolean")]
    NotScalar(String),
    #[error("the tool's path template is malformed")]
    BadTemplate,
}

/// Everything the request line and fixed fields need.
pub struct Target<'a> {
    pub method: &'a str,
    pub base_path: &'a str,
    pub path_template: &'a str,
    pub host: &'a str,
    pub credential_header: &'a str,
    pub credential_prefix: &'a str,
    pub credential: &'a [u8],
    pub decision_id: &'a str,
    pub delegator: &'a str,
}

/// Method semantics decide where arguments go: in the query for methods without a body,
/// in the (verbatim) body otherwise.
pub fn method_has_body(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS")
}

/// Writes the request head (and body) into `out`.
///
/// `arg` looks an argument up by name: `Ok(Some(scalar))`, `Ok(None)` when absent, or
/// `Err(NotScalar)` when present but not a scalar. `query_args` lists the arguments to put in the
/// query string for body-less methods. `body` is forwarded byte for byte.
pub fn write_request<'a>(
    out: &mut Vec<u8>,
    t: &Target<'_>,
    arg: &dyn Fn(&str) -> Result<Option<Scalar<'a>>, NotScalar>,
    query_args: &mut dyn Iterator<Item = &'a str>,
    body: Option<&[u8]>,
) -> Result<(), BuildError> {
    out.extend_from_slice(t.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(t.base_path.as_bytes());
    let tpl = t.path_template.as_bytes();
    let mut i = 0;
    let mut used: [&str; 8] = [""; 8];
    let mut n_used = 0;
    while i < tpl.len() {
        if tpl[i] == b'{' {
            let end = tpl[i..]
                .iter()
                .position(|b| *b == b'}')
                .ok_or(BuildError::BadTemplate)?;
            let name = &t.path_template[i + 1..i + end];
            match arg(name) {
                Ok(Some(v)) => push_scalar(out, v),
                Ok(None) => return Err(BuildError::MissingPathArg(name.into())),
                Err(NotScalar) => return Err(BuildError::NotScalar(name.into())),
            }
            if n_used < used.len() {
                used[n_used] = name;
                n_used += 1;
            }
            i += end + 1;
        } else {
            out.push(tpl[i]);
            i += 1;
        }
    }
    if !method_has_body(t.method) {
        let mut first = !t.path_template.contains('?');
        for name in query_args {
            if used[..n_used].contains(&name) {
                continue;
            }
            match arg(name) {
                Ok(Some(v)) => {
                    out.push(if first { b'?' } else { b'&' });
                    first = false;
                    percent_encode(out, name.as_bytes());
                    out.push(b'=');
                    push_scalar(out, v);
                }
                Ok(None) => {}
                Err(NotScalar) => return Err(BuildError::NotScalar(name.into())),
            }
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    header(out, "Host", t.host.as_bytes());
    out.extend_from_slice(t.credential_header.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(t.credential_prefix.as_bytes());
    out.extend_from_slice(t.credential);
    out.extend_from_slice(b"\r\n");
    header(out, "X-Portcullis-Decision-Id", t.decision_id.as_bytes());
    header(out, "X-Portcullis-Delegator", t.delegator.as_bytes());
    match body {
        Some(b) if method_has_body(t.method) => {
            header(out, "Content-Type", b"application/json");
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, b.len() as u64);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(b);
        }
        _ => out.extend_from_slice(b"\r\n"),
    }
    Ok(())
}

fn push_scalar(out: &mut Vec<u8>, v: Scalar<'_>) {
    match v {
        Scalar::Str(s) => percent_encode(out, s.as_bytes()),
        Scalar::Int(n) => {
            if n < 0 {
                out.push(b'-');
            }
            push_u64(out, n.unsigned_abs());
        }
        Scalar::UInt(n) => push_u64(out, n),
        Scalar::Float(f) => {
            // Rare in ids and counts; formatting allocates, which is acceptable here.
            percent_encode(out, f.to_string().as_bytes());
        }
        Scalar::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters, so an argument can
/// never add a path segment (`../`), a query or a fragment.
pub fn percent_encode(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    // Ids and most values need no escaping: one branch-free pass (vector compares) and one
    // copy, instead of a branch a byte (~1 ns a byte measured on a 950-byte argument).
    if s.iter().fold(true, |all, &b| all & unreserved(b)) {
        out.extend_from_slice(s);
        return;
    }
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if unreserved(b) {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        start = i + 1;
        out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
    }
    out.extend_from_slice(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(method: &'a str, tpl: &'a str) -> Target<'a> {
        Target {
            method,
            base_path: "/api",
            path_template: tpl,
            host: "crm:80",
            credential_header: "Authorization",
            credential_prefix: "Bearer ",
            credential: b"sk_test",
            decision_id: "d1",
            delegator: "user_7f3a91",
        }
    }

    fn args(name: &str) -> Result<Option<Scalar<'static>>, NotScalar> {
        match name {
            "contract_id" => Ok(Some(Scalar::Str("contract 7781/../x"))),
            "limit" => Ok(Some(Scalar::Int(25))),
            "filter" => Err(NotScalar),
            _ => Ok(None),
        }
    }

    #[test]
    fn get_fills_path_and_query_and_injects_the_credential() {
        let mut out = Vec::new();
        let mut q = ["contract_id", "limit", "absent"].into_iter();
        write_request(
            &mut out,
            &target("GET", "/contracts/{contract_id}"),
            &args,
            &mut q,
            None,
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("GET /api/contracts/contract%207781%2F..%2Fx?limit=25 HTTP/1.1\r\n"),
            "{s}"
        );
        assert!(s.contains("\r\nAuthorization: Bearer sk_test\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn percent_encoding_round_trips_every_byte_and_leaves_only_unreserved_bytes() {
        let all: Vec<u8> = (0..=255u8).collect();
        for s in [
            &all[..],
            b"contract_7781",
            b"",
            b"a-b.c_d~e",
            b"x y",
            &[b'z'; 100],
        ] {
            let mut out = Vec::new();
            percent_encode(&mut out, s);
            let mut back = Vec::new();
            let mut i = 0;
            while i < out.len() {
                if out[i] == b'%' {
                    let hex = std::str::from_utf8(&out[i + 1..i + 3]).unwrap();
                    back.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    assert!(out[i].is_ascii_alphanumeric() || b"-._~".contains(&out[i]));
                    back.push(out[i]);
                    i += 1;
                }
            }
            assert_eq!(back, s);
        }
    }

    #[test]
    fn post_forwards_the_body_verbatim() {
        let mut out = Vec::new();
        let body = br#"{"customer_id":"c1", "note":"x"}"#;
        write_request(
            &mut out,
            &target("POST", "/tickets"),
            &args,
            &mut [].into_iter(),
            Some(body),
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("POST /api/tickets HTTP/1.1\r\n"));
        assert!(
            s.contains("Content-Length: 32\r\n\r\n{\"customer_id\":\"c1\", \"note\":\"x\"}"),
            "{s}"
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        let mut out = Vec::new();
        let e = write_request(
            &mut out,
            &target("GET", "/x/{missing}"),
            &args,
            &mut [].into_iter(),
            None,
        );
        assert_eq!(e, Err(BuildError::MissingPathArg("missing".into())));
        let e = write_request(
            &mut out,
            &target("GET", "/x/{filter}"),
            &args,
            &mut [].into_iter(),
            None,
        );
        assert_eq!(e, Err(BuildError::NotScalar("filter".into())));
    }
}
