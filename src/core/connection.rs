//! One physical socket: the handshake, then a session that reads frames, pings, checks
//! liveness, reassembles fragments, runs handlers and writes their acks.
//!
//! A session owns its socket and its ack channel. When it ends, both go with it: a
//! handler that finishes later has nowhere to send its ack, so an ack can never leak onto
//! the next socket (the event is re-delivered there instead).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::config::{LogLevel, TransportConfig};
use super::dedupe::{Begin, Dedupe, DedupeGuard, WaitHandle};
use super::endpoint::{Endpoint, ServerConfig};
use super::error::{ErrorCode, TransportError};
use super::events::{envelope_meta, EventHandler, HandlerFuture, InboundEvent};
use super::fragments::Assembler;
use super::frame::{frame_type, header_key, AckPayload, Frame, METHOD_CONTROL, METHOD_DATA};
use super::log::Log;
use super::status::{now_ms, Counters, StatusStore};

/// The socket: TLS (for `wss`) over TCP or over a proxy tunnel; see [`super::net`].
pub type WsStream = WebSocketStream<super::net::Stream>;

/// Opens the socket of `endpoint`: TCP (directly or through the configured proxy, with
/// `TCP_NODELAY`: acks are tiny and Nagle would hold them back ~40 ms), TLS for `wss`,
/// and the HTTP upgrade, all within the handshake timeout.
pub async fn dial(
    endpoint: &Endpoint,
    cfg: &TransportConfig,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<WsStream, TransportError> {
    let timeout = cfg.timeouts.handshake;
    // One deadline for the whole dial and for the proxy inside it, so a silent proxy is
    // reported as PROXY_ERROR (the inner timer is polled first) rather than a timeout.
    let deadline = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout_at(deadline, dial_inner(endpoint, cfg, tls, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(TransportError::recoverable(
            ErrorCode::HandshakeTimeout,
            format!(
                "the WebSocket handshake did not complete within {} ms",
                timeout.as_millis()
            ),
        )),
    }
}

async fn dial_inner(
    endpoint: &Endpoint,
    cfg: &TransportConfig,
    tls: &Arc<rustls::ClientConfig>,
    deadline: tokio::time::Instant,
) -> Result<WsStream, TransportError> {
    let url = url::Url::parse(&endpoint.url).map_err(|_| {
        TransportError::recoverable(ErrorCode::ProtocolError, "the socket URL does not parse")
    })?;
    let host = url.host_str().unwrap_or_default().to_string();
    let stream = super::net::open(
        &url,
        &super::net::OpenOptions {
            proxy: &cfg.proxy,
            tls,
            proxy_deadline: deadline,
            proxy_timeout: cfg.timeouts.handshake,
            code: ErrorCode::HandshakeFailed,
        },
    )
    .await?;
    let ws_config = WebSocketConfig::default();
    match tokio_tungstenite::client_async_with_config(
        endpoint.url.as_str(),
        stream,
        Some(ws_config),
    )
    .await
    {
        Ok((ws, _resp)) => Ok(ws),
        Err(e) => Err(classify_handshake_error(e, &host)),
    }
}

/// Reads the `Handshake-*` headers Feishu puts on a refused upgrade (PROTOCOL.md §3) and
/// classifies the refusal as [GoNew] does: 403 is terminal, 514 with autherrcode
/// 1000040350 is the connection limit, everything else is retried.
fn classify_handshake_error(e: tungstenite::Error, host: &str) -> TransportError {
    match e {
        tungstenite::Error::Http(resp) => {
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .map(str::to_string)
            };
            let http_status = resp.status().as_u16() as i64;
            let hs_status = header("handshake-status").and_then(|v| v.parse::<i64>().ok());
            let msg = header("handshake-msg").unwrap_or_default();
            let auth_code = header("handshake-autherrcode").and_then(|v| v.parse::<i64>().ok());
            let status = hs_status.unwrap_or(http_status);
            let detail = format!(
                "the server refused the WebSocket upgrade: HTTP {http_status}, Handshake-Status {}, Handshake-Msg {:?}{}",
                hs_status.map_or("absent".to_string(), |s| s.to_string()),
                msg,
                auth_code.map_or(String::new(), |c| format!(", Handshake-Autherrcode {c}"))
            );
            if status == 403 {
                TransportError::terminal(ErrorCode::Forbidden, detail).with_feishu_code(403)
            } else if auth_code == Some(super::endpoint::codes::CONNECTION_LIMIT) {
                TransportError::recoverable(ErrorCode::ConnectionLimit, detail)
                    .with_feishu_code(super::endpoint::codes::CONNECTION_LIMIT)
            } else {
                let e = TransportError::recoverable(ErrorCode::HandshakeFailed, detail);
                match auth_code.or(hs_status) {
                    Some(c) => e.with_feishu_code(c),
                    None => e,
                }
            }
        }
        tungstenite::Error::Tls(t) => {
            TransportError::recoverable(ErrorCode::TlsError, format!("TLS with {host} failed: {t}"))
        }
        tungstenite::Error::Io(io) => {
            let text = io.to_string();
            let code = if text.contains("certificate") || text.contains("InvalidCertificate") {
                ErrorCode::TlsError
            } else {
                ErrorCode::HandshakeFailed
            };
            TransportError::recoverable(
                code,
                format!("the WebSocket handshake with {host} failed: {text}"),
            )
        }
        other => TransportError::recoverable(
            ErrorCode::HandshakeFailed,
            format!("the WebSocket handshake with {host} failed: {other}"),
        ),
    }
}

/// Commands from the run to its live session.
#[derive(Debug)]
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
    pub log: &'a Log,
    /// The server config as known so far; pongs update it.
    pub server: &'a mut ServerConfig,
    /// Called when a pong changes the server config, so `status()` shows it.
    pub on_server_config: &'a (dyn Fn(&ServerConfig) + Send + Sync),
    /// Called once, when the connection first proves healthy.
    pub on_healthy: &'a (dyn Fn() + Send + Sync),
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

/// A finished handler's ack, ready to write.
struct ReadyAck {
    frame: Frame,
    ok: bool,
}

const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
/// Partial fragments expire after 10 s; checking every second keeps memory honest without
/// waking the task often.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

/// Runs one connected socket until it is lost or the caller stops it.
pub async fn run_session(
    ws: WsStream,
    endpoint: &Endpoint,
    ctx: SessionContext<'_>,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> SessionEnd {
    let (mut sink, mut stream) = ws.split();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<ReadyAck>();
    let handler_tasks = spawn_handler_driver();
    let counters = &ctx.status.counters;
    let log = ctx.log;
    let conn_tag = endpoint
        .device_id
        .as_deref()
        .map(|d| format!(" [conn_id={d}]"))
        .unwrap_or_default();

    let mut assembler = Assembler::new(ctx.cfg.fragment_limits.clone());
    let max_in_flight = ctx.cfg.max_concurrent_handlers;
    let mut in_flight: usize = 0;
    let mut healthy = false;
    let mut drops = DropLog::default();

    let ping_interval_of = |server: &ServerConfig| {
        ctx.cfg
            .ping_interval
            .or(server.ping_interval)
            .unwrap_or(DEFAULT_PING_INTERVAL)
    };
    let ping = Frame::ping(endpoint.service_id).encode_to_vec();
    let mut next_ping = tokio::time::Instant::now();
    let mut last_ping_at: Option<tokio::time::Instant> = None;
    let mut pong_deadline: Option<tokio::time::Instant> = None;
    let mut next_expiry = tokio::time::Instant::now() + EXPIRY_TICK;

    // Set by a graceful close: no more reads, pings or liveness checks; leave when every
    // in-flight handler has acked or the drain time is up.
    let mut draining: Option<(tokio::time::Instant, bool)> = None;

    macro_rules! lost {
        ($code:expr, $($arg:tt)*) => {{
            let error = TransportError::recoverable($code, format!($($arg)*));
            return SessionEnd::Lost { error, healthy };
        }};
    }

    loop {
        if let Some((deadline, aborted)) = draining {
            if in_flight == 0 || tokio::time::Instant::now() >= deadline {
                if in_flight > 0 {
                    log.warn(|| format!("closing with {in_flight} handler(s) still running; their events will be re-delivered{conn_tag}"));
                }
                close_gracefully(&mut sink, &mut stream, ctx.cfg.timeouts.close).await;
                return SessionEnd::Stopped { aborted };
            }
        }
        let reading = draining.is_none() && in_flight < max_in_flight;
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let drain_deadline = draining.map(|(d, _)| d).unwrap_or(far);
        tokio::select! {
            biased;
            ctrl = control.recv() => match ctrl {
                Some(Control::Close { force: true, aborted, .. }) => {
                    return SessionEnd::Stopped { aborted };
                }
                Some(Control::Close { force: false, drain, aborted }) => {
                    log.debug(|| format!("closing: draining {in_flight} in-flight handler(s) for up to {} ms{conn_tag}", drain.as_millis()));
                    draining = Some((tokio::time::Instant::now() + drain, aborted));
                    pong_deadline = None;
                }
                Some(Control::Drop(reason)) => {
                    lost!(ErrorCode::Disconnected, "connection dropped by the application: {reason}");
                }
                // The run is gone (its future was dropped): nobody is listening.
                None => return SessionEnd::Stopped { aborted: false },
            },
            Some(first) = ack_rx.recv() => {
                // Feed every ack that is ready, then flush once: batching keeps the
                // syscall count per event low under load.
                let mut batch = Some(first);
                while let Some(ack) = batch.take().or_else(|| ack_rx.try_recv().ok()) {
                    in_flight -= 1;
                    Counters::bump(if ack.ok { &counters.acks } else { &counters.failed_acks });
                    if let Err(e) = sink.feed(Message::Binary(ack.frame.encode_to_vec().into())).await {
                        lost!(ErrorCode::Disconnected, "writing an ack failed: {e}");
                    }
                }
                if let Err(e) = sink.flush().await {
                    lost!(ErrorCode::Disconnected, "writing acks failed: {e}");
                }
            }
            msg = stream.next(), if reading => {
                let msg = match msg {
                    None => lost!(ErrorCode::Disconnected, "the server closed the connection without a close frame"),
                    Some(Err(e)) => lost!(ErrorCode::Disconnected, "the connection failed: {e}"),
                    Some(Ok(m)) => m,
                };
                // Any inbound traffic proves the peer alive (as the Node SDK's pingTimeout does).
                pong_deadline = None;
                match msg {
                    Message::Binary(bytes) => {
                        let frame = match Frame::decode_bytes(&bytes) {
                            Ok(f) => f,
                            Err(e) => {
                                drops.note(counters, log, || format!("dropped an undecodable frame ({} bytes): {e}{conn_tag}", bytes.len()));
                                continue;
                            }
                        };
                        match frame.method {
                            METHOD_CONTROL => {
                                if frame.frame_type() == frame_type::PONG {
                                    counters.last_pong_at.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
                                    if !healthy {
                                        healthy = true;
                                        (ctx.on_healthy)();
                                    }
                                    if let Some(p) = frame.payload.as_deref().filter(|p| !p.is_empty()) {
                                        match ServerConfig::from_pong(p) {
                                            Some(update) => {
                                                let before = *ctx.server;
                                                ctx.server.merge(&update);
                                                if *ctx.server != before {
                                                    log.debug(|| format!("server config updated by pong: {:?}{conn_tag}", ctx.server));
                                                    (ctx.on_server_config)(ctx.server);
                                                    // A new interval counts from the last ping, not
                                                    // from the one after it.
                                                    if let Some(sent) = last_ping_at {
                                                        next_ping = sent + ping_interval_of(ctx.server);
                                                    }
                                                }
                                            }
                                            None => {
                                                drops.note(counters, log, || format!("ignored a pong whose config is not JSON{conn_tag}"));
                                            }
                                        }
                                    }
                                }
                                // A server `ping` gets no reply, as in every official SDK.
                            }
                            METHOD_DATA => {
                                if frame.frame_type() != frame_type::EVENT {
                                    // `card` and unknown types: no dispatch and no ack, as
                                    // every official SDK does (PROTOCOL.md §6).
                                    log.debug(|| format!("ignored a data frame of type {:?}{conn_tag}", frame.frame_type()));
                                    continue;
                                }
                                let complete = match assembler.push(&frame, Instant::now()) {
                                    Ok(Some(c)) => c,
                                    Ok(None) => continue,
                                    Err(e) => {
                                        drops.note(counters, log, || format!("dropped a fragment: {e}{conn_tag}"));
                                        continue;
                                    }
                                };
                                let payload = match String::from_utf8(complete.payload) {
                                    Ok(s) => s,
                                    Err(_) => {
                                        drops.note(counters, log, || format!("dropped event {}: its payload is not UTF-8{conn_tag}", complete.message_id));
                                        continue;
                                    }
                                };
                                let meta = match envelope_meta(&payload) {
                                    Ok(m) => m,
                                    Err(e) => {
                                        drops.note(counters, log, || format!("dropped event {}: its payload is not a JSON object: {e}{conn_tag}", complete.message_id));
                                        continue;
                                    }
                                };
                                let received_at_ms = now_ms();
                                Counters::bump(&counters.events);
                                counters.last_event_at.store(received_at_ms, std::sync::atomic::Ordering::Relaxed);
                                if !healthy {
                                    healthy = true;
                                    (ctx.on_healthy)();
                                }
                                let event = InboundEvent {
                                    payload,
                                    trace_id: frame.header(header_key::TRACE_ID).map(str::to_string),
                                    message_id: complete.message_id,
                                    event_type: meta.event_type,
                                    event_id: meta.event_id,
                                    received_at_ms,
                                };
                                in_flight += 1;
                                dispatch_event(
                                    event,
                                    frame,
                                    ctx.handler,
                                    ctx.dedupe,
                                    ctx.status,
                                    log,
                                    ctx.cfg.slow_handler_warning,
                                    ack_tx.clone(),
                                    &handler_tasks,
                                );
                            }
                            other => {
                                log.debug(|| format!("ignored a frame with method {other}{conn_tag}"));
                            }
                        }
                    }
                    Message::Text(t) => {
                        drops.note(counters, log, || format!("dropped a text message ({} bytes): the protocol is binary{conn_tag}", t.len()));
                    }
                    Message::Close(frame) => {
                        let why = frame.map(|f| format!("code {}, reason {:?}", u16::from(f.code), f.reason.as_str())).unwrap_or_else(|| "no code".into());
                        lost!(ErrorCode::Disconnected, "the server closed the connection ({why})");
                    }
                    // tungstenite answers RFC 6455 pings itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            _ = tokio::time::sleep_until(next_ping), if draining.is_none() => {
                let now = tokio::time::Instant::now();
                if let Err(e) = sink.send(Message::Binary(ping.clone().into())).await {
                    lost!(ErrorCode::Disconnected, "sending a ping failed: {e}");
                }
                log.debug(|| format!("ping sent (service {}){conn_tag}", endpoint.service_id));
                if pong_deadline.is_none() {
                    pong_deadline = Some(now + ctx.cfg.timeouts.pong);
                }
                next_ping = now + ping_interval_of(ctx.server);
                last_ping_at = Some(now);
            }
            _ = tokio::time::sleep_until(pong_deadline.unwrap_or(far)), if pong_deadline.is_some() => {
                if !reading {
                    // We stopped reading on purpose (handlers saturated): silence is ours,
                    // not the server's. Check again after another full timeout.
                    pong_deadline = Some(tokio::time::Instant::now() + ctx.cfg.timeouts.pong);
                    continue;
                }
                lost!(ErrorCode::PongTimeout, "nothing arrived within {} ms of a ping: the connection is presumed dead", ctx.cfg.timeouts.pong.as_millis());
            }
            _ = tokio::time::sleep_until(next_expiry) => {
                let expired = assembler.expire(Instant::now());
                if expired > 0 {
                    counters.dropped_frames.fetch_add(expired as u64, std::sync::atomic::Ordering::Relaxed);
                    log.warn(|| format!("discarded {expired} incomplete fragmented message(s) after the 10 s limit{conn_tag}"));
                }
                next_expiry = tokio::time::Instant::now() + EXPIRY_TICK;
            }
            _ = tokio::time::sleep_until(drain_deadline), if draining.is_some() => {}
        }
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

/// The rest of one event after its JavaScript call is queued: await the handler, settle
/// dedupe, hand the ack to the session.
type HandlerTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts the task that drives a session's [`HandlerTask`]s, and returns its inbox. One
/// task polls them all: a `tokio::spawn` per event cost an over-aligned allocation and a
/// lock of the runtime's task list each, and a wake-up per event. Like spawned tasks,
/// the handlers outlive the session: the driver ends once its inbox is closed (the
/// session is gone) and every handler has finished, so a handler still running when the
/// socket drops still settles dedupe for the re-delivery.
fn spawn_handler_driver() -> mpsc::UnboundedSender<HandlerTask> {
    let (tx, mut rx) = mpsc::unbounded_channel::<HandlerTask>();
    tokio::spawn(async move {
        let mut running = FuturesUnordered::new();
        let mut open = true;
        while open || !running.is_empty() {
            tokio::select! {
                task = rx.recv(), if open => match task {
                    Some(t) => {
                        running.push(t);
                        while let Ok(t) = rx.try_recv() {
                            running.push(t);
                        }
                    }
                    None => open = false,
                },
                Some(()) = running.next(), if !running.is_empty() => {}
            }
        }
    });
    tx
}

/// Decides, on the session task, what one event needs (a handler call, a remembered
/// result, or a wait for the same event in flight) and queues the JavaScript call right
/// away, so handlers are invoked in arrival order; the rest runs on the handler driver.
#[allow(clippy::too_many_arguments)]
fn dispatch_event(
    event: InboundEvent,
    frame: Frame,
    handler: &Arc<dyn EventHandler>,
    dedupe: Option<&Arc<Dedupe<AckPayload>>>,
    status: &Arc<StatusStore>,
    log: &Log,
    slow_after: Duration,
    ack_tx: mpsc::UnboundedSender<ReadyAck>,
    tasks: &mpsc::UnboundedSender<HandlerTask>,
) {
    enum Step {
        Run(Option<DedupeGuard<AckPayload>>, HandlerFuture),
        Done(AckPayload),
        Wait(
            WaitHandle<AckPayload>,
            InboundEvent,
            Arc<Dedupe<AckPayload>>,
        ),
    }
    let started = Instant::now();
    // Only the headers are needed for the ack: free the last fragment's bytes now, not
    // when the handler is done.
    let mut frame = frame;
    frame.payload = None;
    let message_id = event.message_id.clone();
    let event_type = event.event_type.clone().unwrap_or_default();
    let step = match (dedupe, event.event_id.clone()) {
        (Some(d), Some(key)) => match d.begin(&key, Instant::now()) {
            Begin::Done(v) => {
                Counters::bump(&status.counters.duplicates);
                log.debug(|| format!("event {key} was already handled; acking the re-delivery with the same result"));
                Step::Done(v)
            }
            Begin::Wait(h) => Step::Wait(h, event, d.clone()),
            Begin::Run(guard) => Step::Run(Some(guard), handler.handle(event)),
        },
        _ => Step::Run(None, handler.handle(event)),
    };
    let handler = handler.clone();
    let status = status.clone();
    let log = log.clone();
    let task = async move {
        let payload = match step {
            Step::Done(v) => v,
            Step::Run(guard, fut) => {
                let p = await_handler(fut, &message_id, &event_type, &log, slow_after).await;
                settle(guard, &p);
                p
            }
            Step::Wait(mut h, event, dedupe) => loop {
                if let Some(v) = h.wait().await {
                    Counters::bump(&status.counters.duplicates);
                    break v;
                }
                // The first delivery failed: this one may run the handler now.
                let key = event.event_id.clone().unwrap_or_default();
                match dedupe.begin(&key, Instant::now()) {
                    Begin::Done(v) => {
                        Counters::bump(&status.counters.duplicates);
                        break v;
                    }
                    Begin::Wait(next) => h = next,
                    Begin::Run(guard) => {
                        let fut = handler.handle(event);
                        let p =
                            await_handler(fut, &message_id, &event_type, &log, slow_after).await;
                        settle(Some(guard), &p);
                        break p;
                    }
                }
            },
        };
        let biz_rt = started.elapsed().as_millis() as u64;
        let ok = payload != AckPayload::Failed;
        let ack = frame.into_ack(biz_rt, &payload);
        if ack_tx.send(ReadyAck { frame: ack, ok }).is_err() {
            log.debug(|| format!("the connection of event {message_id} is gone; its ack is dropped and Feishu will re-deliver it"));
        }
    };
    // The driver lives as long as this sender; it cannot be gone here.
    let _ = tasks.send(Box::pin(task));
}

/// Remembers a success for re-deliveries; a failure is never remembered.
fn settle(guard: Option<DedupeGuard<AckPayload>>, payload: &AckPayload) {
    if let Some(guard) = guard {
        match payload {
            AckPayload::Failed => guard.fail(),
            ok => guard.succeed(ok.clone(), Instant::now()),
        }
    }
}

async fn await_handler(
    fut: HandlerFuture,
    message_id: &str,
    event_type: &str,
    log: &Log,
    slow_after: Duration,
) -> AckPayload {
    tokio::pin!(fut);
    let result = tokio::select! {
        r = &mut fut => r,
        _ = tokio::time::sleep(slow_after) => {
            log.warn(|| format!("the handler for event {message_id} ({event_type}) has run for {} ms; Feishu re-delivers events not acked within 3 s", slow_after.as_millis()));
            fut.await
        }
    };
    match result {
        Ok(None) => AckPayload::Ok,
        Ok(Some(json)) => AckPayload::OkWithData(json.into_bytes()),
        Err(reason) => {
            log.emit(
                LogLevel::Error,
                format!("the handler for event {message_id} ({event_type}) failed; acking 500 so Feishu re-delivers: {reason}"),
            );
            AckPayload::Failed
        }
    }
}
