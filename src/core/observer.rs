//! Lifecycle notifications from the core to its embedder (the napi binding turns them
//! into `onReady`, `onReconnecting`, `onStatus`, log lines and the rest).

use std::time::Duration;

use super::config::LogLevel;
use super::error::TransportError;
use super::status::StatusSnapshot;

/// Lifecycle notifications; every method defaults to doing nothing.
pub trait Observer: Send + Sync + 'static {
    /// The first connection of this run is up.
    fn ready(&self) {}
    /// A retry is scheduled after `delay`.
    fn reconnecting(&self, _attempt: u32, _delay: Duration, _error: Option<&TransportError>) {}
    /// A later connection of this run is up.
    fn reconnected(&self) {}
    /// Every failure, recoverable or terminal.
    fn error(&self, _error: &TransportError) {}
    /// Every state transition.
    fn status(&self, _status: &StatusSnapshot) {}
    /// A log line, already filtered by level, single-line and redacted.
    fn log(&self, _level: LogLevel, _message: &str) {}
}
