//! Reassembly of data frames split into `sum`/`seq` fragments (docs/PROTOCOL.md §6).
//!
//! Every input here comes off the wire, so every bound is explicit: fragments per message,
//! bytes buffered across all partial messages, partial messages pending at once, and how
//! long a partial may wait for its missing pieces. A frame that breaks a rule is rejected
//! with a [`FragmentError`] and never acked, so Feishu re-delivers the whole message.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use super::frame::header_key;
use super::frame_view::Headers;

/// Bounds on what the [`Assembler`] holds for messages that are not complete yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentLimits {
    /// Payload bytes held across all partial messages; also the largest fragmented
    /// message accepted, since a message bigger than this could never be buffered.
    pub max_buffered_bytes: usize,
    /// The largest `sum` accepted for a fragmented message; at most
    /// [`MAX_FRAGMENTS_CEILING`], whatever is configured.
    pub max_fragments_per_message: u32,
    /// Partial messages held at once.
    pub max_pending_messages: usize,
    /// How long a partial message may wait for its missing fragments, counted from its
    /// first fragment (the Node SDK's rule; Go's 5 s reset on every fragment would let a
    /// trickle of duplicates keep a partial alive forever).
    pub expiry: Duration,
}

impl Default for FragmentLimits {
    fn default() -> Self {
        FragmentLimits {
            max_buffered_bytes: 64 * 1024 * 1024,
            max_fragments_per_message: 256,
            max_pending_messages: 1024,
            expiry: Duration::from_secs(10),
        }
    }
}

/// The highest `max_fragments_per_message` honoured. A partial's slot table is allocated
/// from `sum` at its first fragment, and fragments may be empty, so the byte cap cannot
/// bound it: this does (65 536 slots, about 1.5 MiB per partial).
pub const MAX_FRAGMENTS_CEILING: u32 = 65_536;

/// A message whose every fragment has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complete<'a> {
    /// The `message_id` header of the frame that completed it.
    pub message_id: &'a str,
    /// The fragments' payloads concatenated in `seq` order; a whole message's is the
    /// frame's own, borrowed.
    pub payload: Cow<'a, [u8]>,
}

/// Why a data frame was not accepted. No variant carries payload bytes, so an error can be
/// logged as is; header values are kept short for the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FragmentError {
    /// The frame has no `message_id` header, or an empty one.
    MissingMessageId,
    /// The `sum` header is absent while `seq` is present, or is not a positive integer.
    InvalidSum(String),
    /// The `seq` header is absent while `sum` is present, or is not a non-negative integer.
    InvalidSeq(String),
    /// `seq` is not below `sum`.
    SeqOutOfRange { seq: u32, sum: u32 },
    /// The frame's `sum` differs from the one of its message's first fragment. The partial
    /// message was dropped: a message that changes its own length is corrupt.
    SumMismatch { expected: u32, got: u32 },
    /// `sum` is above [`FragmentLimits::max_fragments_per_message`].
    TooManyFragments { sum: u32, max: u32 },
    /// The message's fragments add up to more than
    /// [`FragmentLimits::max_buffered_bytes`]. The partial message was dropped.
    MessageTooLarge { bytes: usize, max: usize },
    /// Buffering the fragment would take the bytes held across all partial messages above
    /// [`FragmentLimits::max_buffered_bytes`]. The fragment's partial message was dropped.
    BufferFull {
        buffered: usize,
        fragment: usize,
        max: usize,
    },
    /// The fragment starts a new message while no partial may be held at all
    /// (`max_pending_messages` 0). When the table is merely full, the oldest partial is
    /// evicted instead (see [`Assembler::take_evicted`]).
    TooManyPending { pending: usize, max: usize },
}

/// Header values are arbitrary wire input: cap them so one frame cannot flood a log line.
const MAX_ECHOED_HEADER_CHARS: usize = 32;

fn short(value: &str) -> String {
    let mut chars = value.chars();
    let mut out: String = chars.by_ref().take(MAX_ECHOED_HEADER_CHARS).collect();
    if chars.next().is_some() {
        out.push_str("...");
    }
    out
}

impl fmt::Display for FragmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FragmentError::MissingMessageId => {
                write!(f, "data frame has no message_id header")
            }
            FragmentError::InvalidSum(v) if v.is_empty() => {
                write!(f, "data frame has a seq header but no sum header")
            }
            FragmentError::InvalidSeq(v) if v.is_empty() => {
                write!(f, "data frame has a sum header but no seq header")
            }
            // Debug formatting escapes control characters, keeping the line single.
            FragmentError::InvalidSum(v) => {
                write!(f, "data frame has an invalid sum header {v:?}")
            }
            FragmentError::InvalidSeq(v) => {
                write!(f, "data frame has an invalid seq header {v:?}")
            }
            FragmentError::SeqOutOfRange { seq, sum } => {
                write!(f, "fragment seq {seq} is out of range for sum {sum}")
            }
            FragmentError::SumMismatch { expected, got } => write!(
                f,
                "fragment sum {got} differs from its message's sum {expected}; the partial message was dropped"
            ),
            FragmentError::TooManyFragments { sum, max } => write!(
                f,
                "message is split into {sum} fragments, more than the limit of {max}"
            ),
            FragmentError::MessageTooLarge { bytes, max } => write!(
                f,
                "fragmented message reached {bytes} bytes, more than the limit of {max}; the partial message was dropped"
            ),
            FragmentError::BufferFull {
                buffered,
                fragment,
                max,
            } => write!(
                f,
                "fragment of {fragment} bytes does not fit: {buffered} of {max} buffered bytes in use; its partial message was dropped"
            ),
            FragmentError::TooManyPending { pending, max } => write!(
                f,
                "new fragmented message rejected: {pending} partial messages pending, the limit is {max}"
            ),
        }
    }
}

impl std::error::Error for FragmentError {}

/// One message whose fragments are still arriving.
struct Partial {
    sum: u32,
    /// `None` until the fragment at that `seq` arrives. Received-ness is the `Some`, not a
    /// non-empty payload: an empty fragment is legal and must not block completion.
    slots: Vec<Option<Vec<u8>>>,
    received: u32,
    bytes: usize,
    first_seen: Instant,
}

/// Reassembles fragmented data frames by `message_id`.
///
/// Not thread-safe by design: one connection's read loop owns it, and frames of one message
/// arrive on one connection.
pub struct Assembler {
    limits: FragmentLimits,
    partials: HashMap<String, Partial>,
    buffered: usize,
    /// Partials evicted to make room since the last [`Assembler::take_evicted`].
    evicted: usize,
}

/// What the `sum`/`seq` headers say, once validated.
struct Position {
    sum: u32,
    seq: u32,
}

fn position(frame: &impl Headers, max_fragments: u32) -> Result<Position, FragmentError> {
    let (sum, seq) = match (frame.header(header_key::SUM), frame.header(header_key::SEQ)) {
        // Go's reading: a frame without fragment headers is a whole message.
        (None, None) => return Ok(Position { sum: 1, seq: 0 }),
        (sum, seq) => (sum.unwrap_or(""), seq.unwrap_or("")),
    };
    let sum = match sum.parse::<u32>() {
        Ok(n) if n > 0 => n,
        _ => return Err(FragmentError::InvalidSum(short(sum))),
    };
    let seq = seq
        .parse::<u32>()
        .map_err(|_| FragmentError::InvalidSeq(short(seq)))?;
    // A whole message never needs buffering, so the limit only applies to real splits
    // (and a limit of 0 cannot make every event undeliverable).
    if sum > 1 && sum > max_fragments {
        return Err(FragmentError::TooManyFragments {
            sum,
            max: max_fragments,
        });
    }
    if seq >= sum {
        return Err(FragmentError::SeqOutOfRange { seq, sum });
    }
    Ok(Position { sum, seq })
}

impl Assembler {
    pub fn new(mut limits: FragmentLimits) -> Self {
        limits.max_fragments_per_message =
            limits.max_fragments_per_message.min(MAX_FRAGMENTS_CEILING);
        Assembler {
            limits,
            partials: HashMap::new(),
            buffered: 0,
            evicted: 0,
        }
    }

    pub fn limits(&self) -> &FragmentLimits {
        &self.limits
    }

    /// Feeds one data frame. `Ok(Some)` when this frame completes its message (the caller
    /// acks THIS frame); `Ok(None)` while the message is incomplete.
    ///
    /// On `Err` nothing of this frame is kept; for [`FragmentError::SumMismatch`],
    /// [`FragmentError::MessageTooLarge`] and [`FragmentError::BufferFull`] its partial
    /// message is dropped as well, and a later fragment of it starts a new partial that
    /// expires unless the whole message is re-delivered. When the pending table or the byte
    /// cap is full, the oldest other partials are evicted to make room (counted by
    /// [`Assembler::take_evicted`]).
    ///
    /// `payload` is the frame's payload: a whole message (the usual case) is passed on
    /// as it is, borrowed, and only a fragment is copied, into its buffer.
    pub fn push<'a>(
        &mut self,
        frame: &'a impl Headers,
        payload: &'a [u8],
        now: Instant,
    ) -> Result<Option<Complete<'a>>, FragmentError> {
        let message_id = match frame.header(header_key::MESSAGE_ID) {
            Some(id) if !id.is_empty() => id,
            _ => return Err(FragmentError::MissingMessageId),
        };
        let Position { sum, seq } = position(frame, self.limits.max_fragments_per_message)?;

        if sum == 1 {
            // The hot path: no map entry, no buffering. The lookup is skipped entirely
            // while nothing is partial, which is nearly always.
            if !self.partials.is_empty() {
                if let Some(expected) = self.partials.get(message_id).map(|p| p.sum) {
                    self.drop_partial(message_id);
                    return Err(FragmentError::SumMismatch { expected, got: 1 });
                }
            }
            return Ok(Some(Complete {
                message_id,
                payload: Cow::Borrowed(payload),
            }));
        }

        let max_bytes = self.limits.max_buffered_bytes;
        let Some(partial) = self.partials.get_mut(message_id) else {
            return self.start_partial(message_id, sum, seq, payload, now);
        };
        if partial.sum != sum {
            let expected = partial.sum;
            self.drop_partial(message_id);
            return Err(FragmentError::SumMismatch { expected, got: sum });
        }

        // A duplicate seq overwrites its slot (as the SDKs do), so its old bytes leave the
        // accounting before the new ones are checked.
        let replaced = partial.slots[seq as usize].as_ref().map_or(0, Vec::len);
        let fragment_len = payload.len();
        let message_bytes = partial.bytes - replaced + fragment_len;
        if message_bytes > max_bytes {
            self.drop_partial(message_id);
            return Err(FragmentError::MessageTooLarge {
                bytes: message_bytes,
                max: max_bytes,
            });
        }
        let own = partial.bytes;
        // Room is made as for a new message: the oldest other partials go first.
        while self.buffered - own + message_bytes > max_bytes {
            if !self.evict_oldest(Some(message_id)) {
                let buffered = self.buffered;
                self.drop_partial(message_id);
                return Err(FragmentError::BufferFull {
                    buffered,
                    fragment: fragment_len,
                    max: max_bytes,
                });
            }
        }
        let others = self.buffered - own;
        let Some(partial) = self.partials.get_mut(message_id) else {
            return Ok(None);
        };
        if partial.slots[seq as usize].is_none() {
            partial.received += 1;
        }
        partial.slots[seq as usize] = Some(payload.to_vec());
        partial.bytes = message_bytes;
        self.buffered = others + message_bytes;

        if partial.received < partial.sum {
            return Ok(None);
        }
        let Some(partial) = self.partials.remove(message_id) else {
            return Ok(None);
        };
        self.buffered -= partial.bytes;
        let mut joined = Vec::with_capacity(partial.bytes);
        for slot in partial.slots.into_iter().flatten() {
            joined.extend_from_slice(&slot);
        }
        Ok(Some(Complete {
            message_id,
            payload: Cow::Owned(joined),
        }))
    }

    fn start_partial(
        &mut self,
        message_id: &str,
        sum: u32,
        seq: u32,
        payload: &[u8],
        now: Instant,
    ) -> Result<Option<Complete<'static>>, FragmentError> {
        let max_bytes = self.limits.max_buffered_bytes;
        if payload.len() > max_bytes {
            return Err(FragmentError::MessageTooLarge {
                bytes: payload.len(),
                max: max_bytes,
            });
        }
        // Evicting the oldest partials rather than refusing the newcomer, when the table is
        // full or the bytes would not fit: real fragments of one message arrive back to
        // back, so the oldest partial of a full table is almost surely one that will never
        // finish; refusing instead let a table full of such partials starve every real
        // fragmented event until they expired (10 s), unacked. An evicted message that was
        // real is re-delivered by Feishu, as any unacked one is. The table belongs to one
        // connection, so only that connection's own partials can be evicted.
        while self.partials.len() >= self.limits.max_pending_messages
            || self.buffered + payload.len() > max_bytes
        {
            if !self.evict_oldest(None) {
                // Nothing left to evict: a limit of 0 partials.
                return Err(FragmentError::TooManyPending {
                    pending: 0,
                    max: self.limits.max_pending_messages,
                });
            }
        }
        let bytes = payload.len();
        let mut slots = vec![None; sum as usize];
        slots[seq as usize] = Some(payload.to_vec());
        self.partials.insert(
            message_id.to_owned(),
            Partial {
                sum,
                slots,
                received: 1,
                bytes,
                first_seen: now,
            },
        );
        self.buffered += bytes;
        Ok(None)
    }

    /// Drops the partial whose first fragment came first (other than `keep`), counting it
    /// in [`Assembler::take_evicted`]. False when there is none.
    fn evict_oldest(&mut self, keep: Option<&str>) -> bool {
        let oldest = self
            .partials
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != keep)
            .min_by_key(|(_, p)| p.first_seen)
            .map(|(id, _)| id.clone());
        match oldest {
            Some(id) => {
                self.drop_partial(&id);
                self.evicted += 1;
                true
            }
            None => false,
        }
    }

    fn drop_partial(&mut self, message_id: &str) {
        if let Some(p) = self.partials.remove(message_id) {
            self.buffered -= p.bytes;
        }
    }

    /// Drops partial messages whose first fragment arrived `expiry` or longer before `now`;
    /// returns how many. An `Instant` earlier than a partial's first fragment counts as no
    /// time passed.
    pub fn expire(&mut self, now: Instant) -> usize {
        let expiry = self.limits.expiry;
        let before = self.partials.len();
        let mut released = 0;
        self.partials.retain(|_, p| {
            let keep = now.saturating_duration_since(p.first_seen) < expiry;
            if !keep {
                released += p.bytes;
            }
            keep
        });
        self.buffered -= released;
        before - self.partials.len()
    }

    /// How many partial messages were evicted (the oldest, when a new message found the
    /// table full) since the last call.
    pub fn take_evicted(&mut self) -> usize {
        std::mem::take(&mut self.evicted)
    }

    /// Payload bytes held across all partial messages.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Partial messages held.
    pub fn pending_messages(&self) -> usize {
        self.partials.len()
    }

    /// Drops every partial message (a connection being replaced: its fragments are gone).
    pub fn clear(&mut self) {
        self.partials.clear();
        self.buffered = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::{Frame, Header, METHOD_DATA};

    /// [`Complete`], owned, so a test can keep it past its frame.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Done {
        message_id: String,
        payload: Vec<u8>,
    }

    impl Assembler {
        /// [`Assembler::push`] of the frame's own payload.
        fn push_frame(
            &mut self,
            frame: &Frame,
            now: Instant,
        ) -> Result<Option<Done>, FragmentError> {
            let payload = frame.payload.as_deref().unwrap_or_default();
            Ok(self.push(frame, payload, now)?.map(|c| Done {
                message_id: c.message_id.to_owned(),
                payload: c.payload.into_owned(),
            }))
        }
    }
    use proptest::prelude::*;

    fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Frame {
        Frame {
            method: METHOD_DATA,
            headers: headers
                .iter()
                .map(|(k, v)| Header {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            payload: Some(payload.to_vec()),
            ..Default::default()
        }
    }

    fn frag(id: &str, sum: u32, seq: u32, payload: &[u8]) -> Frame {
        frame(
            &[
                ("type", "event"),
                ("message_id", id),
                ("sum", &sum.to_string()),
                ("seq", &seq.to_string()),
            ],
            payload,
        )
    }

    fn limits(max_bytes: usize, max_frags: u32, max_pending: usize) -> FragmentLimits {
        FragmentLimits {
            max_buffered_bytes: max_bytes,
            max_fragments_per_message: max_frags,
            max_pending_messages: max_pending,
            expiry: Duration::from_secs(10),
        }
    }

    #[test]
    fn defaults_match_the_documented_limits() {
        let l = FragmentLimits::default();
        assert_eq!(l.max_buffered_bytes, 64 << 20);
        assert_eq!(l.max_fragments_per_message, 256);
        assert_eq!(l.max_pending_messages, 1024);
        assert_eq!(l.expiry, Duration::from_secs(10));
    }

    #[test]
    fn whole_message_completes_at_once_without_buffering() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        let done = a
            .push_frame(&frag("m1", 1, 0, b"{}"), now)
            .unwrap()
            .unwrap();
        assert_eq!(done.message_id, "m1");
        assert_eq!(done.payload, b"{}");
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (0, 0));
    }

    #[test]
    fn frame_without_sum_and_seq_is_a_whole_message() {
        let mut a = Assembler::new(FragmentLimits::default());
        let f = frame(&[("message_id", "m1")], b"abc");
        let done = a.push_frame(&f, Instant::now()).unwrap().unwrap();
        assert_eq!(done.payload, b"abc");
        assert_eq!(a.pending_messages(), 0);
    }

    #[test]
    fn absent_payload_is_an_empty_message() {
        let mut a = Assembler::new(FragmentLimits::default());
        let mut f = frag("m1", 1, 0, b"");
        f.payload = None;
        assert_eq!(
            a.push_frame(&f, Instant::now()).unwrap().unwrap().payload,
            Vec::<u8>::new()
        );
    }

    #[test]
    fn missing_or_empty_message_id_is_rejected() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        let no_id = frame(&[("sum", "1"), ("seq", "0")], b"x");
        assert_eq!(
            a.push_frame(&no_id, now),
            Err(FragmentError::MissingMessageId)
        );
        assert_eq!(
            a.push_frame(&frag("", 1, 0, b"x"), now),
            Err(FragmentError::MissingMessageId)
        );
    }

    #[test]
    fn sum_and_seq_must_both_be_integers() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        let cases: &[(&[(&str, &str)], FragmentError)] = &[
            (
                &[("message_id", "m"), ("seq", "0")],
                FragmentError::InvalidSum(String::new()),
            ),
            (
                &[("message_id", "m"), ("sum", "2")],
                FragmentError::InvalidSeq(String::new()),
            ),
            (
                &[("message_id", "m"), ("sum", "two"), ("seq", "0")],
                FragmentError::InvalidSum("two".into()),
            ),
            (
                &[("message_id", "m"), ("sum", "0"), ("seq", "0")],
                FragmentError::InvalidSum("0".into()),
            ),
            (
                &[("message_id", "m"), ("sum", "-1"), ("seq", "0")],
                FragmentError::InvalidSum("-1".into()),
            ),
            (
                &[("message_id", "m"), ("sum", "1.5"), ("seq", "0")],
                FragmentError::InvalidSum("1.5".into()),
            ),
            (
                &[("message_id", "m"), ("sum", "2"), ("seq", "-1")],
                FragmentError::InvalidSeq("-1".into()),
            ),
            (
                &[("message_id", "m"), ("sum", "2"), ("seq", "NaN")],
                FragmentError::InvalidSeq("NaN".into()),
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                a.push_frame(&frame(headers, b"x"), now).as_ref(),
                Err(expected),
                "{headers:?}"
            );
        }
        assert_eq!(a.pending_messages(), 0);
    }

    #[test]
    fn seq_must_be_below_sum() {
        let mut a = Assembler::new(FragmentLimits::default());
        assert_eq!(
            a.push_frame(&frag("m", 2, 2, b"x"), Instant::now()),
            Err(FragmentError::SeqOutOfRange { seq: 2, sum: 2 })
        );
        assert_eq!(
            a.push_frame(&frag("m", 1, 1, b"x"), Instant::now()),
            Err(FragmentError::SeqOutOfRange { seq: 1, sum: 1 })
        );
        assert_eq!(a.pending_messages(), 0);
    }

    #[test]
    fn sum_above_the_fragment_limit_is_rejected() {
        let mut a = Assembler::new(limits(1 << 20, 4, 16));
        assert_eq!(
            a.push_frame(&frag("m", 5, 0, b"x"), Instant::now()),
            Err(FragmentError::TooManyFragments { sum: 5, max: 4 })
        );
        assert_eq!(
            a.push_frame(&frag("n", u32::MAX, 0, b"x"), Instant::now()),
            Err(FragmentError::TooManyFragments {
                sum: u32::MAX,
                max: 4
            })
        );
        assert!(a.push_frame(&frag("m", 4, 0, b"x"), Instant::now()).is_ok());
    }

    #[test]
    fn configured_fragment_limit_is_capped_by_the_ceiling() {
        let mut a = Assembler::new(limits(1 << 20, u32::MAX, 16));
        assert_eq!(a.limits().max_fragments_per_message, MAX_FRAGMENTS_CEILING);
        assert_eq!(
            a.push_frame(&frag("m", u32::MAX, 0, b"x"), Instant::now()),
            Err(FragmentError::TooManyFragments {
                sum: u32::MAX,
                max: MAX_FRAGMENTS_CEILING
            })
        );
    }

    #[test]
    fn fragments_join_in_seq_order_and_the_last_one_completes() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        assert_eq!(a.push_frame(&frag("m", 3, 2, b"ghi"), now), Ok(None));
        assert_eq!(a.push_frame(&frag("m", 3, 0, b"abc"), now), Ok(None));
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (1, 6));
        let done = a
            .push_frame(&frag("m", 3, 1, b"def"), now)
            .unwrap()
            .unwrap();
        assert_eq!(done.payload, b"abcdefghi");
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (0, 0));
    }

    #[test]
    fn interleaved_messages_are_kept_apart() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        assert_eq!(a.push_frame(&frag("a", 2, 0, b"a0"), now), Ok(None));
        assert_eq!(a.push_frame(&frag("b", 2, 1, b"b1"), now), Ok(None));
        assert_eq!(
            a.push_frame(&frag("b", 2, 0, b"b0"), now)
                .unwrap()
                .unwrap()
                .payload,
            b"b0b1"
        );
        assert_eq!(
            a.push_frame(&frag("a", 2, 1, b"a1"), now)
                .unwrap()
                .unwrap()
                .payload,
            b"a0a1"
        );
    }

    #[test]
    fn empty_fragments_do_not_block_completion() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        assert_eq!(a.push_frame(&frag("m", 3, 0, b""), now), Ok(None));
        assert_eq!(a.push_frame(&frag("m", 3, 2, b"z"), now), Ok(None));
        let done = a.push_frame(&frag("m", 3, 1, b""), now).unwrap().unwrap();
        assert_eq!(done.payload, b"z");
    }

    #[test]
    fn duplicate_seq_overwrites_its_slot_and_does_not_count_twice() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        assert_eq!(a.push_frame(&frag("m", 2, 0, b"old-bytes"), now), Ok(None));
        assert_eq!(a.push_frame(&frag("m", 2, 0, b"new"), now), Ok(None));
        assert_eq!(a.buffered_bytes(), 3);
        let done = a.push_frame(&frag("m", 2, 1, b"!"), now).unwrap().unwrap();
        assert_eq!(done.payload, b"new!");
        assert_eq!(a.buffered_bytes(), 0);
    }

    #[test]
    fn sum_mismatch_drops_the_partial() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        assert_eq!(a.push_frame(&frag("m", 3, 0, b"abc"), now), Ok(None));
        assert_eq!(
            a.push_frame(&frag("m", 2, 1, b"x"), now),
            Err(FragmentError::SumMismatch {
                expected: 3,
                got: 2
            })
        );
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (0, 0));
    }

    #[test]
    fn whole_frame_reusing_a_partial_id_is_a_sum_mismatch() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        assert_eq!(a.push_frame(&frag("m", 2, 0, b"abc"), now), Ok(None));
        assert_eq!(
            a.push_frame(&frag("m", 1, 0, b"x"), now),
            Err(FragmentError::SumMismatch {
                expected: 2,
                got: 1
            })
        );
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (0, 0));
        // other ids still take the fast path while a partial exists
        assert_eq!(a.push_frame(&frag("p", 2, 0, b"p"), now), Ok(None));
        assert!(a.push_frame(&frag("q", 1, 0, b"q"), now).unwrap().is_some());
    }

    #[test]
    fn invalid_seq_on_a_known_message_keeps_the_partial() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        assert_eq!(a.push_frame(&frag("m", 2, 0, b"a"), now), Ok(None));
        assert_eq!(
            a.push_frame(&frag("m", 2, 5, b"x"), now),
            Err(FragmentError::SeqOutOfRange { seq: 5, sum: 2 })
        );
        assert_eq!(
            a.push_frame(&frag("m", 2, 1, b"b"), now)
                .unwrap()
                .unwrap()
                .payload,
            b"ab"
        );
    }

    #[test]
    fn message_larger_than_the_byte_cap_is_rejected() {
        let mut a = Assembler::new(limits(10, 16, 16));
        let now = Instant::now();
        assert_eq!(
            a.push_frame(&frag("big", 2, 0, &[0; 11]), now),
            Err(FragmentError::MessageTooLarge { bytes: 11, max: 10 })
        );
        assert_eq!(a.push_frame(&frag("m", 3, 0, &[0; 6]), now), Ok(None));
        // the completing fragment counts too: a message is judged by its total size
        assert_eq!(
            a.push_frame(&frag("m", 3, 1, &[0; 5]), now),
            Err(FragmentError::MessageTooLarge { bytes: 11, max: 10 })
        );
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (0, 0));
    }

    #[test]
    fn a_full_buffer_evicts_the_oldest_other_partials_to_make_room() {
        let mut a = Assembler::new(limits(10, 16, 16));
        let t0 = Instant::now();
        let later = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(a.push_frame(&frag("a", 2, 0, &[1; 6]), t0), Ok(None));
        assert_eq!(a.push_frame(&frag("b", 3, 0, &[2; 3]), later(1)), Ok(None));
        // "b" grows past the cap: "a", the oldest other, goes
        assert_eq!(a.push_frame(&frag("b", 3, 1, &[2; 3]), later(2)), Ok(None));
        assert_eq!(a.take_evicted(), 1);
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (1, 6));
        // a new message that does not fit evicts "b"
        assert_eq!(a.push_frame(&frag("c", 2, 0, &[3; 5]), later(3)), Ok(None));
        assert_eq!(a.take_evicted(), 1);
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (1, 5));
        assert_eq!(
            a.push_frame(&frag("c", 2, 1, &[3; 5]), later(4))
                .unwrap()
                .unwrap()
                .payload,
            vec![3; 10]
        );
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (0, 0));
        assert_eq!(a.take_evicted(), 0);
    }

    #[test]
    fn a_full_table_evicts_its_oldest_partial_for_a_new_message() {
        let mut a = Assembler::new(limits(1 << 20, 16, 2));
        let t0 = Instant::now();
        let later = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(a.push_frame(&frag("a", 2, 0, b"a"), t0), Ok(None));
        assert_eq!(a.push_frame(&frag("b", 2, 0, b"b"), later(1)), Ok(None));
        assert_eq!(a.take_evicted(), 0);
        // the table is full: "a", the oldest, goes; "c" is held
        assert_eq!(a.push_frame(&frag("c", 2, 0, b"cc"), later(2)), Ok(None));
        assert_eq!(a.take_evicted(), 1);
        assert_eq!(a.take_evicted(), 0, "taking resets the count");
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (2, 3));
        // whole messages never count against the pending limit
        assert!(a
            .push_frame(&frag("d", 1, 0, b"d"), later(3))
            .unwrap()
            .is_some());
        // "b" and "c" complete; "a"'s second half starts a new partial of its own
        assert!(a
            .push_frame(&frag("b", 2, 1, b"!"), later(4))
            .unwrap()
            .is_some());
        assert!(a
            .push_frame(&frag("c", 2, 1, b"!"), later(5))
            .unwrap()
            .is_some());
        assert_eq!(a.push_frame(&frag("a", 2, 1, b"!"), later(6)), Ok(None));
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (1, 1));
    }

    #[test]
    fn a_flood_of_unfinished_messages_cannot_starve_a_real_one() {
        let mut a = Assembler::new(FragmentLimits::default());
        let t0 = Instant::now();
        for i in 0..4096 {
            let id = format!("junk-{i}");
            assert_eq!(a.push_frame(&frag(&id, 2, 0, b"j"), t0), Ok(None));
        }
        assert_eq!(a.pending_messages(), 1024);
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(a.push_frame(&frag("real", 2, 0, b"he"), t1), Ok(None));
        let done = a
            .push_frame(&frag("real", 2, 1, b"llo"), t1)
            .unwrap()
            .unwrap();
        assert_eq!(done.payload, b"hello".to_vec());
        assert_eq!(a.take_evicted(), 4096 - 1024 + 1);
    }

    #[test]
    fn a_limit_of_zero_holds_nothing() {
        let mut a = Assembler::new(limits(1 << 20, 16, 0));
        assert_eq!(
            a.push_frame(&frag("a", 2, 0, b"a"), Instant::now()),
            Err(FragmentError::TooManyPending { pending: 0, max: 0 })
        );
        assert!(a
            .push_frame(&frag("w", 1, 0, b"w"), Instant::now())
            .unwrap()
            .is_some());
    }

    #[test]
    fn expire_drops_partials_older_than_expiry_from_their_first_fragment() {
        let mut a = Assembler::new(FragmentLimits::default());
        let t0 = Instant::now();
        assert_eq!(a.push_frame(&frag("old", 3, 0, b"12"), t0), Ok(None));
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(a.push_frame(&frag("new", 2, 0, b"345"), t5), Ok(None));
        // a later fragment does not extend the partial's life
        assert_eq!(
            a.push_frame(&frag("old", 3, 1, b"6"), t0 + Duration::from_secs(9)),
            Ok(None)
        );
        assert_eq!(a.expire(t0 + Duration::from_millis(9_999)), 0);
        assert_eq!(a.expire(t0 + Duration::from_secs(10)), 1);
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (1, 3));
        // an Instant from before the partial began is not a negative age
        assert_eq!(a.expire(t0), 0);
        assert_eq!(a.expire(t5 + Duration::from_secs(10)), 1);
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (0, 0));
    }

    #[test]
    fn clear_drops_everything() {
        let mut a = Assembler::new(FragmentLimits::default());
        let now = Instant::now();
        assert_eq!(a.push_frame(&frag("a", 2, 0, b"abc"), now), Ok(None));
        a.clear();
        assert_eq!((a.pending_messages(), a.buffered_bytes()), (0, 0));
        // the message restarts from scratch
        assert_eq!(a.push_frame(&frag("a", 2, 1, b"d"), now), Ok(None));
    }

    #[test]
    fn error_messages_are_single_sentences_without_payload() {
        let long = "x\n".repeat(100);
        let errors = [
            FragmentError::MissingMessageId,
            FragmentError::InvalidSum(short(&long)),
            FragmentError::InvalidSeq("bad\r\nvalue".into()),
            FragmentError::InvalidSum(String::new()),
            FragmentError::InvalidSeq(String::new()),
            FragmentError::SeqOutOfRange { seq: 3, sum: 2 },
            FragmentError::SumMismatch {
                expected: 2,
                got: 3,
            },
            FragmentError::TooManyFragments { sum: 9, max: 4 },
            FragmentError::MessageTooLarge { bytes: 11, max: 10 },
            FragmentError::BufferFull {
                buffered: 1,
                fragment: 2,
                max: 3,
            },
            FragmentError::TooManyPending { pending: 2, max: 2 },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
            assert!(text.chars().count() < 160, "{text}");
        }
        let mut a = Assembler::new(FragmentLimits::default());
        let hostile = frame(&[("message_id", "m"), ("sum", &long), ("seq", "0")], b"");
        let err = a.push_frame(&hostile, Instant::now()).unwrap_err();
        assert!(err.to_string().len() < 120);
    }

    /// A message split into `parts`, delivered in `order` (indices into `parts`, which
    /// may repeat and must cover every index).
    fn deliver(a: &mut Assembler, id: &str, parts: &[Vec<u8>], order: &[usize]) -> Vec<Done> {
        let now = Instant::now();
        let sum = parts.len() as u32;
        let mut done = Vec::new();
        for &i in order {
            if let Some(c) = a
                .push_frame(&frag(id, sum, i as u32, &parts[i]), now)
                .unwrap()
            {
                done.push(c);
            }
        }
        done
    }

    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Fragments of `payload`, each seq sent at least once in a shuffled order with
    /// duplicates, where every seq's last copy carries the real slice.
    fn fragmented() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>, Vec<usize>)> {
        (proptest::collection::vec(any::<u8>(), 0..512), 1usize..24).prop_flat_map(
            |(payload, n)| {
                let cuts = proptest::collection::vec(0..=payload.len(), n - 1);
                let extra = proptest::collection::vec(0..n, 0..8);
                (Just(payload), cuts, extra, any::<u64>()).prop_map(
                    |(payload, mut cuts, extra, seed)| {
                        cuts.sort_unstable();
                        let mut parts = Vec::new();
                        let mut start = 0;
                        for c in cuts.into_iter().chain([payload.len()]) {
                            parts.push(payload[start..c].to_vec());
                            start = c;
                        }
                        let mut order: Vec<usize> = (0..parts.len()).chain(extra).collect();
                        shuffle(&mut order, seed);
                        (payload, parts, order)
                    },
                )
            },
        )
    }

    /// Deterministic Fisher-Yates so a failing case replays from proptest's seed alone.
    fn shuffle(v: &mut [usize], mut seed: u64) {
        for i in (1..v.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = ((seed >> 33) % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(10_000), ..ProptestConfig::default() })]

        #[test]
        fn any_delivery_order_reassembles_the_exact_payload_exactly_once(
            (payload, parts, order) in fragmented()
        ) {
            let mut a = Assembler::new(FragmentLimits::default());
            let done = deliver(&mut a, "m", &parts, &order);
            // The model: a message completes when its set of received seqs is full; a
            // duplicate arriving after that starts a new message.
            let mut seen = vec![false; parts.len()];
            let (mut completions, mut held) = (0, 0);
            for &i in &order {
                if !seen[i] { seen[i] = true; held += 1; }
                if held == parts.len() { completions += 1; held = 0; seen.fill(false); }
            }
            prop_assert!(completions >= 1);
            prop_assert_eq!(done.len(), completions);
            for c in &done {
                prop_assert_eq!(&c.payload, &payload);
                prop_assert_eq!(c.message_id.as_str(), "m");
            }
            prop_assert_eq!(a.pending_messages(), usize::from(held > 0));
            let held_bytes: usize = (0..parts.len()).filter(|&i| seen[i]).map(|i| parts[i].len()).sum();
            prop_assert_eq!(a.buffered_bytes(), held_bytes);
        }

        #[test]
        fn garbage_headers_never_panic_and_the_byte_cap_holds(
            frames in proptest::collection::vec(
                (
                    // mostly well-formed fragments of a few interleaved messages, so the
                    // limits are actually reached, mixed with garbage
                    proptest::option::of(prop_oneof![4 => "[a-f]", 1 => ".{0,3}"]),
                    proptest::option::of(prop_oneof![4 => "[1-4]", 1 => "-?[0-9]{1,12}", 1 => ".{0,4}"]),
                    proptest::option::of(prop_oneof![4 => "[0-3]", 1 => "-?[0-9]{1,12}", 1 => ".{0,4}"]),
                    proptest::collection::vec(any::<u8>(), 0..40),
                    0u64..12_000,
                ),
                1..40,
            ),
            cap in 0usize..200,
        ) {
            let mut a = Assembler::new(FragmentLimits {
                max_buffered_bytes: cap,
                max_fragments_per_message: 16,
                max_pending_messages: 4,
                expiry: Duration::from_secs(10),
            });
            let t0 = Instant::now();
            for (id, sum, seq, payload, at) in frames {
                let mut headers = Vec::new();
                if let Some(id) = &id { headers.push(("message_id", id.as_str())); }
                if let Some(sum) = &sum { headers.push(("sum", sum.as_str())); }
                if let Some(seq) = &seq { headers.push(("seq", seq.as_str())); }
                let now = t0 + Duration::from_millis(at);
                if let Err(e) = a.push_frame(&frame(&headers, &payload), now) {
                    let _ = e.to_string();
                }
                prop_assert!(a.buffered_bytes() <= cap);
                prop_assert!(a.pending_messages() <= 4);
                // the accounting matches what is actually held
                let mut held = 0;
                for p in a.partials.values() {
                    let bytes: usize = p.slots.iter().flatten().map(Vec::len).sum();
                    let received = p.slots.iter().filter(|s| s.is_some()).count();
                    prop_assert_eq!(p.bytes, bytes);
                    prop_assert_eq!(p.received as usize, received);
                    prop_assert!(received < p.slots.len());
                    held += bytes;
                }
                prop_assert_eq!(a.buffered_bytes(), held);
                a.expire(now);
            }
            a.expire(t0 + Duration::from_secs(60));
            prop_assert_eq!(a.buffered_bytes(), 0);
            prop_assert_eq!(a.pending_messages(), 0);
        }
    }
}
