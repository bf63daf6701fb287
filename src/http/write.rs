//! Writing responses into a reused output buffer: status lines, fixed fields, and the
//! small JSON bodies the gateway produces itself (errors, health).

/// The reason phrase for the statuses the gateway emits itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Appends `HTTP/1.1 <status> <reason>\r\n`.
pub fn status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value\r\n`.
pub fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a decimal number without allocating.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A complete response with a body, `Content-Length` framing, and `Connection: close` when
/// the connection will not be reused.
pub fn full_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra: &[(&str, &[u8])],
    body: &[u8],
    close: bool,
) {
    status_line(out, status);
    header(out, "Content-Type", content_type.as_bytes());
    for (n, v) in extra {
        header(out, n, v);
    }
    out.extend_from_slice(b"Content-Length: ");
    push_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Marks a complete response in `out` as keeping the connection open, for an HTTP/1.0
/// client: it closes after every response unless told otherwise (RFC 9112 §9.3, and
/// ApacheBench's `-k` counts a connection as kept only when it is told). A head that
/// already has a `Connection` field is left alone.
pub fn announce_keep_alive(out: &mut Vec<u8>) {
    let Some(line_end) = memchr::memmem::find(out, b"\r\n") else {
        return;
    };
    if !out.starts_with(b"HTTP/1.") {
        return;
    }
    let head_end = memchr::memmem::find(out, b"\r\n\r\n").unwrap_or(out.len());
    let has_connection = out[..head_end]
        .split(|&b| b == b'\n')
        .any(|l| l.len() >= 11 && l[..11].eq_ignore_ascii_case(b"connection:"));
    if !has_connection {
        let at = line_end + 2;
        out.splice(at..at, b"Connection: keep-alive\r\n".iter().copied());
    }
}

/// Appends `s` as a JSON string literal (with quotes), escaping per RFC 8259. A string
/// that needs no escaping (identifiers: the common case) is found so by one branch-free
/// pass that the compiler turns into vector compares, and copied with one `memcpy`: a
/// byte-at-a-time loop cost ~10 instructions a byte, and every audit line goes through
/// here on the hot path.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    #[inline(always)]
    fn special(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !bytes.iter().fold(false, |any, &b| any | special(b)) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !special(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(b"0123456789abcdef"[(b >> 4) as usize]);
                out.push(b"0123456789abcdef"[(b & 15) as usize]);
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_announced_once_after_the_status_line() {
        let mut v = Vec::new();
        full_response(&mut v, 403, "application/json", &[], b"{}", false);
        announce_keep_alive(&mut v);
        let text = String::from_utf8(v.clone()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 403 Forbidden\r\nConnection: keep-alive\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
        announce_keep_alive(&mut v);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            text,
            "a second call adds nothing"
        );

        let mut closing = Vec::new();
        full_response(&mut closing, 400, "application/json", &[], b"", true);
        let before = closing.clone();
        announce_keep_alive(&mut closing);
        assert_eq!(closing, before, "a head that says close is left alone");
        let mut empty = Vec::new();
        announce_keep_alive(&mut empty);
        assert!(empty.is_empty());
    }

    #[test]
    fn numbers_and_strings() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        v.push(b' ');
        push_u64(&mut v, 18_446_744_073_709_551_615);
        assert_eq!(v, b"0 18446744073709551615");
        let mut v = Vec::new();
        json_str(&mut v, "a\"b\\c\n\u{1}é");
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            "\"a\\\"b\\\\c\\n\\u0001é\""
        );
        let parsed: String = serde_json::from_slice(&v).unwrap();
        assert_eq!(parsed, "a\"b\\c\n\u{1}é");
    }

    #[test]
    fn strings_of_every_length_and_escape_position_round_trip() {
        // The no-escape fast path must never hide an escape, at any length or offset.
        for len in 0..40 {
            for at in 0..=len {
                for special in ['"', '\\', '\n', '\u{7}', 'é'] {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..len].into();
                    if at < len {
                        s.replace_range(at..at + 1, &special.to_string());
                    }
                    let mut v = Vec::new();
                    json_str(&mut v, &s);
                    let back: String = serde_json::from_slice(&v).unwrap_or_else(|e| {
                        panic!("{s:?} -> {:?}: {e}", String::from_utf8_lossy(&v))
                    });
                    assert_eq!(back, s);
                    let plain = !s.contains(['"', '\\', '\n', '\u{7}']);
                    assert_eq!(
                        v.len() == s.len() + 2,
                        plain,
                        "{s:?} -> {:?}",
                        String::from_utf8_lossy(&v)
                    );
                }
            }
        }
    }
}
