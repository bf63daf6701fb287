//! `portcullis-loadtest` as a library: open-loop and closed-loop load generation on monoio
//! (`generator`), the send schedule (`schedule`), an agent-fleet workload of envelopes and
//! tool calls (`workload`), built-in upstream backends (`backend`), the latency report
//! (`report`: percentiles, `.hgrm`, JSON, SVG), CPU accounting of the target (`cpu`),
//! gateway deployments in front of the backend (`setup`) and interleaved comparisons of
//! direct, Portcullis and other proxies (`compare`).
#![forbid(unsafe_code)]

pub mod backend;
pub mod compare;
pub mod cpu;
pub mod generator;
pub mod report;
pub mod schedule;
pub mod setup;
pub mod swap;
pub mod workload;
