//! `NativeTransport`: the napi face of `core::supervisor::Transport`. It converts options,
//! wraps the JavaScript callbacks in weak threadsafe functions, and reports outcomes as
//! plain values; `index.js` turns those into the public `FeishuTransport` API (errors as
//! `FeishuTransportError`, the AbortSignal, the callback fan-out).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{
    ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue,
};
use napi_derive::napi;
use serde_json::json;

use super::discovery::{hook_from_function, DiscoverFunction};
use crate::core::backoff::BackoffPolicy;
use crate::core::config::{LogLevel, TransportConfig};
use crate::core::dedupe::DedupeConfig;
use crate::core::endpoint::Domain;
use crate::core::error::TransportError;
use crate::core::events::{EventHandler, HandlerResult, InboundEvent, Observer, Reply};
use crate::core::frame_view::decimal;
use crate::core::proxy::{ProxyMode, ProxyUrl};
use crate::core::seqmap::SeqMap;
use crate::core::status::StatusSnapshot;
use crate::core::store::StoreSpec;
use crate::core::supervisor::Transport;

/// The internal event callback as Rust sees it: weak (it never keeps Node alive by
/// itself), `CalleeHandled = false` (plain arguments). One call hands JavaScript every
/// event queued since the previous call, as one JSON text (see [`EventBridge`]); its
/// return value is ignored: results come back through `settle`/`settleOk`.
type EventCallback = ThreadsafeFunction<(), UnknownReturnValue, String, Status, false, true>;

/// Arguments of the internal lifecycle callback: `(kind, json)`.
type LifecycleArgs = FnArgs<(String, String)>;
type LifecycleCallback = ThreadsafeFunction<LifecycleArgs, (), LifecycleArgs, Status, false, true>;

/// Options of the native transport, flattened by `index.js` from the public options.
#[napi(object, object_to_js = false)]
pub struct NativeTransportOptions {
    pub app_id: String,
    pub app_secret: String,
    pub domain: Option<String>,
    pub user_agent: Option<String>,
    pub reconnect: Option<bool>,
    pub initial_delay_ms: Option<f64>,
    pub max_delay_ms: Option<f64>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
    pub max_attempts: Option<f64>,
    pub ping_interval_ms: Option<f64>,
    pub discovery_timeout_ms: Option<f64>,
    pub handshake_timeout_ms: Option<f64>,
    pub pong_timeout_ms: Option<f64>,
    pub close_timeout_ms: Option<f64>,
    pub max_concurrent_handlers: Option<f64>,
    pub connections: Option<f64>,
    /// `handlerTimeoutMs`; 0 waits for ever (`index.js` maps `Infinity` to 0).
    pub handler_timeout_ms: Option<f64>,
    pub dedupe: Option<bool>,
    pub dedupe_ttl_ms: Option<f64>,
    pub dedupe_max_entries: Option<f64>,
    pub dedupe_store: Option<String>,
    pub log_level: Option<String>,
    /// `'env'` (`proxy: undefined`, the default), `'none'` (`proxy: null`) or `'url'`
    /// (`proxy` holds the URL). Set by `index.js`, which sees undefined and null apart.
    pub proxy_mode: Option<String>,
    pub proxy: Option<String>,
    /// `tls.caPem`, as text (`index.js` decodes a Buffer).
    pub tls_ca_pem: Option<String>,
    pub tls_system_roots: Option<bool>,
    /// Whether JavaScript listens for status notes (`onStatus` given); without it none is
    /// serialised or sent.
    pub status_notes: Option<bool>,
}

/// A stable error code as the `code` property of a thrown JS error.
pub struct Code(pub &'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl From<Status> for Code {
    fn from(_: Status) -> Self {
        Code("INVALID_CONFIG")
    }
}

fn invalid(msg: String) -> TransportError {
    TransportError::invalid_config(msg)
}

fn ms(name: &str, v: Option<f64>) -> std::result::Result<Option<Duration>, TransportError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && (0.0..=2_147_483_647.0).contains(&x) => {
            Ok(Some(Duration::from_millis(x as u64)))
        }
        Some(x) => Err(invalid(format!(
            "{name} must be a number of milliseconds between 0 and 2147483647, got {x}"
        ))),
    }
}

fn count(name: &str, v: Option<f64>, min: f64) -> std::result::Result<Option<u64>, TransportError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x.fract() == 0.0 && (min..=4_294_967_295.0).contains(&x) => {
            Ok(Some(x as u64))
        }
        Some(x) => Err(invalid(format!(
            "{name} must be a whole number of at least {min}, got {x}"
        ))),
    }
}

/// Builds the core config from the flattened options; every rejection names its option.
pub fn config_from_options(
    o: NativeTransportOptions,
) -> std::result::Result<TransportConfig, TransportError> {
    let domain = Domain::parse(o.domain.as_deref())?;
    let mut cfg = TransportConfig::new(o.app_id, o.app_secret, domain);
    cfg.user_agent = o.user_agent;
    if o.reconnect == Some(false) {
        cfg.reconnect = None;
    } else {
        let mut p = BackoffPolicy::default();
        if let Some(d) = ms("reconnect.initialDelayMs", o.initial_delay_ms)? {
            p.initial = d;
        }
        if let Some(d) = ms("reconnect.maxDelayMs", o.max_delay_ms)? {
            p.max = d;
        }
        if let Some(m) = o.multiplier {
            p.multiplier = m;
        }
        if let Some(j) = o.jitter {
            p.jitter = j;
        }
        p.max_attempts = count("reconnect.maxAttempts", o.max_attempts, 1.0)?.map(|n| n as u32);
        cfg.reconnect = Some(p);
    }
    cfg.ping_interval = ms("pingIntervalMs", o.ping_interval_ms)?;
    if let Some(d) = ms("timeouts.discoveryMs", o.discovery_timeout_ms)? {
        cfg.timeouts.discovery = d;
    }
    if let Some(d) = ms("timeouts.handshakeMs", o.handshake_timeout_ms)? {
        cfg.timeouts.handshake = d;
    }
    if let Some(d) = ms("timeouts.pongMs", o.pong_timeout_ms)? {
        cfg.timeouts.pong = d;
    }
    if let Some(d) = ms("timeouts.closeMs", o.close_timeout_ms)? {
        cfg.timeouts.close = d;
    }
    if let Some(n) = count("maxConcurrentHandlers", o.max_concurrent_handlers, 1.0)? {
        cfg.max_concurrent_handlers = n as usize;
    }
    if let Some(n) = count("connections", o.connections, 1.0)? {
        cfg.connections = n as usize;
    }
    if let Some(d) = ms("handlerTimeoutMs", o.handler_timeout_ms)? {
        cfg.handler_timeout = (!d.is_zero()).then_some(d);
    }
    if o.dedupe == Some(false) {
        cfg.dedupe = None;
    } else {
        let mut d = DedupeConfig::default();
        if let Some(t) = ms("dedupe.ttlMs", o.dedupe_ttl_ms)? {
            d.ttl = t;
        }
        if let Some(n) = count("dedupe.maxEntries", o.dedupe_max_entries, 1.0)? {
            d.max_entries = n as usize;
        }
        if let Some(store) = &o.dedupe_store {
            d.store = StoreSpec::parse(store)?;
        }
        cfg.dedupe = Some(d);
    }
    cfg.proxy = match (o.proxy_mode.as_deref(), o.proxy) {
        (Some("none"), _) => ProxyMode::Direct,
        // `TransportConfig::new` captured the environment already.
        (Some("env"), _) | (None, None) => cfg.proxy,
        (Some("url") | None, url) => ProxyMode::Fixed(
            ProxyUrl::parse(url.as_deref().unwrap_or(""))
                .map_err(|why| invalid(format!("proxy {why}")))?,
        ),
        (Some(other), _) => {
            return Err(invalid(format!(
                "proxyMode must be env, none or url, got {other:?}"
            )))
        }
    };
    cfg.tls.ca_pem = o.tls_ca_pem;
    cfg.tls.system_roots = o.tls_system_roots.unwrap_or(false);
    if let Some(level) = o.log_level.as_deref() {
        cfg.log_level = LogLevel::parse(level).ok_or_else(|| {
            invalid(format!(
                "logLevel must be one of debug, info, warn, error, silent; got {level:?}"
            ))
        })?;
    }
    Ok(cfg)
}

/// The JSON form of an error that `index.js` turns into a `FeishuTransportError`.
pub fn error_json(e: &TransportError) -> serde_json::Value {
    json!({
        "code": e.code.as_str(),
        "message": e.message,
        "terminal": e.terminal,
        "feishuCode": e.feishu_code,
        "cause": e.cause.as_deref().map(error_json),
    })
}

/// How `start()` ended, as `index.js` reads it: `reason` when it stopped, `error` (JSON)
/// when it failed.
#[napi(object)]
pub struct NativeRunResult {
    pub reason: Option<String>,
    pub error: Option<String>,
}

/// The native transport. Use `FeishuTransport` from the package entry instead.
#[napi]
pub struct NativeTransport {
    inner: Arc<Transport>,
    /// The event bridge of the current (or last) run; `settle*` find it here. Replaced
    /// only when a run has really started: a refused `start()` leaves the live run's.
    bridge: Mutex<Weak<EventBridge>>,
    /// Where every run's events take their `seq`s from: numbers are never reused, so a
    /// late settle from an earlier run can never answer an event of the current one.
    seqs: Arc<AtomicU64>,
    /// Whether status notes are sent to JavaScript (`status_notes`).
    status_notes: bool,
    /// This transport's entry in its environment's cleanup list, kept for its `Drop`.
    _cleanup: super::cleanup::Registration,
}

/// Events queued for the next JavaScript call, already as JSON text.
#[derive(Default)]
struct Inbox {
    /// `[[seq, messageId, traceId, receivedAt, payload],…` without the closing `]`;
    /// empty when nothing is queued. Written here, on the connection's thread, straight
    /// from the borrowed event, so the event costs no allocation of its own and the JS
    /// thread only copies one string.
    text: String,
    /// The first and last `seq` queued in `text` (meaningful while it is not empty).
    first: u64,
    last: u64,
    /// A threadsafe call is queued that will take `text`.
    scheduled: bool,
    /// The connection is inside a burst (`begin_burst`): events wait for `end_burst`.
    in_burst: bool,
}

/// The replies of events handed to JavaScript (or queued for it), by `seq`.
type Waiting = SeqMap<Reply>;

impl Inbox {
    /// True when the caller must queue the threadsafe call now: events wait, none is
    /// queued, and the connection is not inside a burst (whose end queues it).
    fn claim_call(&mut self) -> bool {
        if self.in_burst || self.scheduled || self.text.is_empty() {
            return false;
        }
        self.scheduled = true;
        true
    }
}

/// The per-event hot path between the connection and JavaScript, for one run.
///
/// `handle()` appends the event to the inbox text and, unless a threadsafe call is
/// already queued, queues one: every event that is ready when JavaScript runs crosses in
/// that one call, as one JSON text `[[seq, messageId, traceId, receivedAt, payload], …]`
/// (the payload spliced in as Feishu sent it: one string to create and one `JSON.parse`
/// per batch). JavaScript calls the handlers in that order and settles each event by
/// `seq` through `NativeTransport.settle()` / `settleOk()`, which completes the future
/// the connection awaits. No napi promise, no JS function object and no reference per
/// event.
#[derive(Default)]
struct EventBridge {
    /// The transport's `seq` source, shared by all its runs' bridges.
    seqs: Arc<AtomicU64>,
    inbox: Mutex<Inbox>,
    /// Queued or handed to JavaScript, not settled yet.
    waiting: Mutex<Waiting>,
    /// The `seq` range of the batch being handed over right now (JS thread only), so a
    /// throw out of the batch callback can fail what it did not settle.
    current: Mutex<Option<(u64, u64)>>,
}

impl EventBridge {
    fn lock_inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one event; true when the caller must queue a threadsafe call.
    fn push(&self, event: InboundEvent<'_>, reply: Reply) -> bool {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.seqs.fetch_add(1, Ordering::Relaxed);
        if inbox.text.is_empty() {
            inbox.first = seq;
        }
        inbox.last = seq;
        // Registered before the text can reach JavaScript, so a settle always finds it.
        self.lock_waiting().insert(seq, reply);
        let text = &mut inbox.text;
        let len = |s: Option<&str>| s.map_or(4, str::len);
        let ids = len(event.trace_id) + len(event.event_id) + len(event.event_type);
        text.reserve(event.payload.len() + event.message_id.len() + ids + 56);
        let mut digits = [0u8; 20];
        text.push_str(if text.is_empty() { "[[" } else { ",[" });
        text.push_str(decimal(seq, &mut digits));
        text.push(',');
        push_json_string(text, event.message_id);
        // The event id and type are the ones dedupe keyed on (core/envelope.rs has the one
        // rule), so JavaScript never works them out again by a rule of its own.
        text.push(',');
        push_json_opt(text, event.trace_id);
        text.push(',');
        text.push_str(decimal(event.received_at_ms, &mut digits));
        for field in [event.event_id, event.event_type] {
            text.push(',');
            push_json_opt(text, field);
        }
        text.push(',');
        // Checked by the connection to be one JSON object (`envelope_meta`, exactly as
        // strict as serde_json and so never looser than JSON.parse), so it splices in as
        // one array element.
        text.push_str(event.payload);
        text.push(']');
        inbox.claim_call()
    }

    /// Takes the queued text (closed) and its `seq` range.
    fn take(&self) -> (String, Option<(u64, u64)>) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.scheduled = false;
        // The next batch starts with room for one like this one, allocated here on the
        // JS thread, which also frees it after handing it over.
        let room = (inbox.text.len() + 1).min(1 << 20);
        let mut text = std::mem::replace(&mut inbox.text, String::with_capacity(room));
        let range = (!text.is_empty()).then_some((inbox.first, inbox.last));
        if text.is_empty() {
            text.push('[');
        }
        text.push(']');
        (text, range)
    }

    /// Fails everything queued (the threadsafe call could not be queued).
    fn fail_queued(&self, reason: &str) {
        let (_, range) = self.take();
        self.fail_range(range, reason);
    }

    /// On the JS thread: the batch's JSON text.
    fn take_batch(&self) -> String {
        let (text, range) = self.take();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = range;
        text
    }

    fn settle(&self, seq: u64, result: HandlerResult) {
        let reply = self.lock_waiting().remove(&seq);
        if let Some(reply) = reply {
            reply.send(result);
        }
    }

    fn settle_ok(&self, seqs: &[f64]) {
        let mut ready = Vec::with_capacity(seqs.len());
        {
            let mut waiting = self.lock_waiting();
            for &seq in seqs {
                if let Some(reply) = waiting.remove(&(seq as u64)) {
                    ready.push(reply);
                }
            }
        }
        // Sent outside the lock, as one message per session: a send may wake its task.
        Reply::send_all_ok(ready);
    }

    fn fail_range(&self, range: Option<(u64, u64)>, reason: &str) {
        if let Some((first, last)) = range {
            for seq in first..=last {
                self.settle(seq, Err(reason.to_string()));
            }
        }
    }

    /// The batch callback threw (it catches every handler's throw, so this is an
    /// engine-level failure): fail whatever of that batch is still unsettled.
    fn fail_current(&self, reason: &str) {
        let range = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.fail_range(range, reason);
    }
}

/// Appends `s` as a JSON string literal, or `null`.
fn push_json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_string(out, s),
        None => out.push_str("null"),
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // Nothing to escape (the usual id): one copy.
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

struct JsHandler {
    callback: EventCallback,
    bridge: Arc<EventBridge>,
}

impl JsHandler {
    /// Queues the threadsafe call that hands the inbox to JavaScript.
    fn schedule(&self) {
        let bridge = self.bridge.clone();
        // The with-callback variant hands a synchronous throw to us as an Err (plain
        // `call` would route it to napi_fatal_exception and kill the process).
        let status = self.callback.call_with_return_value(
            (),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |ret: Result<UnknownReturnValue>, _env| {
                if let Err(e) = ret {
                    bridge.fail_current(&e.reason);
                }
                Ok(())
            },
        );
        if status != Status::Ok {
            self.bridge.fail_queued(&format!(
                "the event callback could not be called ({status})"
            ));
        }
    }
}

impl EventHandler for JsHandler {
    fn handle(&self, event: InboundEvent<'_>, reply: Reply) {
        // Queued here, synchronously, so handlers are called in arrival order.
        if self.bridge.push(event, reply) {
            self.schedule();
        }
    }

    fn begin_burst(&self) {
        self.bridge.lock_inbox().in_burst = true;
    }

    fn end_burst(&self) {
        let must_schedule = {
            let mut inbox = self.bridge.lock_inbox();
            inbox.in_burst = false;
            inbox.claim_call()
        };
        if must_schedule {
            self.schedule();
        }
    }
}

struct JsObserver {
    callback: LifecycleCallback,
    /// `false` when JavaScript has no `onStatus`: status notes are then not serialised.
    status_notes: bool,
}

impl JsObserver {
    fn emit(&self, kind: &str, data: serde_json::Value) {
        // NonBlocking: a lifecycle note must never stall the connection task. The JS side
        // catches everything its user callbacks throw.
        let _ = self.callback.call(
            (kind.to_string(), data.to_string()).into(),
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    }
}

impl Observer for JsObserver {
    fn ready(&self, connection: usize) {
        self.emit("ready", json!({ "connection": connection }));
    }
    fn reconnecting(
        &self,
        connection: usize,
        attempt: u32,
        delay: Duration,
        error: Option<&TransportError>,
    ) {
        self.emit(
            "reconnecting",
            json!({ "connection": connection, "attempt": attempt, "delayMs": delay.as_millis() as f64, "error": error.map(error_json) }),
        );
    }
    fn reconnected(&self, connection: usize) {
        self.emit("reconnected", json!({ "connection": connection }));
    }
    fn error(&self, error: &TransportError) {
        self.emit("error", error_json(error));
    }
    fn status(&self, status: &StatusSnapshot) {
        if !self.status_notes {
            return;
        }
        self.emit("status", serde_json::to_value(status).unwrap_or_default());
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.emit(
            "log",
            json!({ "level": level.as_str(), "message": message }),
        );
    }
}

#[napi]
impl NativeTransport {
    /// Validates the options; throws an error with `code: 'INVALID_CONFIG'` when they
    /// cannot work. Connects nothing.
    /// `discover` (the `discover` option, normalised by `index.js`) sends endpoint
    /// discovery instead of the native client.
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "options: NativeTransportOptions, discover?: (requestJson: string) => Promise<string>"
    )]
    pub fn new(
        env: Env,
        options: NativeTransportOptions,
        discover: Option<DiscoverFunction<'_>>,
    ) -> Result<Self, Code> {
        let status_notes = options.status_notes.unwrap_or(true);
        let mut cfg = config_from_options(options)
            .map_err(|e| Error::new(Code(e.code.as_str()), e.message))?;
        if let Some(f) = discover {
            cfg.discovery_hook = Some(
                hook_from_function(f).map_err(|e| Error::new(Code("INVALID_CONFIG"), e.reason))?,
            );
        }
        let inner = Arc::new(
            Transport::new(cfg).map_err(|e| Error::new(Code(e.code.as_str()), e.message))?,
        );
        // If this JavaScript environment goes away (a worker terminated mid-run), the run
        // is stopped so nothing calls into a dead environment.
        let cleanup = super::cleanup::register(&env, Arc::downgrade(&inner));
        Ok(NativeTransport {
            inner,
            bridge: Mutex::new(Weak::new()),
            seqs: Arc::default(),
            status_notes,
            _cleanup: cleanup,
        })
    }

    /// Starts a run. The promise settles when the run ends: `{ reason }` after close or
    /// abort, `{ error }` (JSON) when it failed or was already started. `onEvents` gets
    /// every ready event in one JSON text `[[seq, messageId, traceId, receivedAt,
    /// payload], …]` and settles each by `seq` with `settle()` or `settleOk()`.
    #[napi(
        ts_args_type = "onEvents: (batch: string) => void, onLifecycle: (kind: string, json: string) => void",
        ts_return_type = "Promise<NativeRunResult>"
    )]
    pub fn start<'env>(
        &self,
        env: &'env Env,
        on_events: Function<'env, String, UnknownReturnValue>,
        on_lifecycle: Function<'env, LifecycleArgs, ()>,
    ) -> Result<PromiseRaw<'env, NativeRunResult>> {
        let bridge = Arc::new(EventBridge {
            seqs: self.seqs.clone(),
            ..EventBridge::default()
        });
        let drain = bridge.clone();
        let callback: EventCallback = on_events
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |_ctx: ThreadsafeCallContext<()>| Ok(drain.take_batch()))?;
        let lifecycle: LifecycleCallback = on_lifecycle
            .build_threadsafe_function::<LifecycleArgs>()
            .weak::<true>()
            .callee_handled::<false>()
            .build()?;
        let weak_bridge = Arc::downgrade(&bridge);
        let handler = Arc::new(JsHandler { callback, bridge });
        let observer = Arc::new(JsObserver {
            callback: lifecycle,
            status_notes: self.status_notes,
        });
        let started = self.inner.start(handler, observer);
        // The bridge belongs to the run: only a run that really started replaces the
        // current one (a refused start() must not cut the live run off from JavaScript).
        if started.is_ok() {
            *self.bridge.lock().unwrap_or_else(|p| p.into_inner()) = weak_bridge;
        }
        env.spawn_future(async move {
            let outcome = match started {
                Err(e) => Err(e),
                // The run owns the callbacks; they are released when it ends, so a
                // settled start() leaves nothing holding the handler's closure.
                Ok(run) => run.await,
            };
            Ok(match outcome {
                Ok(reason) => NativeRunResult {
                    reason: Some(reason.as_str().to_string()),
                    error: None,
                },
                Err(e) => NativeRunResult {
                    reason: None,
                    error: Some(error_json(&e).to_string()),
                },
            })
        })
    }

    /// Settles one event handed to `onEvents`: `error` (the handler threw or rejected,
    /// or its result could not be serialised) acks 500, otherwise `json` (the handler's
    /// result as JSON, or null) is the ack's data. Unknown `seq`s are ignored.
    #[napi]
    pub fn settle(&self, seq: f64, json: Option<String>, error: Option<String>) {
        if let Some(bridge) = self
            .bridge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
        {
            let result = match error {
                Some(reason) => Err(reason),
                None => Ok(json),
            };
            bridge.settle(seq as u64, result);
        }
    }

    /// Settles events whose handlers returned nothing (a bare 200), many at once.
    #[napi]
    pub fn settle_ok(&self, seqs: Float64ArraySlice<'_>) {
        if let Some(bridge) = self
            .bridge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade()
        {
            bridge.settle_ok(&seqs);
        }
    }

    /// Stops the run (if any) and resolves once it has ended.
    #[napi]
    pub async fn close(&self, force: Option<bool>, drain_ms: Option<f64>) -> Result<()> {
        let drain = match ms("drainMs", drain_ms) {
            Ok(d) => d,
            Err(e) => return Err(Error::new(Status::InvalidArg, e.message)),
        };
        self.inner.close(force.unwrap_or(false), drain).await;
        Ok(())
    }

    /// Stops the run as an AbortSignal does; `start()` resolves `{ reason: 'aborted' }`.
    #[napi]
    pub async fn abort(&self) -> Result<()> {
        self.inner.abort().await;
        Ok(())
    }

    /// Cuts connection `connection`'s live socket (every connection's when absent)
    /// without acking what is in flight; it reconnects. Returns false when no run is
    /// active or there is no such connection (`index.js` checks the index first).
    #[napi]
    pub fn drop_connection(&self, reason: Option<String>, connection: Option<u32>) -> bool {
        self.inner.drop_connection(
            reason.as_deref().unwrap_or("dropConnection() called"),
            connection.map(|c| c as usize),
        )
    }

    /// The status snapshot as JSON.
    #[napi]
    pub fn status_json(&self) -> String {
        serde_json::to_string(&self.inner.status()).unwrap_or_else(|_| "{}".into())
    }

    /// Whether a run is active.
    #[napi(getter)]
    pub fn running(&self) -> bool {
        self.inner.is_running()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::OwnedEvent;

    fn event(id: &str) -> OwnedEvent {
        OwnedEvent {
            payload: format!(r#"{{"header":{{"event_id":"{id}"}}}}"#),
            message_id: format!("m-{id}"),
            trace_id: None,
            event_type: None,
            event_id: Some(id.to_string()),
            received_at_ms: 1,
        }
    }

    #[test]
    fn one_call_is_queued_per_batch_and_none_inside_a_burst() {
        let bridge = EventBridge::default();
        // Outside a burst the first event asks for a call, the next ones ride along.
        assert!(bridge.push(event("a").as_event(), Reply::oneshot().0));
        assert!(!bridge.push(event("b").as_event(), Reply::oneshot().0));
        let (text, range) = bridge.take();
        assert_eq!(range, Some((0, 1)));
        let batch: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(batch[1][1], "m-b");
        assert_eq!(batch[1][4], "b", "the event id dedupe keyed on");
        assert_eq!(batch[1][5], serde_json::Value::Null, "no event type");
        assert_eq!(batch[1][6]["header"]["event_id"], "b");
        // Inside a burst no event asks for a call: `end_burst` makes the one call.
        bridge.lock_inbox().in_burst = true;
        assert!(!bridge.push(event("c").as_event(), Reply::oneshot().0));
        assert!(!bridge.push(event("d").as_event(), Reply::oneshot().0));
        let inbox = bridge.lock_inbox();
        assert!(!inbox.scheduled && !inbox.text.is_empty());
    }

    #[test]
    fn runs_of_one_transport_never_reuse_a_seq() {
        let seqs = Arc::new(AtomicU64::new(0));
        let old = EventBridge {
            seqs: seqs.clone(),
            ..EventBridge::default()
        };
        let (reply, mut old_rx) = Reply::oneshot();
        old.push(event("a").as_event(), reply);
        let new = EventBridge {
            seqs,
            ..EventBridge::default()
        };
        let (reply, mut new_rx) = Reply::oneshot();
        new.push(event("b").as_event(), reply);
        // The old run's settle for its seq 0 reaches the new bridge: it answers nothing.
        new.settle(0, Err("late, from the old run".into()));
        assert!(new_rx.try_recv().is_err(), "still unanswered");
        assert_eq!(new.take().1, Some((1, 1)));
        new.settle(1, Ok(None));
        assert_eq!(new_rx.try_recv().unwrap(), Ok(None));
        assert!(old_rx.try_recv().is_err());
    }

    #[test]
    fn settling_answers_the_reply_once() {
        let bridge = EventBridge::default();
        let (reply, mut rx) = Reply::oneshot();
        bridge.push(event("a").as_event(), reply);
        bridge.settle_ok(&[0.0, 0.0, 7.0]);
        assert_eq!(rx.try_recv().unwrap(), Ok(None));
        // An unknown or already settled seq is ignored.
        bridge.settle(0, Err("late".into()));
        let (reply, mut rx) = Reply::oneshot();
        bridge.push(event("b").as_event(), reply);
        drop(bridge);
        // The bridge went away: the reply is dropped unanswered, which is a failure.
        assert!(rx.try_recv().unwrap().is_err());
    }
}
