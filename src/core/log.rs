//! Logging through the embedder's observer: filtered by level before any formatting, and
//! every line single-line, at most 500 characters, with secrets redacted.

use std::sync::Arc;

use super::config::LogLevel;
use super::observer::Observer;
use super::redact::Redactor;

#[derive(Clone)]
pub struct Log {
    observer: Arc<dyn Observer>,
    level: LogLevel,
    redactor: Arc<Redactor>,
}

impl Log {
    pub fn new(observer: Arc<dyn Observer>, level: LogLevel, redactor: Arc<Redactor>) -> Self {
        Log {
            observer,
            level,
            redactor,
        }
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level != LogLevel::Silent && self.level != LogLevel::Silent && level >= self.level
    }

    pub fn emit(&self, level: LogLevel, message: String) {
        if self.enabled(level) {
            let line = self.redactor.finish(&message);
            self.observer.log(level, &line);
        }
    }

    // The closures keep formatting off the hot path when the level is filtered out.
    pub fn debug(&self, f: impl FnOnce() -> String) {
        if self.enabled(LogLevel::Debug) {
            self.emit(LogLevel::Debug, f());
        }
    }

    pub fn info(&self, f: impl FnOnce() -> String) {
        if self.enabled(LogLevel::Info) {
            self.emit(LogLevel::Info, f());
        }
    }

    pub fn warn(&self, f: impl FnOnce() -> String) {
        if self.enabled(LogLevel::Warn) {
            self.emit(LogLevel::Warn, f());
        }
    }

    pub fn error(&self, f: impl FnOnce() -> String) {
        if self.enabled(LogLevel::Error) {
            self.emit(LogLevel::Error, f());
        }
    }
}
