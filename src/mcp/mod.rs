//! MCP over Streamable HTTP, sans-IO: JSON-RPC framing (`rpc`), protocol revisions and
//! their negotiation (`version`), and stateless session ids (`session`). The gateway's
//! `/mcp` handler drives these and does the I/O.

pub mod rpc;
pub mod session;
pub mod sse;
pub mod version;
