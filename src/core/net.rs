//! Opening a connection to a URL the way every connection of the transport is opened:
//! pick the proxy ([`ProxyMode::for_target`]), connect (directly, or to the proxy and
//! through its tunnel), then TLS for `https`/`wss`. Discovery and the WebSocket both come
//! through here, so they always agree on the proxy, the roots and the errors.
//!
//! Errors: anything the proxy did (refused, asked for credentials, answered garbage,
//! stayed silent) is `PROXY_ERROR` naming the proxy without its credentials; a TLS
//! failure is `TLS_ERROR` naming the host; a direct connection that fails gets the
//! caller's code (`DISCOVERY_FAILED`, `HANDSHAKE_FAILED`).

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;
use tokio_util::either::Either;

use super::error::{ErrorCode, TransportError};
use super::proxy::{
    host_port, http_connect, socks5_connect, ProxyMode, ProxyScheme, ProxyUrl, TunnelTarget,
};
use super::tls::tls_failure;

/// The byte stream under the target's TLS: a TCP socket (to the target, or to an HTTP or
/// SOCKS proxy carrying the tunnel), or TLS to an `https://` proxy carrying the tunnel.
/// An `Either`, not a box, so the common direct path costs nothing extra.
pub type NetStream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

/// A connection ready for HTTP or the WebSocket upgrade.
pub type Stream = MaybeTlsStream<NetStream>;

/// What [`open`] needs besides the URL.
pub struct OpenOptions<'a> {
    pub proxy: &'a ProxyMode,
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// When the proxy must have opened the tunnel: a silent proxy is a `PROXY_ERROR` at
    /// this instant, not a generic timeout.
    pub proxy_deadline: Instant,
    /// The budget that deadline stands for, as the error message states it.
    pub proxy_timeout: std::time::Duration,
    /// The code of a failed direct connection.
    pub code: ErrorCode,
}

/// Connects to `url` (`http`, `https`, `ws` or `wss`).
pub async fn open(url: &url::Url, o: &OpenOptions<'_>) -> Result<Stream, TransportError> {
    let host = url
        .host_str()
        .ok_or_else(|| {
            TransportError::recoverable(ErrorCode::ProtocolError, "a URL without a host")
        })?
        // url keeps IPv6 hosts bracketed; resolvers and SNI want them bare.
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = matches!(url.scheme(), "https" | "wss");
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });

    let stream = match o.proxy.for_target(tls, &host, port)? {
        None => {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| {
                    TransportError::recoverable(
                        o.code,
                        format!(
                            "could not open a TCP connection to {}: {e}",
                            host_port(&host, port)
                        ),
                    )
                })?;
            // Acks are tiny; Nagle's algorithm would hold them back ~40 ms.
            let _ = tcp.set_nodelay(true);
            Either::Left(tcp)
        }
        Some(proxy) => {
            match tokio::time::timeout_at(o.proxy_deadline, tunnel(proxy, &host, port, o)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(TransportError::recoverable(
                        ErrorCode::ProxyError,
                        format!(
                            "the proxy {proxy} did not open a tunnel to {} within {} ms",
                            host_port(&host, port),
                            o.proxy_timeout.as_millis()
                        ),
                    ))
                }
            }
        }
    };

    if !tls {
        return Ok(MaybeTlsStream::Plain(stream));
    }
    let name = server_name(&host)?;
    match tokio_rustls::TlsConnector::from(o.tls.clone())
        .connect(name, stream)
        .await
    {
        Ok(s) => Ok(MaybeTlsStream::Rustls(s)),
        Err(e) => Err(match tls_failure(&e) {
            Some(why) => TransportError::recoverable(
                ErrorCode::TlsError,
                format!("TLS with {} failed: {why}", host_port(&host, port)),
            ),
            None => TransportError::recoverable(
                o.code,
                format!(
                    "the TLS handshake with {} failed: {e}",
                    host_port(&host, port)
                ),
            ),
        }),
    }
}

fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, TransportError> {
    rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
        TransportError::recoverable(
            ErrorCode::ProtocolError,
            format!("{host:?} is not a valid TLS server name"),
        )
    })
}

/// Connects to the proxy and opens a tunnel through it to `host:port`.
async fn tunnel(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    o: &OpenOptions<'_>,
) -> Result<NetStream, TransportError> {
    let fail = |what: String| {
        TransportError::recoverable(ErrorCode::ProxyError, format!("the proxy {proxy} {what}"))
    };
    let tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| fail(format!("could not be reached: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = if proxy.scheme == ProxyScheme::Https {
        let name = server_name(&proxy.host)?;
        match tokio_rustls::TlsConnector::from(o.tls.clone())
            .connect(name, tcp)
            .await
        {
            Ok(s) => Either::Right(Box::new(s)),
            Err(e) => {
                return Err(match tls_failure(&e) {
                    Some(why) => TransportError::recoverable(
                        ErrorCode::TlsError,
                        format!("TLS with the proxy {proxy} failed: {why}"),
                    ),
                    None => fail(format!("failed during its TLS handshake: {e}")),
                })
            }
        }
    } else {
        Either::Left(tcp)
    };

    let target = match (proxy.scheme, host.parse::<std::net::IpAddr>()) {
        (_, Ok(ip)) => TunnelTarget::Addr((ip, port).into()),
        // socks5:// resolves here and sends the address (curl's meaning of the scheme).
        (ProxyScheme::Socks5, Err(_)) => {
            let addr = tokio::net::lookup_host((host, port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    TransportError::recoverable(
                        o.code,
                        format!(
                            "could not resolve {host} for the SOCKS5 proxy {proxy} (socks5h:// lets the proxy resolve it)"
                        ),
                    )
                })?;
            TunnelTarget::Addr(addr)
        }
        _ => TunnelTarget::Name(host.to_string(), port),
    };
    let exchanged = match proxy.scheme {
        ProxyScheme::Http | ProxyScheme::Https => http_connect(&mut stream, proxy, &target).await,
        ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
            socks5_connect(&mut stream, proxy, &target).await
        }
    };
    exchanged.map_err(|f| fail(f.0))?;
    Ok(stream)
}

/// The largest response body we read: discovery answers are a few hundred bytes.
pub const MAX_BODY: usize = 1024 * 1024;

/// Sends one HTTP/1.1 request over `stream` and reads the whole answer (at most
/// [`MAX_BODY`] bytes). The caller bounds the time. Errors are plain text for the caller
/// to classify.
pub async fn http1_request(
    stream: Stream,
    request: hyper::Request<http_body_util::Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    use http_body_util::BodyExt as _;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("the answer is longer than {} KiB", MAX_BODY / 1024)
                } else {
                    e.to_string()
                }
            })?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    // The connection future does the actual I/O and must be polled alongside. It may
    // finish first (the server closed after answering) while the body is still waiting
    // in its channel, so its success only stops polling it.
    tokio::pin!(exchange, conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            r = &mut exchange => return r,
            c = &mut conn, if !conn_done => {
                c.map_err(|e| e.to_string())?;
                conn_done = true;
            }
        }
    }
}
