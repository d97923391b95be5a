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
//! 2. call the handler (bounded by `handlerTimeoutMs`);
//! 3. store a success *before* its ack is written; release the claim after a failure.
//!
//! An unreachable store never loses an event: it is handled anyway (at-least-once),
//! `counters.storeErrors` counts each failed call, `status().store.healthy` turns false
//! and one warning is logged per outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ack::{ack_payload, settle_dedupe, Answer, Reply, ReplySender, Settled, REPLY_DROPPED};
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
            StoreSpec::Sqlite(path) => Backend::Sqlite(SqliteStore::open(path, app_id)?),
            StoreSpec::Redis(url) => Backend::Redis(Box::new(RedisStore::open(url, app_id, tls)?)),
        };
        Ok(Some(Arc::new(DurableStore {
            backend,
            ttl,
            lease: handler_timeout.unwrap_or(LEASE_WITHOUT_TIMEOUT) + LEASE_MARGIN,
            owner: format!("{}.{:016x}", std::process::id(), rand::random::<u64>()),
            next: AtomicU64::new(0),
        })))
    }

    /// How long a claim lives without its result: `handlerTimeoutMs` + 5 s.
    pub fn lease(&self) -> Duration {
        self.lease
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
        let owner = format!(
            "{}.{}",
            store.owner,
            store.next.fetch_add(1, Ordering::Relaxed)
        );
        let waited_until = tokio::time::Instant::now() + HELD_WAIT;
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
        let payload = call_handler(&handler, event, timeout, &log).await;
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
