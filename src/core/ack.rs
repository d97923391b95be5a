//! The ack pipeline: everything between a handler's answer and the bytes of its ack on
//! the wire, in one place.
//!
//! - [`Reply`] is the handle a handler answers through (from any thread); dropping it
//!   unanswered is a failure.
//! - Its answer goes into the session's queue as [`Settled`] (one event's [`Answer`], or
//!   many bare 200s at once), keyed by a token the session handed out.
//! - [`InFlight`] holds each unanswered event's [`Pending`] entry (its [`AckTemplate`],
//!   its dedupe claim, when it started) and the due queues of its slow warning and its
//!   `handlerTimeoutMs` deadline.
//! - [`InFlight::settle`] turns an answer into the ack payload ([`ack_payload`]), settles
//!   dedupe ([`settle_dedupe`]) and encodes the frame ([`ReadyAck`]); the session writes it.
//! - When a session ends, [`InFlight::hand_off`] keeps listening for the answers of the
//!   events it owned in dedupe, so a re-delivery on the next socket gets their outcome.
//!
//! This module imports the protocol (`frame`, `frame_view`), dedupe, the log and the
//! status, and nothing that imports it back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::config::LogLevel;
use super::dedupe::DedupeGuard;
use super::frame::AckPayload;
use super::frame_view::AckTemplate;
use super::log::Log;
use super::seqmap::SeqMap;

/// The handler's verdict: `Ok(Some(json))` becomes the ack's base64 `data`, `Ok(None)` a
/// bare 200, `Err(reason)` a 500 (and Feishu re-delivers).
pub type HandlerResult = Result<Option<String>, String>;

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

/// What arrives in a session's answer queue for one event (by token).
pub(crate) enum Answer {
    /// The handler's own result.
    Handler(HandlerResult),
    /// A result known without running the handler here (a re-delivery that waited for
    /// the same event in flight; dedupe is settled already).
    Known(AckPayload),
}

/// What a session's answer queue carries.
pub(crate) enum Settled {
    /// One event's answer, by token.
    One(u64, Answer),
    /// Events whose handlers all returned nothing (bare 200s), answered together
    /// ([`Reply::send_all_ok`]).
    Ok(Vec<u64>),
}

impl Settled {
    /// The answers, one per event, in the order they were given.
    pub(crate) fn into_answers(self) -> impl Iterator<Item = (u64, Answer)> {
        let (one, many) = match self {
            Settled::One(token, answer) => (Some((token, answer)), Vec::new()),
            Settled::Ok(tokens) => (None, tokens),
        };
        one.into_iter().chain(
            many.into_iter()
                .map(|token| (token, Answer::Handler(Ok(None)))),
        )
    }
}

/// One event whose handler has not answered yet.
pub(crate) struct Pending {
    /// What the ack echoes of the frame that completed the message.
    pub(crate) ack: AckTemplate,
    /// Set when this delivery owns the event in dedupe.
    pub(crate) guard: Option<DedupeGuard<AckPayload>>,
    pub(crate) started: Instant,
    /// For log lines only; shared by every event of its type (see [`EventTypes`]).
    pub(crate) event_type: Option<Arc<str>>,
}

impl Pending {
    pub(crate) fn message_id(&self) -> &str {
        self.ack.message_id()
    }

    /// The ack payload `answer` becomes (a failure is logged); dedupe learns it, as of
    /// `now`.
    pub(crate) fn conclude(&mut self, answer: Answer, log: &Log, now: Instant) -> AckPayload {
        let payload = match answer {
            Answer::Known(v) => v,
            Answer::Handler(r) => {
                ack_payload(r, || self.ack.message_id(), self.event_type.as_deref(), log)
            }
        };
        settle_dedupe(self.guard.take(), &payload, now);
        payload
    }
}

/// The events of one session whose handlers have not answered, and the queue their
/// answers arrive on. Answers are keyed by a token the session hands out, so an answer
/// meant for another session can never be confused with one of ours.
pub(crate) struct InFlight {
    pub(crate) pending: SeqMap<Pending>,
    pub(crate) next_token: u64,
    pub(crate) tx: ReplySender,
    pub(crate) rx: mpsc::UnboundedReceiver<Settled>,
    /// When each handler's slow warning is due.
    pub(crate) slow: DueQueue,
    /// When each handler is given up on (`handlerTimeoutMs`).
    pub(crate) deadlines: DueQueue,
    /// Events whose handlers were given up on, by token, with their message ids: a late
    /// answer is logged once, then forgotten. Bounded by [`InFlight::MAX_TIMED_OUT`].
    pub(crate) timed_out: SeqMap<Box<str>>,
}

/// `(token, when something is due for it)` in arrival order, which is also the order of
/// their due times (every entry waits the same delay). Entries whose event was answered
/// are skipped when they reach the front. One timer serves them all, instead of one per
/// event.
#[derive(Default)]
pub(crate) struct DueQueue(VecDeque<(u64, tokio::time::Instant)>);

impl DueQueue {
    pub(crate) fn push(&mut self, token: u64, due: tokio::time::Instant) {
        self.0.push_back((token, due));
    }

    /// The earliest due time, if any.
    pub(crate) fn next_due(&self) -> Option<tokio::time::Instant> {
        self.0.front().map(|&(_, due)| due)
    }

    /// Forgets answered events at the front.
    pub(crate) fn trim(&mut self, pending: &SeqMap<Pending>) {
        while let Some(&(token, _)) = self.0.front() {
            if pending.contains_key(&token) {
                break;
            }
            self.0.pop_front();
        }
    }

    /// The next token due by `now`, answered or not.
    pub(crate) fn pop_due(&mut self, now: tokio::time::Instant) -> Option<u64> {
        match self.0.front() {
            Some(&(token, due)) if due <= now => {
                self.0.pop_front();
                Some(token)
            }
            _ => None,
        }
    }
}

impl InFlight {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        InFlight {
            pending: SeqMap::default(),
            next_token: 0,
            tx,
            rx,
            slow: DueQueue::default(),
            deadlines: DueQueue::default(),
            timed_out: SeqMap::default(),
        }
    }

    /// Hung handlers remembered for their late answer's log line; past this, the oldest
    /// are not told apart from unknown tokens (their late answers go unlogged).
    pub(crate) const MAX_TIMED_OUT: usize = 1024;

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Forgets answered events at the front of the due queues.
    pub(crate) fn trim(&mut self) {
        self.slow.trim(&self.pending);
        self.deadlines.trim(&self.pending);
    }

    /// Gives up on the handler of `token`: its dedupe claim is released (a re-delivery
    /// runs the handler again) and its ack is a 500, so Feishu re-delivers. None when it
    /// has answered meanwhile.
    pub(crate) fn time_out(&mut self, token: u64, after: Duration, log: &Log) -> Option<ReadyAck> {
        let p = self.pending.get(&token)?;
        let id: Box<str> = p.message_id().into();
        let kind = p.event_type.as_deref().unwrap_or("");
        log.warn(|| format!("the handler for event {id} ({kind}) did not settle within {} ms (handlerTimeoutMs); acking 500 so Feishu re-delivers it, and freeing its slot", after.as_millis()));
        // Settled like any failure known without the handler: dedupe releases the claim.
        let ack = self.settle(token, Answer::Known(AckPayload::Failed), log);
        if self.timed_out.len() >= Self::MAX_TIMED_OUT {
            self.timed_out.clear();
        }
        self.timed_out.insert(token, id);
        ack
    }

    /// Turns one answer into the ack to write (None for an unknown token), settling
    /// dedupe on the way.
    pub(crate) fn settle(&mut self, token: u64, answer: Answer, log: &Log) -> Option<ReadyAck> {
        let Some(mut p) = self.pending.remove(&token) else {
            if let Some(id) = self.timed_out.remove(&token) {
                log.info(|| format!("the handler for event {id} settled after it was timed out; its result is ignored (the event was acked 500 and is re-delivered)"));
            }
            return None;
        };
        // One clock read serves dedupe and `biz_rt`.
        let now = Instant::now();
        let payload = p.conclude(answer, log, now);
        let biz_rt = now.saturating_duration_since(p.started).as_millis() as u64;
        let ok = payload != AckPayload::Failed;
        Some(ReadyAck {
            frame: p.ack.encode(biz_rt, &payload),
            ok,
        })
    }

    /// The session is over. Events still in flight will not be acked on this socket
    /// (Feishu re-delivers them), but their handlers still run: a task waits for the
    /// answers of the events this session owns in dedupe, so a re-delivery arriving on
    /// the next socket gets the outcome instead of running the handler again.
    pub(crate) fn hand_off(self, log: &Log) {
        let InFlight {
            pending,
            tx,
            mut rx,
            ..
        } = self;
        drop(tx);
        let mut owned: SeqMap<Pending> = pending
            .into_iter()
            .filter(|(_, p)| p.guard.is_some())
            .collect();
        if owned.is_empty() {
            return;
        }
        let log = log.clone();
        tokio::spawn(async move {
            while !owned.is_empty() {
                // None: every reply is gone; the guards fail as they drop.
                let Some(settled) = rx.recv().await else {
                    break;
                };
                for (token, answer) in settled.into_answers() {
                    if let Some(mut p) = owned.remove(&token) {
                        p.conclude(answer, &log, Instant::now());
                        let message_id = p.message_id();
                        log.debug(|| format!("the connection of event {message_id} is gone; its ack is dropped and Feishu will re-deliver it"));
                    }
                }
            }
        });
    }
}

/// A finished handler's ack, ready to write.
pub(crate) struct ReadyAck {
    /// The encoded frame.
    pub(crate) frame: Vec<u8>,
    pub(crate) ok: bool,
}

/// The ack a handler's result becomes; a failure is logged.
pub(crate) fn ack_payload<'m>(
    result: HandlerResult,
    // Only a failure's log line needs it.
    message_id: impl FnOnce() -> &'m str,
    event_type: Option<&str>,
    log: &Log,
) -> AckPayload {
    match result {
        Ok(None) => AckPayload::Ok,
        Ok(Some(json)) => AckPayload::OkWithData(json.into_bytes()),
        Err(reason) => {
            let message_id = message_id();
            let event_type = event_type.unwrap_or("");
            log.emit(
                LogLevel::Error,
                format!("the handler for event {message_id} ({event_type}) failed; acking 500 so Feishu re-delivers: {reason}"),
            );
            AckPayload::Failed
        }
    }
}

/// Remembers a success for re-deliveries; a failure is never remembered.
pub(crate) fn settle_dedupe(
    guard: Option<DedupeGuard<AckPayload>>,
    payload: &AckPayload,
    now: Instant,
) {
    if let Some(guard) = guard {
        match payload {
            AckPayload::Failed => guard.fail(),
            ok => guard.succeed(ok.clone(), now),
        }
    }
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
}
