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
/// With several connections the top-level fields are the whole transport's, derived from
/// `connections` by [`Lifecycles::whole`]; with one they are that connection's.
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
    /// Each connection (`connections` option), by index.
    pub connections: Vec<ConnectionStatus>,
    pub store: StoreSummary,
}

/// One connection's part of the status (`status().connections[i]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    pub index: u32,
    pub state: State,
    pub connected: bool,
    pub attempt: u32,
    pub connection_id: Option<String>,
    pub last_connected_at: Option<f64>,
    pub last_disconnected_at: Option<f64>,
    pub next_retry_at: Option<f64>,
    pub last_error: Option<ErrorSummary>,
    pub backpressure: bool,
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

/// The parts of one connection's status that change on transitions (not per event).
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

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            state: State::Idle,
            attempt: 0,
            connection_id: None,
            last_connected_at: None,
            last_disconnected_at: None,
            next_retry_at: None,
            last_error: None,
            server: None,
            backpressure: false,
        }
    }
}

/// Every connection's lifecycle, and what the whole transport saw last.
struct Lifecycles {
    conns: Vec<Lifecycle>,
    /// The latest error and server config of any connection.
    last_error: Option<ErrorSummary>,
    server: Option<ServerSummary>,
}

impl Lifecycles {
    /// How "alive" a state is: the whole transport is in its connections' most alive
    /// state. Any connection up is `connected`; else one waiting to retry makes it
    /// `reconnecting`, else one on its first try `connecting`. With none running, a
    /// failed one makes it `failed` (the others were stopped because of it).
    fn rank(s: State) -> u8 {
        match s {
            State::Connected => 5,
            State::Reconnecting => 4,
            State::Connecting => 3,
            State::Failed => 2,
            State::Stopped => 1,
            State::Idle => 0,
        }
    }

    /// The whole transport's lifecycle, derived from its connections: the most alive
    /// state; the highest `attempt` (the connection closest to giving up); the
    /// `connectionId` of the first connection up; the latest connect and disconnect; the
    /// earliest retry; the latest error and server config; backpressure on any.
    fn whole(&self) -> Lifecycle {
        let c = &self.conns;
        Lifecycle {
            state: c
                .iter()
                .map(|l| l.state)
                .max_by_key(|s| Self::rank(*s))
                .unwrap_or(State::Idle),
            attempt: c.iter().map(|l| l.attempt).max().unwrap_or(0),
            connection_id: c
                .iter()
                .find(|l| l.state == State::Connected)
                .and_then(|l| l.connection_id.clone()),
            last_connected_at: latest(c.iter().map(|l| l.last_connected_at)),
            last_disconnected_at: latest(c.iter().map(|l| l.last_disconnected_at)),
            next_retry_at: c
                .iter()
                .filter_map(|l| l.next_retry_at)
                .min_by(f64::total_cmp),
            last_error: self.last_error.clone(),
            server: self.server.clone(),
            backpressure: c.iter().any(|l| l.backpressure),
        }
    }
}

fn latest(times: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    times.flatten().max_by(f64::total_cmp)
}

pub struct StatusStore {
    pub counters: Counters,
    lifecycle: Mutex<Lifecycles>,
    /// The dedupe store's kind (set once, by the transport) and whether its last call
    /// failed: kept apart from the lifecycle so a store call never takes its lock.
    store_kind: OnceLock<&'static str>,
    store_unhealthy: AtomicBool,
}

impl Default for StatusStore {
    fn default() -> Self {
        StatusStore::new(1)
    }
}

impl StatusStore {
    /// The status of a transport with `connections` connections (at least one).
    pub fn new(connections: usize) -> Self {
        StatusStore {
            counters: Counters::default(),
            lifecycle: Mutex::new(Lifecycles {
                conns: vec![Lifecycle::default(); connections.max(1)],
                last_error: None,
                server: None,
            }),
            store_kind: OnceLock::new(),
            store_unhealthy: AtomicBool::new(false),
        }
    }

    /// Applies `f` to connection `index`'s lifecycle and returns the resulting snapshot.
    /// An error or server config it sets becomes the whole transport's latest.
    pub fn update(&self, index: usize, f: impl FnOnce(&mut Lifecycle)) -> StatusSnapshot {
        let mut ls = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = ls.conns.get_mut(index) {
            let (error, server) = (l.last_error.clone(), l.server.clone());
            f(l);
            let (new_error, new_server) = (l.last_error.clone(), l.server.clone());
            if new_error != error {
                ls.last_error = new_error;
            }
            if new_server != server {
                ls.server = new_server;
            }
        }
        self.snapshot_of(&ls)
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let ls = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        self.snapshot_of(&ls)
    }

    /// Names the dedupe store `status().store.kind` reports (`memory` until set).
    pub fn set_store_kind(&self, kind: &'static str) {
        let _ = self.store_kind.set(kind);
    }

    /// Records whether the store's last call worked; true when that changed.
    pub fn set_store_healthy(&self, healthy: bool) -> bool {
        self.store_unhealthy.swap(!healthy, Ordering::Relaxed) == healthy
    }

    /// The whole transport's state.
    pub fn state(&self) -> State {
        self.lifecycle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .whole()
            .state
    }

    fn snapshot_of(&self, ls: &Lifecycles) -> StatusSnapshot {
        let at = |c: &AtomicU64| match c.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v as f64),
        };
        let l = ls.whole();
        StatusSnapshot {
            state: l.state,
            connected: l.state == State::Connected,
            attempt: l.attempt,
            connection_id: l.connection_id,
            last_connected_at: l.last_connected_at,
            last_disconnected_at: l.last_disconnected_at,
            last_event_at: at(&self.counters.last_event_at),
            last_pong_at: at(&self.counters.last_pong_at),
            next_retry_at: l.next_retry_at,
            last_error: l.last_error,
            server: l.server,
            backpressure: l.backpressure,
            counters: self.counters.snapshot(),
            connections: ls
                .conns
                .iter()
                .enumerate()
                .map(|(i, c)| ConnectionStatus {
                    index: i as u32,
                    state: c.state,
                    connected: c.state == State::Connected,
                    attempt: c.attempt,
                    connection_id: c.connection_id.clone(),
                    last_connected_at: c.last_connected_at,
                    last_disconnected_at: c.last_disconnected_at,
                    next_retry_at: c.next_retry_at,
                    last_error: c.last_error.clone(),
                    backpressure: c.backpressure,
                })
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(code: &'static str) -> Option<ErrorSummary> {
        Some(ErrorSummary {
            code,
            message: code.into(),
            terminal: false,
        })
    }

    #[test]
    fn one_connection_is_the_whole() {
        let s = StatusStore::new(1);
        let snap = s.update(0, |l| {
            l.state = State::Reconnecting;
            l.attempt = 3;
            l.next_retry_at = Some(5.0);
            l.last_error = summary("DISCONNECTED");
        });
        assert_eq!(snap.state, State::Reconnecting);
        assert_eq!((snap.attempt, snap.next_retry_at), (3, Some(5.0)));
        assert_eq!(snap.last_error, summary("DISCONNECTED"));
        assert_eq!(snap.connections.len(), 1);
        assert_eq!(snap.connections[0].state, State::Reconnecting);
    }

    #[test]
    fn the_whole_is_derived_from_its_connections() {
        let s = StatusStore::new(3);
        for i in 0..3 {
            s.update(i, |l| l.state = State::Connecting);
        }
        s.update(0, |l| {
            l.state = State::Connected;
            l.connection_id = Some("a".into());
            l.last_connected_at = Some(10.0);
        });
        s.update(1, |l| {
            l.state = State::Reconnecting;
            l.attempt = 4;
            l.next_retry_at = Some(30.0);
            l.last_error = summary("PONG_TIMEOUT");
            l.last_disconnected_at = Some(20.0);
        });
        let snap = s.update(2, |l| {
            l.state = State::Reconnecting;
            l.attempt = 1;
            l.next_retry_at = Some(25.0);
            l.backpressure = true;
        });
        // Connected while any is up; the highest attempt; the earliest retry.
        assert_eq!(snap.state, State::Connected);
        assert!(snap.connected);
        assert_eq!(snap.attempt, 4);
        assert_eq!(snap.connection_id.as_deref(), Some("a"));
        assert_eq!(snap.next_retry_at, Some(25.0));
        assert_eq!(snap.last_connected_at, Some(10.0));
        assert_eq!(snap.last_disconnected_at, Some(20.0));
        assert_eq!(snap.last_error, summary("PONG_TIMEOUT"));
        assert!(snap.backpressure);
        let states: Vec<_> = snap
            .connections
            .iter()
            .map(|c| (c.index, c.state))
            .collect();
        assert_eq!(
            states,
            [
                (0, State::Connected),
                (1, State::Reconnecting),
                (2, State::Reconnecting)
            ]
        );
        // None up: reconnecting; the latest error of any connection.
        let snap = s.update(0, |l| {
            l.state = State::Reconnecting;
            l.last_error = summary("DISCONNECTED");
        });
        assert_eq!((snap.state, snap.connected), (State::Reconnecting, false));
        assert_eq!(snap.connection_id, None);
        assert_eq!(snap.last_error, summary("DISCONNECTED"));
        // One failed for good and the others stopped because of it: failed.
        s.update(0, |l| l.state = State::Stopped);
        s.update(1, |l| l.state = State::Failed);
        let snap = s.update(2, |l| l.state = State::Stopped);
        assert_eq!(snap.state, State::Failed);
        for i in 0..3 {
            s.update(i, |l| l.state = State::Stopped);
        }
        assert_eq!(s.state(), State::Stopped);
    }
}
