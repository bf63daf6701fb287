//! MCP over Streamable HTTP, sans-IO: JSON-RPC framing (`rpc`), protocol revisions and
//! their negotiation (`version`), stateless session ids (`session`), and the bridge
//! between a 2026-07-28 agent and a session-based upstream (`translate`). The gateway's
//! `/mcp` handler drives these and does the I/O.

pub mod rpc;
pub mod session;
pub mod sse;
pub mod translate;
pub mod version;
