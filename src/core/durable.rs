//! The event path through a durable dedupe store (`dedupe.store` other than `memory`).
//!
//! The in-memory [`Dedupe`](super::dedupe::Dedupe) stays in front: re-deliveries within
//! this process are answered or made to wait there, as with the memory store. Only a
//! delivery that owns the event locally comes here, in a task of its own:
//!
//! 1. claim the event in the store, with a lease ([`DurableStore::lease`]);
//!    - already handled (here before a restart, or by another process): ack with the
//!      stored result, without calling the handler;
//!    - held by another live claim: wait up to [`HELD_WAIT`] for its outcome, then ack
//!      500 so Feishu re-delivers later (README, Reliability, says why);
//! 2. call the handler (bounded by `handlerTimeoutMs`); with the timeout off, renew the
//!    claim every third of its lease while the handler runs ([`DurableStore::renew_every`]),
//!    so a long handler keeps it;
//! 3. store a success *before* its ack is written; release the claim after a failure.
//!
//! An unreachable store never loses an event: it is handled anyway (at-least-once),
//! `counters.storeErrors` counts each failed call, `status().store.healthy` turns false
//! and one warning is logged per outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ack::{
    ack_payload, settle_dedupe, Answer, HandlerResult, Reply, ReplySender, Settled, REPLY_DROPPED,
};
use super::dedupe::DedupeGuard;
use super::error::TransportError;
use super::events::{EventHandler, OwnedEvent};
use super::frame::AckPayload;
use super::log::Log;
use super::status::{Counters, StatusStore};
use super::store::{result_value, Claim, StoreSpec};
use super::store_redis::RedisStore;
use super::store_sqlite::{Op, SqliteStore};
use super::tls::TlsOptions;

/// How long a re-delivery waits for another live holder's outcome before acking 500.
/// Under Feishu's 3 s ack window, so the ack that carries the result is not itself late.
pub const HELD_WAIT: Duration = Duration::from_secs(1);
const HELD_POLL: Duration = Duration::from_millis(100);
/// The lease when `handlerTimeoutMs` is off (0): five minutes, the default timeout.
const LEASE_WITHOUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Added to `handlerTimeoutMs`: a holder's own timeout always fires before its lease ends.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

enum Backend {
    Sqlite(SqliteStore),
    // Boxed: the client and scripts are large, and the store is made once.
    Redis(Box<RedisStore>),
}

/// A durable store, opened for one app. Shared by the runs of a transport.
pub struct DurableStore {
    backend: Backend,
    ttl: Duration,
    lease: Duration,
    /// How often a running handler's claim is renewed; `None` while `handlerTimeoutMs`
    /// bounds handlers (always under the lease, so nothing to renew).
    renew_every: Option<Duration>,
    /// This process's claims are `owner.N`: a release deletes only our own claim.
    owner: String,
    next: AtomicU64,
}

impl DurableStore {
    /// Opens the store `spec` names (`None` for `memory`): a SQLite file is opened and
    /// checked here, so a file that is not a database fails the constructor; a Redis URL
    /// is only parsed (the server may come later). `tls` is the transport's own: a
    /// `rediss://` store trusts what its sockets trust.
    pub fn open(
        spec: &StoreSpec,
        app_id: &str,
        ttl: Duration,
        handler_timeout: Option<Duration>,
        tls: &TlsOptions,
    ) -> Result<Option<Arc<DurableStore>>, TransportError> {
        let backend = match spec {
            StoreSpec::Memory => return Ok(None),
            StoreSpec::Sqlite(path) => Backend::Sqlite(SqliteStore::open(path, app_id, ttl)?),
            StoreSpec::Redis(url) => Backend::Redis(Box::new(RedisStore::open(url, app_id, tls)?)),
        };
        let lease = handler_timeout.unwrap_or(LEASE_WITHOUT_TIMEOUT) + LEASE_MARGIN;
        Ok(Some(Arc::new(DurableStore::new(
            backend,
            ttl,
            lease,
            handler_timeout.is_none(),
        ))))
    }

    fn new(backend: Backend, ttl: Duration, lease: Duration, renews: bool) -> DurableStore {
        DurableStore {
            backend,
            ttl,
            lease,
            renew_every: renews.then_some(lease / 3),
            owner: format!("{}.{:016x}", std::process::id(), rand::random::<u64>()),
            next: AtomicU64::new(0),
        }
    }

    /// How long a claim lives without its result: `handlerTimeoutMs` + 5 s.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often the claim of a running handler is renewed: every third of the lease when
    /// `handlerTimeoutMs` is off (0), so a handler that runs for longer than the lease
    /// keeps its claim (two renewals may fail or be late before it lapses); `None` when
    /// the timeout is set, since it always ends a handler before its lease does.
    pub fn renew_every(&self) -> Option<Duration> {
        self.renew_every
    }

    /// Whether the events of a read burst go to this store together
    /// ([`DurableBurst`]): SQLite answers many operations from one request. Redis keeps
    /// a task per event (its client pipelines concurrent commands on one connection).
    pub(crate) fn takes_bursts(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    /// The number of this process's next claim.
    fn next_claim(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The token of this process's claim number `n`: a release deletes only our own claim.
    fn owner_of(&self, n: u64) -> String {
        format!("{}.{n}", self.owner)
    }

    async fn claim(&self, key: &str, owner: &str) -> Result<Claim, String> {
        match &self.backend {
            Backend::Sqlite(s) => {
                let op = Op::Claim {
                    key: key.into(),
                    owner: owner.into(),
                    lease: self.lease,
                };
                s.run(op).await.map(|c| c.unwrap_or(Claim::Held))
            }
            Backend::Redis(r) => r.claim(key, owner, self.lease).await,
        }
    }

    async fn complete(&self, key: &str, payload: &AckPayload) -> Result<(), String> {
        let value = result_value(payload);
        match &self.backend {
            Backend::Sqlite(s) => {
                let op = Op::Complete {
                    key: key.into(),
                    value,
                    ttl: self.ttl,
                };
                s.run(op).await.map(drop)
            }
            Backend::Redis(r) => r.complete(key, value, self.ttl).await,
        }
    }

    /// Renews our claims `(key, claim number)` by a lease from now, each only while it is
    /// still ours: `true` for each renewed, `false` for each found gone or taken over.
    /// SQLite renews them all in one request.
    async fn renew(&self, claims: &[(String, u64)]) -> Result<Vec<bool>, String> {
        match &self.backend {
            Backend::Sqlite(s) => {
                let ops = claims
                    .iter()
                    .map(|(key, n)| Op::Renew {
                        key: key.clone(),
                        owner: self.owner_of(*n),
                        lease: self.lease,
                    })
                    .collect();
                let found = s.run_many(ops).await?;
                Ok(found.into_iter().map(|c| c == Some(Claim::Owned)).collect())
            }
            Backend::Redis(r) => {
                let mut renewed = Vec::with_capacity(claims.len());
                for (key, n) in claims {
                    renewed.push(r.renew(key, &self.owner_of(*n), self.lease).await?);
                }
                Ok(renewed)
            }
        }
    }

    async fn release(&self, key: &str, owner: &str) -> Result<(), String> {
        match &self.backend {
            Backend::Sqlite(s) => {
                let op = Op::Release {
                    key: key.into(),
                    owner: owner.into(),
                };
                s.run(op).await.map(drop)
            }
            Backend::Redis(r) => r.release(key, owner).await,
        }
    }
}

/// What a store call's outcome means for the transport's health: an error is counted,
/// and the first of an outage is logged (with its cause) and turns `store.healthy`
/// false; the first success after it is logged and turns it true again.
fn noted<T>(r: Result<T, String>, what: &str, status: &StatusStore, log: &Log) -> Option<T> {
    match r {
        Ok(v) => {
            if status.set_store_healthy(true) {
                log.info(|| {
                    "the dedupe store answers again; events are deduplicated through it again"
                        .to_string()
                });
            }
            Some(v)
        }
        Err(e) => {
            Counters::bump(&status.counters.store_errors);
            if status.set_store_healthy(false) {
                log.warn(|| format!("the dedupe store is unreachable ({what}: {e}); events are handled without it until it answers (each may then be handled twice across processes or restarts); counted in counters.storeErrors"));
            }
            None
        }
    }
}

/// Everything the task of one event needs.
pub(crate) struct DurableEvent {
    pub store: Arc<DurableStore>,
    pub guard: DedupeGuard<AckPayload>,
    pub event: OwnedEvent,
    pub handler: Arc<dyn EventHandler>,
    pub status: Arc<StatusStore>,
    pub log: Log,
    pub timeout: Option<Duration>,
}

impl DurableEvent {
    /// Handles the event in a task of its own; the answer goes to `tx` under `token`,
    /// and the session acks it.
    pub(crate) fn spawn(self, tx: ReplySender, token: u64) {
        tokio::spawn(async move {
            let answer = self.run().await;
            let _ = tx.send(Settled::One(token, answer));
        });
    }

    /// Claims, handles and settles the event; the answer its ack carries.
    pub(crate) async fn run(self) -> Answer {
        self.run_until(tokio::time::Instant::now() + HELD_WAIT)
            .await
    }

    /// [`DurableEvent::run`], polling another live holder's claim until `waited_until`.
    async fn run_until(self, waited_until: tokio::time::Instant) -> Answer {
        let DurableEvent {
            store,
            guard,
            event,
            handler,
            status,
            log,
            timeout,
        } = self;
        let key = event.event_id.clone().unwrap_or_default();
        let claim = store.next_claim();
        let owner = store.owner_of(claim);
        let owned = loop {
            match noted(store.claim(&key, &owner).await, "claim", &status, &log) {
                Some(Claim::Owned) => break true,
                // Unreachable: handled anyway, at least once.
                None => break false,
                Some(Claim::Done(v)) => {
                    Counters::bump(&status.counters.duplicates);
                    log.debug(|| format!("event {key} was already handled (the dedupe store has its result); acking the re-delivery with it"));
                    settle_dedupe(Some(guard), &v, Instant::now());
                    return Answer::Known(v);
                }
                Some(Claim::Held) if tokio::time::Instant::now() < waited_until => {
                    tokio::time::sleep(HELD_POLL).await;
                }
                Some(Claim::Held) => {
                    let lease = store.lease().as_millis();
                    log.info(|| format!("event {key} is being handled by another process (its claim is live in the dedupe store); acking 500 so Feishu re-delivers it later, when that result is stored or the claim's {lease} ms lease has run out"));
                    guard.fail();
                    return Answer::Known(AckPayload::Failed);
                }
            }
        };
        let handled = call_handler(&handler, event, timeout, &log);
        let payload = match store.renew_every().filter(|_| owned) {
            None => handled.await,
            Some(every) => {
                let keep = keep_claim(&store, &key, claim, every, &status, &log);
                tokio::select! {
                    payload = handled => payload,
                    never = keep => match never {},
                }
            }
        };
        if payload == AckPayload::Failed {
            if owned {
                noted(store.release(&key, &owner).await, "release", &status, &log);
            }
        } else {
            // Before the ack: a re-delivery after a crash from here on finds the result.
            noted(
                store.complete(&key, &payload).await,
                "store the result",
                &status,
                &log,
            );
        }
        settle_dedupe(Some(guard), &payload, Instant::now());
        Answer::Known(payload)
    }
}

/// Renews the claim number `claim` on `key` every `every` for as long as it is polled
/// (the caller drops it when the handler settles). A claim found no longer ours is
/// warned about once and renewed no more; a failed renewal is counted like any store call
/// and tried again at the next tick.
async fn keep_claim(
    store: &DurableStore,
    key: &str,
    claim: u64,
    every: Duration,
    status: &StatusStore,
    log: &Log,
) -> std::convert::Infallible {
    let claims = [(key.to_string(), claim)];
    loop {
        tokio::time::sleep(every).await;
        if let Some(renewed) = noted(store.renew(&claims).await, "renew a claim", status, log) {
            if renewed.first() == Some(&false) {
                lost_claim(key, store, log);
                return std::future::pending().await;
            }
        }
    }
}

/// The warning for a running handler's claim found gone or taken over at its renewal.
fn lost_claim(key: &str, store: &DurableStore, log: &Log) {
    let lease = store.lease().as_millis();
    log.warn(|| format!("event {key}: its handler is still running but its claim in the dedupe store is no longer ours (not renewed within its {lease} ms lease, or deleted); another delivery may handle it too"));
}

/// Calls the handler for an event this task owns and waits for its answer, bounded like
/// the session's own handlers, so a hung handler cannot hold a dedupe claim for ever
/// (the session acks the delivery 500 itself when `handlerTimeoutMs` passes).
pub(crate) async fn call_handler(
    handler: &Arc<dyn EventHandler>,
    event: OwnedEvent,
    timeout: Option<Duration>,
    log: &Log,
) -> AckPayload {
    let (reply, rx) = Reply::oneshot();
    handler.handle(event.as_event(), reply);
    let answered = match timeout {
        Some(t) => tokio::time::timeout(t, rx).await.map_err(|_| t),
        None => Ok(rx.await),
    };
    let result = match answered {
        Ok(r) => r.unwrap_or_else(|_| Err(REPLY_DROPPED.to_string())),
        Err(t) => Err(format!(
            "the handler did not settle within {} ms (handlerTimeoutMs)",
            t.as_millis()
        )),
    };
    ack_payload(
        result,
        || &event.message_id,
        event.event_type.as_deref(),
        log,
    )
}

/// The events of one read burst that this process owns locally, bound for a store that
/// takes bursts ([`DurableStore::takes_bursts`]). The session collects them while it
/// reads and [`DurableBurst::flush`]es them when the burst ends: one task, one claim
/// request and one hand-over to the handler for the whole burst, instead of a task, a
/// request and a wake per event. Dropped unflushed (a session ended mid-burst), it
/// flushes itself, so no collected event is left unhandled.
#[derive(Default)]
pub(crate) struct DurableBurst {
    events: Vec<(u64, DurableEvent)>,
    tx: Option<ReplySender>,
}

impl DurableBurst {
    /// Adds an event; its answer goes to `tx` under `token`.
    pub(crate) fn push(&mut self, event: DurableEvent, tx: &ReplySender, token: u64) {
        if self.tx.is_none() {
            self.tx = Some(tx.clone());
        }
        self.events.push((token, event));
    }

    /// Starts the collected events' task, if any were collected.
    pub(crate) fn flush(&mut self) {
        if self.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.events);
        if let Some(tx) = self.tx.take() {
            tokio::spawn(run_burst(events, tx));
        }
    }
}

impl Drop for DurableBurst {
    fn drop(&mut self) {
        if !self.events.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            self.flush();
        }
    }
}

/// One handler of a burst that has not answered yet, with what settling it needs.
struct Running {
    token: u64,
    guard: DedupeGuard<AckPayload>,
    event: OwnedEvent,
    /// The number of our claim, `None` when the claim failed (the store unreachable) or
    /// a renewal found it no longer ours.
    claim: Option<u64>,
}

/// Claims a burst's events in one request, hands the owned ones to the handler together
/// (in arrival order), and stores their outcomes as they come, every outcome ready at
/// once in one request. Each ack is sent only after its outcome committed, as
/// [`DurableEvent::run`] does for one event.
///
/// The handlers answer into one queue of the burst's own (by index), as they answer a
/// session: bare 200s answered together arrive as one message, and one timer bounds the
/// whole burst, whose handlers all started together (no oneshot, timer or wake per
/// event).
async fn run_burst(events: Vec<(u64, DurableEvent)>, tx: ReplySender) {
    let Some((_, first)) = events.first() else {
        return;
    };
    let store = first.store.clone();
    let (handler, status, log, timeout) = (
        first.handler.clone(),
        first.status.clone(),
        first.log.clone(),
        first.timeout,
    );
    let Backend::Sqlite(sqlite) = &store.backend else {
        // Only SQLite takes bursts; anything else goes the way of one event each.
        for (token, event) in events {
            event.spawn(tx.clone(), token);
        }
        return;
    };
    let waited_until = tokio::time::Instant::now() + HELD_WAIT;
    let first_claim = store.next.fetch_add(events.len() as u64, Ordering::Relaxed);
    let ops = events
        .iter()
        .enumerate()
        .map(|(i, (_, e))| Op::Claim {
            key: e.event.event_id.clone().unwrap_or_default(),
            owner: store.owner_of(first_claim + i as u64),
            lease: store.lease,
        })
        .collect();
    let claims = match sqlite.run_many(ops).await {
        Ok(found) => found
            .into_iter()
            .map(|c| Ok(c.unwrap_or(Claim::Held)))
            .collect(),
        Err(e) => vec![Err(e); events.len()],
    };
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let mut running: Vec<Option<Running>> = Vec::with_capacity(events.len());
    let mut left = 0;
    handler.begin_burst();
    for ((n, (token, event)), claim) in (first_claim..).zip(events).zip(claims) {
        let claim = match noted(claim, "claim", &status, &log) {
            Some(Claim::Owned) => Some(n),
            // Unreachable: handled anyway, at least once.
            None => None,
            Some(Claim::Done(v)) => {
                Counters::bump(&status.counters.duplicates);
                let key = event.event.event_id.as_deref().unwrap_or_default();
                log.debug(|| format!("event {key} was already handled (the dedupe store has its result); acking the re-delivery with it"));
                settle_dedupe(Some(event.guard), &v, Instant::now());
                let _ = tx.send(Settled::One(token, Answer::Known(v)));
                continue;
            }
            Some(Claim::Held) => {
                // Rare (another process holds it): polled on its own, as one event is.
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(HELD_POLL).await;
                    let answer = event.run_until(waited_until).await;
                    let _ = tx.send(Settled::One(token, answer));
                });
                continue;
            }
        };
        let reply = Reply::session(answers.clone(), running.len() as u64);
        handler.handle(event.event.as_event(), reply);
        running.push(Some(Running {
            token,
            guard: event.guard,
            event: event.event,
            claim,
        }));
        left += 1;
    }
    handler.end_burst();
    drop(answers);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    // One timer for the whole burst: each tick renews every claim still running in one
    // request (only with `handlerTimeoutMs` off; see `DurableStore::renew_every`).
    let renew_every = store.renew_every();
    let renewal = tokio::time::sleep(renew_every.unwrap_or(Duration::MAX / 4));
    tokio::pin!(renewal);
    let mut timed_out = false;
    let started = running.len() as u64;
    while left > 0 {
        let mut done = Vec::new();
        let mut take = |index: u64, result: HandlerResult| {
            if let Some(r) = running.get_mut(index as usize).and_then(Option::take) {
                done.push((r, result));
            }
        };
        if timed_out {
            // The burst's handlers all started together: those left are all late.
            let t = timeout.unwrap_or_default().as_millis();
            for i in 0..started {
                take(
                    i,
                    Err(format!(
                        "the handler did not settle within {t} ms (handlerTimeoutMs)"
                    )),
                );
            }
        } else {
            tokio::select! {
                first = answered.recv() => {
                    // Every reply is answered (a dropped one answers a failure), so the
                    // queue outlives the handlers left.
                    let Some(first) = first else { break };
                    let mut next = Some(first);
                    while let Some(settled) = next.take().or_else(|| answered.try_recv().ok()) {
                        for (index, answer) in settled.into_answers() {
                            if let Answer::Handler(result) = answer {
                                take(index, result);
                            }
                        }
                    }
                }
                () = &mut expired => {
                    timed_out = true;
                    continue;
                }
                () = &mut renewal, if renew_every.is_some() => {
                    let every = renew_every.unwrap_or_default();
                    renewal.as_mut().reset(tokio::time::Instant::now() + every);
                    renew_burst(&store, &mut running, &status, &log).await;
                    continue;
                }
            }
        }
        left -= done.len();
        let done: Vec<(Running, AckPayload)> = done
            .into_iter()
            .map(|(r, result)| {
                let payload = ack_payload(
                    result,
                    || &r.event.message_id,
                    r.event.event_type.as_deref(),
                    &log,
                );
                (r, payload)
            })
            .collect();
        store_outcomes(sqlite, &store, &done, &status, &log).await;
        let now = Instant::now();
        let mut oks = Vec::new();
        for (r, payload) in done {
            settle_dedupe(Some(r.guard), &payload, now);
            if payload == AckPayload::Ok {
                oks.push(r.token);
            } else {
                let _ = tx.send(Settled::One(r.token, Answer::Known(payload)));
            }
        }
        if !oks.is_empty() {
            // Bare 200s go to the session in one message, as a JS batch's do.
            let _ = tx.send(Settled::Ok(oks));
        }
    }
}

/// Renews the claims of a burst's handlers still running, in one request; a claim found
/// no longer ours is warned about once and renewed (or released) no more.
async fn renew_burst(
    store: &DurableStore,
    running: &mut [Option<Running>],
    status: &StatusStore,
    log: &Log,
) {
    let (at, claims): (Vec<usize>, Vec<(String, u64)>) = running
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let r = r.as_ref()?;
            Some((i, (r.event.event_id.clone().unwrap_or_default(), r.claim?)))
        })
        .unzip();
    if claims.is_empty() {
        return;
    }
    let renewed = store.renew(&claims).await;
    let Some(renewed) = noted_each(renewed, claims.len(), "renew a claim", status, log) else {
        return;
    };
    for ((i, (key, _)), ours) in at.into_iter().zip(&claims).zip(renewed) {
        if let (false, Some(r)) = (ours, running[i].as_mut()) {
            r.claim = None;
            lost_claim(key, store, log);
        }
    }
}

/// [`noted`] for one request of `count` operations: a failure counts once per operation,
/// as the operations of one event each would.
fn noted_each<T>(
    r: Result<T, String>,
    count: usize,
    what: &str,
    status: &StatusStore,
    log: &Log,
) -> Option<T> {
    match r {
        Ok(v) => noted(Ok(v), what, status, log),
        Err(e) => {
            for _ in 0..count {
                noted::<()>(Err(e.clone()), what, status, log);
            }
            None
        }
    }
}

/// Stores the outcomes of a burst's handlers in one request: a success's result, a
/// failure's claim released (when it was ours). Failed calls are counted per event, as
/// one event's are.
async fn store_outcomes(
    sqlite: &SqliteStore,
    store: &DurableStore,
    done: &[(Running, AckPayload)],
    status: &StatusStore,
    log: &Log,
) {
    let ops: Vec<Op> = done
        .iter()
        .filter_map(|(r, payload)| {
            let key = r.event.event_id.clone().unwrap_or_default();
            match (payload, r.claim) {
                (AckPayload::Failed, Some(n)) => Some(Op::Release {
                    key,
                    owner: store.owner_of(n),
                }),
                (AckPayload::Failed, None) => None,
                (ok, _) => Some(Op::Complete {
                    key,
                    value: result_value(ok),
                    ttl: store.ttl,
                }),
            }
        })
        .collect();
    if ops.is_empty() {
        return;
    }
    let count = ops.len();
    noted_each(
        sqlite.run_many(ops).await,
        count,
        "store the result",
        status,
        log,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::config::LogLevel;
    use crate::core::dedupe::{Begin, Dedupe, DedupeConfig};
    use crate::core::observer::Observer;
    use crate::core::redact::Redactor;
    use crate::core::store_sqlite::tests::{side_connection, temp};

    /// A short lease, so a handler can outlive several of them in a test.
    const LEASE: Duration = Duration::from_millis(300);

    /// A store with the short lease, renewing as with `handlerTimeoutMs: 0`.
    fn store(backend: Backend) -> Arc<DurableStore> {
        Arc::new(DurableStore::new(
            backend,
            Duration::from_secs(60),
            LEASE,
            true,
        ))
    }

    fn sqlite(path: &std::path::Path) -> Backend {
        Backend::Sqlite(
            SqliteStore::open(path, "cli_a", crate::core::store_sqlite::tests::TEST_TTL).unwrap(),
        )
    }

    /// Another process sharing the store, claiming events as a delivery there would.
    struct Other(Backend);

    impl Other {
        async fn claim(&self, id: &str, owner: &str) -> Option<Claim> {
            match &self.0 {
                Backend::Sqlite(s) => {
                    let op = Op::Claim {
                        key: id.into(),
                        owner: owner.into(),
                        lease: LEASE,
                    };
                    s.run(op).await.unwrap()
                }
                Backend::Redis(r) => Some(r.claim(id, owner, LEASE).await.unwrap()),
            }
        }
    }

    /// Answers each event with a bare 200 after `hold`, and once `open` is true.
    struct Slow {
        hold: Duration,
        /// Handlers called so far (each after its claim committed).
        called: AtomicU64,
        /// Holds every answer while false ([`Setup::gate`]), so a test can change the
        /// store while handlers run.
        open: tokio::sync::watch::Receiver<bool>,
    }

    impl Slow {
        /// Waits until `n` handlers were called: their claims are in the store.
        async fn called(&self, n: u64) {
            while self.called.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    impl EventHandler for Slow {
        fn handle(&self, _event: crate::core::events::InboundEvent<'_>, reply: Reply) {
            self.called.fetch_add(1, Ordering::Relaxed);
            let hold = self.hold;
            let mut open = self.open.clone();
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                let _ = open.wait_for(|open| *open).await;
                reply.send(Ok(None));
            });
        }
    }

    #[derive(Default)]
    struct Lines(Mutex<Vec<(LogLevel, String)>>);

    impl Observer for Lines {
        fn log(&self, level: LogLevel, message: &str) {
            self.0.lock().unwrap().push((level, message.to_string()));
        }
    }

    struct Setup {
        store: Arc<DurableStore>,
        dedupe: Dedupe<AckPayload>,
        handler: Arc<Slow>,
        status: Arc<StatusStore>,
        lines: Arc<Lines>,
        log: Log,
        /// Opens and closes [`Slow::open`].
        gate: tokio::sync::watch::Sender<bool>,
    }

    fn setup(backend: Backend, hold: Duration) -> Setup {
        setup_store(store(backend), hold)
    }

    fn setup_store(store: Arc<DurableStore>, hold: Duration) -> Setup {
        let lines = Arc::new(Lines::default());
        let (gate, open) = tokio::sync::watch::channel(true);
        let log = Log::new(
            lines.clone(),
            LogLevel::Debug,
            Arc::new(Redactor::new(Vec::<String>::new())),
        );
        Setup {
            store,
            dedupe: Dedupe::new(DedupeConfig::default()),
            handler: Arc::new(Slow {
                hold,
                called: AtomicU64::new(0),
                open,
            }),
            status: Arc::new(StatusStore::new(1)),
            lines,
            log,
            gate,
        }
    }

    fn event(s: &Setup, id: &str) -> DurableEvent {
        let Begin::Run(guard) = s.dedupe.begin(id, Instant::now()) else {
            panic!("{id} is new here");
        };
        DurableEvent {
            store: s.store.clone(),
            guard,
            event: OwnedEvent {
                payload: "{}".into(),
                message_id: format!("m-{id}"),
                trace_id: None,
                event_type: None,
                event_id: Some(id.into()),
                received_at_ms: 0,
            },
            handler: s.handler.clone() as Arc<dyn EventHandler>,
            status: s.status.clone(),
            log: s.log.clone(),
            timeout: None,
        }
    }

    /// What another process sharing the file finds for `id`, claiming it every 50 ms
    /// until `done` answers or the result is stored; every claim it makes meanwhile must
    /// find the event held. Answers how many did, and `done`'s output.
    async fn held_until<T>(other: &Other, id: &str, done: tokio::task::JoinHandle<T>) -> (u32, T) {
        let mut held = 0;
        let mut n = 0;
        while !done.is_finished() {
            n += 1;
            let found = other.claim(id, &format!("other.{n}")).await;
            // The result may be stored a moment before the task ends.
            if done.is_finished() || matches!(found, Some(Claim::Done(_))) {
                break;
            }
            assert_eq!(found, Some(Claim::Held), "claim {n} on {id}");
            held += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (held, done.await.unwrap())
    }

    /// One event's handler outlives four leases: another process finds the event held
    /// all along, and then its result.
    async fn one_event_keeps_its_claim(s: Setup, other: Other) {
        let run = tokio::spawn(event(&s, "e1").run());
        s.handler.called(1).await;
        let (held, answer) = held_until(&other, "e1", run).await;
        assert!(held >= 5, "held for {held} claims only");
        assert!(matches!(answer, Answer::Known(AckPayload::Ok)));
        assert_eq!(
            other.claim("e1", "other.last").await,
            Some(Claim::Done(AckPayload::Ok))
        );
        assert_eq!(s.status.counters.store_errors.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn one_event_keeps_its_claim_while_its_handler_outlives_the_lease() {
        let path = temp("one");
        let other = Other(sqlite(&path));
        one_event_keeps_its_claim(setup(sqlite(&path), LEASE * 4), other).await;
    }

    #[tokio::test]
    async fn one_event_keeps_its_redis_claim_while_its_handler_outlives_the_lease() {
        let server = crate::core::store_redis::tests::Server::start().await;
        let redis = || Backend::Redis(Box::new(server.open()));
        one_event_keeps_its_claim(setup(redis(), LEASE * 4), Other(redis())).await;
    }

    #[tokio::test]
    async fn a_burst_keeps_its_claims_while_its_handlers_outlive_the_lease() {
        let path = temp("burst");
        let s = setup(sqlite(&path), LEASE * 4);
        let other = Other(sqlite(&path));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut burst = DurableBurst::default();
        burst.push(event(&s, "b1"), &tx, 1);
        burst.push(event(&s, "b2"), &tx, 2);
        burst.flush();
        s.handler.called(2).await;
        let settled = tokio::spawn(async move {
            let mut tokens = Vec::new();
            while tokens.len() < 2 {
                match rx.recv().await.unwrap() {
                    Settled::Ok(t) => tokens.extend(t),
                    Settled::One(t, _) => panic!("event {t} not a bare 200"),
                }
            }
            tokens
        });
        let (held, mut tokens) = held_until(&other, "b2", settled).await;
        tokens.sort_unstable();
        assert_eq!(tokens, [1, 2]);
        assert!(held >= 5, "held for {held} claims only");
        for id in ["b1", "b2"] {
            assert_eq!(
                other.claim(id, "other.last").await,
                Some(Claim::Done(AckPayload::Ok)),
                "{id}"
            );
        }
    }

    #[tokio::test]
    async fn a_claim_taken_over_is_not_renewed_and_is_warned_about_once() {
        let path = temp("lost");
        let s = setup(sqlite(&path), LEASE * 5);
        let run = tokio::spawn(event(&s, "e1").run());
        // Wait for our claim, then append another owner's after it, as a process that
        // took it over would.
        let conn = side_connection(&path);
        let theirs = crate::core::store::claim_value("thief.1");
        let expires = crate::core::status::now_ms() as i64 + LEASE.as_millis() as i64;
        while conn
            .execute(
                "INSERT INTO feishu_transport_dedupe_log (app_id, event_id, value, expires_at) SELECT app_id, event_id, ?1, ?2 FROM feishu_transport_dedupe_log WHERE event_id = 'e1' LIMIT 1",
                rusqlite::params![theirs, expires],
            )
            .unwrap()
            == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Their claim runs out on its own lease: our renewals did not extend it.
        let other = Other(sqlite(&path));
        tokio::time::sleep(LEASE + LEASE / 2).await;
        assert!(!run.is_finished());
        assert_eq!(other.claim("e1", "other.last").await, Some(Claim::Owned));
        run.await.unwrap();
        assert_eq!(logged(&s, LogLevel::Warn, "no longer ours").len(), 1);
    }

    /// A store on `path` whose claims neither lapse nor are renewed during a test (as with
    /// `handlerTimeoutMs` set), so every store call is one the test counts; handlers
    /// answer at once, or when [`Setup::gate`] opens.
    fn counted_setup(path: &std::path::Path) -> Setup {
        let minute = Duration::from_secs(60);
        let store = DurableStore::new(sqlite(path), minute, minute, false);
        setup_store(Arc::new(store), Duration::ZERO)
    }

    /// Makes every write of the live store fail, from another connection on its file, as
    /// a full or failing disk would. SQLite re-prepares the store thread's statements
    /// after this schema change, so its next ones run the trigger. Only the table's name
    /// is used: its columns may change.
    fn fail_writes(path: &std::path::Path) {
        side_connection(path)
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON feishu_transport_dedupe_log BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            )
            .unwrap();
    }

    /// Ends [`fail_writes`]'s failures.
    fn heal(path: &std::path::Path) {
        side_connection(path)
            .execute_batch("DROP TRIGGER IF EXISTS boom")
            .unwrap();
    }

    /// Reads `ids` as one burst (tokens 1, 2, ... in order); the answers come on the
    /// receiver, as a session's would.
    fn read_burst(s: &Setup, ids: &[&str]) -> tokio::sync::mpsc::UnboundedReceiver<Settled> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut burst = DurableBurst::default();
        for (token, id) in (1..).zip(ids) {
            burst.push(event(s, id), &tx, token);
        }
        burst.flush();
        rx
    }

    /// What the acks of a burst of `count` events carry, by token. An ack lost (or one
    /// hung on the store) fails the test after 10 s instead of hanging it; one sent twice
    /// fails it too.
    async fn acks(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Settled>,
        count: usize,
    ) -> Vec<(u64, AckPayload)> {
        let mut acks = std::collections::BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while acks.len() < count {
            let next = tokio::time::timeout_at(deadline, rx.recv()).await;
            let settled = match next.expect("an ack was lost").expect("the answers ended") {
                Settled::Ok(tokens) => tokens.into_iter().map(|t| (t, AckPayload::Ok)).collect(),
                Settled::One(token, Answer::Known(payload)) => vec![(token, payload)],
                Settled::One(token, Answer::Handler(_)) => panic!("event {token}: a bare reply"),
            };
            for (token, payload) in settled {
                assert!(
                    acks.insert(token, payload).is_none(),
                    "event {token} acked twice"
                );
            }
        }
        acks.into_iter().collect()
    }

    /// Bare 200s for tokens 1 to `count`: what [`Slow`]'s handlers answer.
    fn all_ok(count: u64) -> Vec<(u64, AckPayload)> {
        (1..=count).map(|t| (t, AckPayload::Ok)).collect()
    }

    /// The lines logged at `level` that contain `text`.
    fn logged(s: &Setup, level: LogLevel, text: &str) -> Vec<String> {
        let lines = s.lines.0.lock().unwrap();
        let found = lines
            .iter()
            .filter(|(l, line)| *l == level && line.contains(text));
        found.map(|(_, line)| line.clone()).collect()
    }

    fn store_errors(s: &Setup) -> u64 {
        s.status.counters.store_errors.load(Ordering::Relaxed)
    }

    /// Asserts an outage's state: `handled` handler calls so far, `errors` store calls
    /// counted as failed, the store unhealthy, and one warning only, naming `cause`.
    fn in_outage(s: &Setup, handled: u64, errors: u64, cause: &str) {
        assert_eq!(s.handler.called.load(Ordering::Relaxed), handled, "handled");
        assert_eq!(store_errors(s), errors, "counters.storeErrors");
        assert!(!s.status.snapshot().store.healthy);
        let warned = logged(s, LogLevel::Warn, "");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains(cause), "{warned:?}");
    }

    /// Issue 17: the store refuses writes before a burst is claimed. Every event is still
    /// handled, once, and acked with its handler's answer; each refused call (a claim and
    /// a result per event) is counted; the outage is warned about once, not per event.
    #[tokio::test]
    async fn a_burst_whose_claims_fail_is_handled_once_each_counted_and_warned_about_once() {
        let path = temp("claims-fail");
        let s = counted_setup(&path);
        fail_writes(&path);
        let acked = acks(&mut read_burst(&s, &["f1", "f2", "f3"]), 3).await;
        assert_eq!(acked, all_ok(3));
        in_outage(
            &s,
            3,
            6,
            "dedupe store is unreachable (claim: SQLite: injected failure)",
        );
        assert!(logged(&s, LogLevel::Info, "answers again").is_empty());
    }

    /// Issue 17: the store starts refusing writes after a burst's claims committed, while
    /// its handlers run. The results cannot be stored, yet every ack is sent (none lost or
    /// held), each refused result counted, the outage warned about once.
    #[tokio::test]
    async fn a_burst_whose_results_fail_while_its_handlers_run_is_still_acked_and_counted() {
        let path = temp("results-fail");
        let s = counted_setup(&path);
        s.gate.send_replace(false);
        let mut rx = read_burst(&s, &["r1", "r2", "r3"]);
        // Called only once their claims committed.
        s.handler.called(3).await;
        assert_eq!(store_errors(&s), 0);
        fail_writes(&path);
        s.gate.send_replace(true);
        assert_eq!(acks(&mut rx, 3).await, all_ok(3));
        in_outage(&s, 3, 3, "(store the result: SQLite: injected failure)");
    }

    /// Issue 17: once the store takes writes again, the next burst's results are stored
    /// (a process restarted on the file answers their re-deliveries from it, without its
    /// handler), the store is healthy again and that is said once. An event handled
    /// during the outage was not stored: its re-delivery is handled again (at least once).
    #[tokio::test]
    async fn once_the_store_takes_writes_again_a_burst_is_stored_and_that_is_said_once() {
        let path = temp("heals");
        let s = counted_setup(&path);
        fail_writes(&path);
        assert_eq!(acks(&mut read_burst(&s, &["d1", "d2"]), 2).await, all_ok(2));
        in_outage(&s, 2, 4, "(claim: SQLite: injected failure)");
        heal(&path);
        let acked = acks(&mut read_burst(&s, &["h1", "h2", "h3"]), 3).await;
        assert_eq!(acked, all_ok(3));
        assert_eq!(s.handler.called.load(Ordering::Relaxed), 5);
        assert_eq!(store_errors(&s), 4, "no error once healed");
        assert!(s.status.snapshot().store.healthy);
        let again = logged(&s, LogLevel::Info, "the dedupe store answers again");
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!(logged(&s, LogLevel::Warn, "unreachable").len(), 1);

        let restarted = counted_setup(&path);
        let acked = acks(&mut read_burst(&restarted, &["h1", "h2", "h3", "d1"]), 4).await;
        assert_eq!(acked, all_ok(4));
        assert_eq!(
            restarted.handler.called.load(Ordering::Relaxed),
            1,
            "d1 only"
        );
        let duplicates = restarted.status.counters.duplicates.load(Ordering::Relaxed);
        assert_eq!(duplicates, 3);
        assert_eq!(store_errors(&restarted), 0);
    }

    /// Issue 17: with `handlerTimeoutMs` off a burst's claims are renewed while its
    /// handlers run. Renewals refused by the store are counted and make one outage
    /// warning; the claims are not given up (they are still ours, just not extended), so
    /// the renewal after the store heals extends them again, that is said once, and the
    /// handlers' results are stored and acked.
    #[tokio::test]
    async fn renewals_refused_mid_handler_are_counted_warned_about_once_and_resume() {
        let path = temp("renew-fail");
        let s = setup_store(store(sqlite(&path)), Duration::ZERO);
        s.gate.send_replace(false);
        let mut rx = read_burst(&s, &["n1", "n2"]);
        s.handler.called(2).await;
        fail_writes(&path);
        // A renewal tick (every third of the lease) fails for both claims.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store_errors(&s) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "no renewal failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        in_outage(
            &s,
            2,
            store_errors(&s),
            "(renew a claim: SQLite: injected failure)",
        );
        heal(&path);
        while !s.status.snapshot().store.healthy {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no renewal after healing"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let again = logged(&s, LogLevel::Info, "the dedupe store answers again");
        assert_eq!(again.len(), 1, "{again:?}");
        s.gate.send_replace(true);
        assert_eq!(acks(&mut rx, 2).await, all_ok(2));
        assert!(logged(&s, LogLevel::Warn, "no longer ours").is_empty());
        assert_eq!(logged(&s, LogLevel::Warn, "").len(), 1);
        let other = Other(sqlite(&path));
        for id in ["n1", "n2"] {
            assert_eq!(
                other.claim(id, "other.1").await,
                Some(Claim::Done(AckPayload::Ok)),
                "{id}"
            );
        }
    }
}
