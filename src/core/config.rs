//! The transport's validated configuration: the options of `index.d.ts`, with the defaults
//! listed in docs/ARCHITECTURE.md "Limits and timeouts".

use std::time::Duration;

use super::backoff::BackoffPolicy;
use super::dedupe::DedupeConfig;
use super::discovery::SharedDiscoveryHook;
use super::endpoint::Domain;
use super::error::TransportError;
use super::fragments::FragmentLimits;
use super::proxy::ProxyMode;
use super::tls::TlsOptions;

/// Severity of a log line; `Silent` only as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Silent,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Silent => "silent",
        }
    }

    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "silent" => LogLevel::Silent,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub discovery: Duration,
    pub handshake: Duration,
    pub pong: Duration,
    pub close: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            discovery: Duration::from_millis(15_000),
            handshake: Duration::from_millis(15_000),
            pong: Duration::from_millis(10_000),
            close: Duration::from_millis(2_000),
        }
    }
}

/// Everything one transport needs, validated by [`TransportConfig::validate`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub app_id: String,
    pub app_secret: String,
    pub domain: Domain,
    /// Appended to `feishu-transport/<version>` in the discovery User-Agent.
    pub user_agent: Option<String>,
    /// `None`: `reconnect: false`; the run ends at the first disconnect.
    pub reconnect: Option<BackoffPolicy>,
    /// Overrides the server's PingInterval.
    pub ping_interval: Option<Duration>,
    pub timeouts: Timeouts,
    pub max_concurrent_handlers: usize,
    /// Sockets held for the app at once (`connections`), each with its own discovery,
    /// liveness and backoff; Feishu delivers each event to one of them.
    pub connections: usize,
    /// A handler that has not settled after this long is given up on: its event is acked
    /// 500 (Feishu re-delivers it), its slot and its dedupe claim are freed, and its late
    /// result is ignored. `None` waits for ever.
    pub handler_timeout: Option<Duration>,
    pub dedupe: Option<DedupeConfig>,
    pub fragment_limits: FragmentLimits,
    pub log_level: LogLevel,
    /// Feishu re-pushes an event whose ack has not come within 3 s; a handler slower than
    /// this is logged so the re-delivery is not a mystery.
    pub slow_handler_warning: Duration,
    /// How long `close()` waits for in-flight handlers unless told otherwise.
    pub default_drain: Duration,
    /// The proxy of discovery and the socket alike.
    pub proxy: ProxyMode,
    /// Extra trusted roots; verification itself is never optional.
    pub tls: TlsOptions,
    /// Sends discovery requests instead of the native client (the `discover` option).
    pub discovery_hook: Option<SharedDiscoveryHook>,
}

pub const DEFAULT_MAX_CONCURRENT_HANDLERS: usize = 256;

/// Feishu's documented limit of long connections per app; a 51st is refused with
/// CONNECTION_LIMIT, so asking for more can never work.
pub const MAX_CONNECTIONS: usize = 50;

/// Long enough for any handler doing real work (a model call, a slow API), short enough
/// that a handler that will never settle gives its slot back within minutes.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest `userAgent`: far above any product token, far below what makes an HTTP
/// server refuse the request.
pub const MAX_USER_AGENT_CHARS: usize = 512;

impl TransportConfig {
    /// A configuration with the documented defaults.
    pub fn new(app_id: impl Into<String>, app_secret: impl Into<String>, domain: Domain) -> Self {
        TransportConfig {
            app_id: app_id.into(),
            app_secret: app_secret.into(),
            domain,
            user_agent: None,
            reconnect: Some(BackoffPolicy::default()),
            ping_interval: None,
            timeouts: Timeouts::default(),
            max_concurrent_handlers: DEFAULT_MAX_CONCURRENT_HANDLERS,
            connections: 1,
            handler_timeout: Some(DEFAULT_HANDLER_TIMEOUT),
            dedupe: Some(DedupeConfig::default()),
            fragment_limits: FragmentLimits::default(),
            log_level: LogLevel::Info,
            slow_handler_warning: Duration::from_secs(3),
            default_drain: Duration::from_millis(5_000),
            // The documented default (`proxy: undefined`): the environment, read now.
            proxy: ProxyMode::from_env(),
            tls: TlsOptions::default(),
            discovery_hook: None,
        }
    }

    /// Literal secrets to hide wherever they might appear: the app secret and any proxy
    /// password.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = vec![self.app_secret.clone()];
        s.extend(self.proxy.secrets());
        // The Redis password of `dedupe.store`, learned like the proxy's.
        s.extend(self.dedupe.iter().flat_map(|d| d.store.secrets()));
        s
    }

    /// Rejects what can never work, before anything connects.
    pub fn validate(&self) -> Result<(), TransportError> {
        if !valid_app_id(&self.app_id) {
            // Never the value itself: appId and appSecret swapped (a common environment
            // mistake) would print the secret here.
            return Err(TransportError::invalid_config(format!(
                "appId must look like cli_ followed by 16 hex digits (the platform's format), got {} (not shown: it may be the app secret; are appId and appSecret swapped?)",
                shape(&self.app_id)
            )));
        }
        if self.app_secret.trim().is_empty() {
            return Err(TransportError::invalid_config(
                "appSecret must not be empty",
            ));
        }
        if self.app_secret.chars().any(char::is_control) {
            return Err(TransportError::invalid_config(format!(
                "appSecret must not contain control characters (a newline, NUL …), got {} (not shown); was it read from a file with its line end?",
                shape(&self.app_secret)
            )));
        }
        if valid_app_id(&self.app_secret) {
            return Err(TransportError::invalid_config(
                "appSecret looks like an app id (cli_ and 16 hex digits): are appId and appSecret swapped?",
            ));
        }
        if let Some(ua) = &self.user_agent {
            let n = ua.chars().count();
            if n > MAX_USER_AGENT_CHARS || !ua.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(TransportError::invalid_config(format!(
                    "userAgent must be at most {MAX_USER_AGENT_CHARS} printable ASCII characters (it becomes an HTTP header), got {}",
                    shape(ua)
                )));
            }
        }
        if let Some(p) = &self.reconnect {
            p.validate()
                .map_err(|e| TransportError::invalid_config(format!("reconnect: {e}")))?;
        }
        if let Some(p) = self.ping_interval {
            if p < Duration::from_millis(100) {
                return Err(TransportError::invalid_config(
                    "pingIntervalMs must be at least 100",
                ));
            }
        }
        let t = &self.timeouts;
        for (name, v) in [
            ("timeouts.discoveryMs", t.discovery),
            ("timeouts.handshakeMs", t.handshake),
            ("timeouts.pongMs", t.pong),
            ("timeouts.closeMs", t.close),
        ] {
            if v.is_zero() {
                return Err(TransportError::invalid_config(format!(
                    "{name} must be greater than 0"
                )));
            }
        }
        if self.max_concurrent_handlers == 0 {
            return Err(TransportError::invalid_config(
                "maxConcurrentHandlers must be at least 1",
            ));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return Err(TransportError::invalid_config(format!(
                "connections must be a whole number between 1 and {MAX_CONNECTIONS} (Feishu's limit per app), got {}",
                self.connections
            )));
        }
        if let Some(d) = &self.dedupe {
            if d.max_entries == 0 || d.ttl.is_zero() {
                return Err(TransportError::invalid_config(
                    "dedupe.ttlMs and dedupe.maxEntries must be greater than 0",
                ));
            }
        }
        // Discovery and (unless the domain is a plain-http emulator) the socket are TLS
        // targets; an unusable proxy variable that applies to them fails here, by name.
        self.proxy.validate(!self.domain.allows_plain())?;
        self.tls.validate()?;
        Ok(())
    }

    /// The discovery User-Agent: ours first, then the caller's.
    pub fn user_agent_header(&self) -> String {
        let ours = concat!("feishu-transport/", env!("CARGO_PKG_VERSION"));
        match self.user_agent.as_deref().map(str::trim) {
            Some(extra) if !extra.is_empty() => {
                // Header values cannot carry control characters.
                let clean: String = extra.chars().filter(|c| !c.is_control()).collect();
                format!("{ours} {clean}")
            }
            _ => ours.to_string(),
        }
    }
}

/// What a rejected value looks like without showing it: its length and the kinds of
/// character in it, e.g. `32 characters (letters, digits)`. Safe to print for a secret.
pub fn shape(value: &str) -> String {
    let n = value.chars().count();
    let mut kinds = Vec::new();
    let mut add = |present: bool, name: &'static str| {
        if present {
            kinds.push(name);
        }
    };
    add(value.chars().any(|c| c.is_ascii_alphabetic()), "letters");
    add(value.chars().any(|c| c.is_ascii_digit()), "digits");
    add(
        value.chars().any(|c| c.is_ascii_punctuation()),
        "punctuation",
    );
    add(value.contains(' '), "spaces");
    add(value.chars().any(|c| c.is_control()), "control characters");
    add(!value.is_ascii(), "non-ASCII");
    let chars = if n == 1 { "character" } else { "characters" };
    if kinds.is_empty() {
        format!("{n} {chars}")
    } else {
        format!("{n} {chars} ({})", kinds.join(", "))
    }
}

/// The SDK's rule: `/^cli_[0-9a-fA-F]{16}$/`.
pub fn valid_app_id(id: &str) -> bool {
    id.len() == 20
        && id.starts_with("cli_")
        && id.as_bytes()[4..].iter().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorCode;

    fn cfg() -> TransportConfig {
        TransportConfig::new(
            "cli_a1b2c3d4e5f60718",
            "s3cret",
            Domain::parse(None).unwrap(),
        )
    }

    #[test]
    fn app_id_rule() {
        assert!(valid_app_id("cli_a1b2c3d4e5f60718"));
        assert!(valid_app_id("cli_A1B2C3D4E5F60718"));
        for bad in [
            "",
            "cli_",
            "cli_a1b2c3d4e5f6071",
            "cli_a1b2c3d4e5f607189",
            "clx_a1b2c3d4e5f60718",
            "cli_g1b2c3d4e5f60718",
        ] {
            assert!(!valid_app_id(bad), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.app_secret = " ".into();
        assert!(c.validate().unwrap_err().message.contains("appSecret"));
        let mut c = cfg();
        c.max_concurrent_handlers = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .message
            .contains("maxConcurrentHandlers"));
        let mut c = cfg();
        c.timeouts.pong = Duration::ZERO;
        assert!(c.validate().unwrap_err().message.contains("pongMs"));
    }

    #[test]
    fn connections_are_one_to_feishus_fifty() {
        for ok in [1, 2, MAX_CONNECTIONS] {
            let mut c = cfg();
            c.connections = ok;
            assert!(c.validate().is_ok(), "{ok}");
        }
        for bad in [0, MAX_CONNECTIONS + 1] {
            let mut c = cfg();
            c.connections = bad;
            let e = c.validate().unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidConfig);
            assert!(
                e.message.contains("connections") && e.message.contains("50"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn rejected_credentials_are_described_never_shown() {
        let secret = "Xq7vR2mK9pL4sT8wY1zB3nC6dF0gH5jA";
        let mut c = cfg();
        (c.app_id, c.app_secret) = (secret.into(), "cli_a1b2c3d4e5f60718".into());
        let e = c.validate().unwrap_err();
        assert!(!e.message.contains(secret), "{}", e.message);
        assert!(
            e.message.contains("32 characters (letters, digits)"),
            "{}",
            e.message
        );
        let mut c = cfg();
        c.app_id = "cli_a1b2c3d4e5f60718".into();
        c.app_secret = "cli_a1b2c3d4e5f60718".into();
        assert!(c.validate().unwrap_err().message.contains("swapped"));
        for bad in ["s3cret-value\n", "s3cret\0value"] {
            let mut c = cfg();
            c.app_secret = bad.into();
            let e = c.validate().unwrap_err();
            assert!(e.message.contains("control characters"), "{}", e.message);
            assert!(!e.message.contains("s3cret"), "{}", e.message);
        }
    }

    #[test]
    fn user_agents_that_cannot_be_a_header_are_refused() {
        for bad in ["x".repeat(100_000), "a\r\nb".into(), "caf\u{e9}".into()] {
            let mut c = cfg();
            c.user_agent = Some(bad);
            assert!(c.validate().unwrap_err().message.contains("userAgent"));
        }
        let mut c = cfg();
        c.user_agent = Some("openclaw/1.0 (linux; node 20)".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn user_agent() {
        let mut c = cfg();
        assert!(c.user_agent_header().starts_with("feishu-transport/"));
        c.user_agent = Some("openclaw/1.0\r\nX: y".into());
        assert!(c.user_agent_header().ends_with(" openclaw/1.0X: y"));
    }
}
