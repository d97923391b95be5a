//! Endpoint discovery: `POST {domain}/callback/ws/endpoint` with the app credentials,
//! answered with a one-time WebSocket URL and the server's client config
//! (docs/PROTOCOL.md §2). The only authenticated step of the protocol; a fresh URL is
//! fetched before every connect.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::error::{ErrorCode, TransportError};
use super::net;
use super::proxy::ProxyMode;

pub const FEISHU_DOMAIN: &str = "https://open.feishu.cn";
pub const LARK_DOMAIN: &str = "https://open.larksuite.com";
const ENDPOINT_PATH: &str = "/callback/ws/endpoint";

/// Discovery codes the platform uses (docs/PROTOCOL.md §2 "Codes").
pub mod codes {
    pub const OK: i64 = 0;
    pub const SYSTEM_BUSY: i64 = 1;
    pub const FORBIDDEN: i64 = 403;
    pub const AUTH_FAILED: i64 = 514;
    pub const INTERNAL_ERROR: i64 = 1_000_040_343;
    pub const INVALID_CREDENTIALS: i64 = 1_000_040_345;
    pub const INVALID_APP_ID: i64 = 1_000_040_346;
    pub const CONNECTION_LIMIT: i64 = 1_000_040_350;
    pub const WRONG_DOMAIN: i64 = 1_000_040_351;
}

/// The base URL the caller chose: `'feishu'`, `'lark'`, or any `http(s)://` URL (a path
/// prefix of a private deployment is kept; a trailing slash is tolerated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    base: String,
}

impl Domain {
    pub fn parse(domain: Option<&str>) -> Result<Domain, TransportError> {
        let raw = match domain.map(str::trim) {
            None => "feishu",
            // An empty domain is a missing environment variable, not a wish for Feishu's
            // production servers.
            Some("") => {
                return Err(TransportError::invalid_config(
                    "domain must be 'feishu', 'lark' or an http(s) URL, got an empty string (leave it out for 'feishu')",
                ))
            }
            Some(d) => d,
        };
        let base = match raw.to_ascii_lowercase().as_str() {
            "feishu" => FEISHU_DOMAIN.to_string(),
            "lark" | "larksuite" => LARK_DOMAIN.to_string(),
            _ => {
                // The value is not quoted: a URL may carry credentials, and saying what is
                // wrong is enough to fix it.
                let url = url::Url::parse(raw).map_err(|e| {
                    TransportError::invalid_config(format!(
                        "domain must be 'feishu', 'lark' or an http(s) URL; it does not parse as a URL ({e})"
                    ))
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(TransportError::invalid_config(format!(
                        "domain must be 'feishu', 'lark' or an http(s) URL, got a {}: URL",
                        url.scheme()
                    )));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(TransportError::invalid_config(
                        "domain must not carry a query or fragment",
                    ));
                }
                // The scheme as parsed (lower case): `HTTP://` is `http://`, and whether
                // plain ws:// is allowed is decided on this text.
                let rest = &raw[raw.find(':').map_or(0, |i| i + 1)..];
                format!("{}:{}", url.scheme(), rest.trim_end_matches('/'))
            }
        };
        Ok(Domain { base })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn endpoint_url(&self) -> String {
        format!("{}{}", self.base, ENDPOINT_PATH)
    }

    /// Plain `ws://` socket URLs are accepted only for a domain the caller named as plain
    /// `http://` (the emulator, tests): production URLs must be TLS.
    pub fn allows_plain(&self) -> bool {
        self.base.starts_with("http://")
    }
}

/// The server's connection settings (`ClientConfig`), converted from seconds. A missing,
/// zero or negative value is `None`, meaning "keep what you have" (docs/PROTOCOL.md §2,
/// §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerConfig {
    pub ping_interval: Option<Duration>,
    /// Reported only: the server's count never stops our loop (docs/PROTOCOL.md §8).
    pub reconnect_count: Option<i64>,
    pub reconnect_interval: Option<Duration>,
    pub reconnect_nonce: Option<Duration>,
}

#[derive(Deserialize, Default)]
struct RawClientConfig {
    #[serde(rename = "PingInterval", default)]
    ping_interval: Option<serde_json::Value>,
    #[serde(rename = "ReconnectCount", default)]
    reconnect_count: Option<serde_json::Value>,
    #[serde(rename = "ReconnectInterval", default)]
    reconnect_interval: Option<serde_json::Value>,
    #[serde(rename = "ReconnectNonce", default)]
    reconnect_nonce: Option<serde_json::Value>,
}

fn positive_secs(v: &Option<serde_json::Value>) -> Option<Duration> {
    let secs = v.as_ref()?.as_f64()?;
    // The platform sends whole seconds. Anything under one second is treated as garbage
    // (a 1e-300 PingInterval would otherwise become a zero-length ping loop), and a
    // huge value is capped at a day so it cannot park the ping loop forever.
    (secs.is_finite() && secs >= 1.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

impl ServerConfig {
    fn from_raw(raw: &RawClientConfig) -> ServerConfig {
        ServerConfig {
            ping_interval: positive_secs(&raw.ping_interval),
            reconnect_count: raw
                .reconnect_count
                .as_ref()
                .and_then(|v| v.as_i64())
                .filter(|n| *n != 0),
            reconnect_interval: positive_secs(&raw.reconnect_interval),
            reconnect_nonce: positive_secs(&raw.reconnect_nonce),
        }
    }

    /// Parses a pong payload. `None` when it is not a JSON object.
    pub fn from_pong(payload: &[u8]) -> Option<ServerConfig> {
        // serde would also read a struct from a JSON array; only an object is a config.
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        if !value.is_object() {
            return None;
        }
        let raw: RawClientConfig = serde_json::from_value(value).ok()?;
        Some(ServerConfig::from_raw(&raw))
    }

    /// Overlays the valid values of `newer` on `self`.
    pub fn merge(&mut self, newer: &ServerConfig) {
        if newer.ping_interval.is_some() {
            self.ping_interval = newer.ping_interval;
        }
        if newer.reconnect_count.is_some() {
            self.reconnect_count = newer.reconnect_count;
        }
        if newer.reconnect_interval.is_some() {
            self.reconnect_interval = newer.reconnect_interval;
        }
        if newer.reconnect_nonce.is_some() {
            self.reconnect_nonce = newer.reconnect_nonce;
        }
    }
}

/// A discovered socket: the URL (secret: it embeds `access_key` and `ticket`), the
/// `service_id` pings must carry, and the connection id for logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub service_id: i32,
    pub device_id: Option<String>,
    pub config: ServerConfig,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &super::redact::redact_url(&self.url))
            .field("service_id", &self.service_id)
            .field("device_id", &self.device_id)
            .field("config", &self.config)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawResponse {
    code: Option<i64>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    data: Option<RawData>,
}

#[derive(Deserialize)]
struct RawData {
    #[serde(rename = "URL", default)]
    url: Option<String>,
    #[serde(rename = "ClientConfig", default)]
    client_config: Option<RawClientConfig>,
}

/// Classifies one discovery answer. Pure, so it is fuzzed and unit-tested without a server.
pub fn parse_response(
    http_status: u16,
    body: &[u8],
    allow_plain: bool,
) -> Result<Endpoint, TransportError> {
    if http_status != 200 {
        return Err(TransportError::recoverable(
            ErrorCode::DiscoveryFailed,
            format!("endpoint discovery answered HTTP {http_status}"),
        ));
    }
    let not_object = body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{');
    if not_object {
        return Err(TransportError::recoverable(
            ErrorCode::DiscoveryFailed,
            "endpoint discovery answered a body that is not a JSON object",
        ));
    }
    let raw: RawResponse = serde_json::from_slice(body).map_err(|e| {
        TransportError::recoverable(
            ErrorCode::DiscoveryFailed,
            format!("endpoint discovery answered a body that is not the expected JSON: {e}"),
        )
    })?;
    let code = raw.code.ok_or_else(|| {
        TransportError::recoverable(
            ErrorCode::DiscoveryFailed,
            "endpoint discovery answered JSON without a code",
        )
    })?;
    let msg = raw.msg.unwrap_or_default();
    if code != codes::OK {
        return Err(classify_code(code, &msg));
    }
    let data = raw.data.unwrap_or(RawData {
        url: None,
        client_config: None,
    });
    let url = data.url.unwrap_or_default();
    let parsed = url::Url::parse(&url).map_err(|_| {
        TransportError::recoverable(
            ErrorCode::ProtocolError,
            if url.is_empty() {
                "endpoint discovery returned code 0 but no URL".to_string()
            } else {
                "endpoint discovery returned a URL that does not parse".to_string()
            },
        )
    })?;
    match parsed.scheme() {
        "wss" => {}
        "ws" if allow_plain => {}
        other => {
            return Err(TransportError::recoverable(
                ErrorCode::ProtocolError,
                format!(
                    "endpoint discovery returned a {other}:// URL; expected wss://{}",
                    if allow_plain { " or ws://" } else { "" }
                ),
            ))
        }
    }
    if parsed.host_str().is_none() {
        return Err(TransportError::recoverable(
            ErrorCode::ProtocolError,
            "endpoint discovery returned a URL without a host",
        ));
    }
    let mut service_id = 0;
    let mut device_id = None;
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            // A service_id that does not parse as int32 leaves 0, as the Go SDK does: the
            // server, not us, decides whether such pings are acceptable.
            "service_id" => service_id = v.parse::<i32>().unwrap_or(0),
            "device_id" => device_id = Some(v.into_owned()),
            _ => {}
        }
    }
    let config = data
        .client_config
        .as_ref()
        .map(ServerConfig::from_raw)
        .unwrap_or_default();
    Ok(Endpoint {
        url,
        service_id,
        device_id,
        config,
    })
}

/// Terminal vs recoverable as in docs/PROTOCOL.md §2 "Codes": codes other than 0, 1 and
/// 1000040343 are terminal, except the connection limit, which frees itself.
fn classify_code(code: i64, msg: &str) -> TransportError {
    let text = |what: &str| format!("endpoint discovery failed: {what} (code {code}: {msg})");
    let e = match code {
        codes::SYSTEM_BUSY | codes::INTERNAL_ERROR => {
            TransportError::recoverable(ErrorCode::DiscoveryFailed, text("server busy"))
        }
        codes::CONNECTION_LIMIT => TransportError::recoverable(
            ErrorCode::ConnectionLimit,
            text("too many connections for this app"),
        ),
        codes::AUTH_FAILED | codes::INVALID_CREDENTIALS | codes::INVALID_APP_ID => {
            TransportError::terminal(
                ErrorCode::AuthFailed,
                text("the app id or app secret was rejected"),
            )
        }
        codes::FORBIDDEN => TransportError::terminal(ErrorCode::Forbidden, text("forbidden")),
        codes::WRONG_DOMAIN => TransportError::terminal(
            ErrorCode::InvalidConfig,
            text("the app belongs to the other domain (feishu vs lark)"),
        ),
        _ => TransportError::terminal(ErrorCode::DiscoveryFailed, text("rejected")),
    };
    e.with_feishu_code(code)
}

/// What a discovery request needs.
pub struct DiscoveryRequest<'a> {
    pub domain: &'a Domain,
    pub app_id: &'a str,
    pub app_secret: &'a str,
    pub user_agent: &'a str,
    /// The whole exchange, body included.
    pub timeout: Duration,
    pub proxy: &'a ProxyMode,
    /// How long a proxy may take to open the tunnel (the handshake timeout); capped by
    /// `timeout`.
    pub proxy_timeout: Duration,
}

/// Runs one discovery request: an HTTP/1.1 POST over the connector the socket uses too
/// (same proxy choice, same TLS roots).
pub async fn discover(
    tls: &Arc<rustls::ClientConfig>,
    req: &DiscoveryRequest<'_>,
) -> Result<Endpoint, TransportError> {
    let start = tokio::time::Instant::now();
    let deadline = start + req.timeout;
    // A proxy's silence is reported as PROXY_ERROR. When this deadline is also the outer
    // one, the inner timer still wins: `timeout_at` polls the inner future first.
    let proxy_timeout = req.timeout.min(req.proxy_timeout);
    let proxy_deadline = start + proxy_timeout;
    // The whole exchange, body included, is bounded: a server that sends headers and then
    // stalls must not hang the loop (the Python SDK hung for days: docs/PROTOCOL.md §10).
    match tokio::time::timeout_at(deadline, exchange(tls, req, proxy_deadline, proxy_timeout)).await
    {
        Err(_) => Err(TransportError::recoverable(
            ErrorCode::DiscoveryTimeout,
            format!(
                "endpoint discovery at {} did not answer within {} ms",
                req.domain.base(),
                req.timeout.as_millis()
            ),
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok((status, bytes))) => parse_response(status, &bytes, req.domain.allows_plain()),
    }
}

async fn exchange(
    tls: &Arc<rustls::ClientConfig>,
    req: &DiscoveryRequest<'_>,
    proxy_deadline: tokio::time::Instant,
    proxy_timeout: Duration,
) -> Result<(u16, bytes::Bytes), TransportError> {
    let endpoint = req.domain.endpoint_url();
    let url = url::Url::parse(&endpoint).map_err(|e| {
        TransportError::invalid_config(format!("the discovery URL does not parse: {e}"))
    })?;
    let stream = net::open(
        &url,
        &net::OpenOptions {
            proxy: req.proxy,
            tls,
            proxy_deadline,
            proxy_timeout,
            code: ErrorCode::DiscoveryFailed,
        },
    )
    .await?;
    let body = serde_json::json!({ "AppID": req.app_id, "AppSecret": req.app_secret });
    let failed = |what: String| {
        TransportError::recoverable(
            ErrorCode::DiscoveryFailed,
            format!("endpoint discovery at {} failed: {what}", req.domain.base()),
        )
    };
    let request = hyper::Request::post(&url[url::Position::BeforePath..])
        .header(
            hyper::header::HOST,
            &url[url::Position::BeforeHost..url::Position::AfterPort],
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, req.user_agent)
        .header("locale", "zh")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .map_err(|e| failed(format!("the request could not be built: {e}")))?;
    net::http1_request(stream, request).await.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"code":0,"msg":"ok","data":{"URL":"wss://msg-frontier.feishu.cn/ws/v2?fpid=493&aid=552564&device_id=7599960696613375161&access_key=0123456789abcdef0123456789abcdef&service_id=33554678&ticket=7a1c2e3f-0000-4000-8000-000000000000","ClientConfig":{"PingInterval":120,"ReconnectCount":-1,"ReconnectInterval":120,"ReconnectNonce":30}}}"#;

    #[test]
    fn domains() {
        assert_eq!(Domain::parse(None).unwrap().base(), FEISHU_DOMAIN);
        assert_eq!(Domain::parse(Some("lark")).unwrap().base(), LARK_DOMAIN);
        let d = Domain::parse(Some("https://open.example.com/feishu/")).unwrap();
        assert_eq!(
            d.endpoint_url(),
            "https://open.example.com/feishu/callback/ws/endpoint"
        );
        assert!(!d.allows_plain());
        for upper in ["HTTP://127.0.0.1:1234/", "Http://127.0.0.1:1234"] {
            let d = Domain::parse(Some(upper)).unwrap();
            assert!(d.allows_plain(), "{upper}");
            assert_eq!(d.base(), "http://127.0.0.1:1234");
        }
        for empty in ["", "   "] {
            let e = Domain::parse(Some(empty)).unwrap_err();
            assert!(e.message.contains("empty"), "{}", e.message);
        }
        assert!(Domain::parse(Some("http://127.0.0.1:1234"))
            .unwrap()
            .allows_plain());
        for bad in ["ftp://x", "not a url", "https://x/?a=1", "wss://x"] {
            let e = Domain::parse(Some(bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig, "{bad}");
            assert!(e.terminal);
        }
    }

    #[test]
    fn parses_a_good_answer() {
        let ep = parse_response(200, OK.as_bytes(), false).unwrap();
        assert_eq!(ep.service_id, 33554678);
        assert_eq!(ep.device_id.as_deref(), Some("7599960696613375161"));
        assert_eq!(ep.config.ping_interval, Some(Duration::from_secs(120)));
        assert_eq!(ep.config.reconnect_count, Some(-1));
        // the Debug form is safe to log
        let dbg = format!("{ep:?}");
        assert!(!dbg.contains("0123456789abcdef0123456789abcdef"));
        assert!(!dbg.contains("7a1c2e3f"));
    }

    #[test]
    fn classifies_codes() {
        let case = |code: i64| {
            let body = format!(r#"{{"code":{code},"msg":"m","data":{{"URL":""}}}}"#);
            parse_response(200, body.as_bytes(), false).unwrap_err()
        };
        for (code, want, terminal) in [
            (1, ErrorCode::DiscoveryFailed, false),
            (1_000_040_343, ErrorCode::DiscoveryFailed, false),
            (1_000_040_350, ErrorCode::ConnectionLimit, false),
            (514, ErrorCode::AuthFailed, true),
            (1_000_040_345, ErrorCode::AuthFailed, true),
            (1_000_040_346, ErrorCode::AuthFailed, true),
            (403, ErrorCode::Forbidden, true),
            (1_000_040_351, ErrorCode::InvalidConfig, true),
            (99, ErrorCode::DiscoveryFailed, true),
        ] {
            let e = case(code);
            assert_eq!(
                (e.code, e.terminal, e.feishu_code),
                (want, terminal, Some(code))
            );
        }
    }

    #[test]
    fn bad_answers_are_recoverable() {
        for (status, body, want) in [
            (500, "oops", ErrorCode::DiscoveryFailed),
            (200, "<html>", ErrorCode::DiscoveryFailed),
            (200, "{}", ErrorCode::DiscoveryFailed),
            (
                200,
                r#"{"code":0,"data":{"URL":""}}"#,
                ErrorCode::ProtocolError,
            ),
            (200, r#"{"code":0}"#, ErrorCode::ProtocolError),
            (
                200,
                r#"{"code":0,"data":{"URL":"https://x/ws"}}"#,
                ErrorCode::ProtocolError,
            ),
            (
                200,
                r#"{"code":0,"data":{"URL":"ws://x/ws"}}"#,
                ErrorCode::ProtocolError,
            ),
        ] {
            let e = parse_response(status, body.as_bytes(), false).unwrap_err();
            assert_eq!(e.code, want, "{status} {body}");
            assert!(!e.terminal);
        }
        assert!(parse_response(200, br#"{"code":0,"data":{"URL":"ws://x/ws"}}"#, true).is_ok());
    }

    #[test]
    fn invalid_config_values_are_ignored() {
        assert_eq!(
            ServerConfig::from_pong(br#"{"PingInterval":0.001}"#)
                .unwrap()
                .ping_interval,
            None
        );
        let c = ServerConfig::from_pong(
            br#"{"PingInterval":0,"ReconnectCount":"x","ReconnectInterval":-5,"ReconnectNonce":null}"#,
        )
        .unwrap();
        assert_eq!(c, ServerConfig::default());
        let mut cur = ServerConfig {
            ping_interval: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        cur.merge(&c);
        assert_eq!(cur.ping_interval, Some(Duration::from_secs(120)));
        cur.merge(&ServerConfig::from_pong(br#"{"PingInterval":2}"#).unwrap());
        assert_eq!(cur.ping_interval, Some(Duration::from_secs(2)));
        assert!(ServerConfig::from_pong(b"garbage").is_none());
        assert!(ServerConfig::from_pong(b"[1,2]").is_none());
    }
}
