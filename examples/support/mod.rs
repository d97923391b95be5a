//! What the example clients share: discovery and the plain `ws://` socket, the least a
//! client needs to reach the emulator.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;

/// Endpoint discovery as one raw HTTP/1.1 POST to `authority` (`host:port`); returns the
/// socket URL.
pub async fn discover(authority: &str, app_id: &str, app_secret: &str) -> String {
    let body = serde_json::json!({ "AppID": app_id, "AppSecret": app_secret }).to_string();
    let req = format!(
        "POST /callback/ws/endpoint HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(authority).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let json = raw.split("\r\n\r\n").nth(1).expect("a body");
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
    v["data"]["URL"].as_str().expect("a URL").to_string()
}

/// Opens the `ws://` socket of `url`, with `TCP_NODELAY` (acks are tiny).
pub async fn connect(url: &str) -> WebSocketStream<TcpStream> {
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("authority")
        .to_string();
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    tcp.set_nodelay(true).expect("nodelay");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("handshake");
    ws
}
