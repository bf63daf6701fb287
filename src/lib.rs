//! Portcullis: a least-privilege gateway for AI agents.
//!
//! The library holds everything the data plane and the tools share: the identity envelope
//! (`envelope`), time helpers (`clock`), and, as the product grows, the decision table, the
//! vault, the HTTP/MCP data plane and the audit trail. The `portcullis` binary is a thin CLI
//! over these modules; the policy compiler depends on this crate, never the reverse.
#![forbid(unsafe_code)]

pub mod audit;
pub mod clock;
pub mod config;
pub mod decision;
pub mod demo;
pub mod envelope;
pub mod gateway;
pub mod http;
pub mod log;
pub mod mcp;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod server;
pub mod vault;
