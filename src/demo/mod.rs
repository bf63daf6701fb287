//! Built-in demo backends (real servers on loopback) and the renewal-review walk-through.
//! They make `portcullis serve` and `portcullis demo` work on a fresh machine with nothing
//! else installed.

pub mod records;
