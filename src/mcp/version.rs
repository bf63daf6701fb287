//! MCP protocol revisions the gateway speaks over Streamable HTTP, and negotiation.

/// Newest first. 2025-03-26 introduced Streamable HTTP; earlier revisions used the
/// separate HTTP+SSE transport, which this gateway does not offer.
pub const SUPPORTED: [&str; 4] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];

/// The revision assumed when a client sends no `MCP-Protocol-Version` header (the
/// 2025-06-18 transport section: assume 2025-03-26 for backwards compatibility).
pub const DEFAULT_WITHOUT_HEADER: &str = "2025-03-26";

/// The first revision without `initialize` or sessions (SEP-2567: the lifecycle moved
/// into per-request `_meta`), with `server/discover`, and with the standard
/// `Mcp-Method`/`Mcp-Name` headers that must agree with the body (SEP-2243).
pub const STATELESS: &str = "2026-07-28";

/// Revisions without `initialize` or sessions: every POST stands alone. Revisions are
/// dated `YYYY-MM-DD`, so they order lexically.
pub fn is_stateless(version: &str) -> bool {
    version >= STATELESS
}

/// `_meta` key carrying the protocol revision on each request (2026-07-28).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying server information on a `server/discover` result.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Error codes introduced with 2026-07-28.
pub const HEADER_MISMATCH: i64 = -32020;
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// Decodes a SEP-2243 header value: plain visible ASCII, or `=?base64?<b64>?=` for values
/// that cannot travel as header text.
pub fn decode_header_value(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

/// The revision to answer an `initialize` asking for `requested` with: the same one if
/// we speak it over the handshake, else the newest revision that still has one. A
/// client naming 2026-07-28 or later in `initialize` is answered with the newest
/// handshake revision: from 2026-07-28 the lifecycle lives in per-request `_meta`,
/// so there is no handshake left to agree on it.
pub fn negotiate(requested: &str) -> &'static str {
    SUPPORTED
        .iter()
        .find(|v| **v == requested && !is_stateless(v))
        .copied()
        .unwrap_or(LATEST_WITH_INITIALIZE)
}

/// The newest revision with an `initialize` handshake.
pub const LATEST_WITH_INITIALIZE: &str = "2025-11-25";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2024-11-05"), "2025-11-25");
        assert_eq!(negotiate("2026-07-28"), "2025-11-25");
        assert!(is_stateless("2026-07-28"));
        assert!(!is_stateless("2025-11-25"));
        assert_eq!(
            decode_header_value("tools.read").as_deref(),
            Some("tools.read")
        );
        assert_eq!(
            decode_header_value("=?base64?aMOpbGxv?=").as_deref(),
            Some("héllo")
        );
        assert_eq!(decode_header_value("=?base64?!!?="), None);
    }
}
