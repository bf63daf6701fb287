//! Sans-IO HTTP/1.1: request and response heads (parsed with `httparse`), message framing
//! (Content-Length, chunked), and response writing. No sockets here: everything works over
//! byte slices so it can be unit-tested and fuzzed, and the monoio edges stay thin.
//!
//! The gateway never forwards an agent's head upstream; it builds a fresh request. That
//! removes whole classes of smuggling, but the framing of what it does read must still be
//! unambiguous, so this module is strict: both Content-Length and Transfer-Encoding,
//! duplicate or malformed Content-Length, transfer codings other than `chunked`, and
//! malformed chunk sizes are all errors (RFC 9112 §6.3).

pub mod chunked;
pub mod head;
pub mod write;

pub use chunked::ChunkedDecoder;
pub use head::{Framing, Method, RequestHead, ResponseHead};

use thiserror::Error;

/// Why a message could not be read. Request-side variants are the client's fault (4xx and
/// close); the gateway maps upstream-side ones to 502.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error("malformed HTTP message: {0}")]
    Malformed(&'static str),
    #[error("message head exceeds {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("too many header fields (limit {limit})")]
    TooManyHeaders { limit: usize },
    #[error("body exceeds {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("ambiguous framing: {0}")]
    Ambiguous(&'static str),
    #[error("unsupported transfer coding; only `chunked` is accepted")]
    UnsupportedTransferCoding,
    #[error("bad chunked encoding: {0}")]
    BadChunk(&'static str),
    #[error("HTTP version not supported")]
    Version,
}

impl HttpError {
    /// The status a client gets for a request that fails this way.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::UnsupportedTransferCoding => 501,
            HttpError::Version => 505,
            _ => 400,
        }
    }
}
