//! One physical socket's session, once `dial` (src/core/dial.rs) has opened it: it reads
//! frames, pings, checks liveness, reassembles fragments, runs handlers and writes acks.
//!
//! A session owns its socket and its ack channel. When it ends, both go with it: a
//! handler that finishes later has nowhere to send its ack, so an ack can never leak onto
//! the next socket (the event is re-delivered there instead).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

use super::ack::{settle_dedupe, Answer, InFlight, Pending, ReadyAck, Settled};
use super::config::TransportConfig;
use super::dedupe::{Begin, Dedupe, DedupeGuard, WaitHandle};
use super::durable::{call_handler, DurableBurst, DurableEvent, DurableStore};
use super::endpoint::{Endpoint, ServerConfig};
use super::error::{ErrorCode, TransportError};
use super::events::{envelope_meta, EventHandler, InboundEvent, OwnedEvent, Reply};
use super::fragments::Assembler;
use super::frame::{frame_type, header_key, AckPayload, Frame, METHOD_CONTROL, METHOD_DATA};
use super::frame_view::{AckTemplate, FrameView, Headers};
use super::log::Log;
use super::status::{now_ms, Counters, StatusStore};

pub use super::dial::{dial, WsStream};

/// Commands from the run to its live session.
#[derive(Debug, Clone)]
pub enum Control {
    /// Stop: with `force`, drop the socket at once; otherwise stop reading, wait up to
    /// `drain` for in-flight handlers, send their acks, then close the WebSocket.
    Close {
        force: bool,
        drain: Duration,
        aborted: bool,
    },
    /// Cut the socket without acking what is in flight, then reconnect.
    Drop(String),
}

/// Why a session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// The caller asked to stop (`aborted`: through the AbortSignal).
    Stopped { aborted: bool },
    /// The socket is gone; the run decides whether to reconnect.
    Lost {
        error: TransportError,
        /// A pong or an event arrived: the connection worked, so the backoff resets.
        healthy: bool,
    },
}

/// What a session shares with the run.
pub struct SessionContext<'a> {
    pub cfg: &'a TransportConfig,
    pub status: &'a Arc<StatusStore>,
    pub handler: &'a Arc<dyn EventHandler>,
    pub dedupe: Option<&'a Arc<Dedupe<AckPayload>>>,
    /// The durable dedupe store behind `dedupe` (`dedupe.store`), when not `memory`.
    pub store: Option<&'a Arc<DurableStore>>,
    pub log: &'a Log,
    /// The server config as known so far; pongs update it.
    pub server: &'a mut ServerConfig,
    /// Called when a pong changes the server config, so `status()` shows it.
    pub on_server_config: &'a (dyn Fn(&ServerConfig) + Send + Sync),
    /// Called once, when the connection first proves healthy.
    pub on_healthy: &'a (dyn Fn() + Send + Sync),
    /// Called when every handler slot fills (true: the socket is no longer read) and when
    /// one frees again (false), so `status()` tells a full transport from an idle one.
    pub on_backpressure: &'a (dyn Fn(bool) + Send + Sync),
}

/// Counts every dropped frame, but logs at most [`DropLog::BURST`] of them per window and
/// then one summary, so a flood of hostile frames cannot flood the caller's logs too.
#[derive(Default)]
struct DropLog {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl DropLog {
    const BURST: u32 = 20;
    const WINDOW: Duration = Duration::from_secs(10);

    fn note(&mut self, counters: &Counters, log: &Log, line: impl FnOnce() -> String) {
        Counters::bump(&counters.dropped_frames);
        let now = Instant::now();
        match self.window_start {
            Some(start) if now.duration_since(start) < Self::WINDOW => {}
            _ => {
                if self.suppressed > 0 {
                    let n = self.suppressed;
                    log.warn(|| {
                        format!("{n} more malformed frame(s) were dropped without a log line each")
                    });
                }
                self.window_start = Some(now);
                self.logged = 0;
                self.suppressed = 0;
            }
        }
        if self.logged < Self::BURST {
            self.logged += 1;
            log.warn(line);
        } else {
            self.suppressed += 1;
        }
    }
}

/// The event types a session has seen, each allocated once: an event in flight keeps
/// its type for log lines, and a bot receives a handful of types, so a shared `Arc`
/// replaces a `String` per event. Past [`EventTypes::MAX`] distinct types, new ones are
/// allocated per event rather than remembered, so a stream of odd types cannot grow it.
#[derive(Default)]
struct EventTypes(Vec<Arc<str>>);

impl EventTypes {
    const MAX: usize = 32;

    fn get(&mut self, kind: Option<&str>) -> Option<Arc<str>> {
        let kind = kind?;
        if let Some(known) = self.0.iter().find(|k| &***k == kind) {
            return Some(Arc::clone(known));
        }
        let new: Arc<str> = Arc::from(kind);
        if self.0.len() < Self::MAX {
            self.0.push(Arc::clone(&new));
        }
        Some(new)
    }
}

const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
/// Partial fragments expire after 10 s; checking every second while any are held keeps
/// memory honest. With none held the check is not armed, so an idle session wakes for its
/// pings only (a tick that ran always cost an idle bot two or three wakes a second:
/// bench/NOTES.md, "The idle session's one-second tick").
const EXPIRY_TICK: Duration = Duration::from_secs(1);
/// Messages read in one turn of the session loop before it looks at its other inputs:
/// enough to amortise the turn under load, few enough that acks and pings never wait long.
const READ_BURST: usize = 64;

type WsSink = futures_util::stream::SplitSink<WsStream, Message>;
type WsSource = futures_util::stream::SplitStream<WsStream>;

/// Runs one connected socket until it is lost or the caller stops it.
pub async fn run_session(
    ws: WsStream,
    endpoint: &Endpoint,
    ctx: SessionContext<'_>,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> SessionEnd {
    let (mut sink, mut stream) = ws.split();
    let log = ctx.log.clone();
    let mut session = Session {
        conn_tag: endpoint
            .device_id
            .as_deref()
            .map(|d| format!(" [conn_id={d}]"))
            .unwrap_or_default(),
        assembler: Assembler::new(ctx.cfg.fragment_limits.clone()),
        ctx,
        endpoint,
        healthy: false,
        drops: DropLog::default(),
        inflight: InFlight::new(),
        unflushed: false,
        event_types: EventTypes::default(),
        backpressure: false,
        durable_burst: DurableBurst::default(),
    };
    let end = session.run(&mut sink, &mut stream, control).await;
    // Events collected in a burst the session left early are still claimed and handled.
    session.durable_burst.flush();
    session.inflight.hand_off(&log);
    end
}

/// The state of one session; see [`run_session`].
struct Session<'a> {
    ctx: SessionContext<'a>,
    endpoint: &'a Endpoint,
    conn_tag: String,
    assembler: Assembler,
    /// A pong or an event arrived: the connection works.
    healthy: bool,
    drops: DropLog,
    inflight: InFlight,
    /// Acks were fed to the sink and not flushed yet.
    unflushed: bool,
    event_types: EventTypes,
    /// Every handler slot is busy and the socket is not read (reported through
    /// `on_backpressure` on every change).
    backpressure: bool,
    /// The events of the read burst in progress bound for a durable store that takes
    /// bursts (durable.rs), started together when the burst ends.
    durable_burst: DurableBurst,
}

/// Ends a read burst ([`EventHandler::end_burst`]) when dropped, so every way out of the
/// burst, an early return or a cancelled session included, ends it.
struct BurstGuard<'a>(&'a dyn EventHandler);

impl Drop for BurstGuard<'_> {
    fn drop(&mut self) {
        self.0.end_burst();
    }
}

/// Ends the session with a recoverable error.
macro_rules! lost {
    ($healthy:expr, $code:expr, $($arg:tt)*) => {{
        let error = TransportError::recoverable($code, format!($($arg)*));
        return SessionEnd::Lost { error, healthy: $healthy };
    }};
}

impl Session<'_> {
    async fn run(
        &mut self,
        sink: &mut WsSink,
        stream: &mut WsSource,
        control: &mut mpsc::UnboundedReceiver<Control>,
    ) -> SessionEnd {
        let cfg = self.ctx.cfg;
        let log = self.ctx.log;
        let ping_interval_of = |server: &ServerConfig| {
            cfg.ping_interval
                .or(server.ping_interval)
                .unwrap_or(DEFAULT_PING_INTERVAL)
        };
        let ping = Frame::ping(self.endpoint.service_id).encode_to_vec();
        let mut next_ping = tokio::time::Instant::now();
        let mut last_ping_at: Option<tokio::time::Instant> = None;
        let mut pong_deadline: Option<tokio::time::Instant> = None;
        let mut slow_armed = false;
        let mut deadline_armed = false;
        let mut expiry_armed = false;

        // The timers live across turns of the loop and are reset only when their deadline
        // changes: a `sleep_until` made afresh in every turn registers with and leaves the
        // runtime's timer wheel each time, once per message read under load.
        let ping_timer = tokio::time::sleep_until(next_ping);
        let pong_timer = tokio::time::sleep(Duration::from_secs(86_400));
        let expiry_timer = tokio::time::sleep(Duration::from_secs(86_400));
        let drain_timer = tokio::time::sleep(Duration::from_secs(86_400));
        let slow_timer = tokio::time::sleep(Duration::from_secs(86_400));
        let deadline_timer = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(
            ping_timer,
            pong_timer,
            expiry_timer,
            drain_timer,
            slow_timer,
            deadline_timer
        );

        // Set by a graceful close: no more reads, pings or liveness checks; leave when every
        // in-flight handler has acked or the drain time is up.
        let mut draining: Option<(tokio::time::Instant, bool)> = None;

        loop {
            if self.unflushed {
                self.unflushed = false;
                if let Err(e) = sink.flush().await {
                    lost!(
                        self.healthy,
                        ErrorCode::Disconnected,
                        "writing acks failed: {e}"
                    );
                }
            }
            if let Some((deadline, aborted)) = draining {
                let in_flight = self.inflight.len();
                if in_flight == 0 || tokio::time::Instant::now() >= deadline {
                    if in_flight > 0 {
                        let tag = &self.conn_tag;
                        log.warn(|| format!("closing with {in_flight} handler(s) still running; their events will be re-delivered{tag}"));
                    }
                    close_gracefully(sink, stream, cfg.timeouts.close).await;
                    return SessionEnd::Stopped { aborted };
                }
            }
            if !slow_armed {
                if let Some(due) = self.inflight.slow.next_due() {
                    slow_timer.as_mut().reset(due);
                    slow_armed = true;
                }
            }
            if !deadline_armed {
                if let Some(due) = self.inflight.deadlines.next_due() {
                    deadline_timer.as_mut().reset(due);
                    deadline_armed = true;
                }
            }
            // Armed while fragments are held (and so it fires once more after the last
            // one completes); disarmed it is not polled, and a timer that fired and is
            // not polled again wakes nobody: with no fragments, no wake at all.
            if !expiry_armed && self.assembler.pending_messages() > 0 {
                expiry_timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + EXPIRY_TICK);
                expiry_armed = true;
            }
            let saturated = self.inflight.len() >= cfg.max_concurrent_handlers;
            self.note_backpressure(draining.is_none() && saturated);
            let reading = draining.is_none() && !saturated;
            tokio::select! {
                biased;
                ctrl = control.recv() => match ctrl {
                    Some(Control::Close { force: true, aborted, .. }) => {
                        return SessionEnd::Stopped { aborted };
                    }
                    Some(Control::Close { force: false, drain, aborted }) => {
                        let in_flight = self.inflight.len();
                        let tag = &self.conn_tag;
                        log.debug(|| format!("closing: draining {in_flight} in-flight handler(s) for up to {} ms{tag}", drain.as_millis()));
                        let deadline = tokio::time::Instant::now() + drain;
                        draining = Some((deadline, aborted));
                        drain_timer.as_mut().reset(deadline);
                        pong_deadline = None;
                    }
                    Some(Control::Drop(reason)) => {
                        lost!(self.healthy, ErrorCode::Disconnected, "connection dropped by the application: {reason}");
                    }
                    // The run is gone (its future was dropped): nobody is listening.
                    None => return SessionEnd::Stopped { aborted: false },
                },
                Some(settled) = self.inflight.rx.recv() => {
                    // Every answer that is ready is fed, then flushed once at the top of
                    // the loop: batching keeps the syscall count per event low under load.
                    let mut next = Some(settled);
                    while let Some(settled) = next.take().or_else(|| self.inflight.rx.try_recv().ok()) {
                        for (token, answer) in settled.into_answers() {
                            if let Some(ack) = self.inflight.settle(token, answer, log) {
                                if let Err(e) = self.write_ack(sink, ack).await {
                                    lost!(self.healthy, ErrorCode::Disconnected, "writing an ack failed: {e}");
                                }
                            }
                        }
                    }
                    self.inflight.trim();
                }
                msg = stream.next(), if reading => {
                    // Any inbound traffic proves the peer alive (as the Node SDK's pingTimeout does).
                    pong_deadline = None;
                    let mut msg = msg;
                    let mut burst = 0;
                    // The JS handler then crosses the whole burst in one call instead of
                    // waking JavaScript for its first event and again for the rest. The
                    // guard ends the burst however this turn ends.
                    let handler: &Arc<dyn EventHandler> = self.ctx.handler;
                    handler.begin_burst();
                    let _burst = BurstGuard(&**handler);
                    loop {
                        let m = match msg {
                            None => lost!(self.healthy, ErrorCode::Disconnected, "the server closed the connection without a close frame"),
                            Some(Err(e)) => lost!(self.healthy, ErrorCode::Disconnected, "the connection failed: {e}"),
                            Some(Ok(m)) => m,
                        };
                        match self.on_message(m, sink).await {
                            Ok(Some(changed)) => {
                                // A pong changed the config: a new interval counts from
                                // the last ping, not from the one after it.
                                if let (true, Some(sent)) = (changed, last_ping_at) {
                                    next_ping = sent + ping_interval_of(self.ctx.server);
                                    ping_timer.as_mut().reset(next_ping);
                                }
                            }
                            Ok(None) => {}
                            Err(end) => return end,
                        }
                        burst += 1;
                        if burst >= READ_BURST || self.inflight.len() >= cfg.max_concurrent_handlers {
                            break;
                        }
                        // More messages already buffered are read in this turn.
                        match stream.next().now_or_never() {
                            Some(m) => msg = m,
                            None => break,
                        }
                    }
                    self.durable_burst.flush();
                }
                () = &mut ping_timer, if draining.is_none() => {
                    let now = tokio::time::Instant::now();
                    if let Err(e) = sink.send(Message::Binary(ping.clone().into())).await {
                        lost!(self.healthy, ErrorCode::Disconnected, "sending a ping failed: {e}");
                    }
                    self.unflushed = false;
                    let tag = &self.conn_tag;
                    log.debug(|| format!("ping sent (service {}){tag}", self.endpoint.service_id));
                    if pong_deadline.is_none() {
                        let deadline = now + cfg.timeouts.pong;
                        pong_deadline = Some(deadline);
                        pong_timer.as_mut().reset(deadline);
                    }
                    next_ping = now + ping_interval_of(self.ctx.server);
                    ping_timer.as_mut().reset(next_ping);
                    last_ping_at = Some(now);
                }
                () = &mut pong_timer, if pong_deadline.is_some() => {
                    // Every deadline set resets the timer, and traffic clears the deadline
                    // (disabling this branch), so the timer is the deadline in force.
                    if !reading {
                        // We stopped reading on purpose (handlers saturated): silence is ours,
                        // not the server's. Check again after another full timeout.
                        let deadline = tokio::time::Instant::now() + cfg.timeouts.pong;
                        pong_deadline = Some(deadline);
                        pong_timer.as_mut().reset(deadline);
                        continue;
                    }
                    lost!(self.healthy, ErrorCode::PongTimeout, "nothing arrived within {} ms of a ping: the connection is presumed dead", cfg.timeouts.pong.as_millis());
                }
                () = &mut expiry_timer, if expiry_armed => {
                    expiry_armed = false;
                    let expired = self.assembler.expire(Instant::now());
                    if expired > 0 {
                        self.ctx.status.counters.dropped_frames.fetch_add(expired as u64, std::sync::atomic::Ordering::Relaxed);
                        let tag = &self.conn_tag;
                        log.warn(|| format!("discarded {expired} incomplete fragmented message(s) after the 10 s limit{tag}"));
                    }
                }
                () = &mut slow_timer, if slow_armed => {
                    slow_armed = false;
                    self.warn_slow(cfg.slow_handler_warning);
                }
                () = &mut deadline_timer, if deadline_armed => {
                    deadline_armed = false;
                    if let Err(e) = self.time_out_handlers(sink).await {
                        lost!(self.healthy, ErrorCode::Disconnected, "writing an ack failed: {e}");
                    }
                }
                () = &mut drain_timer, if draining.is_some() => {}
            }
        }
    }

    /// Feeds one ack to the sink (flushed at the top of the loop).
    async fn write_ack(
        &mut self,
        sink: &mut WsSink,
        ack: ReadyAck,
    ) -> Result<(), tungstenite::Error> {
        let counters = &self.ctx.status.counters;
        Counters::bump(if ack.ok {
            &counters.acks
        } else {
            &counters.failed_acks
        });
        self.unflushed = true;
        sink.feed(Message::Binary(ack.frame.into())).await
    }

    /// Warns once about each handler that has run past `slow_after` (Feishu re-delivers
    /// events not acked within 3 s).
    fn warn_slow(&mut self, slow_after: Duration) {
        let now = tokio::time::Instant::now();
        while let Some(token) = self.inflight.slow.pop_due(now) {
            if let Some(p) = self.inflight.pending.get(&token) {
                let (id, kind) = (p.message_id(), p.event_type.as_deref().unwrap_or(""));
                self.ctx.log.warn(|| format!("the handler for event {id} ({kind}) has run for {} ms; Feishu re-delivers events not acked within 3 s", slow_after.as_millis()));
            }
        }
        self.inflight.trim();
    }

    /// Acks 500 every event whose handler has run past `handlerTimeoutMs`, freeing its
    /// slot (see [`InFlight::time_out`]).
    async fn time_out_handlers(&mut self, sink: &mut WsSink) -> Result<(), tungstenite::Error> {
        let Some(after) = self.ctx.cfg.handler_timeout else {
            return Ok(());
        };
        let now = tokio::time::Instant::now();
        while let Some(token) = self.inflight.deadlines.pop_due(now) {
            if let Some(ack) = self.inflight.time_out(token, after, self.ctx.log) {
                Counters::bump(&self.ctx.status.counters.handler_timeouts);
                self.write_ack(sink, ack).await?;
            }
        }
        self.inflight.trim();
        Ok(())
    }

    /// Reports a change of backpressure: logged, and shown by `status()`/`onStatus`.
    fn note_backpressure(&mut self, on: bool) {
        if on == self.backpressure {
            return;
        }
        self.backpressure = on;
        let (n, tag) = (self.ctx.cfg.max_concurrent_handlers, &self.conn_tag);
        if on {
            self.ctx.log.warn(|| format!("all {n} handler slots are busy: the socket is not read until a handler settles (maxConcurrentHandlers){tag}"));
        } else {
            self.ctx
                .log
                .info(|| format!("a handler slot is free again: reading resumes{tag}"));
        }
        (self.ctx.on_backpressure)(on);
    }

    /// Handles one inbound message. `Ok(Some(true))`: a pong changed the server config.
    async fn on_message(
        &mut self,
        msg: Message,
        sink: &mut WsSink,
    ) -> Result<Option<bool>, SessionEnd> {
        let counters = &self.ctx.status.counters;
        let log = self.ctx.log;
        let tag = &self.conn_tag;
        let bytes = match msg {
            Message::Binary(bytes) => bytes,
            Message::Text(t) => {
                self.drops.note(counters, log, || {
                    format!(
                        "dropped a text message ({} bytes): the protocol is binary{tag}",
                        t.len()
                    )
                });
                return Ok(None);
            }
            Message::Close(frame) => {
                let why = frame
                    .map(|f| format!("code {}, reason {:?}", u16::from(f.code), f.reason.as_str()))
                    .unwrap_or_else(|| "no code".into());
                return Err(self.disconnected(format!("the server closed the connection ({why})")));
            }
            // tungstenite answers RFC 6455 pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(None),
        };
        let len = bytes.len();
        let frame = match FrameView::decode(&bytes) {
            Ok(f) => f,
            Err(e) => {
                self.drops.note(counters, log, || {
                    format!("dropped an undecodable frame ({len} bytes): {e}{tag}")
                });
                return Ok(None);
            }
        };
        match frame.method {
            METHOD_CONTROL => Ok(self.on_control(frame).then_some(true)),
            METHOD_DATA => {
                if frame.frame_type() != frame_type::EVENT {
                    // `card` and unknown types: no dispatch and no ack, as every official
                    // SDK does (docs/PROTOCOL.md §6).
                    log.debug(|| {
                        format!("ignored a data frame of type {:?}{tag}", frame.frame_type())
                    });
                    return Ok(None);
                }
                if let Some(ack) = self.on_event_frame(frame) {
                    if let Err(e) = self.write_ack(sink, ack).await {
                        return Err(self.disconnected(format!("writing an ack failed: {e}")));
                    }
                }
                Ok(None)
            }
            other => {
                log.debug(|| format!("ignored a frame with method {other}{tag}"));
                Ok(None)
            }
        }
    }

    /// The end of a session whose socket is gone.
    fn disconnected(&self, message: String) -> SessionEnd {
        SessionEnd::Lost {
            error: TransportError::recoverable(ErrorCode::Disconnected, message),
            healthy: self.healthy,
        }
    }

    /// A control frame; true when a pong changed the server config.
    fn on_control(&mut self, frame: FrameView<'_>) -> bool {
        // A server `ping` gets no reply, as in every official SDK.
        if frame.frame_type() != frame_type::PONG {
            return false;
        }
        let counters = &self.ctx.status.counters;
        counters
            .last_pong_at
            .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        self.mark_healthy();
        let Some(p) = frame.payload.filter(|p| !p.is_empty()) else {
            return false;
        };
        let tag = &self.conn_tag;
        match ServerConfig::from_pong(p) {
            Some(update) => {
                let before = *self.ctx.server;
                self.ctx.server.merge(&update);
                if *self.ctx.server == before {
                    return false;
                }
                let server = *self.ctx.server;
                self.ctx
                    .log
                    .debug(|| format!("server config updated by pong: {server:?}{tag}"));
                (self.ctx.on_server_config)(self.ctx.server);
                true
            }
            None => {
                self.drops.note(counters, self.ctx.log, || {
                    format!("ignored a pong whose config is not JSON{tag}")
                });
                false
            }
        }
    }

    fn mark_healthy(&mut self) {
        if !self.healthy {
            self.healthy = true;
            (self.ctx.on_healthy)();
        }
    }

    /// An event frame: reassembles, checks and dispatches it. Returns an ack to write
    /// right away when dedupe already knows the answer.
    fn on_event_frame(&mut self, frame: FrameView<'_>) -> Option<ReadyAck> {
        let counters = &self.ctx.status.counters;
        let log = self.ctx.log;
        let tag = &self.conn_tag;
        // Borrowed from the message: a whole message reaches the handler as it arrived,
        // and only a fragment is copied (into its buffer).
        let payload = frame.payload.unwrap_or_default();
        // One clock read per frame: fragment expiry, dedupe and the handler's start.
        let now = Instant::now();
        let complete = match self.assembler.push(&frame, payload, now) {
            Ok(Some(c)) => c,
            Ok(None) => {
                let evicted = self.assembler.take_evicted();
                if evicted > 0 {
                    self.drops.note(counters, log, || format!("dropped the oldest incomplete fragmented message to make room for a new one (the pending limit is reached){tag}"));
                }
                return None;
            }
            Err(e) => {
                self.drops
                    .note(counters, log, || format!("dropped a fragment: {e}{tag}"));
                return None;
            }
        };
        let payload = match std::str::from_utf8(&complete.payload) {
            Ok(s) => s,
            Err(_) => {
                let id = complete.message_id;
                self.drops.note(counters, log, || {
                    format!("dropped event {id}: its payload is not UTF-8{tag}")
                });
                return None;
            }
        };
        let meta = match envelope_meta(payload) {
            Ok(m) => m,
            Err(e) => {
                let id = complete.message_id;
                self.drops.note(counters, log, || {
                    format!("dropped event {id}: its payload is not a valid envelope (one JSON object): {e}{tag}")
                });
                return None;
            }
        };
        let received_at_ms = now_ms();
        Counters::bump(&counters.events);
        counters
            .last_event_at
            .store(received_at_ms, std::sync::atomic::Ordering::Relaxed);
        self.mark_healthy();
        let ack = AckTemplate::new(&frame);
        let event = InboundEvent {
            payload,
            trace_id: frame.header(header_key::TRACE_ID),
            message_id: complete.message_id,
            event_type: meta.event_type.as_deref(),
            event_id: meta.event_id.as_deref(),
            received_at_ms,
        };
        self.dispatch(event, ack, now)
    }

    /// Decides what one event needs — a handler call, a remembered result, or a wait for
    /// the same event in flight — and starts it. Handlers are called right here, so in
    /// arrival order.
    fn dispatch(
        &mut self,
        event: InboundEvent<'_>,
        ack: AckTemplate,
        started: Instant,
    ) -> Option<ReadyAck> {
        let token = self.inflight.next_token;
        self.inflight.next_token += 1;
        let mut guard = None;
        if let (Some(d), Some(key)) = (self.ctx.dedupe, event.event_id) {
            match d.begin(key, started) {
                Begin::Done(v) => {
                    Counters::bump(&self.ctx.status.counters.duplicates);
                    self.ctx.log.debug(|| format!("event {key} was already handled; acking the re-delivery with the same result"));
                    return Some(ReadyAck {
                        frame: ack.encode(0, &v),
                        ok: v != AckPayload::Failed,
                    });
                }
                Begin::Wait(h) => {
                    let event_type = self.event_types.get(event.event_type);
                    self.track(token, ack, None, started, event_type);
                    let event = event.to_owned();
                    let tx = self.inflight.tx.clone();
                    let takeover = Takeover {
                        dedupe: d.clone(),
                        handler: self.ctx.handler.clone(),
                        status: self.ctx.status.clone(),
                        log: self.ctx.log.clone(),
                        timeout: self.ctx.cfg.handler_timeout,
                        store: self.ctx.store.cloned(),
                    };
                    tokio::spawn(async move {
                        let answer = await_first_delivery(h, event, takeover).await;
                        let _ = tx.send(Settled::One(token, answer));
                    });
                    return None;
                }
                Begin::Run(g) => match self.ctx.store {
                    None => guard = Some(g),
                    // Owned here: the store decides, off this task (durable.rs).
                    Some(store) => {
                        let event_type = self.event_types.get(event.event_type);
                        self.track(token, ack, None, started, event_type);
                        let durable = DurableEvent {
                            store: store.clone(),
                            guard: g,
                            event: event.to_owned(),
                            handler: self.ctx.handler.clone(),
                            status: self.ctx.status.clone(),
                            log: self.ctx.log.clone(),
                            timeout: self.ctx.cfg.handler_timeout,
                        };
                        if store.takes_bursts() {
                            self.durable_burst.push(durable, &self.inflight.tx, token);
                        } else {
                            durable.spawn(self.inflight.tx.clone(), token);
                        }
                        return None;
                    }
                },
            }
        }
        let event_type = self.event_types.get(event.event_type);
        self.track(token, ack, guard, started, event_type);
        self.ctx
            .handler
            .handle(event, Reply::session(self.inflight.tx.clone(), token));
        None
    }

    fn track(
        &mut self,
        token: u64,
        ack: AckTemplate,
        guard: Option<DedupeGuard<AckPayload>>,
        started: Instant,
        event_type: Option<Arc<str>>,
    ) {
        self.inflight.pending.insert(
            token,
            Pending {
                ack,
                guard,
                started,
                event_type,
            },
        );
        let started = tokio::time::Instant::from_std(started);
        let cfg = self.ctx.cfg;
        self.inflight
            .slow
            .push(token, started + cfg.slow_handler_warning);
        if let Some(after) = cfg.handler_timeout {
            self.inflight.deadlines.push(token, started + after);
        }
    }
}

/// What a re-delivery that waits on the first one needs to take over from it.
struct Takeover {
    dedupe: Arc<Dedupe<AckPayload>>,
    handler: Arc<dyn EventHandler>,
    status: Arc<StatusStore>,
    log: Log,
    timeout: Option<Duration>,
    /// With a durable store, taking over goes through it like a first delivery: another
    /// process may hold the event, or have handled it meanwhile.
    store: Option<Arc<DurableStore>>,
}

/// A re-delivery of an event still in flight: waits for the first delivery's outcome; if
/// that failed, this delivery may run the handler itself.
async fn await_first_delivery(
    mut wait: WaitHandle<AckPayload>,
    event: OwnedEvent,
    t: Takeover,
) -> Answer {
    loop {
        if let Some(v) = wait.wait().await {
            Counters::bump(&t.status.counters.duplicates);
            return Answer::Known(v);
        }
        let key = event.event_id.clone().unwrap_or_default();
        let guard = match t.dedupe.begin(&key, Instant::now()) {
            Begin::Done(v) => {
                Counters::bump(&t.status.counters.duplicates);
                return Answer::Known(v);
            }
            Begin::Wait(next) => {
                wait = next;
                continue;
            }
            Begin::Run(guard) => guard,
        };
        let Some(store) = t.store else {
            // Concluded here, since the session's entry for this delivery owns no guard.
            let payload = call_handler(&t.handler, event, t.timeout, &t.log).await;
            settle_dedupe(Some(guard), &payload, Instant::now());
            return Answer::Known(payload);
        };
        let durable = DurableEvent {
            store,
            guard,
            event,
            handler: t.handler,
            status: t.status,
            log: t.log,
            timeout: t.timeout,
        };
        return durable.run().await;
    }
}

/// Sends a close frame and waits (bounded) for the server's, so the server sees a clean
/// close rather than a reset.
async fn close_gracefully<S, R>(sink: &mut S, stream: &mut R, timeout: Duration)
where
    S: futures_util::Sink<Message> + Unpin,
    R: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let _ = tokio::time::timeout(timeout, async {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "client closed".into(),
            })))
            .await;
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_shared_and_bounded() {
        let mut types = EventTypes::default();
        assert!(types.get(None).is_none());
        let a = types.get(Some("im.message.receive_v1")).unwrap();
        let b = types.get(Some("im.message.receive_v1")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one allocation per type");
        for i in 0..100 {
            let t = format!("t{i}");
            assert_eq!(types.get(Some(&t)).as_deref(), Some(t.as_str()));
        }
        assert_eq!(types.0.len(), EventTypes::MAX);
    }
}
