//! `portcullis-loadtest` as a library: open-loop and closed-loop load generation on monoio
//! (`generator`), the send schedule (`schedule`), an agent-fleet workload of envelopes and
//! tool calls (`workload`), built-in upstream backends (`backend`), the latency report
//! (`report`: percentiles, `.hgrm`, JSON, SVG), latency over a run's time (`timeline`), targets
//! as users write them (`endpoint`), CPU accounting of the target (`cpu`),
//! gateway deployments in front of the backend (`setup`), a bare monoio TCP hop as the
//! floor for any proxy (`hop`) and interleaved comparisons of direct, the hop, Portcullis
//! and other proxies (`compare`), and an operator's early stop (`stop`).
#![forbid(unsafe_code)]

pub mod backend;
pub mod compare;
pub mod cpu;
pub mod endpoint;
pub mod generator;
pub mod hop;
pub mod report;
pub mod schedule;
pub mod setup;
pub mod stop;
pub mod swap;
pub mod timeline;
pub mod workload;
