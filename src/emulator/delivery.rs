//! Pushing events, matching acks, and re-delivery.
//!
//! Every event is pushed as one *delivery* (a set of fragments with its own `LogID`,
//! sent to one random live connection of the app). A delivery that is answered with a
//! non-200 ack, or not answered within `ack_deadline`, is followed by another delivery,
//! up to `max_redeliveries` times. The first 200 ack ends the event.
//!
//! Deadlines live in one queue instead of one timer per delivery: every delivery gets the
//! same `ack_deadline`, so pushing in time order keeps the queue sorted, and one task
//! sleeping until the front entry serves them all. That keeps a 100 000 events/s
//! benchmark from creating 100 000 timers per second.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::Semaphore;

use super::conn_handle::{bad_frame, ConnHandle, Outbound};
use super::view::{self, ReadFields};
use super::{emu_debug, now_ms, AckRecord, FragmentOrder, Inner, PushOptions, State};
use crate::core::frame::{frame_type, header_key, AckPayload, METHOD_DATA};
use crate::core::frame_view::{self, FrameIds, FrameView};

/// What the emulator remembers about one pushed event. Kept small and mostly
/// allocation-free (shared `Arc<str>`s, the latest delivery inline): a benchmark keeps
/// hundreds of thousands of these, and allocation was the emulator's main cost.
pub(crate) struct EventState {
    /// The message id (the map key, kept here to hand out clones without a lookup).
    id: Arc<str>,
    app_id: Arc<str>,
    /// Dropped once the event is done: nothing will be re-sent.
    payload: Option<Payload>,
    fragments: usize,
    order: FragmentOrder,
    frame_type: FrameType,
    pub(crate) event_id: Option<Arc<str>>,
    trace_id: Option<Box<str>>,
    /// The connection the first delivery must go to, if the caller chose one.
    pinned: Option<Box<str>>,
    /// The latest delivery sent (`no == 0`: none yet) and the ones before it.
    last: DeliveryInfo,
    older: Vec<DeliveryInfo>,
    /// Deliveries started (sent or queued): the number of the latest one.
    started: u32,
    done: bool,
    given_up: bool,
    /// Only `event` frames are tracked for acks; every SDK ignores `card` frames.
    tracked: bool,
    /// Flow control of `push_many`: a permit returned when the event is done.
    permit: Option<Arc<Semaphore>>,
    /// Absolute indices of this event's acks (see `State::ack`), in arrival order.
    pub(crate) acks: AckList,
}

impl EventState {
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether this event is the one registered under `id` (same allocation).
    pub(crate) fn id_is(&self, id: &Arc<str>) -> bool {
        Arc::ptr_eq(&self.id, id)
    }
}

/// Indices of acks; the first is inline since most events get exactly one.
#[derive(Default)]
pub(crate) struct AckList {
    first: Option<u64>,
    more: Vec<u64>,
}

impl AckList {
    pub(crate) fn push(&mut self, i: u64) {
        if self.first.is_none() {
            self.first = Some(i);
        } else {
            self.more.push(i);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.first.into_iter().chain(self.more.iter().copied())
    }
}

/// An event's payload: the bytes a caller pushed, or a generated envelope kept as its
/// parts. A generated payload is mostly padding; it is written straight into the frames
/// instead of into a buffer of its own first (for 200 kB events that buffer's fill and
/// copy were a quarter of the emulator's CPU).
pub(crate) enum Payload {
    Bytes(Bytes),
    /// `head`, then `pad` bytes of `x`, then [`GENERATED_TAIL`].
    Generated {
        head: Box<[u8]>,
        pad: usize,
    },
}

impl Payload {
    pub(crate) fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Generated { head, pad } => head.len() + pad + GENERATED_TAIL.len(),
        }
    }

    /// Appends bytes `start..end` of the payload to `out`.
    fn write_range(&self, start: usize, end: usize, out: &mut Vec<u8>) {
        match self {
            Payload::Bytes(b) => out.extend_from_slice(&b[start..end]),
            Payload::Generated { head, pad } => {
                let (h, p) = (head.len(), *pad);
                // The overlap of `start..end` with each part, in payload coordinates.
                let part = |from: usize, to: usize| start.max(from)..end.min(to);
                let r = part(0, h);
                if r.start < r.end {
                    out.extend_from_slice(&head[r]);
                }
                let r = part(h, h + p);
                if r.start < r.end {
                    out.resize(out.len() + r.len(), b'x');
                }
                let r = part(h + p, h + p + GENERATED_TAIL.len());
                if r.start < r.end {
                    out.extend_from_slice(
                        &GENERATED_TAIL.as_bytes()[r.start - h - p..r.end - h - p],
                    );
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_range(0, self.len(), &mut out);
        out
    }
}

#[derive(Debug, Clone)]
enum FrameType {
    Event,
    Card,
    Other(Box<str>),
}

impl FrameType {
    fn parse(s: String) -> FrameType {
        match s.as_str() {
            frame_type::EVENT => FrameType::Event,
            frame_type::CARD => FrameType::Card,
            _ => FrameType::Other(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            FrameType::Event => frame_type::EVENT,
            FrameType::Card => frame_type::CARD,
            FrameType::Other(s) => s,
        }
    }
}

#[derive(Clone, Copy)]
struct DeliveryInfo {
    no: u32,
    log_id: u64,
    pushed_at: Instant,
}

/// A delivery's ack deadline.
pub(crate) struct Deadline {
    at: Instant,
    message_id: Arc<str>,
    delivery: u32,
}

/// One ack as stored: compact, turned into an [`AckRecord`] only when read.
pub(crate) struct AckEntry {
    message_id: Arc<str>,
    event_id: Option<Arc<str>>,
    code: i64,
    data: Option<Vec<u8>>,
    /// The ack frame as received, copied out of the read buffer into its read batch's
    /// buffer (see [`AckBatch`]); its headers are decoded again on read instead of
    /// keeping a dozen small strings per ack.
    raw: Bytes,
    connection_id: Arc<str>,
    biz_rt: Option<i64>,
    at_ms: u64,
    latency_us: u64,
    delivery: u32,
}

impl AckEntry {
    pub(crate) fn code(&self) -> i64 {
        self.code
    }

    pub(crate) fn to_record(&self) -> AckRecord {
        let headers = FrameView::decode(&self.raw)
            .map(|f| {
                f.headers
                    .iter()
                    .map(|h| {
                        let key = String::from_utf8_lossy(h.key).into_owned();
                        (key, h.value.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        AckRecord {
            message_id: self.message_id.to_string(),
            event_id: self.event_id.as_deref().map(str::to_string),
            code: self.code,
            data: self.data.clone(),
            headers,
            connection_id: self.connection_id.to_string(),
            biz_rt: self.biz_rt,
            at_ms: self.at_ms,
            latency_us: self.latency_us,
            delivery: self.delivery,
        }
    }
}

/// Options of [`super::Emulator::push_many`].
#[derive(Debug, Clone)]
pub struct PushManyOptions {
    /// How many events.
    pub count: usize,
    /// Push this payload for every event. Default: a generated v2
    /// `im.message.receive_v1` envelope of `payload_bytes` bytes with a unique
    /// `event_id`, so a deduplicating client sees distinct events.
    pub payload: Option<Vec<u8>>,
    /// Size of the generated payloads (default 512).
    pub payload_bytes: usize,
    /// Fragments per event (default 1).
    pub fragments: usize,
    /// At most this many pushed events not yet done (acked 200 or given up).
    pub max_in_flight: Option<usize>,
    /// Pace the pushes at this many per second.
    pub rate_per_sec: Option<f64>,
    /// The app; default: the first.
    pub app_id: Option<String>,
}

impl Default for PushManyOptions {
    fn default() -> Self {
        PushManyOptions {
            count: 0,
            payload: None,
            payload_bytes: 512,
            fragments: 1,
            max_in_flight: None,
            rate_per_sec: None,
            app_id: None,
        }
    }
}

/// The event id of a payload, by the transport's own rule (`core::envelope`, the key its
/// dedupe uses: `header.event_id` when there is a `header`, else `uuid`), so the emulator
/// and the client can never disagree about which deliveries are the same event.
pub(crate) fn extract_event_id(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let meta = crate::core::envelope::envelope_meta(text).ok()?;
    meta.event_id.map(|id| id.into_owned())
}

/// The frames of one delivery, in wire order, handed to `emit` one by one. The payload
/// is cut into `fragments` byte slices (clamped to 1..=len, so no slice is empty: clients
/// treat an empty slot as missing); header order is `type, message_id, sum, seq,
/// trace_id` as Feishu sends. Returns the number of frames.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_frames(
    payload: &Payload,
    fragments: usize,
    order: FragmentOrder,
    frame_type: &str,
    message_id: &str,
    trace_id: &str,
    service: i32,
    first_seq_id: u64,
    log_id: u64,
    mut emit: impl FnMut(Bytes),
) -> usize {
    let len = payload.len();
    let n = fragments.clamp(1, len.max(1));
    if n == 1 {
        // The common case, without the index and number strings.
        let headers = [
            (header_key::TYPE, frame_type),
            (header_key::MESSAGE_ID, message_id),
            (header_key::SUM, "1"),
            (header_key::SEQ, "0"),
            (header_key::TRACE_ID, trace_id),
        ];
        emit(encode_exact(
            first_seq_id,
            log_id,
            service,
            &headers,
            payload,
            0,
            len,
        ));
        return 1;
    }
    let mut indices: Vec<usize> = (0..n).collect();
    match order {
        FragmentOrder::InOrder => {}
        FragmentOrder::Reverse => indices.reverse(),
        FragmentOrder::Shuffle => indices.shuffle(&mut rand::rng()),
    }
    let sum = n.to_string();
    for (k, &i) in indices.iter().enumerate() {
        let seq = i.to_string();
        let headers = [
            (header_key::TYPE, frame_type),
            (header_key::MESSAGE_ID, message_id),
            (header_key::SUM, sum.as_str()),
            (header_key::SEQ, seq.as_str()),
            (header_key::TRACE_ID, trace_id),
        ];
        emit(encode_exact(
            first_seq_id + k as u64,
            log_id,
            service,
            &headers,
            payload,
            i * len / n,
            (i + 1) * len / n,
        ));
    }
    n
}

/// One data frame carrying bytes `start..end` of `payload`, in a buffer of exactly its
/// size (no second allocation in `Bytes::from`), by the core's encoder; the payload is
/// written straight from its parts (`Payload::write_range`).
#[allow(clippy::too_many_arguments)]
fn encode_exact(
    seq_id: u64,
    log_id: u64,
    service: i32,
    headers: &[(&str, &str)],
    payload: &Payload,
    start: usize,
    end: usize,
) -> Bytes {
    let ids = FrameIds {
        seq_id,
        log_id,
        service,
        method: METHOD_DATA,
    };
    let len = Some(end - start);
    let mut out = Vec::with_capacity(frame_view::encoded_len(&ids, headers, len));
    frame_view::encode_head(&ids, headers, len, &mut out);
    payload.write_range(start, end, &mut out);
    debug_assert_eq!(out.len(), out.capacity());
    Bytes::from(out)
}

/// [`emit_frames`] into a vector (for tests).
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_frames(
    payload: &[u8],
    fragments: usize,
    order: FragmentOrder,
    frame_type: &str,
    message_id: &str,
    trace_id: &str,
    service: i32,
    first_seq_id: u64,
    log_id: u64,
) -> Vec<Bytes> {
    let mut frames = Vec::new();
    emit_frames(
        &Payload::Bytes(Bytes::copy_from_slice(payload)),
        fragments,
        order,
        frame_type,
        message_id,
        trace_id,
        service,
        first_seq_id,
        log_id,
        |f| frames.push(f),
    );
    frames
}

/// Fills `out` with the lowest `4 * out.len()` bits of `value` in lowercase hex
/// (zero-extended), for ids built on the stack.
fn write_hex(out: &mut [u8], value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let width = out.len();
    for (k, slot) in out.iter_mut().enumerate() {
        let shift = width - 1 - k;
        let nibble = if shift < 16 {
            (value >> (shift * 4)) & 0xf
        } else {
            0
        };
        *slot = DIGITS[nibble as usize];
    }
}

fn new_message_id(inner: &Inner) -> String {
    let id = message_id_for(
        inner.nonce,
        inner.next_message.fetch_add(1, Ordering::Relaxed),
    );
    std::str::from_utf8(&id).unwrap_or_default().to_string()
}

/// `om_emu`, the nonce in 8 hex digits and the counter in 16: the shape the event
/// table's hasher recognises (`super::generated_id_counter`). On the stack: `push_many`
/// makes the event's shared `Arc<str>` straight from it.
fn message_id_for(nonce: u32, n: u64) -> [u8; 30] {
    let mut id = *b"om_emu000000000000000000000000";
    write_hex(&mut id[6..14], u64::from(nonce));
    write_hex(&mut id[14..], n);
    id
}

/// A random live connection of `app_id` (or the pinned one, if live).
fn pick_conn(st: &State, app_id: &str, pinned: Option<&str>) -> Option<Arc<ConnHandle>> {
    let list = st.conns.get(app_id)?;
    if let Some(id) = pinned {
        if let Some(c) = list.iter().find(|c| &*c.id == id && c.accepts_pushes()) {
            return Some(c.clone());
        }
    }
    let live = list.iter().filter(|c| c.accepts_pushes()).count();
    let nth = match live {
        0 => return None,
        1 => 0,
        n => rand::rng().random_range(0..n),
    };
    list.iter().filter(|c| c.accepts_pushes()).nth(nth).cloned()
}

/// A new event, not yet delivered.
#[allow(clippy::too_many_arguments)]
fn new_event(
    id: Arc<str>,
    app_id: Arc<str>,
    payload: Payload,
    fragments: usize,
    order: FragmentOrder,
    frame_type: FrameType,
    event_id: Option<Arc<str>>,
    trace_id: Option<Box<str>>,
    pinned: Option<Box<str>>,
    permit: Option<Arc<Semaphore>>,
) -> EventState {
    let tracked = !matches!(frame_type, FrameType::Card);
    EventState {
        id,
        app_id,
        payload: Some(payload),
        fragments,
        order,
        frame_type,
        event_id,
        trace_id,
        pinned,
        last: DeliveryInfo {
            no: 0,
            log_id: 0,
            pushed_at: Instant::now(),
        },
        older: Vec::new(),
        started: 1,
        done: false,
        given_up: false,
        tracked,
        permit,
        acks: AckList::default(),
    }
}

/// Registers an event and sends (or queues) its first delivery.
fn register_locked(inner: &Inner, st: &mut State, ev: EventState) {
    if ev.tracked {
        st.stats.pushed += 1;
        st.stats.pending += 1;
    }
    let key = ev.id.clone();
    let app_id = ev.app_id.clone();
    let target = pick_conn(st, &app_id, ev.pinned.as_deref());
    // The caller reused a message id: the old event is superseded, not acked.
    if let Some(old) = st.events.insert(key.clone(), ev) {
        if old.tracked && !old.done {
            st.stats.pending -= 1;
        }
        release(old.permit);
    }
    match target {
        Some(conn) => deliver_locked(inner, st, &key, 1, &conn),
        None => st.queued.entry(app_id).or_default().push_back((key, 1)),
    }
}

/// Registers and pushes one event; see [`super::Emulator::push_event`].
pub(crate) fn push_event(inner: &Inner, payload: Bytes, opts: PushOptions) -> String {
    let message_id = opts.message_id.unwrap_or_else(|| new_message_id(inner));
    let event_id = extract_event_id(&payload).map(Arc::from);
    let mut st = inner.lock();
    if st.closed {
        return message_id;
    }
    let app_id: Arc<str> = match opts.app_id {
        Some(a) => inner.app_arc(&a),
        None => opts
            .connection_id
            .as_deref()
            .and_then(|id| {
                st.conns
                    .values()
                    .flatten()
                    .find(|c| &*c.id == id)
                    .map(|c| inner.app_arc(&c.app_id))
            })
            .unwrap_or_else(|| inner.app_arc(inner.default_app())),
    };
    let ev = new_event(
        Arc::from(message_id.as_str()),
        app_id,
        Payload::Bytes(payload),
        opts.fragments,
        opts.order,
        FrameType::parse(opts.frame_type),
        event_id,
        opts.trace_id.map(String::into_boxed_str),
        opts.connection_id.map(String::into_boxed_str),
        None,
    );
    register_locked(inner, &mut st, ev);
    message_id
}

fn release(permit: Option<Arc<Semaphore>>) {
    if let Some(p) = permit {
        p.add_permits(1);
    }
}

/// Sends delivery `no` of `message_id` to `conn`, under the state lock (sending is a
/// non-blocking channel push), and arms its ack deadline.
fn deliver_locked(
    inner: &Inner,
    st: &mut State,
    message_id: &Arc<str>,
    no: u32,
    conn: &ConnHandle,
) {
    let Some(ev) = st.events.get_mut(message_id) else {
        return;
    };
    let Some(payload) = ev.payload.as_ref() else {
        return;
    };
    let log_id = inner.next_log_id.fetch_add(1, Ordering::Relaxed);
    // `emu-trace-` and the LogID in 16 hex digits, on the stack.
    let mut generated = *b"emu-trace-0000000000000000";
    let redelivered;
    let trace_id: &str = match &ev.trace_id {
        Some(t) if no == 1 => t,
        Some(t) => {
            redelivered = format!("{t}-r{no}");
            &redelivered
        }
        None => {
            write_hex(&mut generated[10..], log_id);
            std::str::from_utf8(&generated).unwrap_or_default()
        }
    };
    let n = ev.fragments.clamp(1, payload.len().max(1));
    let first_seq_id = inner.next_seq_id.fetch_add(n as u64, Ordering::Relaxed);
    emit_frames(
        payload,
        n,
        ev.order,
        ev.frame_type.as_str(),
        message_id,
        trace_id,
        inner.service_id,
        first_seq_id,
        log_id,
        |f| {
            conn.send(Outbound::Binary(f));
        },
    );
    let now = Instant::now();
    if ev.last.no != 0 {
        ev.older.push(ev.last);
    }
    ev.last = DeliveryInfo {
        no,
        log_id,
        pushed_at: now,
    };
    let tracked = ev.tracked;
    st.stats.deliveries += 1;
    st.stats.frames_sent += n as u64;
    if tracked {
        let was_empty = st.deadlines.is_empty();
        st.deadlines.push_back(Deadline {
            at: now + inner.ack_deadline,
            message_id: message_id.clone(),
            delivery: no,
        });
        if was_empty {
            // notify_one keeps a permit, so the deadline task cannot miss it.
            inner.deadline_added.notify_one();
        }
    }
}

/// Starts the next delivery of an event whose current one failed (non-200 ack or no ack
/// in time), or gives it up after `max_redeliveries`.
fn redeliver_locked(inner: &Inner, st: &mut State, message_id: &Arc<str>) {
    let Some(ev) = st.events.get_mut(message_id) else {
        return;
    };
    if ev.done || !ev.tracked {
        return;
    }
    if ev.started > inner.max_redeliveries {
        if !ev.given_up {
            ev.given_up = true;
            release(ev.permit.take());
            st.stats.given_up += 1;
            emu_debug!(
                "event {message_id} given up after {} deliveries",
                ev.started
            );
        }
        return;
    }
    ev.started += 1;
    let no = ev.started;
    let app_id = ev.app_id.clone();
    st.stats.redeliveries += 1;
    match pick_conn(st, &app_id, None) {
        Some(conn) => deliver_locked(inner, st, message_id, no, &conn),
        None => st
            .queued
            .entry(app_id)
            .or_default()
            .push_back((message_id.clone(), no)),
    }
}

/// Sends the deliveries that waited for a live connection of `app_id`.
pub(crate) fn flush_queue(inner: &Inner, app_id: &str) {
    let mut st = inner.lock();
    let Some((app, queue)) = st.queued.remove_entry(app_id) else {
        return;
    };
    let mut left = std::collections::VecDeque::new();
    for (message_id, no) in queue {
        let Some(ev) = st.events.get(&message_id) else {
            continue;
        };
        if ev.done || ev.started != no {
            continue;
        }
        let pinned = if no == 1 { ev.pinned.clone() } else { None };
        match pick_conn(&st, app_id, pinned.as_deref()) {
            Some(conn) => deliver_locked(inner, &mut st, &message_id, no, &conn),
            None => left.push_back((message_id, no)),
        }
    }
    if !left.is_empty() {
        st.queued.insert(app, left);
    }
}

/// An ack read from a client, parsed outside the state lock. It holds nothing of the
/// received message: acks read together are kept until the batch is recorded, and a
/// slice of the message would keep the socket's read buffer shared, so that its next
/// read would allocate a new one (a 128 KiB `malloc`, with glibc consolidating its free
/// lists first: a tenth of the emulator's CPU at 100 000 acks per second).
pub(crate) struct ReceivedAck {
    /// Where the ack frame is in its batch's `raw` buffer.
    raw: Range<usize>,
    /// Where the `message_id` header's value is in the frame.
    message_id: Option<Range<usize>>,
    biz_rt: Option<i64>,
    log_id: u64,
    code: i64,
    data: Option<Vec<u8>>,
}

/// Acks read together from one connection, recorded together by [`on_acks`]. Their
/// frames, kept for [`AckEntry::raw`], are copied into chunks of [`ACK_CHUNK`] bytes that
/// the records share: one allocation per few hundred acks instead of one per ack (and
/// one `free` when the history has forgotten them all).
#[derive(Default)]
pub(crate) struct AckBatch {
    acks: Vec<ReceivedAck>,
    /// This batch's frames, at the end of the current chunk.
    raw: BytesMut,
}

/// The size of the chunks ack frames are copied into.
const ACK_CHUNK: usize = 64 * 1024;

impl AckBatch {
    pub(crate) fn len(&self) -> usize {
        self.acks.len()
    }

    /// Parses the payload of an ack (a data frame from a client) and adds it; an
    /// unparseable one is counted as a bad frame and dropped.
    pub(crate) fn push(&mut self, inner: &Inner, conn: &ConnHandle, frame: ReadFields, raw: &[u8]) {
        let payload = &frame.payload[..];
        // The bare acks the official clients send are recognised without a JSON parse;
        // anything else goes through the codec's parser.
        let parsed = match payload {
            br#"{"code":200}"# => Ok((200, None)),
            br#"{"code":500}"# => Ok((500, None)),
            _ => AckPayload::parse(payload),
        };
        match parsed {
            Ok((code, data)) => {
                if self.raw.capacity() - self.raw.len() < raw.len() {
                    // The chunk is full (or shared with records already): a new one.
                    self.raw.reserve(raw.len().max(ACK_CHUNK));
                }
                let start = self.raw.len();
                self.raw.extend_from_slice(raw);
                self.acks.push(ReceivedAck {
                    raw: start..self.raw.len(),
                    // The header's value is a slice of the frame.
                    message_id: frame.message_id.as_ref().map(|m| {
                        let at = m.as_ptr() as usize - raw.as_ptr() as usize;
                        at..at + m.len()
                    }),
                    biz_rt: view::text(&frame.biz_rt).and_then(|v| v.trim().parse::<i64>().ok()),
                    log_id: frame.log_id,
                    code,
                    data,
                });
            }
            Err(e) => bad_frame(inner, conn, &e.to_string()),
        }
    }
}

/// Records the acks that arrived together on `conn` (at `now` / `at_ms`, when they were
/// read), in order, under one lock, and acts on them; `batch` is left empty.
pub(crate) fn on_acks(
    inner: &Inner,
    conn: &ConnHandle,
    batch: &mut AckBatch,
    now: Instant,
    at_ms: u64,
) {
    if batch.acks.is_empty() {
        return;
    }
    // The records share the chunk; the next batch goes on in its free part.
    let raw = batch.raw.split().freeze();
    let mut all_done = false;
    // The push_many permits the acks free, returned once the lock is released: the
    // pusher they wake then finds the lock free, and is woken once per batch.
    let mut permits: Vec<Arc<Semaphore>> = Vec::new();
    {
        let mut st = inner.lock();
        for ack in batch.acks.drain(..) {
            let frame = raw.slice(ack.raw.clone());
            all_done |= on_ack_locked(inner, &mut st, conn, ack, frame, now, at_ms, &mut permits);
        }
    }
    let mut permits = permits.into_iter().peekable();
    while let Some(sem) = permits.next() {
        let mut n = 1;
        while permits.next_if(|next| Arc::ptr_eq(next, &sem)).is_some() {
            n += 1;
        }
        sem.add_permits(n);
    }
    if inner.ack_waiters.load(Ordering::SeqCst) > 0 {
        inner.ack_arrived.notify_waiters();
    }
    if all_done {
        inner.all_acked.notify_waiters();
    }
}

/// Records one ack and acts on it; true when it finished the last pending event. The
/// event's flow-control permit, if it frees one, goes to `permits` for the caller to
/// return.
#[allow(clippy::too_many_arguments)]
fn on_ack_locked(
    inner: &Inner,
    st: &mut State,
    conn: &ConnHandle,
    ack: ReceivedAck,
    raw: Bytes,
    now: Instant,
    at_ms: u64,
    permits: &mut Vec<Arc<Semaphore>>,
) -> bool {
    let ReceivedAck {
        message_id,
        biz_rt,
        log_id,
        code,
        data,
        ..
    } = ack;
    let message_id = message_id
        .and_then(|r| std::str::from_utf8(&raw[r]).ok())
        .unwrap_or("");

    let index = st.acks_base + st.acks.len() as u64;
    st.stats.acks += 1;
    if code == 200 {
        st.stats.acks_ok += 1;
    } else {
        st.stats.acks_failed += 1;
    }
    let mut finished = false;
    let mut failed_current = false;
    let entry = match st.events.get_mut(message_id) {
        None => None,
        Some(ev) => {
            // The LogID names the delivery; a client that mangled it gets the latest.
            let d = if ev.last.log_id == log_id || ev.last.no == 0 {
                ev.last
            } else {
                ev.older
                    .iter()
                    .rev()
                    .find(|d| d.log_id == log_id)
                    .copied()
                    .unwrap_or(ev.last)
            };
            let latency_us = if d.no == 0 {
                0
            } else {
                now.saturating_duration_since(d.pushed_at).as_micros() as u64
            };
            if code == 200 {
                if !ev.done {
                    ev.done = true;
                    ev.payload = None;
                    permits.extend(ev.permit.take());
                    finished = ev.tracked;
                }
            } else if !ev.done && d.no == ev.started && d.no != 0 {
                failed_current = true;
            }
            ev.acks.push(index);
            Some((ev.id.clone(), ev.event_id.clone(), d.no, latency_us))
        }
    };
    let (key, event_id, delivery, latency_us) = match entry {
        Some(e) => e,
        None => {
            st.stats.acks_unknown += 1;
            st.unknown_acks
                .entry(message_id.to_string())
                .or_default()
                .push(index);
            (Arc::from(message_id), None, 0, 0)
        }
    };
    if finished {
        st.stats.pending = st.stats.pending.saturating_sub(1);
        st.done_order.push_back(key.clone());
    }
    if failed_current {
        redeliver_locked(inner, st, &key);
    }
    st.acks.push(AckEntry {
        message_id: key,
        event_id,
        code,
        data,
        raw,
        connection_id: conn.id.clone(),
        biz_rt,
        at_ms,
        latency_us,
        delivery,
    });
    st.trim_history(inner.max_history);
    finished && st.stats.pending == 0
}

/// The task that re-delivers events whose ack deadline passed.
pub(crate) fn spawn_deadline_task(inner: Arc<Inner>) {
    let guard = inner.task_guard();
    tokio::spawn(async move {
        let _guard = guard;
        loop {
            let next = {
                let mut st = inner.lock();
                let now = Instant::now();
                while st.deadlines.front().is_some_and(|d| d.at <= now) {
                    let Some(d) = st.deadlines.pop_front() else {
                        break;
                    };
                    let expired = st
                        .events
                        .get(&d.message_id)
                        .is_some_and(|ev| !ev.done && ev.started == d.delivery);
                    if expired {
                        redeliver_locked(&inner, &mut st, &d.message_id);
                    }
                }
                st.deadlines.front().map(|d| d.at)
            };
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => inner.deadline_added.notified().await,
                }
            };
            tokio::select! {
                _ = inner.shutdown.cancelled() => return,
                _ = wait => {}
            }
        }
    });
}

/// At most this many events of one `push_many` are registered under one lock…
const PUSH_BATCH: usize = 64;
/// …and at most about this many payload bytes (at least one event).
const PUSH_BATCH_BYTES: usize = 64 * 1024;

/// Generated events ever made in this process (see `push_many`).
static GENERATED_EVENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The counter of a generated event id, scattered: Feishu's event ids are random, so a
/// durable dedupe store keyed by them (`dedupe.store`) inserts all over its index, and a
/// benchmark of it must too (counter-ordered ids always append at the end, which flatters
/// a B-tree). SplitMix64's finaliser is a bijection, so the ids stay unique.
fn scatter(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What follows the padding of a generated payload.
const GENERATED_TAIL: &str = r#"\"}"}}}"#;

/// The generated payload of `push_many`: a v2 `im.message.receive_v1` envelope of about
/// `size` bytes (never less than the envelope itself) with a unique event id, its text
/// padded with `x`. The head is written piece by piece into a buffer of exactly its size
/// (`format!` guesses the capacity and the box would then reallocate).
fn generated_payload(app_id: &str, event_id: &str, message_id: &str, size: usize) -> Payload {
    const P1: &str = r#"{"schema":"2.0","header":{"event_id":""#;
    const P2: &str = r#"","event_type":"im.message.receive_v1","create_time":""#;
    const P3: &str = r#"","token":"emulator","app_id":""#;
    const P4: &str = r#"","tenant_key":"emulator"},"event":{"sender":{"sender_id":{"open_id":"ou_emulator"},"sender_type":"user","tenant_key":"emulator"},"message":{"message_id":""#;
    const P5: &str = r#"","chat_id":"oc_emulator","chat_type":"p2p","message_type":"text","content":"{\"text\":\""#;
    // The decimal digits of the time, last digit at the end of the buffer.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut ms = now_ms();
    loop {
        at -= 1;
        digits[at] = b'0' + (ms % 10) as u8;
        ms /= 10;
        if ms == 0 {
            break;
        }
    }
    let time = &digits[at..];
    let parts: [&[u8]; 9] = [
        P1.as_bytes(),
        event_id.as_bytes(),
        P2.as_bytes(),
        time,
        P3.as_bytes(),
        app_id.as_bytes(),
        P4.as_bytes(),
        message_id.as_bytes(),
        P5.as_bytes(),
    ];
    let mut head = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        head.extend_from_slice(p);
    }
    let pad = size.saturating_sub(head.len() + GENERATED_TAIL.len());
    Payload::Generated {
        head: head.into_boxed_slice(),
        pad,
    }
}

/// See [`super::Emulator::push_many`].
pub(crate) async fn push_many(inner: &Arc<Inner>, opts: PushManyOptions) -> Vec<Arc<str>> {
    let app_id = inner.app_arc(opts.app_id.as_deref().unwrap_or(inner.default_app()));
    let fixed = opts.payload.map(Bytes::from);
    let fixed_event_id: Option<Arc<str>> =
        fixed.as_deref().and_then(extract_event_id).map(Arc::from);
    let semaphore = opts
        .max_in_flight
        .map(|n| Arc::new(Semaphore::new(n.max(1))));
    let rate = opts.rate_per_sec.filter(|r| r.is_finite() && *r > 0.0);
    {
        // Grow the tables once instead of rehashing them while the benchmark runs.
        let mut st = inner.lock();
        st.events.reserve(opts.count);
        st.acks.reserve(opts.count);
        st.done_order.reserve(opts.count.min(2 * inner.max_history));
    }
    // Events registered under one lock when several permits are free at once (acks come
    // in bursts): one lock and one wake-up of the writer for the lot. Capped in bytes too,
    // so big events are not all encoded while the ack reader waits for the lock.
    let payload_len = fixed.as_ref().map_or(opts.payload_bytes, Bytes::len).max(1);
    let max_batch = (PUSH_BATCH_BYTES / payload_len).clamp(1, PUSH_BATCH);
    let start = tokio::time::Instant::now();
    let mut ids = Vec::with_capacity(opts.count);
    let mut batch: Vec<(Arc<str>, EventState)> = Vec::with_capacity(max_batch);
    let mut i = 0;
    while i < opts.count {
        let mut take = 1;
        if let Some(sem) = &semaphore {
            tokio::select! {
                _ = inner.shutdown.cancelled() => break,
                permit = sem.acquire() => match permit {
                    // The permit comes back through `release` when the event is done.
                    Ok(p) => p.forget(),
                    Err(_) => break,
                },
            }
            // Paced pushes go one by one, each at its time.
            if rate.is_none() {
                while take < max_batch && i + take < opts.count {
                    match sem.try_acquire() {
                        Ok(p) => p.forget(),
                        Err(_) => break,
                    }
                    take += 1;
                }
            }
        }
        if let Some(r) = rate {
            let offset = Duration::try_from_secs_f64(i as f64 / r)
                .unwrap_or(super::LONGEST_WAIT)
                .min(super::LONGEST_WAIT);
            let due = start + offset;
            // Sleep only when more than a millisecond ahead: timers are coarse anyway.
            if due > tokio::time::Instant::now() + Duration::from_millis(1) {
                tokio::select! {
                    _ = inner.shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
        } else if semaphore.is_none() {
            if i > 0 {
                // Let the connections' writers run between bursts on a small runtime.
                tokio::task::yield_now().await;
            }
            take = max_batch.min(opts.count - i);
        }
        for _ in 0..take {
            let id = message_id_for(
                inner.nonce,
                inner.next_message.fetch_add(1, Ordering::Relaxed),
            );
            let message_id: Arc<str> = Arc::from(std::str::from_utf8(&id).unwrap_or_default());
            let (payload, event_id) = match &fixed {
                Some(p) => (Payload::Bytes(p.clone()), fixed_event_id.clone()),
                None => {
                    let mut buf = [0u8; 32];
                    write_hex(&mut buf[..8], u64::from(inner.nonce));
                    // Numbered across calls, so a second push_many never repeats the
                    // first's ids (a deduplicating client would skip them).
                    let n = GENERATED_EVENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    write_hex(&mut buf[8..], scatter(n));
                    let event_id = std::str::from_utf8(&buf).unwrap_or_default();
                    let p = generated_payload(&app_id, event_id, &message_id, opts.payload_bytes);
                    (p, Some(Arc::from(event_id)))
                }
            };
            let ev = new_event(
                Arc::clone(&message_id),
                app_id.clone(),
                payload,
                opts.fragments,
                FragmentOrder::InOrder,
                FrameType::Event,
                event_id,
                None,
                None,
                semaphore.clone(),
            );
            batch.push((message_id, ev));
        }
        {
            let mut st = inner.lock();
            if st.closed {
                break;
            }
            for (message_id, ev) in batch.drain(..) {
                register_locked(inner, &mut st, ev);
                ids.push(message_id);
            }
        }
        i += take;
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::Frame;

    fn reassemble(frames: &[Bytes]) -> (Vec<u8>, Vec<usize>) {
        let decoded: Vec<Frame> = frames
            .iter()
            .map(|b| Frame::decode_bytes(b).unwrap())
            .collect();
        let sum: usize = decoded[0].header("sum").unwrap().parse().unwrap();
        let mut slots = vec![Vec::new(); sum];
        let mut order = Vec::new();
        for f in &decoded {
            assert_eq!(f.method, METHOD_DATA);
            let keys: Vec<&str> = f.headers.iter().map(|h| h.key.as_str()).collect();
            assert_eq!(keys, ["type", "message_id", "sum", "seq", "trace_id"]);
            let seq: usize = f.header("seq").unwrap().parse().unwrap();
            order.push(seq);
            slots[seq] = f.payload.clone().unwrap();
        }
        assert!(slots.iter().all(|s| !s.is_empty()));
        (slots.concat(), order)
    }

    #[test]
    fn message_ids_carry_their_counter_for_the_event_table() {
        for (nonce, n) in [(0, 1), (0xdead_beef, 0x0123_4567_89ab_cdef), (7, u64::MAX)] {
            let id = message_id_for(nonce, n);
            assert_eq!(super::super::generated_id_counter(&id), Some(n));
            assert_eq!(
                std::str::from_utf8(&id).unwrap(),
                format!("om_emu{nonce:08x}{n:016x}")
            );
        }
    }

    #[test]
    fn hex_ids() {
        let mut s = [0u8; 22];
        write_hex(&mut s[..4], 0xab);
        write_hex(&mut s[4..], u64::MAX);
        assert_eq!(&s, b"00ab00ffffffffffffffff");
    }

    #[test]
    fn fragments_reassemble_in_every_order() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for order in [
            FragmentOrder::InOrder,
            FragmentOrder::Reverse,
            FragmentOrder::Shuffle,
        ] {
            let frames = build_frames(&payload, 7, order, "event", "m1", "t1", 5, 100, 9);
            assert_eq!(frames.len(), 7);
            let (joined, seqs) = reassemble(&frames);
            assert_eq!(joined, payload);
            match order {
                FragmentOrder::InOrder => assert_eq!(seqs, (0..7).collect::<Vec<_>>()),
                FragmentOrder::Reverse => assert_eq!(seqs, (0..7).rev().collect::<Vec<_>>()),
                FragmentOrder::Shuffle => {
                    let mut s = seqs.clone();
                    s.sort();
                    assert_eq!(s, (0..7).collect::<Vec<_>>());
                }
            }
            let first = Frame::decode_bytes(&frames[0]).unwrap();
            assert_eq!((first.seq_id, first.log_id, first.service), (100, 9, 5));
        }
    }

    #[test]
    fn fragment_count_is_clamped() {
        assert_eq!(
            build_frames(
                b"abc",
                10,
                FragmentOrder::InOrder,
                "event",
                "m",
                "t",
                1,
                1,
                1
            )
            .len(),
            3
        );
        assert_eq!(
            build_frames(
                b"abc",
                0,
                FragmentOrder::InOrder,
                "event",
                "m",
                "t",
                1,
                1,
                1
            )
            .len(),
            1
        );
        let empty = build_frames(b"", 4, FragmentOrder::InOrder, "event", "m", "t", 1, 1, 1);
        assert_eq!(empty.len(), 1);
    }

    #[test]
    fn event_ids_of_v2_and_v1_payloads() {
        assert_eq!(
            extract_event_id(br#"{"schema":"2.0","header":{"event_id":"e1"},"event":{}}"#),
            Some("e1".into())
        );
        assert_eq!(
            extract_event_id(br#"{"uuid":"u1","event":{"type":"message"}}"#),
            Some("u1".into())
        );
        assert_eq!(extract_event_id(b"not json"), None);
        assert_eq!(extract_event_id(br#"{"header":"weird"}"#), None);
        // The transport's rule: a header without an id has none, whatever the uuid says.
        assert_eq!(extract_event_id(br#"{"header":{},"uuid":"u2"}"#), None);
        assert_eq!(extract_event_id(br#"{"uuid":7}"#), None);
    }

    /// The generated envelope as it was first written, with `format!`.
    fn reference_payload(
        app_id: &str,
        event_id: &str,
        message_id: &str,
        size: usize,
        ms: u64,
    ) -> Vec<u8> {
        let head = format!(
            r#"{{"schema":"2.0","header":{{"event_id":"{event_id}","event_type":"im.message.receive_v1","create_time":"{ms}","token":"emulator","app_id":"{app_id}","tenant_key":"emulator"}},"event":{{"sender":{{"sender_id":{{"open_id":"ou_emulator"}},"sender_type":"user","tenant_key":"emulator"}},"message":{{"message_id":"{message_id}","chat_id":"oc_emulator","chat_type":"p2p","message_type":"text","content":"{{\"text\":\""#,
        );
        let tail = r#"\"}"}}}"#;
        let pad = size.saturating_sub(head.len() + tail.len());
        let mut out = head.into_bytes();
        out.resize(out.len() + pad, b'x');
        out.extend_from_slice(tail.as_bytes());
        out
    }

    #[test]
    fn generated_payloads_are_the_reference_envelope() {
        for size in [0, 10, 300, 512, 4096] {
            let p = generated_payload("cli_x", "e42", "om_1", size).to_vec();
            let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
            let ms: u64 = v["header"]["create_time"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                p,
                reference_payload("cli_x", "e42", "om_1", size, ms),
                "{size}"
            );
        }
    }

    #[test]
    fn payload_ranges_cut_across_the_parts() {
        let p = generated_payload("cli_x", "e42", "om_1", 700);
        let whole = p.to_vec();
        assert_eq!(whole.len(), p.len());
        for start in (0..=whole.len()).step_by(7) {
            for end in (start..=whole.len()).step_by(13).chain([whole.len()]) {
                let mut out = b"prefix".to_vec();
                p.write_range(start, end, &mut out);
                assert_eq!(&out[6..], &whole[start..end], "{start}..{end}");
            }
        }
        // and as frames: every fragmentation of a generated payload reassembles
        for fragments in [1, 2, 3, 7, 700] {
            let mut frames = Vec::new();
            emit_frames(
                &p,
                fragments,
                FragmentOrder::Shuffle,
                "event",
                "m",
                "t",
                1,
                1,
                1,
                |f| frames.push(f),
            );
            assert_eq!(reassemble(&frames).0, whole);
        }
    }

    #[test]
    fn hex_on_the_stack_matches_format() {
        for (value, width) in [
            (0u64, 8usize),
            (0xab, 4),
            (u64::MAX, 24),
            (0x1234_5678_9abc, 16),
        ] {
            let mut buf = vec![0u8; width];
            write_hex(&mut buf, value);
            assert_eq!(buf, format!("{value:0width$x}").as_bytes());
        }
    }

    #[test]
    fn generated_payloads_have_the_requested_size_and_parse() {
        let p = generated_payload("cli_x", "e42", "om_1", 512).to_vec();
        assert_eq!(p.len(), 512);
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["header"]["event_id"], "e42");
        let content: serde_json::Value =
            serde_json::from_str(v["event"]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(content["text"].as_str().unwrap().starts_with("xxx"));
        // too small a size still gives valid JSON
        let small = generated_payload("cli_x", "e42", "om_1", 10).to_vec();
        assert!(serde_json::from_slice::<serde_json::Value>(&small).is_ok());
    }
}
