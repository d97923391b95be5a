//! What the core hands to its embedder: events to handle (this module), the answer to
//! each ([`Reply`], in `ack.rs`) and lifecycle notifications ([`Observer`], in
//! `observer.rs`). The napi binding implements the traits; Rust tests implement them in
//! memory.

pub use super::ack::{HandlerResult, Reply, REPLY_DROPPED};
pub use super::envelope::{envelope_meta, EnvelopeError, EnvelopeMeta};
pub use super::observer::Observer;

/// One complete event, reassembled and checked to be UTF-8 JSON, as the handler sees it:
/// borrowed from the connection's buffers for the duration of [`EventHandler::handle`].
/// The handler copies what it keeps ([`InboundEvent::to_owned`]); the connection then
/// allocates nothing per event for it (the JavaScript handler writes these fields
/// straight into the text it hands over).
#[derive(Debug, Clone, Copy)]
pub struct InboundEvent<'a> {
    /// The envelope exactly as Feishu sent it.
    pub payload: &'a str,
    pub message_id: &'a str,
    pub trace_id: Option<&'a str>,
    /// `header.event_type` (v2) or `event.type` (v1).
    pub event_type: Option<&'a str>,
    /// `header.event_id` (v2) or `uuid` (v1).
    pub event_id: Option<&'a str>,
    /// ms since the epoch.
    pub received_at_ms: u64,
}

impl InboundEvent<'_> {
    pub fn to_owned(&self) -> OwnedEvent {
        OwnedEvent {
            payload: self.payload.to_owned(),
            message_id: self.message_id.to_owned(),
            trace_id: self.trace_id.map(str::to_owned),
            event_type: self.event_type.map(str::to_owned),
            event_id: self.event_id.map(str::to_owned),
            received_at_ms: self.received_at_ms,
        }
    }
}

/// An [`InboundEvent`] that outlives the call: a re-delivery waiting for the first
/// delivery's outcome, or a test's record of what it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedEvent {
    pub payload: String,
    pub message_id: String,
    pub trace_id: Option<String>,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub received_at_ms: u64,
}

impl OwnedEvent {
    pub fn as_event(&self) -> InboundEvent<'_> {
        InboundEvent {
            payload: &self.payload,
            message_id: &self.message_id,
            trace_id: self.trace_id.as_deref(),
            event_type: self.event_type.as_deref(),
            event_id: self.event_id.as_deref(),
            received_at_ms: self.received_at_ms,
        }
    }
}

/// Receives events. `handle` is called on the connection's task, in arrival order, and
/// must not block: it starts the work and answers through `reply` later, from any thread.
/// Answering through a handle rather than returning a future keeps the hot path free of
/// a boxed future, a channel and a timer per event: the answer goes straight into the
/// session's queue, which writes the ack.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, event: InboundEvent<'_>, reply: Reply);

    /// The connection is about to hand over every message it has already read (up to a
    /// burst): a handler may hold the events of the burst and pass them on together at
    /// [`EventHandler::end_burst`], which always follows.
    fn begin_burst(&self) {}

    /// The burst that [`EventHandler::begin_burst`] announced is over.
    fn end_burst(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v2_and_v1_envelopes() {
        let v2 = include_str!("../../fixtures/events/message-receive-text.json");
        let m = envelope_meta(v2).unwrap();
        assert_eq!(m.event_type.as_deref(), Some("im.message.receive_v1"));
        assert_eq!(
            m.event_id.as_deref(),
            Some("c42aaedb8ee7d8464cbbc212d6675dc3")
        );
        let v1 = include_str!("../../fixtures/events/v1-message-text.json");
        let m = envelope_meta(v1).unwrap();
        assert_eq!(m.event_type.as_deref(), Some("message"));
        assert_eq!(
            m.event_id.as_deref(),
            Some("bcff82544c12dfb00fe5301ea4bea0a7")
        );
        let m = envelope_meta("{}").unwrap();
        assert!(m.event_type.is_none() && m.event_id.is_none());
        assert!(envelope_meta("[1]").is_err());
        // `event` of any JSON type is accepted; only an object's string `type` counts.
        let m =
            envelope_meta(r#"{"uuid":"u1","event":{"type":"t","x":[1,{"y":"\\u00e9"}]}}"#).unwrap();
        assert_eq!(m.event_type.as_deref(), Some("t"));
        assert_eq!(m.event_id.as_deref(), Some("u1"));
        for body in [
            r#"{"event":null}"#,
            r#"{"event":3}"#,
            r#"{"event":"s"}"#,
            r#"{"event":{"type":7}}"#,
        ] {
            let m = envelope_meta(body).unwrap();
            assert!(m.event_type.is_none(), "{body}");
        }
        let m = envelope_meta(r#"{"header":{"event_id":"e"},"event":{"type":"v1"}}"#).unwrap();
        assert_eq!(m.event_type.as_deref(), Some("v1"));
        assert!(envelope_meta(r#"{"header":{},"event":{"type":"t"}"#).is_err());
        assert!(envelope_meta("nope").is_err());
    }
}
