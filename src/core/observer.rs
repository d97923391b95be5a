//! Lifecycle notifications from the core to its embedder (the napi binding turns them
//! into `onReady`, `onReconnecting`, `onStatus`, log lines and the rest).

use std::time::Duration;

use super::config::LogLevel;
use super::error::TransportError;
use super::status::StatusSnapshot;

/// Lifecycle notifications; every method defaults to doing nothing.
pub trait Observer: Send + Sync + 'static {
    /// The run's first connection is up (once per run, whichever of the `connections`
    /// sockets that is; `connection` is its index).
    fn ready(&self, _connection: usize) {}
    /// Connection `connection` schedules a retry after `delay`.
    fn reconnecting(
        &self,
        _connection: usize,
        _attempt: u32,
        _delay: Duration,
        _error: Option<&TransportError>,
    ) {
    }
    /// Connection `connection` is up again after a failure.
    fn reconnected(&self, _connection: usize) {}
    /// Every failure, recoverable or terminal.
    fn error(&self, _error: &TransportError) {}
    /// Every state transition.
    fn status(&self, _status: &StatusSnapshot) {}
    /// A log line, already filtered by level, single-line and redacted.
    fn log(&self, _level: LogLevel, _message: &str) {}
}
