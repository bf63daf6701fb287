//! The decision pipeline, sans-IO: from a verified envelope and a tool call's arguments to
//! allow or deny with a reason, in the order DESIGN.md fixes (envelope scope, purpose
//! profile, compiled policy).

pub mod args;
pub mod authorize;
pub mod deny;
