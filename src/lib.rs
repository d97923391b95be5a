//! feishu-transport: Feishu/Lark long-connection events for Node.js.
//!
//! `core` is pure Rust (protocol, connection, reconnect loop) and never imports napi;
//! `emulator` is a local Feishu server built on the same codec; `binding` is the only
//! place that knows about JavaScript, and it only converts.
#![deny(clippy::all)]

pub mod binding;
pub mod core;
pub mod emulator;

/// Installs the process-wide rustls crypto provider before anything can open a TLS
/// socket: tokio-tungstenite and rustls builders without an explicit provider look up
/// the process default and panic when there is none.
pub fn install_crypto_provider() {
    // Err means a provider is already installed (another addon, a second env): fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Worker threads of the process's tokio runtime (one), unless `TOKIO_WORKER_THREADS`
/// says otherwise. A transport does little CPU work per event and none of it in
/// parallel (one session task per socket), so a second worker only adds wake-ups: at
/// 1 000 events/s the default two workers cost 2.45 context switches and 4.83 syscalls
/// per event, one worker 0.93 and 2.76 (bench/NOTES.md, "Steady rates").
const WORKER_THREADS: usize = 1;

/// The runtime napi-rs runs every async call and the transport on. napi-rs builds the
/// default multi-thread one (a worker per core) when none is supplied; if building ours
/// fails, that default is left in place. Once per process: every environment (worker
/// threads included) shares napi-rs's one runtime.
fn install_runtime() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(build_runtime);
}

fn build_runtime() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // The environment variable keeps its tokio meaning: it overrides the count.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(WORKER_THREADS);
    }
    if let Ok(rt) = builder.build() {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
}

#[napi_derive::module_init]
fn init() {
    install_crypto_provider();
    install_runtime();
}
