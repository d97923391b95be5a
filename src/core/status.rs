//! The transport's observable state: one snapshot type for `status()` and `onStatus`, and
//! the counters behind it (atomics, so the hot path never takes a lock to count).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::endpoint::ServerConfig;
use super::error::TransportError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Idle,
    Connecting,
    Connected,
    Reconnecting,
    Stopped,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorSummary {
    pub code: &'static str,
    pub message: String,
    pub terminal: bool,
}

impl From<&TransportError> for ErrorSummary {
    fn from(e: &TransportError) -> Self {
        ErrorSummary {
            code: e.code.as_str(),
            message: e.message.clone(),
            terminal: e.terminal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerSummary {
    pub ping_interval_ms: f64,
    pub reconnect_count: f64,
    pub reconnect_interval_ms: f64,
    pub reconnect_nonce_ms: f64,
}

impl ServerSummary {
    /// The effective values: what the server sent over the protocol defaults
    /// (docs/PROTOCOL.md §2).
    pub fn from_config(c: &ServerConfig) -> Self {
        let ms = |d: Option<Duration>, default_s: u64| {
            d.unwrap_or(Duration::from_secs(default_s)).as_millis() as f64
        };
        ServerSummary {
            ping_interval_ms: ms(c.ping_interval, 120),
            reconnect_count: c.reconnect_count.unwrap_or(-1) as f64,
            reconnect_interval_ms: ms(c.reconnect_interval, 120),
            reconnect_nonce_ms: ms(c.reconnect_nonce, 30),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountersSnapshot {
    pub connects: u64,
    pub events: u64,
    pub acks: u64,
    pub failed_acks: u64,
    pub duplicates: u64,
    pub reconnects: u64,
    pub dropped_frames: u64,
    /// Handlers that did not settle within `handlerTimeoutMs` (each acked 500).
    pub handler_timeouts: u64,
    /// Calls to the durable dedupe store (`dedupe.store`) that failed.
    pub store_errors: u64,
}

/// The dedupe store, as `status().store` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreSummary {
    /// `memory`, `sqlite` or `redis`.
    pub kind: &'static str,
    /// False from a failed store call until the next one succeeds (always true for
    /// `memory`).
    pub healthy: bool,
}

/// What `status()` returns (`TransportStatus` in index.d.ts). Times are ms since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusSnapshot {
    pub state: State,
    pub connected: bool,
    pub attempt: u32,
    pub connection_id: Option<String>,
    pub last_connected_at: Option<f64>,
    pub last_disconnected_at: Option<f64>,
    pub last_event_at: Option<f64>,
    pub last_pong_at: Option<f64>,
    pub next_retry_at: Option<f64>,
    pub last_error: Option<ErrorSummary>,
    pub server: Option<ServerSummary>,
    /// Every handler slot is busy, so the socket is not read until one settles: events
    /// wait on the server (and are re-delivered if they wait too long). Never true while
    /// the transport is idle, so a full transport cannot pass for a quiet one.
    pub backpressure: bool,
    pub counters: CountersSnapshot,
    pub store: StoreSummary,
}

#[derive(Default)]
pub struct Counters {
    pub connects: AtomicU64,
    pub events: AtomicU64,
    pub acks: AtomicU64,
    pub failed_acks: AtomicU64,
    pub duplicates: AtomicU64,
    pub reconnects: AtomicU64,
    pub dropped_frames: AtomicU64,
    pub handler_timeouts: AtomicU64,
    pub store_errors: AtomicU64,
    /// ms since the epoch; 0 = never.
    pub last_event_at: AtomicU64,
    pub last_pong_at: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            connects: g(&self.connects),
            events: g(&self.events),
            acks: g(&self.acks),
            failed_acks: g(&self.failed_acks),
            duplicates: g(&self.duplicates),
            reconnects: g(&self.reconnects),
            dropped_frames: g(&self.dropped_frames),
            handler_timeouts: g(&self.handler_timeouts),
            store_errors: g(&self.store_errors),
        }
    }
}

/// The parts of the status that change on transitions (not per event).
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub state: State,
    pub attempt: u32,
    pub connection_id: Option<String>,
    pub last_connected_at: Option<f64>,
    pub last_disconnected_at: Option<f64>,
    pub next_retry_at: Option<f64>,
    pub last_error: Option<ErrorSummary>,
    pub server: Option<ServerSummary>,
    /// See [`StatusSnapshot::backpressure`]; set by the live session.
    pub backpressure: bool,
}

pub struct StatusStore {
    pub counters: Counters,
    lifecycle: Mutex<Lifecycle>,
    /// The dedupe store's kind (set once, by the transport) and whether its last call
    /// failed: kept apart from the lifecycle so a store call never takes its lock.
    store_kind: OnceLock<&'static str>,
    store_unhealthy: AtomicBool,
}

impl Default for StatusStore {
    fn default() -> Self {
        StatusStore {
            counters: Counters::default(),
            lifecycle: Mutex::new(Lifecycle {
                state: State::Idle,
                attempt: 0,
                connection_id: None,
                last_connected_at: None,
                last_disconnected_at: None,
                next_retry_at: None,
                last_error: None,
                server: None,
                backpressure: false,
            }),
            store_kind: OnceLock::new(),
            store_unhealthy: AtomicBool::new(false),
        }
    }
}

impl StatusStore {
    /// Applies `f` to the lifecycle and returns the resulting snapshot.
    pub fn update(&self, f: impl FnOnce(&mut Lifecycle)) -> StatusSnapshot {
        let mut l = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut l);
        self.snapshot_of(&l)
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let l = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        self.snapshot_of(&l)
    }

    /// Names the dedupe store `status().store.kind` reports (`memory` until set).
    pub fn set_store_kind(&self, kind: &'static str) {
        let _ = self.store_kind.set(kind);
    }

    /// Records whether the store's last call worked; true when that changed.
    pub fn set_store_healthy(&self, healthy: bool) -> bool {
        self.store_unhealthy.swap(!healthy, Ordering::Relaxed) == healthy
    }

    pub fn state(&self) -> State {
        self.lifecycle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state
    }

    fn snapshot_of(&self, l: &Lifecycle) -> StatusSnapshot {
        let at = |c: &AtomicU64| match c.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v as f64),
        };
        StatusSnapshot {
            state: l.state,
            connected: l.state == State::Connected,
            attempt: l.attempt,
            connection_id: l.connection_id.clone(),
            last_connected_at: l.last_connected_at,
            last_disconnected_at: l.last_disconnected_at,
            last_event_at: at(&self.counters.last_event_at),
            last_pong_at: at(&self.counters.last_pong_at),
            next_retry_at: l.next_retry_at,
            last_error: l.last_error.clone(),
            server: l.server.clone(),
            backpressure: l.backpressure,
            counters: self.counters.snapshot(),
            store: StoreSummary {
                kind: self.store_kind.get().copied().unwrap_or("memory"),
                healthy: !self.store_unhealthy.load(Ordering::Relaxed),
            },
        }
    }
}

/// Milliseconds since the epoch, as JavaScript counts time.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
