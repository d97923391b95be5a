//! One accepted WebSocket: a reader task (pings, acks) and a writer task fed by an
//! unbounded queue (its [`Outbox`]), so a push never waits for a slow socket.
//!
//! Each connection has a mode (`watch`): running, stalled (neither side touches the
//! socket, which stays open: a half-open peer as the client sees it), or closing. Both
//! tasks watch it, so a drop or a stall takes effect even in the middle of a write.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use prost::Message as _;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::conn_handle::{bad_frame, ConnHandle, Mode, Outbound, OutboxReader};
use super::view::{self, ReadFields};
use super::{delivery, emu_debug, now_ms, Inner, PingRecord};
use crate::core::frame::{frame_type, Frame, METHOD_CONTROL};

type Ws = WebSocketStream<super::tls::EmuStream>;

/// How long a goodbye (close frame) may take before the socket is simply dropped: the
/// peer may not be reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Frames fed before a flush even if more are queued, so one huge burst cannot delay
/// the first bytes indefinitely.
const MAX_BATCH: usize = 512;

/// Sends a close frame and drops the socket (the accept-and-close fault).
pub(crate) async fn close_at_once(mut ws: Ws) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let _ = ws.send(Message::Close(Some(normal_close()))).await;
        let _ = ws.close(None).await;
    })
    .await;
}

fn normal_close() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

/// Keeps a connection in the live set while alive; dropping it ends the connection's
/// mode and unregisters it.
pub(crate) struct Registration {
    inner: Arc<Inner>,
    handle: Arc<ConnHandle>,
}

impl Registration {
    pub(crate) fn new(inner: Arc<Inner>, handle: Arc<ConnHandle>) -> Registration {
        Registration { inner, handle }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.handle.end();
        unregister(&self.inner, &self.handle);
    }
}

/// Runs a registered connection until it ends; the registration is dropped at the end.
pub(crate) async fn run(inner: Arc<Inner>, registration: Registration, rx: OutboxReader, ws: Ws) {
    let handle = registration.handle.clone();
    inner.conn_changed.notify_waiters();
    // Deliveries that waited for a connection of this app go out now.
    delivery::flush_queue(&inner, &handle.app_id);

    let (sink, stream) = ws.split();
    let writer = {
        let handle = handle.clone();
        let mode_rx = handle.mode.subscribe();
        let guard = inner.task_guard();
        tokio::spawn(async move {
            let _guard = guard;
            writer(&handle, rx, sink, mode_rx).await;
            // A failed write ends the connection for the reader too.
            handle.end();
        })
    };
    reader(&inner, &handle, stream).await;
    handle.end();
    let _ = writer.await;
    drop(registration);
}

/// Removes a connection from the live set (after it ended, or when its 101 could not
/// be written).
fn unregister(inner: &Inner, handle: &Arc<ConnHandle>) {
    {
        let mut st = inner.lock();
        if let Some(list) = st.conns.get_mut(&handle.app_id) {
            list.retain(|c| !Arc::ptr_eq(c, handle));
            if list.is_empty() {
                st.conns.remove(&handle.app_id);
            }
        }
    }
    emu_debug!("connection {} closed", handle.id);
    inner.conn_changed.notify_waiters();
}

/// Acks handled under one lock at most (see `reader`).
const MAX_READ_BATCH: usize = 64;

async fn reader(
    inner: &Inner,
    handle: &ConnHandle,
    mut stream: futures_util::stream::SplitStream<Ws>,
) {
    let mut mode_rx = handle.mode.subscribe();
    let mut acks = delivery::AckBatch::default();
    loop {
        let mode = *mode_rx.borrow_and_update();
        match mode {
            Mode::Running => {}
            Mode::Stalled => {
                // Answer nothing, but keep draining the socket so the peer hanging up is
                // noticed: otherwise a stalled connection would stay "live" forever and
                // keep drawing deliveries, which no real server does for long.
                tokio::select! {
                    biased;
                    changed = mode_rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    msg = stream.next() => match msg {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                        Some(Ok(_)) => {}
                    },
                }
                continue;
            }
            Mode::Close { .. } | Mode::Ended => return,
        }
        let msg = tokio::select! {
            biased;
            changed = mode_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            msg = stream.next() => msg,
        };
        // Clients ack in bursts: the messages already read are handled together, their
        // acks under one lock and with one clock reading (taken now, when they were
        // read), and without arming the mode watch for each one. A mode change is still
        // seen before the next message.
        let now = Instant::now();
        let at_ms = now_ms();
        let mut next = Some(msg);
        let mut go_on = true;
        while let Some(msg) = next.take() {
            go_on = on_message(inner, handle, msg, &mut acks);
            if !go_on || acks.len() >= MAX_READ_BATCH || !matches!(mode_rx.has_changed(), Ok(false))
            {
                break;
            }
            next = stream.next().now_or_never();
        }
        delivery::on_acks(inner, handle, &mut acks, now, at_ms);
        if !go_on {
            return;
        }
    }
}

/// Handles one message read; acks are parsed into `acks` for the caller to record.
/// False when the connection is over.
fn on_message(
    inner: &Inner,
    handle: &ConnHandle,
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    acks: &mut delivery::AckBatch,
) -> bool {
    match msg {
        None => false,
        Some(Err(e)) => {
            emu_debug!("connection {}: read error: {e}", handle.id);
            false
        }
        Some(Ok(Message::Binary(bytes))) => {
            on_binary(inner, handle, &bytes, acks);
            true
        }
        Some(Ok(Message::Text(_))) => {
            bad_frame(inner, handle, "a text message");
            true
        }
        Some(Ok(Message::Close(_))) => false,
        // RFC 6455 pings are answered by tungstenite itself.
        Some(Ok(_)) => true,
    }
}

/// Answers a ping at once; adds an ack, parsed, to `acks` for the caller to record.
fn on_binary(inner: &Inner, handle: &ConnHandle, bytes: &Bytes, acks: &mut delivery::AckBatch) {
    // Zero-copy: headers and payload stay slices of `bytes`.
    let frame = match ReadFields::read(bytes) {
        Ok(f) => f,
        Err(e) => {
            bad_frame(inner, handle, &e.to_string());
            return;
        }
    };
    if frame.method == METHOD_CONTROL {
        if view::text(&frame.kind) == Some(frame_type::PING) {
            handle.pings.fetch_add(1, Ordering::Relaxed);
            let config = {
                let mut st = inner.lock();
                st.stats.pings += 1;
                st.pings.push(PingRecord {
                    connection_id: handle.id.to_string(),
                    service: frame.service,
                    at_ms: now_ms(),
                });
                st.pong_config.unwrap_or(st.client_config)
            };
            // The pong echoes the ping's SeqID, LogID and service.
            let ping = Frame {
                seq_id: frame.seq_id,
                log_id: frame.log_id,
                service: frame.service,
                ..Frame::default()
            };
            let pong = Frame::pong(&ping, &config.to_json());
            handle.send(Outbound::Binary(pong.encode_to_vec().into()));
        }
        // Other control frames from a client (a pong, say) mean nothing to the server.
        return;
    }
    acks.push(inner, handle, frame, bytes);
}

async fn writer(
    handle: &ConnHandle,
    mut rx: OutboxReader,
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut mode_rx: watch::Receiver<Mode>,
) {
    loop {
        let mode = *mode_rx.borrow_and_update();
        match mode {
            Mode::Running => {}
            Mode::Stalled => {
                if mode_rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Mode::Close { frame: true } => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    let _ = sink.send(Message::Close(Some(normal_close()))).await;
                    let _ = sink.close().await;
                })
                .await;
                return;
            }
            // Dropping the halves closes the TCP socket without a goodbye.
            Mode::Close { frame: false } | Mode::Ended => return,
        }
        let mut batch = tokio::select! {
            biased;
            changed = mode_rx.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            batch = rx.take() => batch,
        };
        // Feed everything that is ready, then flush once: one syscall for a burst (and
        // one every MAX_BATCH frames of a huge one, so its first bytes are not held up).
        let write = async {
            for (i, m) in batch.drain(..).enumerate() {
                if i > 0 && i % MAX_BATCH == 0 {
                    sink.flush().await?;
                }
                sink.feed(to_message(m)).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            biased;
            changed = mode_rx.changed() => {
                // A drop or stall mid-write: abandon the batch (those frames are lost,
                // as they would be on a real dying socket).
                if changed.is_err() {
                    return;
                }
            }
            written = write => {
                if let Err(e) = written {
                    emu_debug!("connection {}: write error: {e}", handle.id);
                    return;
                }
            }
        }
        rx.recycle(batch);
    }
}

fn to_message(m: Outbound) -> Message {
    match m {
        Outbound::Binary(b) => Message::Binary(b),
        Outbound::Text(t) => Message::Text(t.into()),
    }
}
