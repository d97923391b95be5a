//! The only module that knows about JavaScript: classes, option objects, callbacks and
//! error conversion. Everything here converts and delegates to `core` or `emulator`.

pub mod cleanup;
pub mod discovery;
pub mod emulator;

/// The version of this package, for the User-Agent and for diagnostics.
#[napi_derive::napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

pub mod transport;
