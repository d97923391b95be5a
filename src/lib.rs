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

#[napi_derive::module_init]
fn init() {
    install_crypto_provider();
}
