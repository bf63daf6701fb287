//! The gateway: configuration turned into running per-core services. `start` loads and
//! checks everything first (keys, bundle, vault, upstreams, listener) so a bad setting
//! fails start-up with the file and field named, and only then starts the workers.
//!
//! * `state` — what all cores share (bundle, bindings, revocations, keys);
//! * `service` — the per-core service: routing, authentication, HTTP tool calls;
//! * `mcp` and `upstream_mcp` — the MCP endpoint and the gateway as an MCP client;
//! * `delegate` — sub-agent envelopes;
//! * `boot` — start-up.

pub mod admin;
pub mod audit_hook;
pub mod boot;
pub mod delegate;
pub mod mcp;
pub mod service;
pub mod state;
pub mod upstream_mcp;

pub use boot::{Running, StartError, start};
pub use service::Gateway;
