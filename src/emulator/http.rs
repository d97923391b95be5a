//! The single TCP port: HTTP/1.1 for discovery, and the WebSocket upgrade of `/ws/v2`.
//!
//! The request head is parsed here with httparse rather than by an HTTP server library,
//! so that every answer (a hang, a status, a raw body, a half-finished handshake) is
//! under the emulator's control. Connections are kept alive between discovery requests
//! because Node's default agent reuses sockets.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::faults::{DiscoveryFaultKind, HandshakeFault, HandshakeRejection};
use super::tls::EmuStream;
use super::{conn_handle, connection, emu_debug, AppCredentials, ClientConfig, Inner};

/// The discovery path (docs/PROTOCOL.md §2).
pub(crate) const ENDPOINT_PATH: &str = "/callback/ws/endpoint";
/// The WebSocket path of issued URLs.
pub(crate) const WS_PATH: &str = "/ws/v2";

/// Request heads above this are refused: nothing legitimate comes close.
const MAX_HEAD: usize = 16 * 1024;
/// Discovery bodies above this are refused.
const MAX_BODY: usize = 64 * 1024;

/// `code` of an accepted discovery request.
pub(crate) const CODE_OK: i64 = 0;
/// `code` for a wrong secret (docs/PROTOCOL.md §2 "Codes").
pub(crate) const CODE_AUTH_FAILED: i64 = 514;
/// `code` for an unknown AppID, as a third-party probe saw it.
pub(crate) const CODE_APP_ID_INVALID: i64 = 1_000_040_346;
/// `Handshake-Autherrcode` of the connection limit.
pub(crate) const AUTHERR_CONN_LIMIT: i64 = 1_000_040_350;

/// What discovery issued with one URL. A ticket is good for one handshake.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub(crate) app_id: String,
    pub(crate) device_id: String,
    pub(crate) access_key: String,
    pub(crate) used: bool,
}

/// A parsed request head. Header names are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) minor_version: u8,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub(crate) fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// Whether the client wants the socket closed after this exchange.
    fn wants_close(&self) -> bool {
        match self.header("connection") {
            Some(v) if has_token(v, "close") => true,
            Some(v) if has_token(v, "keep-alive") => false,
            _ => self.minor_version == 0,
        }
    }

    fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| has_token(v, "websocket"))
    }
}

/// Case-insensitive membership in a comma-separated header value.
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not HTTP, or a head we refuse to read further (too large, too many headers).
    Malformed(&'static str),
}

/// Parses a request head from the start of `buf`: `Ok(None)` while incomplete, else the
/// head and its length in bytes.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let head = Head {
                method: req.method.unwrap_or("").to_string(),
                target: req.path.unwrap_or("").to_string(),
                minor_version: req.version.unwrap_or(1),
                headers: req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect(),
            };
            Ok(Some((head, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            Err(HeadError::Malformed("request head too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::Malformed("too many headers")),
        Err(_) => Err(HeadError::Malformed("not an HTTP request")),
    }
}

/// The JSON body of a discovery request.
#[derive(Debug, serde::Deserialize)]
struct DiscoveryRequest {
    #[serde(rename = "AppID", default)]
    app_id: Option<String>,
    #[serde(rename = "AppSecret", default)]
    app_secret: Option<String>,
    /// Keyless mode sends an assertion instead of a secret. The emulator cannot verify
    /// JWTs, so only an absent or empty one is accepted (with the right secret).
    #[serde(rename = "ClientAssertion", default)]
    client_assertion: Option<String>,
}

/// The business outcome of a discovery body: the app it authenticates, or the HTTP
/// status and body to answer with.
pub(crate) fn check_discovery_body(
    apps: &[AppCredentials],
    body: &[u8],
) -> Result<String, (u16, String)> {
    let req: DiscoveryRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Err((
                400,
                serde_json::json!({"code": 400, "msg": format!("invalid request body: {e}")})
                    .to_string(),
            ))
        }
    };
    let app_id = req.app_id.unwrap_or_default();
    let Some(app) = apps.iter().find(|a| a.app_id == app_id) else {
        return Err((200, error_body(CODE_APP_ID_INVALID, "app_id is invalid")));
    };
    let secret_ok = req.app_secret.as_deref() == Some(app.app_secret.as_str());
    let assertion_empty = req.client_assertion.as_deref().unwrap_or("").is_empty();
    if !secret_ok || !assertion_empty {
        return Err((200, error_body(CODE_AUTH_FAILED, "auth failed")));
    }
    Ok(app.app_id.clone())
}

/// A business error: HTTP 200, a non-zero code, and `data.URL` empty as Feishu sends it.
pub(crate) fn error_body(code: i64, msg: &str) -> String {
    serde_json::json!({"code": code, "msg": msg, "data": {"URL": ""}}).to_string()
}

fn success_body(url: &str, config: &ClientConfig) -> String {
    serde_json::json!({
        "code": CODE_OK,
        "msg": "ok",
        "data": {"URL": url, "ClientConfig": config},
    })
    .to_string()
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        514 => "Handshake Failed",
        _ => "Unknown",
    }
}

/// A complete HTTP/1.1 response.
pub(crate) fn response(
    status: u16,
    extra_headers: &[(&str, String)],
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in extra_headers {
        // Header values come from tests; strip CR/LF so they cannot split the response.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn json_response(status: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    response(
        status,
        &[],
        "application/json; charset=utf-8",
        body.as_bytes(),
        keep_alive,
    )
}

/// The refusal of a handshake, with the `Handshake-*` headers.
pub(crate) fn rejection_response(r: &HandshakeRejection) -> Vec<u8> {
    let mut headers: Vec<(&str, String)> = Vec::new();
    if let Some(s) = r.handshake_status {
        headers.push(("Handshake-Status", s.to_string()));
    }
    if let Some(m) = &r.msg {
        headers.push(("Handshake-Msg", m.clone()));
    }
    if let Some(c) = r.autherrcode {
        headers.push(("Handshake-Autherrcode", c.to_string()));
    }
    response(r.http_status, &headers, "", b"", false)
}

/// Random lowercase hex of `bytes` bytes.
fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        out.push_str(&format!("{:02x}", rand::random::<u8>()));
    }
    out
}

/// A ticket shaped like a UUID (8-4-4-4-12 hex), as seen in Feishu URLs.
fn random_ticket() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Issues a fresh URL (new device id, access key and single-use ticket) for `app_id`.
pub(crate) fn issue_url(inner: &Inner, app_id: &str) -> String {
    // A device id is a large positive decimal in real URLs; keep it within i64 for
    // clients that parse it as a signed number.
    let device_id = (rand::random::<u64>() >> 1).max(1).to_string();
    let access_key = random_hex(16);
    let ticket = random_ticket();
    let scheme = if inner.tls.is_some() { "wss" } else { "ws" };
    let url = format!(
        "{scheme}://{}{WS_PATH}?fpid=493&aid=552564&device_id={device_id}&access_key={access_key}&service_id={}&ticket={ticket}",
        inner.url_authority, inner.service_id
    );
    inner.lock().tickets.insert(
        ticket,
        Ticket {
            app_id: app_id.to_string(),
            device_id,
            access_key,
            used: false,
        },
    );
    url
}

pub(crate) fn spawn_accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let guard = inner.task_guard();
    tokio::spawn(async move {
        let _guard = guard;
        loop {
            tokio::select! {
                _ = inner.shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        // Acks and pushes are small and latency-sensitive: no Nagle.
                        let _ = stream.set_nodelay(true);
                        let inner2 = inner.clone();
                        let guard = inner.task_guard();
                        tokio::spawn(async move {
                            let _guard = guard;
                            let token = inner2.shutdown.clone();
                            tokio::select! {
                                _ = token.cancelled() => {}
                                _ = serve_tcp(inner2, stream) => {}
                            }
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        emu_debug!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
    });
}

/// TLS first when serving `https`/`wss`, then HTTP. A client that rejects the
/// certificate (or is not TLS at all) just ends here.
async fn serve_tcp(inner: Arc<Inner>, stream: TcpStream) {
    let stream = match inner.tls.clone() {
        None => tokio_util::either::Either::Left(stream),
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(s) => tokio_util::either::Either::Right(Box::new(s)),
            Err(e) => {
                emu_debug!("TLS handshake failed: {e}");
                inner.lock().stats.tls_handshake_failures += 1;
                return;
            }
        },
    };
    serve_socket(inner, stream).await
}

/// Reads until a full head is buffered. `Ok(None)` on a clean EOF between requests.
async fn read_head(stream: &mut EmuStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Head>> {
    loop {
        match parse_head(buf) {
            Ok(Some((head, len))) => {
                buf.drain(..len);
                return Ok(Some(head));
            }
            Ok(None) => {}
            Err(HeadError::Malformed(why)) => {
                let _ = stream
                    .write_all(&json_response(
                        400,
                        &serde_json::json!({"code": 400, "msg": why}).to_string(),
                        false,
                    ))
                    .await;
                return Ok(None);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

enum BodyError {
    Io,
    Status(u16, &'static str),
}

/// Reads the request body (Content-Length or chunked) out of `buf` and the socket.
async fn read_body(
    stream: &mut EmuStream,
    buf: &mut Vec<u8>,
    head: &Head,
) -> Result<Vec<u8>, BodyError> {
    if head
        .header("transfer-encoding")
        .is_some_and(|v| has_token(v, "chunked"))
    {
        return read_chunked(stream, buf).await;
    }
    let len = match head.header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| BodyError::Status(400, "bad content-length"))?,
    };
    if len > MAX_BODY {
        return Err(BodyError::Status(413, "body too large"));
    }
    while buf.len() < len {
        fill(stream, buf).await?;
    }
    Ok(buf.drain(..len).collect())
}

async fn fill(stream: &mut EmuStream, buf: &mut Vec<u8>) -> Result<(), BodyError> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => Err(BodyError::Io),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

async fn read_chunked(stream: &mut EmuStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if buf.len() > MAX_HEAD {
                return Err(BodyError::Status(400, "bad chunk"));
            }
            fill(stream, buf).await?;
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| BodyError::Status(400, "bad chunk size"))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Skip trailers up to the blank line.
            loop {
                if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                    let blank = p == 0;
                    buf.drain(..p + 2);
                    if blank {
                        return Ok(body);
                    }
                    continue;
                }
                fill(stream, buf).await?;
            }
        }
        // Written so a hostile size (up to usize::MAX) cannot overflow.
        if size > MAX_BODY - body.len() {
            return Err(BodyError::Status(413, "body too large"));
        }
        while buf.len() < size + 2 {
            fill(stream, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// Waits until the peer goes away (or the emulator closes, via the caller's select):
/// the "never answer" faults.
async fn hang(stream: &mut EmuStream) {
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Serves HTTP requests on one socket until it closes or turns into a WebSocket.
async fn serve_socket(inner: Arc<Inner>, mut stream: EmuStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let head = match read_head(&mut stream, &mut buf).await {
            Ok(Some(h)) => h,
            _ => return,
        };
        let keep_alive = !head.wants_close();
        let path = head.path().to_string();
        if path == WS_PATH && head.method == "GET" && head.is_websocket_upgrade() {
            handshake(inner, stream, head, buf).await;
            return;
        }
        // Every other request may carry a body that must be consumed to keep the
        // socket usable for the next request.
        let body = match read_body(&mut stream, &mut buf, &head).await {
            Ok(b) => b,
            Err(BodyError::Io) => return,
            Err(BodyError::Status(status, why)) => {
                let msg = serde_json::json!({"code": status, "msg": why}).to_string();
                let _ = stream.write_all(&json_response(status, &msg, false)).await;
                return;
            }
        };
        let reply = if path == ENDPOINT_PATH {
            if head.method != "POST" {
                json_response(
                    405,
                    r#"{"code":405,"msg":"method not allowed"}"#,
                    keep_alive,
                )
            } else {
                match discovery(&inner, &body).await {
                    Some(r) => finish(r, keep_alive),
                    None => {
                        hang(&mut stream).await;
                        return;
                    }
                }
            }
        } else if path == WS_PATH {
            json_response(
                400,
                r#"{"code":400,"msg":"expected a WebSocket upgrade"}"#,
                keep_alive,
            )
        } else {
            json_response(404, r#"{"code":404,"msg":"not found"}"#, keep_alive)
        };
        if stream.write_all(&reply).await.is_err() || !keep_alive {
            return;
        }
    }
}

/// A discovery answer before the keep-alive decision: (status, content type, body).
struct Reply(u16, &'static str, String);

fn finish(r: Reply, keep_alive: bool) -> Vec<u8> {
    response(r.0, &[], r.1, r.2.as_bytes(), keep_alive)
}

const JSON: &str = "application/json; charset=utf-8";

/// Answers one discovery request; `None` means "hang".
async fn discovery(inner: &Arc<Inner>, body: &[u8]) -> Option<Reply> {
    let fault = {
        let mut st = inner.lock();
        st.stats.discovery_calls += 1;
        let f = st.faults.take_discovery();
        if f.is_some() {
            st.stats.discovery_faults += 1;
        }
        f
    };
    match fault {
        Some(DiscoveryFaultKind::Hang) => return None,
        Some(DiscoveryFaultKind::Code { code, msg }) => {
            return Some(Reply(200, JSON, error_body(code, &msg)))
        }
        Some(DiscoveryFaultKind::HttpStatus(status)) => {
            let body = serde_json::json!({"code": status, "msg": reason(status)}).to_string();
            return Some(Reply(status, JSON, body));
        }
        Some(DiscoveryFaultKind::Body(raw)) => return Some(Reply(200, JSON, raw)),
        Some(DiscoveryFaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(DiscoveryFaultKind::Url(url)) => {
            let config = inner.lock().client_config;
            return Some(Reply(200, JSON, success_body(&url, &config)));
        }
        None => {}
    }
    match check_discovery_body(&inner.apps, body) {
        Err((status, body)) => Some(Reply(status, JSON, body)),
        Ok(app_id) => {
            let url = issue_url(inner, &app_id);
            let config = inner.lock().client_config;
            Some(Reply(200, JSON, success_body(&url, &config)))
        }
    }
}

/// The query parameters a handshake is checked against.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct WsQuery {
    pub(crate) device_id: String,
    pub(crate) access_key: String,
    pub(crate) ticket: String,
}

pub(crate) fn parse_ws_query(query: &str) -> WsQuery {
    let mut q = WsQuery::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "device_id" => q.device_id = v.into_owned(),
            "access_key" => q.access_key = v.into_owned(),
            "ticket" => q.ticket = v.into_owned(),
            _ => {}
        }
    }
    q
}

/// Checks a handshake's ticket and marks it used. Returns the app id, or `None` when
/// the ticket is unknown, already used or does not match the device id / access key.
pub(crate) fn redeem_ticket(
    tickets: &mut std::collections::HashMap<String, Ticket>,
    q: &WsQuery,
) -> Option<String> {
    let t = tickets.get_mut(&q.ticket)?;
    if t.used || t.device_id != q.device_id || t.access_key != q.access_key {
        return None;
    }
    t.used = true;
    Some(t.app_id.clone())
}

async fn reject(inner: &Inner, stream: &mut EmuStream, r: &HandshakeRejection) {
    inner.lock().stats.handshakes_rejected += 1;
    let _ = stream.write_all(&rejection_response(r)).await;
    let _ = stream.shutdown().await;
}

async fn handshake(inner: Arc<Inner>, mut stream: EmuStream, head: Head, leftover: Vec<u8>) {
    let query = parse_ws_query(head.query());
    let fault = inner.lock().faults.take_handshake();
    match &fault {
        Some(HandshakeFault::Reject(r)) => {
            reject(&inner, &mut stream, r).await;
            return;
        }
        Some(HandshakeFault::Hang) => {
            hang(&mut stream).await;
            return;
        }
        _ => {}
    }
    let Some(key) = head.header("sec-websocket-key").map(str::to_string) else {
        let r = HandshakeRejection {
            http_status: 400,
            handshake_status: None,
            msg: Some("missing Sec-WebSocket-Key".into()),
            autherrcode: None,
        };
        reject(&inner, &mut stream, &r).await;
        return;
    };
    let accept_and_close = matches!(fault, Some(HandshakeFault::AcceptAndClose));

    // Ticket check, limit check and registration happen under one lock, so concurrent
    // handshakes cannot exceed the per-app limit.
    let registered = {
        let mut st = inner.lock();
        match redeem_ticket(&mut st.tickets, &query) {
            None => Err(HandshakeRejection {
                http_status: 514,
                handshake_status: Some(514),
                msg: Some("invalid ticket".into()),
                autherrcode: None,
            }),
            Some(app_id) => {
                let live = st.conns.get(&app_id).map_or(0, Vec::len);
                if live >= inner.max_connections_per_app {
                    Err(HandshakeRejection {
                        http_status: 514,
                        handshake_status: Some(514),
                        msg: Some("the number of connections exceeded the limit".into()),
                        autherrcode: Some(AUTHERR_CONN_LIMIT),
                    })
                } else if st.closed {
                    Err(HandshakeRejection {
                        http_status: 503,
                        handshake_status: None,
                        msg: Some("shutting down".into()),
                        autherrcode: None,
                    })
                } else {
                    st.stats.handshakes += 1;
                    if accept_and_close {
                        Ok(None)
                    } else {
                        let (handle, rx) = conn_handle::ConnHandle::new(
                            query.device_id.clone(),
                            app_id.clone(),
                            inner.service_id,
                        );
                        st.stats.connections_total += 1;
                        st.conns.entry(app_id).or_default().push(handle.clone());
                        Ok(Some((handle, rx)))
                    }
                }
            }
        }
    };
    let conn = match registered {
        Err(r) => {
            emu_debug!("handshake refused: {:?}", r.msg);
            reject(&inner, &mut stream, &r).await;
            return;
        }
        Ok(c) => c,
    };
    // From here on the connection is in the live set; the guard takes it out again
    // however this function ends (including cancellation at shutdown).
    let conn = conn.map(|(handle, rx)| (connection::Registration::new(inner.clone(), handle), rx));
    let accept = derive_accept_key(key.as_bytes());
    let head_101 = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(head_101.as_bytes()).await.is_err() {
        return;
    }
    let ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, None).await;
    match conn {
        None => connection::close_at_once(ws).await,
        Some((registration, rx)) => connection::run(inner, registration, rx, ws).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> Vec<AppCredentials> {
        vec![AppCredentials {
            app_id: "cli_a1b2c3d4e5f60718".into(),
            app_secret: "s3cret".into(),
        }]
    }

    #[test]
    fn parses_a_discovery_request_head() {
        let raw = b"POST /callback/ws/endpoint HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nLocale: zh\r\nContent-Length: 2\r\n\r\n{}";
        let (head, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path(), "/callback/ws/endpoint");
        assert_eq!(head.header("locale"), Some("zh"));
        assert_eq!(head.header("content-length"), Some("2"));
        assert_eq!(&raw[len..], b"{}");
        assert!(!head.wants_close());
    }

    #[test]
    fn partial_and_garbage_heads() {
        assert_eq!(
            parse_head(b"POST /callback/ws/endpoint HTTP/1.1\r\nHo"),
            Ok(None)
        );
        assert!(parse_head(b"\x16\x03\x01\x02\x00 hello tls\r\n\r\n").is_err());
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert!(parse_head(&huge).is_err());
    }

    #[test]
    fn query_of_an_issued_url() {
        let raw = b"GET /ws/v2?fpid=493&aid=552564&device_id=42&access_key=abc&service_id=7&ticket=t-1 HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        let (head, _) = parse_head(raw).unwrap().unwrap();
        assert!(head.is_websocket_upgrade());
        assert_eq!(head.path(), "/ws/v2");
        let q = parse_ws_query(head.query());
        assert_eq!(
            q,
            WsQuery {
                device_id: "42".into(),
                access_key: "abc".into(),
                ticket: "t-1".into()
            }
        );
    }

    #[test]
    fn discovery_body_checks() {
        let ok = check_discovery_body(
            &apps(),
            br#"{"AppID":"cli_a1b2c3d4e5f60718","AppSecret":"s3cret"}"#,
        );
        assert_eq!(ok, Ok("cli_a1b2c3d4e5f60718".to_string()));
        let ok_empty_assertion = check_discovery_body(
            &apps(),
            br#"{"AppID":"cli_a1b2c3d4e5f60718","AppSecret":"s3cret","ClientAssertion":""}"#,
        );
        assert!(ok_empty_assertion.is_ok());

        let (status, body) = check_discovery_body(
            &apps(),
            br#"{"AppID":"cli_a1b2c3d4e5f60718","AppSecret":"wrong"}"#,
        )
        .unwrap_err();
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], 514);
        assert_eq!(v["msg"], "auth failed");
        assert_eq!(v["data"]["URL"], "");

        let (_, body) = check_discovery_body(
            &apps(),
            br#"{"AppID":"cli_0000000000000000","AppSecret":"x"}"#,
        )
        .unwrap_err();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], 1_000_040_346i64);

        let (status, _) = check_discovery_body(&apps(), b"{not json").unwrap_err();
        assert_eq!(status, 400);
    }

    #[test]
    fn tickets_are_single_use_and_bound_to_the_url() {
        let mut tickets = std::collections::HashMap::new();
        tickets.insert(
            "t".to_string(),
            Ticket {
                app_id: "a".into(),
                device_id: "1".into(),
                access_key: "k".into(),
                used: false,
            },
        );
        let wrong_key = WsQuery {
            device_id: "1".into(),
            access_key: "x".into(),
            ticket: "t".into(),
        };
        assert_eq!(redeem_ticket(&mut tickets, &wrong_key), None);
        let good = WsQuery {
            device_id: "1".into(),
            access_key: "k".into(),
            ticket: "t".into(),
        };
        assert_eq!(redeem_ticket(&mut tickets, &good), Some("a".into()));
        assert_eq!(redeem_ticket(&mut tickets, &good), None);
        let unknown = WsQuery {
            ticket: "nope".into(),
            ..good
        };
        assert_eq!(redeem_ticket(&mut tickets, &unknown), None);
    }

    #[test]
    fn rejection_carries_handshake_headers() {
        let bytes = rejection_response(&HandshakeRejection {
            http_status: 514,
            handshake_status: Some(514),
            msg: Some("the number of connections exceeded the limit\r\nX: y".into()),
            autherrcode: Some(AUTHERR_CONN_LIMIT),
        });
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 514 "));
        assert!(text.contains("Handshake-Status: 514\r\n"));
        assert!(text.contains("Handshake-Autherrcode: 1000040350\r\n"));
        assert!(
            text.contains("Handshake-Msg: the number of connections exceeded the limitX: y\r\n")
        );
    }

    #[test]
    fn tickets_look_like_uuids() {
        let t = random_ticket();
        assert_eq!(t.len(), 36);
        assert_eq!(t.matches('-').count(), 4);
    }
}
