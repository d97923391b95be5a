//! The protocol and the connection lifecycle, in pure Rust: nothing here imports napi.
//! Nothing here needs `unsafe` either, and the attribute below keeps it that way.
#![forbid(unsafe_code)]

pub mod ack;
pub mod backoff;
pub mod config;
pub mod connection;
pub mod dedupe;
pub mod dial;
pub mod discovery;
pub mod durable;
pub mod endpoint;
pub mod envelope;
pub mod error;
pub mod events;
pub mod faults;
pub mod fragments;
pub mod frame;
pub mod frame_view;
pub mod log;
pub mod net;
pub mod observer;
pub mod proxy;
pub mod redact;
pub mod run_state;
pub mod seqmap;
pub mod status;
pub mod store;
pub mod store_redis;
pub mod store_sqlite;
mod store_sqlite_index;
pub mod supervisor;
pub mod tls;
pub mod wal_checkpoint;
