//! MCP protocol revisions the gateway speaks over Streamable HTTP, and negotiation.

/// Newest first. 2025-03-26 introduced Streamable HTTP; earlier revisions used the
/// separate HTTP+SSE transport, which this gateway does not offer.
pub const SUPPORTED: [&str; 4] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];

/// The revision assumed when a client sends no `MCP-Protocol-Version` header (the
/// 2025-06-18 transport section: assume 2025-03-26 for backwards compatibility).
pub const DEFAULT_WITHOUT_HEADER: &str = "2025-03-26";

/// Revisions without `initialize` or sessions: every POST stands alone.
pub fn is_stateless(version: &str) -> bool {
    version >= "2026-07-28"
}

pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

/// The revision to answer an `initialize` asking for `requested` with: the same one if
/// supported, else the newest session-based revision we speak (the client decides
/// whether it can use it).
pub fn negotiate(requested: &str) -> &'static str {
    SUPPORTED
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(SUPPORTED[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2024-11-05"), "2025-11-25");
        assert!(is_stateless("2026-07-28"));
        assert!(!is_stateless("2025-11-25"));
    }
}
