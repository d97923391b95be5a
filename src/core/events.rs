//! What the core hands to its embedder: events to handle, and lifecycle notifications.
//! The napi binding implements both traits; Rust tests implement them in memory.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use super::envelope::{envelope_meta, EnvelopeError, EnvelopeMeta};

use super::config::LogLevel;
use super::connection::{Answer, Settled};
use super::error::TransportError;
use super::status::StatusSnapshot;

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

/// The handler's verdict: `Ok(Some(json))` becomes the ack's base64 `data`, `Ok(None)` a
/// bare 200, `Err(reason)` a 500 (and Feishu re-delivers).
pub type HandlerResult = Result<Option<String>, String>;

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

/// Where a session collects its handlers' answers, by token.
pub(crate) type ReplySender = mpsc::UnboundedSender<Settled>;

/// The answer to one event. Dropping it unanswered counts as a failure (a 500 ack, and
/// Feishu re-delivers), so an embedder that loses an event cannot leave it hanging.
pub struct Reply {
    target: Option<ReplyTarget>,
}

enum ReplyTarget {
    Session(ReplySender, u64),
    Once(oneshot::Sender<HandlerResult>),
}

/// The reason given when a [`Reply`] is dropped unanswered.
pub const REPLY_DROPPED: &str = "the handler went away before it answered";

impl Reply {
    pub(crate) fn session(tx: ReplySender, token: u64) -> Reply {
        Reply {
            target: Some(ReplyTarget::Session(tx, token)),
        }
    }

    /// A reply whose answer arrives on the returned receiver.
    pub fn oneshot() -> (Reply, oneshot::Receiver<HandlerResult>) {
        let (tx, rx) = oneshot::channel();
        let reply = Reply {
            target: Some(ReplyTarget::Once(tx)),
        };
        (reply, rx)
    }

    /// Answers the event. If its connection is gone meanwhile, nothing is acked and
    /// Feishu re-delivers it (dedupe still learns the outcome).
    pub fn send(mut self, result: HandlerResult) {
        self.deliver(result);
    }

    /// Answers every reply with a bare 200, as `send(Ok(None))` on each would, but with
    /// one message per run of replies bound for the same session instead of one per
    /// event: each message costs the answering thread and the session a round of atomic
    /// operations on the queue's shared state.
    pub fn send_all_ok(replies: impl IntoIterator<Item = Reply>) {
        let mut run: Option<(ReplySender, Vec<u64>)> = None;
        for mut reply in replies {
            match reply.target.take() {
                Some(ReplyTarget::Session(tx, token)) => match &mut run {
                    Some((to, tokens)) if to.same_channel(&tx) => tokens.push(token),
                    _ => {
                        if let Some((to, tokens)) = run.replace((tx, vec![token])) {
                            let _ = to.send(Settled::Ok(tokens));
                        }
                    }
                },
                Some(ReplyTarget::Once(tx)) => {
                    let _ = tx.send(Ok(None));
                }
                None => {}
            }
        }
        if let Some((to, tokens)) = run {
            let _ = to.send(Settled::Ok(tokens));
        }
    }

    fn deliver(&mut self, result: HandlerResult) {
        match self.target.take() {
            Some(ReplyTarget::Session(tx, token)) => {
                let _ = tx.send(Settled::One(token, Answer::Handler(result)));
            }
            Some(ReplyTarget::Once(tx)) => {
                let _ = tx.send(result);
            }
            None => {}
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.target.is_some() {
            self.deliver(Err(REPLY_DROPPED.to_string()));
        }
    }
}

/// Lifecycle notifications; every method defaults to doing nothing.
pub trait Observer: Send + Sync + 'static {
    /// The first connection of this run is up.
    fn ready(&self) {}
    /// A retry is scheduled after `delay`.
    fn reconnecting(&self, _attempt: u32, _delay: Duration, _error: Option<&TransportError>) {}
    /// A later connection of this run is up.
    fn reconnected(&self) {}
    /// Every failure, recoverable or terminal.
    fn error(&self, _error: &TransportError) {}
    /// Every state transition.
    fn status(&self, _status: &StatusSnapshot) {}
    /// A log line, already filtered by level, single-line and redacted.
    fn log(&self, _level: LogLevel, _message: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a session's queue received: per message, each event's token and result.
    fn drain(rx: &mut mpsc::UnboundedReceiver<Settled>) -> Vec<Vec<(u64, HandlerResult)>> {
        let mut messages = Vec::new();
        while let Ok(settled) = rx.try_recv() {
            let answers = match settled {
                Settled::One(token, Answer::Handler(r)) => vec![(token, r)],
                Settled::One(..) => panic!("a known answer"),
                Settled::Ok(tokens) => tokens.into_iter().map(|t| (t, Ok(None))).collect(),
            };
            messages.push(answers);
        }
        messages
    }

    #[test]
    fn send_all_ok_answers_each_reply_once_with_one_message_per_run() {
        let (a, mut a_rx) = mpsc::unbounded_channel();
        let (b, mut b_rx) = mpsc::unbounded_channel();
        let (once, mut once_rx) = Reply::oneshot();
        let replies = vec![
            Reply::session(a.clone(), 1),
            Reply::session(a.clone(), 2),
            Reply::session(b.clone(), 7),
            once,
            Reply::session(a.clone(), 3),
        ];
        Reply::send_all_ok(replies);
        // Runs for the same session keep their order; nothing is answered twice (a
        // reply dropped unanswered would add a failure).
        assert_eq!(
            drain(&mut a_rx),
            vec![vec![(1, Ok(None)), (2, Ok(None))], vec![(3, Ok(None))]]
        );
        assert_eq!(drain(&mut b_rx), vec![vec![(7, Ok(None))]]);
        assert_eq!(once_rx.try_recv(), Ok(Ok(None)));
        // A reply sent on its own still goes as one message.
        Reply::session(b, 8).send(Err("boom".into()));
        assert_eq!(drain(&mut b_rx), vec![vec![(8, Err("boom".into()))]]);
    }

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
