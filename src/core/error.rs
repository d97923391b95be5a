//! The transport's one error type. Every failure a caller can see carries a stable `code`,
//! whether retrying can help (`terminal`), and the platform's own code when it sent one.

use std::fmt;

/// Stable error codes; JavaScript switches on their string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidConfig,
    AuthFailed,
    Forbidden,
    ConnectionLimit,
    DiscoveryFailed,
    DiscoveryTimeout,
    HandshakeFailed,
    HandshakeTimeout,
    PongTimeout,
    ProxyError,
    TlsError,
    Disconnected,
    ProtocolError,
    ReconnectExhausted,
    AlreadyStarted,
    /// A bug in the transport (a Rust panic), caught so that `start()` still settles.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::AuthFailed => "AUTH_FAILED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::ConnectionLimit => "CONNECTION_LIMIT",
            ErrorCode::DiscoveryFailed => "DISCOVERY_FAILED",
            ErrorCode::DiscoveryTimeout => "DISCOVERY_TIMEOUT",
            ErrorCode::HandshakeFailed => "HANDSHAKE_FAILED",
            ErrorCode::HandshakeTimeout => "HANDSHAKE_TIMEOUT",
            ErrorCode::PongTimeout => "PONG_TIMEOUT",
            ErrorCode::ProxyError => "PROXY_ERROR",
            ErrorCode::TlsError => "TLS_ERROR",
            ErrorCode::Disconnected => "DISCONNECTED",
            ErrorCode::ProtocolError => "PROTOCOL_ERROR",
            ErrorCode::ReconnectExhausted => "RECONNECT_EXHAUSTED",
            ErrorCode::AlreadyStarted => "ALREADY_STARTED",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of the transport. Messages never contain secrets: every constructor hides
/// secret-looking patterns at once, and [`TransportError::scrubbed`] hides the literal
/// secrets (app secret, proxy password, the run's `access_key`/`ticket`) and makes the
/// final cut before anyone outside the core sees the error.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportError {
    pub code: ErrorCode,
    pub message: String,
    /// True when retrying cannot help (wrong credentials, forbidden, bad options).
    pub terminal: bool,
    /// The platform's code (discovery `code`, or `Handshake-Autherrcode`/`Handshake-Status`).
    pub feishu_code: Option<i64>,
    pub cause: Option<Box<TransportError>>,
}

impl TransportError {
    /// A recoverable error: the reconnect loop retries it.
    pub fn recoverable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::build(code, message.into(), false)
    }

    /// A terminal error: `start()` rejects with it.
    pub fn terminal(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::build(code, message.into(), true)
    }

    fn build(code: ErrorCode, message: String, terminal: bool) -> Self {
        use crate::core::redact;
        TransportError {
            code,
            // Not cut to the 500 characters a reader sees yet: a literal secret echoed
            // near that cut would lose its tail and no longer match. `scrubbed` cuts.
            message: redact::single_line(&redact::redact_patterns(&message), redact::MAX_RAW_CHARS),
            terminal,
            feishu_code: None,
            cause: None,
        }
    }

    pub fn with_feishu_code(mut self, code: i64) -> Self {
        self.feishu_code = Some(code);
        self
    }

    pub fn with_cause(mut self, cause: TransportError) -> Self {
        self.cause = Some(Box::new(cause));
        self
    }

    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::terminal(ErrorCode::InvalidConfig, message)
    }

    /// The error as a reader may see it: every literal secret `redactor` knows hidden,
    /// then cut to 500 characters (a prefix of a secret left at the cut hidden too), in
    /// its message and every cause's.
    pub fn scrubbed(mut self, redactor: &crate::core::redact::Redactor) -> Self {
        self.message = redactor.finish(&self.message);
        if let Some(c) = self.cause.take() {
            self.cause = Some(Box::new(c.scrubbed(redactor)));
        }
        self
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for TransportError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_single_line_and_redacted() {
        let e = TransportError::recoverable(
            ErrorCode::HandshakeFailed,
            "failed\nGET /ws/v2?device_id=1&access_key=abcdef0123&ticket=t-123 Bearer xyz",
        );
        assert!(!e.message.contains('\n'));
        assert!(!e.message.contains("abcdef0123"));
        assert!(!e.message.contains("t-123"));
        assert!(!e.message.contains("xyz"));
        assert!(!e.terminal);
        assert_eq!(e.to_string().split(':').next(), Some("HANDSHAKE_FAILED"));
    }
}
