//! A local Feishu long-connection server: discovery, the WebSocket, pongs, fragments,
//! cluster delivery, re-delivery and faults on demand.
//!
//! It behaves like the platform as docs/PROTOCOL.md describes it, so that the transport
//! (and the official SDK, in the conformance test) can be exercised on loopback:
//!
//! * one TCP port serves both `POST /callback/ws/endpoint` and the WebSocket upgrade of
//!   `GET /ws/v2?…`; the request head is parsed here (not by a library) so that every
//!   fault — a hang, a bad status, a garbage body — is under the emulator's control;
//! * every discovery answer issues a single-use ticket, so a client that reuses a URL is
//!   refused exactly as it would be in production;
//! * an event goes to one random live connection of its app (cluster mode) and is pushed
//!   again when it is not acked with 200 within `ack_deadline` (at-least-once delivery),
//!   which is what makes "nothing is lost" testable.
//!
//! This module never imports napi: `binding::emulator` converts and delegates. It needs
//! no `unsafe`, and the attribute below keeps it that way.
#![forbid(unsafe_code)]

mod conn_handle;
mod connection;
mod delivery;
mod faults;
mod http;
mod samples;
mod tls;
mod view;

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHasher;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::core::frame::Frame;

pub use delivery::PushManyOptions;
pub use faults::{DiscoveryFault, DiscoveryFaultKind, HandshakeRejection};
pub use samples::{sample, sample_names, samples};
pub use tls::{generate_test_certificates, EmulatorTls, TestCertificates, DEFAULT_TEST_HOSTS};

use conn_handle::ConnHandle;
use delivery::{AckEntry, Deadline, EventState};
use faults::Faults;

/// The app registered by default: the app id of `fixtures/events/*.json`.
pub const DEFAULT_APP_ID: &str = "cli_a1b2c3d4e5f60718";
/// The secret of the default app.
pub const DEFAULT_APP_SECRET: &str = "emulator-secret";
/// The `service_id` Feishu puts in the URL (and so in every ping), as seen in SDK logs.
pub const DEFAULT_SERVICE_ID: i32 = 33554678;

/// How to start an [`Emulator`].
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Interface to listen on; `"127.0.0.1"` by default. Tests must stay on loopback.
    pub host: String,
    /// Port to listen on; 0 (the default) picks a free one, read it back with
    /// [`Emulator::port`].
    pub port: u16,
    /// The apps the discovery endpoint accepts. Default: one app,
    /// [`DEFAULT_APP_ID`] / [`DEFAULT_APP_SECRET`].
    pub apps: Vec<AppCredentials>,
    /// What discovery answers and every pong carries.
    pub client_config: ClientConfig,
    /// How long a delivery may stay unacked before it is pushed again (Feishu: 3 s).
    pub ack_deadline: Duration,
    /// How many times an event is pushed again after the first delivery (default 3);
    /// after that it is given up (and stays pending in the stats).
    pub max_redeliveries: u32,
    /// The `service_id` of the URL, which clients echo in `Frame.service` of pings.
    pub service_id: i32,
    /// Live connections allowed per app (Feishu documents 50); the next handshake is
    /// refused with `Handshake-Autherrcode: 1000040350`.
    pub max_connections_per_app: usize,
    /// How many ack records and finished events to remember (default 250 000). Older
    /// ones are forgotten in batches (so up to twice this many are held): `acks()` then
    /// starts later, and a late ack of a forgotten event counts as unknown. Pending
    /// events are never forgotten.
    pub max_history: usize,
    /// Serve `https`/`wss` with this certificate instead of plain `http`/`ws`.
    pub tls: Option<EmulatorTls>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            host: "127.0.0.1".into(),
            port: 0,
            apps: vec![AppCredentials {
                app_id: DEFAULT_APP_ID.into(),
                app_secret: DEFAULT_APP_SECRET.into(),
            }],
            client_config: ClientConfig::default(),
            ack_deadline: Duration::from_secs(3),
            max_redeliveries: 3,
            service_id: DEFAULT_SERVICE_ID,
            max_connections_per_app: 50,
            max_history: 250_000,
            tls: None,
        }
    }
}

/// One app's credentials, as checked by the discovery endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCredentials {
    pub app_id: String,
    pub app_secret: String,
}

/// The `ClientConfig` object of discovery answers and pong payloads. All values are
/// **seconds** (or a count), exactly as Feishu sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientConfig {
    #[serde(rename = "PingInterval")]
    pub ping_interval: i64,
    /// Negative means unlimited.
    #[serde(rename = "ReconnectCount")]
    pub reconnect_count: i64,
    #[serde(rename = "ReconnectInterval")]
    pub reconnect_interval: i64,
    #[serde(rename = "ReconnectNonce")]
    pub reconnect_nonce: i64,
}

impl Default for ClientConfig {
    /// The defaults every official SDK uses (docs/PROTOCOL.md §2).
    fn default() -> Self {
        ClientConfig {
            ping_interval: 120,
            reconnect_count: -1,
            reconnect_interval: 120,
            reconnect_nonce: 30,
        }
    }
}

impl ClientConfig {
    /// `{"PingInterval":…,"ReconnectCount":…,"ReconnectInterval":…,"ReconnectNonce":…}`.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising four integers cannot fail; an empty object is a safe fallback anyway.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// How the fragments of one delivery are ordered on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FragmentOrder {
    #[default]
    InOrder,
    Reverse,
    Shuffle,
}

impl std::str::FromStr for FragmentOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "in-order" | "inorder" | "in_order" => Ok(FragmentOrder::InOrder),
            "reverse" => Ok(FragmentOrder::Reverse),
            "shuffle" => Ok(FragmentOrder::Shuffle),
            other => Err(format!(
                "unknown fragment order {other:?} (expected in-order, reverse or shuffle)"
            )),
        }
    }
}

/// How to push one event.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The app whose connections receive it; default: the first app, or the app of
    /// `connection_id` when that is given.
    pub app_id: Option<String>,
    /// Split the payload into this many byte slices (clamped to 1..=payload length).
    pub fragments: usize,
    /// The `type` header: `"event"` (default) or `"card"`. Card frames are sent once and
    /// not tracked for re-delivery, since every official SDK ignores them without an ack.
    pub frame_type: String,
    pub order: FragmentOrder,
    /// Deliver (the first delivery) to this connection instead of a random one. If it is
    /// not live, a random live connection of the app is used.
    pub connection_id: Option<String>,
    /// Use this `message_id` instead of a generated one.
    pub message_id: Option<String>,
    /// Use this `trace_id` for the first delivery (re-deliveries append `-r<n>`).
    pub trace_id: Option<String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            app_id: None,
            fragments: 1,
            frame_type: "event".into(),
            order: FragmentOrder::InOrder,
            connection_id: None,
            message_id: None,
            trace_id: None,
        }
    }
}

/// One ack received from a client.
#[derive(Debug, Clone, PartialEq)]
pub struct AckRecord {
    pub message_id: String,
    /// `header.event_id` (v2) or `uuid` (v1) of the pushed payload, if it had one.
    pub event_id: Option<String>,
    /// The `code` of the ack payload (200 ok, 500 failed).
    pub code: i64,
    /// The ack's `data`, base64-decoded (the JSON of a callback reply).
    pub data: Option<Vec<u8>>,
    /// Every header of the ack frame, in order (the echoed ones plus `biz_rt`).
    pub headers: Vec<(String, String)>,
    /// The connection the ack came in on.
    pub connection_id: String,
    /// The `biz_rt` header, if present and numeric.
    pub biz_rt: Option<i64>,
    /// When the ack was received, ms since the Unix epoch.
    pub at_ms: u64,
    /// From the push of that delivery's last fragment to the ack, in µs.
    pub latency_us: u64,
    /// Which delivery the ack answers: 1 = the first, 2 = the first re-delivery…;
    /// 0 when the message id is not one the emulator pushed.
    pub delivery: u32,
}

/// A live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The `device_id` of the URL the client connected with.
    pub id: String,
    pub app_id: String,
    pub service_id: i32,
    pub connected_at_ms: u64,
    /// Protocol pings received on it.
    pub pings: u64,
    /// `true` after [`Emulator::stall`]: the socket is open but nothing is read or written.
    pub stalled: bool,
}

/// One protocol ping (`type=ping` control frame) received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingRecord {
    pub connection_id: String,
    /// The frame's `service` field (the client read it from the URL's `service_id`).
    pub service: i32,
    pub at_ms: u64,
}

/// Counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    /// `POST /callback/ws/endpoint` requests, including faulted ones.
    pub discovery_calls: u64,
    /// Discovery requests answered by a fault.
    pub discovery_faults: u64,
    /// WebSocket handshakes completed (101 sent).
    pub handshakes: u64,
    /// WebSocket handshakes refused (bad ticket, limit, injected rejection).
    pub handshakes_rejected: u64,
    /// Connections ever registered as live.
    pub connections_total: u64,
    pub live_connections: u64,
    /// Events pushed (cards excluded: they are not tracked).
    pub pushed: u64,
    /// Delivery attempts sent, including re-deliveries (and cards).
    pub deliveries: u64,
    pub redeliveries: u64,
    /// Data frames sent.
    pub frames_sent: u64,
    pub acks: u64,
    pub acks_ok: u64,
    pub acks_failed: u64,
    /// Acks whose message id the emulator never pushed.
    pub acks_unknown: u64,
    /// Pushed events not yet acked with 200 (given-up events stay here).
    pub pending: u64,
    /// Events that used up `max_redeliveries` without a 200 ack.
    pub given_up: u64,
    /// Deliveries waiting for a live connection of their app.
    pub queued: u64,
    pub pings: u64,
    /// Text messages, undecodable frames and unparseable acks received.
    pub bad_frames_received: u64,
    /// TLS handshakes that failed (when serving TLS): typically a client that does not
    /// trust the certificate.
    pub tls_handshake_failures: u64,
}

/// Why a wait failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmulatorError {
    /// The condition was not met in time; the message says which.
    Timeout(String),
    /// The emulator was closed while waiting.
    Closed,
}

impl std::fmt::Display for EmulatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmulatorError::Timeout(what) => write!(f, "timed out: {what}"),
            EmulatorError::Closed => write!(f, "the emulator is closed"),
        }
    }
}

impl std::error::Error for EmulatorError {}

/// A running emulator. Cheap to clone; all clones share one server. Dropping the last
/// clone shuts it down (without waiting); [`Emulator::close`] shuts it down and waits.
#[derive(Clone)]
pub struct Emulator {
    handle: Arc<Handle>,
}

/// Owns the server on behalf of the user's clones: its `Drop` stops the tasks, which
/// hold only `Arc<Inner>` and so cannot keep themselves alive.
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.begin_shutdown();
    }
}

/// State shared by the server's tasks.
pub(crate) struct Inner {
    pub(crate) apps: Vec<AppCredentials>,
    /// The app ids as shared strings, so events do not each allocate theirs.
    app_ids: Vec<Arc<str>>,
    pub(crate) ack_deadline: Duration,
    pub(crate) max_redeliveries: u32,
    pub(crate) service_id: i32,
    pub(crate) max_connections_per_app: usize,
    pub(crate) max_history: usize,
    /// Host and port as they appear in issued URLs.
    pub(crate) url_authority: String,
    pub(crate) port: u16,
    /// Set when serving `https`/`wss`: every accepted socket is TLS first.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) state: Mutex<State>,
    /// Cancelled by `close()` (or the last drop): every task selects on it.
    pub(crate) shutdown: CancellationToken,
    /// Every spawned task holds a clone; `close()` waits until all are dropped.
    task_guard: Mutex<Option<mpsc::Sender<()>>>,
    tasks_done: tokio::sync::Mutex<Option<mpsc::Receiver<()>>>,
    /// Woken when the set of live connections changes.
    pub(crate) conn_changed: Notify,
    /// Woken on every ack, but only while someone waits for one (see `ack_waiters`), so
    /// a benchmark's 100 000 acks per second cost nothing here.
    pub(crate) ack_arrived: Notify,
    pub(crate) ack_waiters: AtomicUsize,
    /// Woken when `pending` drops to 0.
    pub(crate) all_acked: Notify,
    /// Woken when the deadline queue goes from empty to non-empty.
    pub(crate) deadline_added: Notify,
    /// Frame `SeqID`s (one per frame) and `LogID`s (one per delivery): the client echoes
    /// both in its ack, and the LogID tells which delivery an ack answers.
    pub(crate) next_seq_id: AtomicU64,
    pub(crate) next_log_id: AtomicU64,
    pub(crate) next_message: AtomicU64,
    /// Random per emulator, so message ids of two emulators in one test never collide.
    pub(crate) nonce: u32,
}

/// The hasher of the event table: message ids are generated here or chosen by tests, so
/// SipHash's protection against crafted keys buys nothing, and it was a visible cost at
/// 100 000 lookups per second. Any id is hashed by rustc-hash's FxHasher, the crate's one
/// hasher (src/core/seqmap.rs), with one emulator-specific exception that stays here
/// because a measurement asked for it (bench/NOTES.md, "Emulator push path"):
///
/// Generated message ids (`om_emu` + 8 + 16 hex digits, see `delivery::new_message_id`)
/// hash to their counter in the low bits, so consecutive events take consecutive slots.
/// The table holds a benchmark's whole history (hundreds of thousands of 270-byte
/// entries), and with scattered slots every insert and every ack lookup was a cache miss
/// (a profile put 20 % of the emulator's CPU on the two loads); with counter-ordered
/// slots the events in flight sit in a few kilobytes that stay in cache. The top 7 bits
/// (hashbrown's per-slot tag) are still mixed, so a probe compares keys only on a real
/// candidate. None of this is in the transport's code path.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher;

impl std::hash::BuildHasher for IdHasher {
    type Hasher = IdHash;
    fn build_hasher(&self) -> IdHash {
        IdHash::Fresh
    }
}

pub(crate) enum IdHash {
    /// Nothing written yet.
    Fresh,
    /// Exactly one generated message id written: the finished hash.
    Sequential(u64),
    /// Anything else.
    Mixed(FxHasher),
}

/// The murmur3 64-bit finaliser, for the tag bits of a generated id: every bit of the
/// counter reaches the top 7 (FxHash's one multiply leaves them nearly equal for
/// consecutive counters; `generated_ids_take_consecutive_slots_with_mixed_tags` fails
/// with it).
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The counter of a generated message id (`om_emu`, 8 hex digits of nonce, 16 of
/// counter), or `None` for any other string.
pub(crate) fn generated_id_counter(id: &[u8]) -> Option<u64> {
    if id.len() != 30 || !id.starts_with(b"om_emu") {
        return None;
    }
    let mut n = 0u64;
    for &c in &id[14..] {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u64::from(digit);
    }
    Some(n)
}

impl IdHash {
    /// The FxHasher to write into (a generated id followed by more writes goes on from
    /// its hash).
    fn mixed(&mut self) -> &mut FxHasher {
        if !matches!(self, IdHash::Mixed(_)) {
            let mut fx = FxHasher::default();
            if let IdHash::Sequential(h) = *self {
                fx.write_u64(h);
            }
            *self = IdHash::Mixed(fx);
        }
        match self {
            IdHash::Mixed(fx) => fx,
            _ => unreachable!("set just above"),
        }
    }
}

impl Hasher for IdHash {
    fn write(&mut self, bytes: &[u8]) {
        if let IdHash::Fresh = self {
            if let Some(n) = generated_id_counter(bytes) {
                const LOW: u64 = (1 << 57) - 1;
                let tag = fmix64(n);
                *self = IdHash::Sequential((n & LOW) | (tag & !LOW));
                return;
            }
        }
        self.mixed().write(bytes);
    }

    fn write_u8(&mut self, i: u8) {
        // `str`'s Hash writes its bytes and then 0xff: that keeps a generated id's hash.
        if i == 0xff && matches!(self, IdHash::Sequential(_)) {
            return;
        }
        self.mixed().write_u8(i);
    }

    fn finish(&self) -> u64 {
        match self {
            IdHash::Sequential(h) => *h,
            IdHash::Fresh => FxHasher::default().finish(),
            IdHash::Mixed(fx) => fx.finish(),
        }
    }
}

/// Everything mutable, behind one short-held lock. Nothing awaits while holding it.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) closed: bool,
    pub(crate) client_config: ClientConfig,
    /// When set, pongs carry this instead of `client_config` (discovery keeps the latter).
    pub(crate) pong_config: Option<ClientConfig>,
    /// ticket → what discovery issued with it.
    pub(crate) tickets: HashMap<String, http::Ticket>,
    /// app id → its live connections, in connect order.
    pub(crate) conns: HashMap<String, Vec<Arc<ConnHandle>>>,
    pub(crate) events: HashMap<Arc<str>, EventState, IdHasher>,
    /// app id → (message id, delivery number) waiting for a live connection.
    pub(crate) queued: HashMap<Arc<str>, VecDeque<(Arc<str>, u32)>>,
    /// Sorted by time, because every delivery gets the same `ack_deadline`.
    pub(crate) deadlines: VecDeque<Deadline>,
    /// The retained acks, in arrival order; `acks[0]` has absolute index `acks_base`.
    /// Events keep absolute indices, which stay valid when old acks are trimmed.
    pub(crate) acks: Vec<AckEntry>,
    pub(crate) acks_base: u64,
    /// Indices of acks whose message id the emulator never pushed.
    pub(crate) unknown_acks: HashMap<String, Vec<u64>>,
    /// Events acked with 200, oldest first, so the oldest can be forgotten.
    pub(crate) done_order: VecDeque<Arc<str>>,
    pub(crate) pings: Vec<PingRecord>,
    pub(crate) faults: Faults,
    pub(crate) stats: EmulatorStats,
}

impl State {
    /// The ack with absolute index `i`, unless it was trimmed.
    pub(crate) fn ack(&self, i: u64) -> Option<&AckEntry> {
        let pos = i.checked_sub(self.acks_base)?;
        self.acks.get(usize::try_from(pos).ok()?)
    }

    /// Forgets the oldest acks and finished events once there are twice `max` of them,
    /// keeping the newest `max`: a long benchmark must not grow without bound. (Halving
    /// at once keeps the cost amortised O(1) per ack.)
    pub(crate) fn trim_history(&mut self, max: usize) {
        let max = max.max(1);
        if self.acks.len() >= 2 * max {
            let drop = self.acks.len() - max;
            self.acks.drain(..drop);
            self.acks_base += drop as u64;
            let base = self.acks_base;
            self.unknown_acks.retain(|_, v| {
                v.retain(|i| *i >= base);
                !v.is_empty()
            });
        }
        if self.done_order.len() >= 2 * max {
            let drop = self.done_order.len() - max;
            for id in self.done_order.drain(..drop) {
                // The id may since belong to a newer event that reused it: keep that one.
                if let Some(ev) = self.events.get(&id) {
                    if ev.is_done() && ev.id_is(&id) {
                        self.events.remove(&id);
                    }
                }
            }
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Debug logging, off unless `FEISHU_EMULATOR_DEBUG` is set: hostile-frame tests
/// produce bad input on purpose and must not spam the test output.
pub(crate) fn debug_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FEISHU_EMULATOR_DEBUG").is_some_and(|v| !v.is_empty()))
}

macro_rules! emu_debug {
    ($($arg:tt)*) => {
        if $crate::emulator::debug_enabled() {
            eprintln!("[feishu-emulator] {}", format_args!($($arg)*));
        }
    };
}
pub(crate) use emu_debug;

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; the data is still consistent enough
        // for a test server, and refusing to go on would hide the original panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A guard that keeps `close()` waiting until the task holding it ends.
    pub(crate) fn task_guard(&self) -> Option<mpsc::Sender<()>> {
        self.task_guard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops accepting and tells every connection and task to end. Idempotent.
    pub(crate) fn begin_shutdown(&self) {
        let conns: Vec<Arc<ConnHandle>> = {
            let mut st = self.lock();
            st.closed = true;
            st.conns.values().flatten().cloned().collect()
        };
        for c in conns {
            c.close(true);
        }
        self.shutdown.cancel();
        // Dropping our sender lets `tasks_done` see the channel close once the tasks end.
        self.task_guard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Wake every waiter so it can report `Closed`.
        self.conn_changed.notify_waiters();
        self.ack_arrived.notify_waiters();
        self.all_acked.notify_waiters();
        self.deadline_added.notify_waiters();
    }

    /// A shared copy of an app id (allocated only for an id that is not registered).
    pub(crate) fn app_arc(&self, app_id: &str) -> Arc<str> {
        self.app_ids
            .iter()
            .find(|a| &***a == app_id)
            .cloned()
            .unwrap_or_else(|| Arc::from(app_id))
    }

    pub(crate) fn default_app(&self) -> &str {
        self.apps.first().map(|a| a.app_id.as_str()).unwrap_or("")
    }

    /// Live connections matching `id` (all of them when `None`).
    pub(crate) fn select_conns(&self, id: Option<&str>) -> Vec<Arc<ConnHandle>> {
        let st = self.lock();
        st.conns
            .values()
            .flatten()
            .filter(|c| id.is_none_or(|id| &*c.id == id))
            .cloned()
            .collect()
    }
}

/// Longer timeouts and deadlines are cut to this, so that `Instant + Duration` cannot
/// overflow (a caller may well pass `Duration::MAX` to mean "forever").
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Waits on `notify` until `check` returns `Some`, the deadline passes or the emulator
/// closes. The `Notified` future is enabled before each check, so a wake-up between the
/// check and the wait cannot be lost.
async fn wait_until<T>(
    inner: &Inner,
    notify: &Notify,
    timeout: Duration,
    what: impl Fn() -> String,
    mut check: impl FnMut(&State) -> Option<T>,
) -> Result<T, EmulatorError> {
    let deadline = tokio::time::Instant::now() + timeout.min(LONGEST_WAIT);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let st = inner.lock();
            if let Some(v) = check(&st) {
                return Ok(v);
            }
            if st.closed {
                return Err(EmulatorError::Closed);
            }
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                if let Some(v) = check(&inner.lock()) {
                    return Ok(v);
                }
                // `what` may take the lock itself: it must be released by now.
                return Err(EmulatorError::Timeout(what()));
            }
        }
    }
}

impl Emulator {
    /// Binds the port and starts serving. Fails only if the address cannot be bound.
    pub async fn start(opts: EmulatorOptions) -> std::io::Result<Emulator> {
        // Checked before binding, so a bad certificate leaves no port behind.
        let tls = opts
            .tls
            .as_ref()
            .map(tls::server_config)
            .transpose()?
            .map(tokio_rustls::TlsAcceptor::from);
        let listener = TcpListener::bind((opts.host.as_str(), opts.port)).await?;
        let port = listener.local_addr()?.port();
        // A wildcard bind is reachable on loopback; URLs must name a connectable host.
        let url_host = match opts.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1".to_string(),
            "::" => "[::1]".to_string(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_string(),
        };
        let apps = if opts.apps.is_empty() {
            EmulatorOptions::default().apps
        } else {
            opts.apps
        };
        let (guard_tx, guard_rx) = mpsc::channel::<()>(1);
        let inner = Arc::new(Inner {
            app_ids: apps.iter().map(|a| Arc::from(a.app_id.as_str())).collect(),
            apps,
            ack_deadline: opts.ack_deadline.min(LONGEST_WAIT),
            max_redeliveries: opts.max_redeliveries,
            service_id: opts.service_id,
            max_connections_per_app: opts.max_connections_per_app,
            max_history: opts.max_history,
            url_authority: format!("{url_host}:{port}"),
            port,
            tls,
            state: Mutex::new(State {
                client_config: opts.client_config,
                ..State::default()
            }),
            shutdown: CancellationToken::new(),
            task_guard: Mutex::new(Some(guard_tx)),
            tasks_done: tokio::sync::Mutex::new(Some(guard_rx)),
            conn_changed: Notify::new(),
            ack_arrived: Notify::new(),
            ack_waiters: AtomicUsize::new(0),
            all_acked: Notify::new(),
            deadline_added: Notify::new(),
            next_seq_id: AtomicU64::new(1),
            next_log_id: AtomicU64::new(1),
            next_message: AtomicU64::new(1),
            nonce: rand::random::<u32>(),
        });
        http::spawn_accept_loop(inner.clone(), listener);
        delivery::spawn_deadline_task(inner.clone());
        Ok(Emulator {
            handle: Arc::new(Handle { inner }),
        })
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// The base URL to give a client as its domain: `http://127.0.0.1:<port>`, or
    /// `https://…` when serving TLS.
    pub fn domain(&self) -> String {
        let scheme = if self.inner().tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.inner().url_authority)
    }

    pub fn port(&self) -> u16 {
        self.inner().port
    }

    /// The registered apps; the first one is the default of every call.
    pub fn apps(&self) -> Vec<AppCredentials> {
        self.inner().apps.clone()
    }

    /// Pushes one event and returns its `message_id`. Never fails: with no live
    /// connection of the app the delivery is queued and sent when one appears.
    pub fn push_event(&self, payload: Vec<u8>, opts: PushOptions) -> String {
        delivery::push_event(self.inner(), payload.into(), opts)
    }

    /// Pushes `opts.count` generated events (for benchmarks), honouring `max_in_flight`
    /// and `rate_per_sec`, and returns their message ids once all are pushed.
    pub async fn push_many(&self, opts: PushManyOptions) -> Vec<Arc<str>> {
        delivery::push_many(self.inner(), opts).await
    }

    /// The first ack of `message_id` (with `code`, if given).
    pub async fn wait_for_ack(
        &self,
        message_id: &str,
        code: Option<i64>,
        timeout: Duration,
    ) -> Result<AckRecord, EmulatorError> {
        let inner = self.inner();
        // Counted while waiting (and uncounted even if this future is dropped), so acks
        // only wake anyone when someone waits.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        inner.ack_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&inner.ack_waiters);
        wait_until(
            inner,
            &inner.ack_arrived,
            timeout,
            || match code {
                Some(c) => {
                    format!("no ack with code {c} for message {message_id} within {timeout:?}")
                }
                None => format!("no ack for message {message_id} within {timeout:?}"),
            },
            |st| {
                let indices: Vec<u64> = match st.events.get(message_id) {
                    Some(ev) => ev.acks.iter().collect(),
                    None => st.unknown_acks.get(message_id).cloned().unwrap_or_default(),
                };
                indices
                    .into_iter()
                    .filter_map(|i| st.ack(i))
                    .find(|a| code.is_none_or(|c| a.code() == c))
                    .map(AckEntry::to_record)
            },
        )
        .await
    }

    /// Waits until at least `n` live connections (of `app_id`, or of all apps) exist.
    /// Stalled connections count: their sockets are open.
    pub async fn wait_for_connections(
        &self,
        app_id: Option<&str>,
        n: usize,
        timeout: Duration,
    ) -> Result<(), EmulatorError> {
        let inner = self.inner();
        wait_until(
            inner,
            &inner.conn_changed,
            timeout,
            || {
                let have = self.connections_of(app_id);
                format!("{have} of {n} live connections within {timeout:?}")
            },
            |st| {
                let have: usize = match app_id {
                    Some(a) => st.conns.get(a).map_or(0, Vec::len),
                    None => st.conns.values().map(Vec::len).sum(),
                };
                (have >= n).then_some(())
            },
        )
        .await
    }

    fn connections_of(&self, app_id: Option<&str>) -> usize {
        let st = self.inner().lock();
        match app_id {
            Some(a) => st.conns.get(a).map_or(0, Vec::len),
            None => st.conns.values().map(Vec::len).sum(),
        }
    }

    /// Waits until every pushed event has been acked with 200.
    pub async fn wait_for_all_acked(&self, timeout: Duration) -> Result<(), EmulatorError> {
        let inner = self.inner();
        wait_until(
            inner,
            &inner.all_acked,
            timeout,
            || {
                let s = self.stats();
                format!(
                    "{} of {} events still not acked with 200 within {timeout:?}",
                    s.pending, s.pushed
                )
            },
            |st| (st.stats.pending == 0).then_some(()),
        )
        .await
    }

    /// Every ack received, in arrival order.
    pub fn acks(&self) -> Vec<AckRecord> {
        self.inner()
            .lock()
            .acks
            .iter()
            .map(AckEntry::to_record)
            .collect()
    }

    /// The live connections, oldest first per app.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let st = self.inner().lock();
        let mut out: Vec<ConnectionInfo> = st.conns.values().flatten().map(|c| c.info()).collect();
        out.sort_by_key(|c| c.connected_at_ms);
        out
    }

    /// Every protocol ping received, in arrival order.
    pub fn pings(&self) -> Vec<PingRecord> {
        self.inner().lock().pings.clone()
    }

    pub fn stats(&self) -> EmulatorStats {
        let st = self.inner().lock();
        let mut s = st.stats.clone();
        s.live_connections = st.conns.values().map(|v| v.len() as u64).sum();
        s.queued = st.queued.values().map(|q| q.len() as u64).sum();
        s
    }

    /// The config later pongs and discovery answers carry.
    pub fn client_config(&self) -> ClientConfig {
        self.inner().lock().client_config
    }

    /// Changes what later pongs and discovery answers carry.
    /// Makes pongs carry `config` while discovery keeps answering the client config
    /// (`None`: pongs follow the client config again). This is how a test proves that a
    /// client takes its cadence from pongs, not only from discovery.
    pub fn set_pong_config(&self, config: Option<ClientConfig>) {
        self.inner().lock().pong_config = config;
    }

    pub fn set_client_config(&self, config: ClientConfig) {
        self.inner().lock().client_config = config;
    }

    // ----- faults -------------------------------------------------------------------

    /// Closes live connections (`None`: every live connection of every app). With
    /// `close_frame` a WebSocket close (1000) is sent first; without, the TCP socket is
    /// simply closed, as a crashed server or a NAT drop would look. Returns how many.
    pub fn drop_connections(&self, connection_id: Option<&str>, close_frame: bool) -> usize {
        let conns = self.inner().select_conns(connection_id);
        for c in &conns {
            c.close(close_frame);
        }
        conns.len()
    }

    /// Stops reading from and writing to live connections (`None`: all of them) while
    /// keeping their sockets open: a half-open peer, as the client sees it. New
    /// connections are not affected. Returns how many.
    pub fn stall(&self, connection_id: Option<&str>) -> usize {
        let conns = self.inner().select_conns(connection_id);
        for c in &conns {
            c.stall();
        }
        conns.len()
    }

    /// Answers the next `fault.count` discovery requests with `fault.kind`. Faults queue
    /// up: a second call applies after the first is used up.
    pub fn fail_discovery(&self, fault: DiscoveryFault) {
        self.inner().lock().faults.discovery.push_back(fault);
    }

    /// Refuses the next `count` WebSocket handshakes with HTTP `http_status` and the
    /// given `Handshake-*` headers (each omitted when `None`).
    pub fn reject_handshakes(
        &self,
        count: usize,
        http_status: u16,
        handshake_status: Option<i64>,
        msg: Option<String>,
        autherrcode: Option<i64>,
    ) {
        self.inner().lock().faults.push_handshake(
            faults::HandshakeFault::Reject(HandshakeRejection {
                http_status,
                handshake_status,
                msg,
                autherrcode,
            }),
            Some(count),
        );
    }

    /// Reads the next `count` upgrade requests and never answers them.
    pub fn hang_handshakes(&self, count: usize) {
        self.inner()
            .lock()
            .faults
            .push_handshake(faults::HandshakeFault::Hang, Some(count));
    }

    /// Completes the next `count` handshakes (`None`: every one until
    /// [`Emulator::clear_faults`]) and closes each connection at once with a WebSocket
    /// close, before any frame.
    pub fn accept_and_close(&self, count: Option<usize>) {
        self.inner()
            .lock()
            .faults
            .push_handshake(faults::HandshakeFault::AcceptAndClose, count);
    }

    /// Forgets every pending discovery and handshake fault (stalled connections stay
    /// stalled; drop them to clear that).
    pub fn clear_faults(&self) {
        self.inner().lock().faults = Faults::default();
    }

    /// Sends any frame as one binary message (`None`: to every live connection).
    /// Returns how many connections it was queued to.
    pub fn send_frame(&self, connection_id: Option<&str>, frame: Frame) -> usize {
        use prost::Message as _;
        self.send_raw(connection_id, frame.encode_to_vec())
    }

    /// Sends arbitrary bytes as one binary message (`None`: to every live connection).
    pub fn send_raw(&self, connection_id: Option<&str>, bytes: Vec<u8>) -> usize {
        let conns = self.inner().select_conns(connection_id);
        let bytes = bytes::Bytes::from(bytes);
        for c in &conns {
            c.send(conn_handle::Outbound::Binary(bytes.clone()));
        }
        conns.len()
    }

    /// Sends a text message (`None`: to every live connection); the protocol has none,
    /// so clients must ignore it.
    pub fn send_text(&self, connection_id: Option<&str>, text: &str) -> usize {
        let conns = self.inner().select_conns(connection_id);
        for c in &conns {
            c.send(conn_handle::Outbound::Text(text.to_string()));
        }
        conns.len()
    }

    /// Stops accepting, closes every connection (with a WebSocket close) and waits until
    /// every task has ended. Idempotent; concurrent calls all wait.
    pub async fn close(&self) {
        let inner = self.inner();
        inner.begin_shutdown();
        let mut done = inner.tasks_done.lock().await;
        if let Some(mut rx) = done.take() {
            // `recv` returns None once every task's guard is dropped.
            while rx.recv().await.is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_config_serialises_with_feishu_keys() {
        let json = String::from_utf8(ClientConfig::default().to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"PingInterval":120,"ReconnectCount":-1,"ReconnectInterval":120,"ReconnectNonce":30}"#
        );
    }

    #[test]
    fn id_hasher_spreads_ids_that_differ_at_the_end() {
        use std::hash::BuildHasher;
        let mut low_bits = std::collections::HashSet::new();
        for n in 0..256u32 {
            let id = format!("om_emu1234abcd{n:016x}");
            low_bits.insert(IdHasher.hash_one(id.as_str()) & 0xff);
        }
        // 256 ids over 256 buckets: a poor mix would land in a handful
        assert!(low_bits.len() > 140, "{}", low_bits.len());
        // ids of any other shape too
        let mut low_bits = std::collections::HashSet::new();
        for n in 0..256u32 {
            let id = format!("message-{n:08}");
            low_bits.insert(IdHasher.hash_one(id.as_str()) & 0xff);
        }
        assert!(low_bits.len() > 140, "{}", low_bits.len());
    }

    #[test]
    fn generated_ids_take_consecutive_slots_with_mixed_tags() {
        use std::hash::BuildHasher;
        let mut tags = std::collections::HashSet::new();
        for n in 1000..1256u64 {
            let id = format!("om_emu1234abcd{n:016x}");
            assert_eq!(generated_id_counter(id.as_bytes()), Some(n));
            let h = IdHasher.hash_one(id.as_str());
            assert_eq!(h & 0xffff_ffff, n, "{id}");
            // the same id through `Arc<str>` (the table's key type) hashes alike
            assert_eq!(IdHasher.hash_one(Arc::<str>::from(id.as_str())), h);
            tags.insert(h >> 57);
        }
        assert!(tags.len() > 100, "{}", tags.len());
        for not_generated in [
            "om_emu1234abcd00000000000000X1",
            "om_emu1234abcd000000000000001",
            "om_emx1234abcd0000000000000001",
            "om_emu1234abcd00000000000000F1",
        ] {
            assert_eq!(generated_id_counter(not_generated.as_bytes()), None);
        }
    }

    #[test]
    fn fragment_order_parses() {
        assert_eq!("in-order".parse(), Ok(FragmentOrder::InOrder));
        assert_eq!("reverse".parse(), Ok(FragmentOrder::Reverse));
        assert_eq!("shuffle".parse(), Ok(FragmentOrder::Shuffle));
        assert!("sideways".parse::<FragmentOrder>().is_err());
    }
}
