//! The emulator's handle on one live connection and the queue its writer drains: what the
//! delivery engine (`delivery.rs`) and the socket's tasks (`connection.rs`) share, so that
//! neither imports the other for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::{emu_debug, now_ms, ConnectionInfo, Inner};

/// A message for the writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    Binary(Bytes),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Running,
    /// Neither task touches the socket; it stays open.
    Stalled,
    /// Close: with a WebSocket close frame first, or just drop the TCP socket.
    Close {
        frame: bool,
    },
    /// The connection is over (read error, peer closed).
    Ended,
}

/// A connection's queue of messages for its writer: a vector under a lock that the writer
/// takes whole. (A tokio unbounded channel allocated a block of 32 slots, over a
/// kilobyte and so glibc's slow path, for every 32 frames pushed: 2.5 % of the
/// emulator's CPU under a benchmark's load. Two vectors swapped back and forth
/// allocate nothing once they have grown.)
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    /// Signalled when a message lands in an empty queue; a signal with nobody waiting is
    /// kept for the next wait, so none is lost.
    ready: Notify,
}

#[derive(Default)]
struct OutboxState {
    items: Vec<Outbound>,
    /// The writer is gone: messages are refused, as a closed channel's would be.
    closed: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer's end of an [`Outbox`]. Dropping it closes the outbox and drops what is
/// still queued.
pub(crate) struct OutboxReader {
    outbox: Arc<Outbox>,
    /// The vector the next take swaps in, keeping the capacity of earlier batches.
    spare: Vec<Outbound>,
}

impl OutboxReader {
    /// Waits until messages are queued and takes all of them, in order. Safe to cancel:
    /// nothing is taken until it returns.
    pub(crate) async fn take(&mut self) -> Vec<Outbound> {
        loop {
            {
                let mut state = self.outbox.lock();
                if !state.items.is_empty() {
                    return std::mem::replace(&mut state.items, std::mem::take(&mut self.spare));
                }
            }
            self.outbox.ready.notified().await;
        }
    }

    /// Gives back a written batch's vector (emptied) for reuse.
    pub(crate) fn recycle(&mut self, mut batch: Vec<Outbound>) {
        batch.clear();
        self.spare = batch;
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        let mut state = self.outbox.lock();
        state.closed = true;
        state.items.clear();
    }
}

/// The emulator's handle on one live connection.
pub(crate) struct ConnHandle {
    /// The device id of the URL; shared, since every ack record names it.
    pub(crate) id: Arc<str>,
    pub(crate) app_id: String,
    pub(crate) service_id: i32,
    pub(crate) connected_at_ms: u64,
    pub(crate) pings: AtomicU64,
    outbox: Arc<Outbox>,
    pub(crate) mode: watch::Sender<Mode>,
}

impl ConnHandle {
    pub(crate) fn new(
        id: String,
        app_id: String,
        service_id: i32,
    ) -> (Arc<ConnHandle>, OutboxReader) {
        let outbox = Arc::new(Outbox::default());
        let reader = OutboxReader {
            outbox: Arc::clone(&outbox),
            spare: Vec::new(),
        };
        let (mode, _) = watch::channel(Mode::Running);
        let handle = Arc::new(ConnHandle {
            id: id.into(),
            app_id,
            service_id,
            connected_at_ms: now_ms(),
            pings: AtomicU64::new(0),
            outbox,
            mode,
        });
        (handle, reader)
    }

    /// Queues a message for the writer. A stalled or closing connection swallows it.
    pub(crate) fn send(&self, m: Outbound) -> bool {
        let was_empty = {
            let mut state = self.outbox.lock();
            if state.closed {
                return false;
            }
            state.items.push(m);
            state.items.len() == 1
        };
        // Only the first message wakes the writer: it takes the rest with it.
        if was_empty {
            self.outbox.ready.notify_one();
        }
        true
    }

    pub(crate) fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Whether pushes may still go here. Stalled connections qualify: Feishu cannot
    /// tell a half-open peer from a healthy one, and events sent there are lost (and
    /// re-delivered after the deadline), which is the point of the fault.
    pub(crate) fn accepts_pushes(&self) -> bool {
        matches!(self.mode(), Mode::Running | Mode::Stalled)
    }

    pub(crate) fn close(&self, frame: bool) {
        self.mode.send_if_modified(|m| {
            if matches!(m, Mode::Running | Mode::Stalled) {
                *m = Mode::Close { frame };
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn stall(&self) {
        self.mode.send_if_modified(|m| {
            if *m == Mode::Running {
                *m = Mode::Stalled;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn end(&self) {
        self.mode.send_if_modified(|m| {
            if matches!(m, Mode::Running | Mode::Stalled) {
                *m = Mode::Ended;
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id.to_string(),
            app_id: self.app_id.clone(),
            service_id: self.service_id,
            connected_at_ms: self.connected_at_ms,
            pings: self.pings.load(Ordering::Relaxed),
            stalled: self.mode() == Mode::Stalled,
        }
    }
}

pub(crate) fn bad_frame(inner: &Inner, handle: &ConnHandle, what: &str) {
    inner.lock().stats.bad_frames_received += 1;
    emu_debug!("connection {}: bad frame: {what}", handle.id);
}
