//! The upstream side of the gateway: building the upstream request (`request`), per-core
//! keep-alive connection pools (`pool`), the request/response exchange that relays the
//! answer to the agent without gathering it (`exchange`), and credential scrubbing
//! (`scrub`). Only `pool` and `exchange` touch sockets.

pub mod exchange;
pub mod pool;
pub mod request;
pub mod scrub;

use thiserror::Error;

/// An upstream failure, as the agent will hear of it.
#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("cannot connect to upstream `{upstream}`: {detail}")]
    Connect { upstream: String, detail: String },
    /// The gateway's own fault: it is at its open-file limit, so the upstream was never
    /// tried. Temporary (connections closing free descriptors), hence 503.
    #[error(
        "no file descriptor left to connect to upstream `{upstream}`: the gateway is at its open-file limit ({})",
        crate::server::fd_limit::RAISE_HINT
    )]
    NoDescriptors { upstream: String },
    #[error("upstream `{upstream}` did not accept a connection within {secs:.1}s")]
    ConnectTimeout { upstream: String, secs: f64 },
    #[error("upstream `{upstream}` did not respond within {secs:.1}s")]
    Timeout { upstream: String, secs: f64 },
    #[error("upstream `{upstream}` closed the connection before a complete response")]
    Closed { upstream: String },
    #[error("upstream `{upstream}` sent a malformed response: {detail}")]
    BadResponse { upstream: String, detail: String },
    #[error("upstream `{upstream}` response exceeds {limit} bytes")]
    TooLarge { upstream: String, limit: usize },
    #[error("upstream `{upstream}` I/O error: {detail}")]
    Io { upstream: String, detail: String },
    /// The agent's connection failed while the answer was being relayed: nobody to tell.
    #[error("client connection failed during relay")]
    ClientGone,
}

impl ProxyError {
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::ConnectTimeout { .. } | ProxyError::Timeout { .. } => 504,
            ProxyError::NoDescriptors { .. } => 503,
            _ => 502,
        }
    }

    /// Machine-readable reason for the error body and audit line.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Connect { .. } => "upstream_unreachable",
            ProxyError::NoDescriptors { .. } => "gateway_out_of_descriptors",
            ProxyError::ConnectTimeout { .. } => "upstream_connect_timeout",
            ProxyError::Timeout { .. } => "upstream_timeout",
            ProxyError::Closed { .. } => "upstream_closed",
            ProxyError::BadResponse { .. } => "upstream_bad_response",
            ProxyError::TooLarge { .. } => "upstream_response_too_large",
            ProxyError::Io { .. } => "upstream_io_error",
            ProxyError::ClientGone => "client_gone",
        }
    }
}
