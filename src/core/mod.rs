//! The protocol and the connection lifecycle, in pure Rust: nothing here imports napi.

pub mod backoff;
pub mod dedupe;
pub mod endpoint;
pub mod error;
pub mod fragments;
pub mod frame;
pub mod redact;
