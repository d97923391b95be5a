//! Endpoint discovery run by the embedder instead of natively (the `discover` option).
//!
//! The native path ([`super::endpoint::discover`]) is the default. An embedder that must
//! send discovery through its own HTTP stack (the compat `WSClient` honouring an SDK
//! `httpInstance`, which may rewrite the URL, add headers or go through a proxy agent
//! Rust cannot use) hands in a [`DiscoveryHook`]. The core still builds the request, bounds
//! the exchange by the discovery timeout and classifies the answer exactly as it does its
//! own: only the transport of the request changes hands.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::endpoint::{parse_response, DiscoveryRequest, Endpoint};
use super::error::{ErrorCode, TransportError};

/// The request the native path would send, for the hook to send instead.
#[derive(Clone, PartialEq, Eq)]
pub struct DiscoveryCall {
    /// `{domain}/callback/ws/endpoint`.
    pub url: String,
    /// Header names and values, as the native request sends them.
    pub headers: Vec<(String, String)>,
    /// The JSON body: `{"AppID":…,"AppSecret":…}` (secret: never logged).
    pub body: String,
    /// The whole exchange's budget; the core also enforces it.
    pub timeout: Duration,
}

impl std::fmt::Debug for DiscoveryCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body carries the app secret.
        f.debug_struct("DiscoveryCall")
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a hook's exchange yields: the response body (JSON text), or why it failed.
pub type DiscoveryFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Sends a discovery request on the transport's behalf. Called once per connect attempt,
/// from the run's task; the future may complete on any thread.
pub trait DiscoveryHook: Send + Sync {
    fn discover(&self, call: DiscoveryCall) -> DiscoveryFuture;
}

/// A hook held by the configuration (which is `Clone` and `Debug`).
#[derive(Clone)]
pub struct SharedDiscoveryHook(pub Arc<dyn DiscoveryHook>);

impl SharedDiscoveryHook {
    pub fn get(&self) -> &dyn DiscoveryHook {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for SharedDiscoveryHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiscoveryHook")
    }
}

/// The most of a hook's failure text kept before it is scrubbed and cut again by the
/// error type: a JS error can be arbitrarily long.
const MAX_FAILURE_CHARS: usize = 2_000;

/// Runs one discovery through `hook`, with the native path's timeout and classification.
pub async fn discover_with(
    hook: &dyn DiscoveryHook,
    req: &DiscoveryRequest<'_>,
) -> Result<Endpoint, TransportError> {
    let call = DiscoveryCall {
        url: req.domain.endpoint_url(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("User-Agent".into(), req.user_agent.into()),
            ("locale".into(), "zh".into()),
        ],
        body: serde_json::json!({ "AppID": req.app_id, "AppSecret": req.app_secret }).to_string(),
        timeout: req.timeout,
    };
    match tokio::time::timeout(req.timeout, hook.discover(call)).await {
        Err(_) => Err(TransportError::recoverable(
            ErrorCode::DiscoveryTimeout,
            format!(
                "endpoint discovery through the discover option did not answer within {} ms",
                req.timeout.as_millis()
            ),
        )),
        Ok(Err(why)) => Err(TransportError::recoverable(
            ErrorCode::DiscoveryFailed,
            format!(
                "endpoint discovery through the discover option failed: {}",
                scrub(&why, req.app_secret)
            ),
        )),
        // The hook has no HTTP status to give: a non-2xx answer is its failure. A plain
        // `ws://` socket URL stays as strict as on the native path (an `http://` domain).
        Ok(Ok(body)) => parse_response(200, body.as_bytes(), req.domain.allows_plain()),
    }
}

/// The hook's failure text without the app secret, before anything cuts it (a cut first
/// could leave a prefix of the secret that no longer matches), then bounded.
fn scrub(why: &str, secret: &str) -> String {
    let text = if secret.chars().count() >= 4 {
        why.replace(secret, "[redacted]")
    } else {
        why.to_string()
    };
    let text = if text.trim().is_empty() {
        "no reason given".to_string()
    } else {
        text
    };
    text.chars().take(MAX_FAILURE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::endpoint::Domain;
    use crate::core::proxy::ProxyMode;
    use std::sync::Mutex;

    /// Answers with a fixed result and records the calls it got.
    struct Fixed {
        answer: Result<String, String>,
        delay: Duration,
        calls: Arc<Mutex<Vec<DiscoveryCall>>>,
    }

    impl DiscoveryHook for Fixed {
        fn discover(&self, call: DiscoveryCall) -> DiscoveryFuture {
            self.calls.lock().unwrap().push(call);
            let answer = self.answer.clone();
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                answer
            })
        }
    }

    const OK: &str = r#"{"code":0,"data":{"URL":"wss://x.example/ws/v2?device_id=d1&service_id=7","ClientConfig":{"PingInterval":90}}}"#;
    const SECRET: &str = "app-secret-0123456789";

    async fn run(
        domain: &str,
        answer: Result<String, String>,
        delay: Duration,
    ) -> (Result<Endpoint, TransportError>, Vec<DiscoveryCall>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let hook = Fixed {
            answer,
            delay,
            calls: calls.clone(),
        };
        let domain = Domain::parse(Some(domain)).unwrap();
        let req = DiscoveryRequest {
            domain: &domain,
            app_id: "cli_a1b2c3d4e5f60718",
            app_secret: SECRET,
            user_agent: "ua/1",
            timeout: Duration::from_millis(200),
            proxy: &ProxyMode::Direct,
            proxy_timeout: Duration::from_millis(200),
        };
        let out = discover_with(&hook, &req).await;
        let calls = calls.lock().unwrap().clone();
        (out, calls)
    }

    #[tokio::test]
    async fn the_hook_gets_the_native_request_and_its_answer_is_classified_natively() {
        let (out, calls) = run(
            "https://open.example.com/prefix",
            Ok(OK.into()),
            Duration::ZERO,
        )
        .await;
        let ep = out.unwrap();
        assert_eq!(ep.service_id, 7);
        assert_eq!(ep.config.ping_interval, Some(Duration::from_secs(90)));
        let call = &calls[0];
        assert_eq!(
            call.url,
            "https://open.example.com/prefix/callback/ws/endpoint"
        );
        let body: serde_json::Value = serde_json::from_str(&call.body).unwrap();
        assert_eq!(body["AppSecret"], SECRET);
        assert!(call
            .headers
            .contains(&("User-Agent".to_string(), "ua/1".to_string())));
        assert!(
            !format!("{call:?}").contains(SECRET),
            "Debug hides the body"
        );
        // A code the platform sends is classified as on the native path.
        let (out, _) = run(
            "feishu",
            Ok(r#"{"code":514,"msg":"auth failed"}"#.into()),
            Duration::ZERO,
        )
        .await;
        let e = out.unwrap_err();
        assert_eq!((e.code, e.terminal), (ErrorCode::AuthFailed, true));
    }

    #[tokio::test]
    async fn a_failing_hook_is_a_recoverable_discovery_failure_without_the_secret() {
        // The secret starts 20 characters before the 500-character cut, outside any
        // `key=value` form the pattern redaction would catch.
        let lead = "endpoint discovery through the discover option failed: ".len();
        let why = format!("{} echo {SECRET} tail", "x".repeat(480 - lead - 6));
        let (out, _) = run("feishu", Err(why), Duration::ZERO).await;
        let e = out.unwrap_err();
        assert_eq!((e.code, e.terminal), (ErrorCode::DiscoveryFailed, false));
        // Scrubbed before the error type cuts it at 500 characters: no prefix survives.
        assert!(!e.message.contains(&SECRET[..5]), "{}", e.message);
        let (out, _) = run("feishu", Err("  ".into()), Duration::ZERO).await;
        assert!(out.unwrap_err().message.contains("no reason given"));
    }

    #[tokio::test]
    async fn a_slow_hook_times_out_and_plain_sockets_stay_refused_for_https_domains() {
        let (out, _) = run("feishu", Ok(OK.into()), Duration::from_secs(5)).await;
        assert_eq!(out.unwrap_err().code, ErrorCode::DiscoveryTimeout);
        let plain = r#"{"code":0,"data":{"URL":"ws://x.example/ws/v2"}}"#;
        let (out, _) = run("feishu", Ok(plain.into()), Duration::ZERO).await;
        assert_eq!(out.unwrap_err().code, ErrorCode::ProtocolError);
        let (out, _) = run("http://127.0.0.1:1", Ok(plain.into()), Duration::ZERO).await;
        assert!(out.is_ok());
    }
}
