//! Dialing one socket: TCP (directly or through a proxy), TLS and the WebSocket upgrade
//! within the handshake timeout, and the classification of a refused upgrade (403
//! terminal, the connection limit, everything else retried). The session that then runs
//! on the socket is src/core/connection.rs.

use std::sync::Arc;

use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use super::config::TransportConfig;
use super::endpoint::Endpoint;
use super::error::{ErrorCode, TransportError};

/// The socket: TLS (for `wss`) over TCP or over a proxy tunnel; see [`super::net`].
pub type WsStream = WebSocketStream<super::net::Stream>;

/// Opens the socket of `endpoint`: TCP (directly or through the configured proxy, with
/// `TCP_NODELAY`: acks are tiny and Nagle would hold them back ~40 ms), TLS for `wss`,
/// and the HTTP upgrade, all within the handshake timeout.
pub async fn dial(
    endpoint: &Endpoint,
    cfg: &TransportConfig,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<WsStream, TransportError> {
    let timeout = cfg.timeouts.handshake;
    // One deadline for the whole dial and for the proxy inside it, so a silent proxy is
    // reported as PROXY_ERROR (the inner timer is polled first) rather than a timeout.
    let deadline = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout_at(deadline, dial_inner(endpoint, cfg, tls, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(TransportError::recoverable(
            ErrorCode::HandshakeTimeout,
            format!(
                "the WebSocket handshake did not complete within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

async fn dial_inner(
    endpoint: &Endpoint,
    cfg: &TransportConfig,
    tls: &Arc<rustls::ClientConfig>,
    deadline: tokio::time::Instant,
) -> Result<WsStream, TransportError> {
    let url = url::Url::parse(&endpoint.url).map_err(|_| {
        TransportError::recoverable(ErrorCode::ProtocolError, "the socket URL does not parse")
    })?;
    let host = url.host_str().unwrap_or_default().to_string();
    let stream = super::net::open(
        &url,
        &super::net::OpenOptions {
            proxy: &cfg.proxy,
            tls,
            proxy_deadline: deadline,
            proxy_timeout: cfg.timeouts.handshake,
            code: ErrorCode::HandshakeFailed,
        },
    )
    .await?;
    // tungstenite zero-fills the free part of its read buffer (up to this size) before
    // every read: at the default 128 KiB, a read that returns one 600-byte event costs a
    // 128 KiB memset. Larger messages still arrive whole: the buffer grows as needed.
    let ws_config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_SIZE);
    match tokio_tungstenite::client_async_with_config(
        endpoint.url.as_str(),
        stream,
        Some(ws_config),
    )
    .await
    {
        Ok((ws, _resp)) => Ok(ws),
        Err(e) => Err(classify_handshake_error(e, &host)),
    }
}

/// Reads the `Handshake-*` headers Feishu puts on a refused upgrade (docs/PROTOCOL.md §3) and
/// classifies the refusal as [GoNew] does: 403 is terminal, 514 with autherrcode
/// 1000040350 is the connection limit, everything else is retried.
fn classify_handshake_error(e: tungstenite::Error, host: &str) -> TransportError {
    match e {
        tungstenite::Error::Http(resp) => {
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .map(str::to_string)
            };
            let http_status = resp.status().as_u16() as i64;
            let hs_status = header("handshake-status").and_then(|v| v.parse::<i64>().ok());
            let msg = header("handshake-msg").unwrap_or_default();
            let auth_code = header("handshake-autherrcode").and_then(|v| v.parse::<i64>().ok());
            let status = hs_status.unwrap_or(http_status);
            let detail = format!(
                "the server refused the WebSocket upgrade: HTTP {http_status}, Handshake-Status {}, Handshake-Msg {:?}{}",
                hs_status.map_or("absent".to_string(), |s| s.to_string()),
                msg,
                auth_code.map_or(String::new(), |c| format!(", Handshake-Autherrcode {c}"))
            );
            if status == 403 {
                TransportError::terminal(ErrorCode::Forbidden, detail).with_feishu_code(403)
            } else if auth_code == Some(super::endpoint::codes::CONNECTION_LIMIT) {
                TransportError::recoverable(ErrorCode::ConnectionLimit, detail)
                    .with_feishu_code(super::endpoint::codes::CONNECTION_LIMIT)
            } else {
                let e = TransportError::recoverable(ErrorCode::HandshakeFailed, detail);
                match auth_code.or(hs_status) {
                    Some(c) => e.with_feishu_code(c),
                    None => e,
                }
            }
        }
        // TLS (and so every certificate failure) is done by `net::open` before the
        // upgrade starts, so what fails here is the upgrade itself.
        other => TransportError::recoverable(
            ErrorCode::HandshakeFailed,
            format!("the WebSocket handshake with {host} failed: {other}"),
        ),
    }
}

/// See `dial_inner`: small enough that zeroing it is cheap, big enough for a burst of
/// small events per read.
const READ_BUFFER_SIZE: usize = 16 * 1024;
