//! Request and response heads. Parsing records what the gateway needs (method, target,
//! framing, connection handling and a handful of named fields) as byte ranges into the
//! read buffer, so a parsed head costs no allocation and the buffer can be reused.

use super::HttpError;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Most header fields accepted in one head.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl Method {
    fn parse(m: &str) -> Method {
        match m {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }

    /// RFC 9110 §9.2.2: safe to retry on a fresh connection if a pooled one failed.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch | Method::Other)
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Response body delimited by connection close (HTTP/1.0 style).
    UntilClose,
}

/// The fields of a request head the gateway looks at, as ranges into the buffer.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// Bytes of the head including the blank line.
    pub len: usize,
    pub method: Option<Method>,
    pub target: Range<usize>,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub framing_length: Option<u64>,
    pub chunked: bool,
    /// The client asked to close, or it is HTTP/1.0 without keep-alive.
    pub close: bool,
    pub expect_continue: bool,
    pub authorization: Option<Range<usize>>,
    pub content_type: Option<Range<usize>>,
    pub accept: Option<Range<usize>>,
    pub mcp_session_id: Option<Range<usize>>,
    pub mcp_protocol_version: Option<Range<usize>>,
    pub origin: Option<Range<usize>>,
    pub host: Option<Range<usize>>,
    /// MCP 2026-07-28 standard headers (SEP-2243): the JSON-RPC method and name.
    pub mcp_method: Option<Range<usize>>,
    pub mcp_name: Option<Range<usize>>,
    /// An MCP singleton header (`Mcp-Method`, `Mcp-Name`, `Mcp-Session-Id`,
    /// `MCP-Protocol-Version`) appeared more than once.
    pub mcp_duplicate: bool,
}

impl RequestHead {
    pub fn framing(&self) -> Framing {
        if self.chunked {
            Framing::Chunked
        } else {
            match self.framing_length {
                Some(0) | None => Framing::None,
                Some(n) => Framing::Length(n),
            }
        }
    }

    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }

    /// The request target without its query string.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b str {
        let start = self.target.start;
        let end =
            memchr::memchr(b'?', &buf[self.target.clone()]).map_or(self.target.end, |q| start + q);
        field(buf, &(start..end))
    }
}

/// A range of the buffer as text. Heads passed `httparse`, whose tokens and field values
/// are visible ASCII (plus obs-text, which this turns into an empty string).
pub fn field<'b>(buf: &'b [u8], r: &Range<usize>) -> &'b str {
    std::str::from_utf8(&buf[r.clone()]).unwrap_or("")
}

fn range_of(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    let v = trim(v);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::Malformed(
            "Content-Length is not a decimal number",
        ));
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn has_token(v: &[u8], token: &str) -> bool {
    v.split(|b| *b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// The header fields either parser acts on. Every field of every head is classified, so
/// the name's length picks the few candidates to compare: a chain of comparisons
/// against all of them cost each field a dozen tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Accept,
    Authorization,
    Connection,
    ContentLength,
    ContentType,
    Expect,
    Host,
    McpMethod,
    McpName,
    McpProtocolVersion,
    McpSessionId,
    Origin,
    TransferEncoding,
    /// Hop-by-hop fields (RFC 9110 §7.6.1) the gateway only ever drops.
    OtherHopByHop,
    Other,
}

impl Field {
    fn of(name: &str) -> Field {
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        match name.len() {
            2 if is("te") => Field::OtherHopByHop,
            4 if is("host") => Field::Host,
            6 if is("accept") => Field::Accept,
            6 if is("origin") => Field::Origin,
            6 if is("expect") => Field::Expect,
            7 if is("trailer") || is("upgrade") => Field::OtherHopByHop,
            8 if is("mcp-name") => Field::McpName,
            10 if is("connection") => Field::Connection,
            10 if is("mcp-method") => Field::McpMethod,
            10 if is("keep-alive") => Field::OtherHopByHop,
            12 if is("content-type") => Field::ContentType,
            13 if is("authorization") => Field::Authorization,
            14 if is("content-length") => Field::ContentLength,
            14 if is("mcp-session-id") => Field::McpSessionId,
            16 if is("proxy-connection") => Field::OtherHopByHop,
            17 if is("transfer-encoding") => Field::TransferEncoding,
            18 if is("proxy-authenticate") => Field::OtherHopByHop,
            19 if is("proxy-authorization") => Field::OtherHopByHop,
            20 if is("mcp-protocol-version") => Field::McpProtocolVersion,
            _ => Field::Other,
        }
    }

    /// Fields that describe one hop, never relayed (RFC 9110 §7.6.1), plus the framing
    /// fields the gateway sets itself.
    fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Field::Connection
                | Field::TransferEncoding
                | Field::ContentLength
                | Field::OtherHopByHop
        )
    }
}

/// Parses a request head. `Ok(None)` means more bytes are needed; a head longer than
/// `max_len` without ending is `HeadTooLarge`.
pub fn parse_request(buf: &[u8], max_len: usize) -> Result<Option<RequestHead>, HttpError> {
    // Left uninitialised: httparse writes only the slots it fills, where an array of
    // empty headers was 2 KiB of stores (and of cache lines) per head.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let status = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders { limit: MAX_HEADERS });
        }
        Err(httparse::Error::Version) => return Err(HttpError::Version),
        Err(_) => return Err(HttpError::Malformed("request head does not parse")),
    };
    let len = match status {
        httparse::Status::Complete(n) if n <= max_len => n,
        httparse::Status::Complete(_) => return Err(HttpError::HeadTooLarge { limit: max_len }),
        httparse::Status::Partial if buf.len() >= max_len => {
            return Err(HttpError::HeadTooLarge { limit: max_len });
        }
        httparse::Status::Partial => return Ok(None),
    };
    let minor = req.version.unwrap_or(1);
    let mut h = RequestHead {
        len,
        method: req.method.map(Method::parse),
        target: req
            .path
            .map(|p| range_of(buf, p.as_bytes()))
            .unwrap_or(0..0),
        minor,
        close: minor == 0,
        ..RequestHead::default()
    };
    let mut te_seen = false;
    for hdr in req.headers.iter() {
        let v = hdr.value;
        let r = || range_of(buf, trim(v));
        match Field::of(hdr.name) {
            Field::ContentLength => {
                if h.framing_length.is_some() {
                    return Err(HttpError::Ambiguous("more than one Content-Length"));
                }
                h.framing_length = Some(parse_content_length(v)?);
            }
            Field::TransferEncoding => {
                if te_seen {
                    return Err(HttpError::Ambiguous("more than one Transfer-Encoding"));
                }
                te_seen = true;
                if !trim(v).eq_ignore_ascii_case(b"chunked") {
                    return Err(HttpError::UnsupportedTransferCoding);
                }
                h.chunked = true;
            }
            Field::Connection => {
                if has_token(v, "close") {
                    h.close = true;
                } else if has_token(v, "keep-alive") {
                    h.close = false;
                }
            }
            Field::Authorization => {
                // One credential per request: with two, a front proxy and the gateway
                // could each judge a different one.
                if h.authorization.replace(r()).is_some() {
                    return Err(HttpError::Ambiguous("more than one Authorization"));
                }
            }
            Field::ContentType => h.content_type = Some(r()),
            Field::Accept => h.accept = Some(r()),
            Field::McpSessionId => h.mcp_duplicate |= h.mcp_session_id.replace(r()).is_some(),
            Field::McpProtocolVersion => {
                h.mcp_duplicate |= h.mcp_protocol_version.replace(r()).is_some();
            }
            Field::McpMethod => h.mcp_duplicate |= h.mcp_method.replace(r()).is_some(),
            Field::McpName => h.mcp_duplicate |= h.mcp_name.replace(r()).is_some(),
            Field::Origin => h.origin = Some(r()),
            Field::Host => {
                if h.host.is_some() {
                    return Err(HttpError::Ambiguous("more than one Host"));
                }
                h.host = Some(r());
            }
            // RFC 9110 §10.1.1: an HTTP/1.0 client cannot read an interim answer, so its
            // expectation is ignored.
            Field::Expect => {
                h.expect_continue = minor == 1 && trim(v).eq_ignore_ascii_case(b"100-continue");
            }
            Field::OtherHopByHop | Field::Other => {}
        }
    }
    if h.chunked && h.framing_length.is_some() {
        return Err(HttpError::Ambiguous(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if h.chunked && minor == 0 {
        return Err(HttpError::Ambiguous(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if minor == 1 && h.host.is_none() {
        return Err(HttpError::Malformed("HTTP/1.1 request without Host"));
    }
    Ok(Some(h))
}

/// An upstream response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The upstream will close the connection after this response.
    pub close: bool,
    pub content_type: Option<Range<usize>>,
    /// End-to-end fields to relay to the client: hop-by-hop fields (RFC 9110 §7.6.1),
    /// framing fields and anything named in `Connection` are left out.
    pub relay: Vec<(Range<usize>, Range<usize>)>,
}

/// Parses an upstream response head; `request_method` decides whether a body can follow.
/// `relay` is cleared and refilled, so a caller can reuse one `ResponseHead`'s vector.
pub fn parse_response(
    buf: &[u8],
    max_len: usize,
    request_method: Method,
    relay: &mut Vec<(Range<usize>, Range<usize>)>,
) -> Result<Option<ResponseHead>, HttpError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) if n <= max_len => n,
        Ok(httparse::Status::Complete(_)) => {
            return Err(HttpError::HeadTooLarge { limit: max_len });
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_len => {
            return Err(HttpError::HeadTooLarge { limit: max_len });
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::TooManyHeaders { limit: MAX_HEADERS });
        }
        Err(_) => return Err(HttpError::Malformed("response head does not parse")),
    };
    let status = res.code.unwrap_or(0);
    let minor = res.version.unwrap_or(1);
    let mut close = minor == 0;
    let mut length = None;
    let mut chunked = false;
    let mut content_type = None;
    relay.clear();
    let mut connection_tokens: [Option<&[u8]>; 8] = [None; 8];
    let mut n_tokens = 0;
    for hdr in res.headers.iter() {
        if hdr.name.eq_ignore_ascii_case("connection") {
            for t in hdr.value.split(|b| *b == b',') {
                let t = trim(t);
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                } else if n_tokens < connection_tokens.len() {
                    connection_tokens[n_tokens] = Some(t);
                    n_tokens += 1;
                }
            }
        }
    }
    for hdr in res.headers.iter() {
        let name = hdr.name;
        let kind = Field::of(name);
        match kind {
            Field::ContentLength => {
                if length.is_some() {
                    return Err(HttpError::Ambiguous("more than one Content-Length"));
                }
                length = Some(parse_content_length(hdr.value)?);
            }
            Field::TransferEncoding => {
                if chunked || !trim(hdr.value).eq_ignore_ascii_case(b"chunked") {
                    return Err(HttpError::UnsupportedTransferCoding);
                }
                chunked = true;
            }
            Field::ContentType => content_type = Some(range_of(buf, trim(hdr.value))),
            _ => {}
        }
        let hop = kind.hop_by_hop()
            || connection_tokens[..n_tokens]
                .iter()
                .flatten()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()));
        if !hop {
            relay.push((
                range_of(buf, name.as_bytes()),
                range_of(buf, trim(hdr.value)),
            ));
        }
    }
    if chunked && length.is_some() {
        return Err(HttpError::Ambiguous(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    // RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304, whatever the fields say.
    let bodiless = request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let framing = if bodiless {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => {
                close = true;
                Framing::UntilClose
            }
        }
    };
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        close,
        content_type,
        relay: std::mem::take(relay),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<RequestHead>, HttpError> {
        parse_request(s.as_bytes(), 8192)
    }

    #[test]
    fn parses_a_tool_call_head() {
        let raw = "POST /v1/tools/crm.read?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer abc\r\n\
                   Content-Length: 12\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        let h = req(raw).unwrap().unwrap();
        assert_eq!(h.method(), Method::Post);
        assert_eq!(h.path(raw.as_bytes()), "/v1/tools/crm.read");
        assert_eq!(h.framing(), Framing::Length(12));
        assert_eq!(
            field(raw.as_bytes(), h.authorization.as_ref().unwrap()),
            "Bearer abc"
        );
        assert!(!h.close);
        assert_eq!(h.len, raw.find("{").unwrap());
    }

    #[test]
    fn partial_heads_ask_for_more_and_long_ones_are_refused() {
        assert!(req("POST / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(req(&long).unwrap_err().status(), 431);
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nauthorization: Bearer y\r\n\r\n",
        ];
        for c in cases {
            let e = req(c).unwrap_err();
            assert_eq!(e.status(), 400, "{c:?} -> {e}");
        }
        for te in ["gzip, chunked", "chunked, gzip", "identity", "xchunked"] {
            let c = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                req(&c).unwrap_err(),
                HttpError::UnsupportedTransferCoding,
                "{te}"
            );
        }
    }

    #[test]
    fn connection_handling() {
        let h = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.close);
        let h = req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.close);
        let h = req("GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.close);
    }

    #[test]
    fn response_framing_and_hop_by_hop_fields() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive, X-Hop\r\n\
                    X-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Request-Id: r1\r\nContent-Length: 5\r\n\r\nhello";
        let mut relay = Vec::new();
        let h = parse_response(raw, 8192, Method::Get, &mut relay)
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(!h.close);
        let names: Vec<&str> = h.relay.iter().map(|(n, _)| field(raw, n)).collect();
        assert_eq!(names, ["Content-Type", "X-Request-Id"]);

        let raw = b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n";
        let h = parse_response(raw, 8192, Method::Get, &mut relay)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::None);
        let raw = b"HTTP/1.1 200 OK\r\n\r\n";
        let h = parse_response(raw, 8192, Method::Get, &mut relay)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(h.close);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse_response(raw, 8192, Method::Get, &mut relay).is_err());
    }

    #[test]
    fn every_hop_by_hop_field_is_dropped_whatever_its_case() {
        // RFC 9110 §7.6.1's list, plus framing the gateway sets itself; each next to an
        // end-to-end field of the same length, which must still be relayed.
        let raw = b"HTTP/1.1 200 OK\r\nTE: trailers\r\nXY: 1\r\nTRAILER: x\r\nupgrade: h2c\r\n\
                    X-Trail: 1\r\nKeep-Alive: timeout=5\r\nX-Session: 1\r\nPROXY-CONNECTION: close\r\n\
                    Proxy-Authenticate: Basic\r\nProxy-Authorization: Basic eA==\r\n\
                    X-Proxy-Authorizer: 1\r\nConnection: keep-alive\r\nX-Connects: 1\r\n\
                    Transfer-Encoding: chunked\r\nX-Transfer-Encode: 1\r\nMcp-Session-Id: s\r\n\r\n";
        let mut relay = Vec::new();
        let h = parse_response(raw, 8192, Method::Get, &mut relay)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let names: Vec<&str> = h.relay.iter().map(|(n, _)| field(raw, n)).collect();
        assert_eq!(
            names,
            [
                "XY",
                "X-Trail",
                "X-Session",
                "X-Proxy-Authorizer",
                "X-Connects",
                "X-Transfer-Encode",
                "Mcp-Session-Id"
            ]
        );
    }

    #[test]
    fn request_fields_are_found_whatever_their_case_and_look_alikes_are_not() {
        let raw = "POST /mcp HTTP/1.1\r\nHOST: gw\r\nauthorization: Bearer t\r\n\
                   CONTENT-type: application/json\r\nAccept: text/event-stream\r\n\
                   mcp-SESSION-id: s1\r\nMcp-Protocol-Version: 2025-06-18\r\n\
                   MCP-METHOD: tools/call\r\nmcp-name: crm.read\r\nOrigin: http://x\r\n\
                   Expect: 100-Continue\r\nContent-Length: 2\r\n\
                   Content-Lengthy: 9\r\nX-Authorization: Bearer other\r\nHosts: no\r\n\r\n{}";
        let h = req(raw).unwrap().unwrap();
        let b = raw.as_bytes();
        let f = |r: &Option<Range<usize>>| r.as_ref().map(|r| field(b, r));
        assert_eq!(f(&h.host), Some("gw"));
        assert_eq!(f(&h.authorization), Some("Bearer t"));
        assert_eq!(f(&h.content_type), Some("application/json"));
        assert_eq!(f(&h.accept), Some("text/event-stream"));
        assert_eq!(f(&h.mcp_session_id), Some("s1"));
        assert_eq!(f(&h.mcp_protocol_version), Some("2025-06-18"));
        assert_eq!(f(&h.mcp_method), Some("tools/call"));
        assert_eq!(f(&h.mcp_name), Some("crm.read"));
        assert_eq!(f(&h.origin), Some("http://x"));
        assert!(h.expect_continue);
        let http10 = raw.replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert!(
            !req(&http10).unwrap().unwrap().expect_continue,
            "ignored from HTTP/1.0"
        );
        assert_eq!(h.framing(), Framing::Length(2));
        assert!(!h.mcp_duplicate);
    }
}
