//! Proxies: which one a connection goes through ([`ProxyMode`]: the `proxy` option, or
//! the environment with its `NO_PROXY` rules), and the exchanges that open a tunnel
//! through it. One file per concern:
//!
//! - `url.rs`: [`ProxyUrl`] parsing and its credentials;
//! - `env.rs`: the environment's variables and `NO_PROXY` ([`EnvProxies`], [`NoProxy`]);
//! - `connect.rs`: HTTP CONNECT ([`http_connect`]);
//! - `socks5.rs`: SOCKS5 ([`socks5_connect`]);
//! - here: the mode, where a tunnel leads ([`TunnelTarget`]) and how an exchange fails
//!   ([`ProxyFailure`]).
//!
//! Discovery and the WebSocket both connect through [`crate::core::net::open`], which asks
//! [`ProxyMode::for_target`] and then runs one of the exchanges, so the two can never
//! take different paths. The exchanges are generic over the stream so they are tested on
//! in-memory pipes, byte by byte, without a network.

use std::fmt;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::TransportError;

mod connect;
mod env;
mod socks5;
mod url;

pub use connect::http_connect;
pub use env::{EnvProxies, EnvValue, NoProxy};
pub use socks5::socks5_connect;
pub use url::{host_port, ProxyAuth, ProxyScheme, ProxyUrl};

/// How connections choose their proxy.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyMode {
    /// `proxy: undefined`: the environment's `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and
    /// `NO_PROXY`, as they were when the transport was configured. Boxed: it is much
    /// larger than the other variants and read once per connect.
    Environment(Box<EnvProxies>),
    /// `proxy: null`: always direct, whatever the environment says.
    Direct,
    /// `proxy: '<url>'`: every connection through this proxy; `NO_PROXY` is not consulted
    /// (the caller named the proxy explicitly).
    Fixed(ProxyUrl),
}

impl ProxyMode {
    /// The environment mode, reading the process environment now.
    pub fn from_env() -> ProxyMode {
        ProxyMode::environment(EnvProxies::capture())
    }

    pub fn environment(env: EnvProxies) -> ProxyMode {
        ProxyMode::Environment(Box::new(env))
    }

    /// The proxy for a connection to `host:port` (`tls`: an `https`/`wss` target), or
    /// `None` for a direct connection. Errs only for an environment variable that is set,
    /// applies to this target, and is not a usable proxy URL.
    pub fn for_target(
        &self,
        tls: bool,
        host: &str,
        port: u16,
    ) -> Result<Option<&ProxyUrl>, TransportError> {
        match self {
            ProxyMode::Direct => Ok(None),
            ProxyMode::Fixed(p) => Ok(Some(p)),
            ProxyMode::Environment(env) => env.for_target(tls, host, port),
        }
    }

    /// Fails early for an environment proxy that is set but unusable, for targets of the
    /// domain's kind (`tls`: an `https` domain).
    pub fn validate(&self, tls: bool) -> Result<(), TransportError> {
        match self {
            ProxyMode::Environment(env) => env.selected(tls).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Proxy passwords, to hide wherever they might appear.
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |p: &ProxyUrl| {
            if let Some(a) = &p.auth {
                out.push(a.password.clone());
                // As written in a URL, and the `Basic` credential a proxy may echo back
                // (`407 credentials YWxpY2U6… rejected`), with and without its padding.
                let encoded: String =
                    percent_encoding::utf8_percent_encode(&a.password, url::USERINFO).to_string();
                if encoded != a.password {
                    out.push(encoded);
                }
                let basic = a.basic_token();
                out.push(basic.trim_end_matches('=').to_string());
                out.push(basic);
            }
        };
        match self {
            ProxyMode::Direct => {}
            ProxyMode::Fixed(p) => add(p),
            ProxyMode::Environment(env) => {
                for v in [&env.http, &env.https, &env.all].into_iter().flatten() {
                    if let Ok(p) = &v.proxy {
                        add(p);
                    }
                }
            }
        }
        out
    }
}

/// Where a tunnel should lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelTarget {
    /// Sent as an address (SOCKS5 with local resolution, or an IP literal).
    Addr(SocketAddr),
    /// Sent as a name, for the proxy to resolve.
    Name(String, u16),
}

impl fmt::Display for TunnelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelTarget::Addr(a) => write!(f, "{}", host_port(&a.ip().to_string(), a.port())),
            TunnelTarget::Name(h, p) => f.write_str(&host_port(h, *p)),
        }
    }
}

/// What went wrong inside a proxy exchange, in words that follow "the proxy X …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFailure(pub String);

impl From<std::io::Error> for ProxyFailure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProxyFailure("closed the connection in the middle of its answer".into())
        } else {
            ProxyFailure(format!("failed mid-exchange: {e}"))
        }
    }
}

/// Reads, without waiting, whatever has already arrived (at most `max` more bytes): used
/// only to quote a garbage answer more fully.
async fn read_available<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>, max: usize) {
    use futures_util::FutureExt as _;
    let mut byte = [0u8; 1];
    for _ in 0..max {
        match stream.read(&mut byte).now_or_never() {
            Some(Ok(1)) => buf.push(byte[0]),
            _ => break,
        }
    }
}

/// A short, printable, single-line quotation of bytes from the network.
fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let mut out = String::from("\"");
    for &b in bytes.iter().take(MAX) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    if bytes.len() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn url(s: &str) -> ProxyUrl {
        ProxyUrl::parse(s).unwrap()
    }

    pub(super) fn target() -> &'static TunnelTarget {
        static T: std::sync::LazyLock<TunnelTarget> =
            std::sync::LazyLock::new(|| TunnelTarget::Name("open.feishu.cn".into(), 443));
        &T
    }
}
