//! Dedupe of re-delivered events by `event_id` (docs/PROTOCOL.md §7, "Timing and
//! re-delivery").
//!
//! Feishu delivers at least once: an event whose ack is late (a handler past 3 s), lost
//! (the socket died before the ack went out) or 500 comes back, possibly while the first
//! delivery is still being handled. The result of a success is remembered so the
//! re-delivery gets the same ack without running the handler again; a re-delivery that
//! arrives mid-flight waits for the first one's outcome. Failures are never remembered:
//! the point of a re-delivery after a failure is to try again.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hashbrown::hash_table::HashTable;
use rustc_hash::FxBuildHasher;
use tokio::sync::oneshot;

use super::store::StoreSpec;

/// How long and how many successful results are remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeConfig {
    /// How long a success is remembered, from when it finished. The default, 12 hours,
    /// covers the webhook re-push schedule Feishu documents (15 s, 5 min, 1 h, 6 h) and
    /// matches the Node SDK's `LarkChannel`; memory is bounded by `max_entries` whatever
    /// the TTL, so a long one costs nothing on a busy bot.
    pub ttl: Duration,
    /// Successful results remembered at most; the oldest are forgotten first. Events in
    /// flight are not counted and never forgotten (their number is bounded by the
    /// handler concurrency).
    pub max_entries: usize,
    /// Where claims and results are kept beyond this process (`dedupe.store`); this
    /// table stays in front of it either way (core/durable.rs).
    pub store: StoreSpec,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            ttl: Duration::from_secs(12 * 60 * 60),
            max_entries: 10_000,
            store: StoreSpec::Memory,
        }
    }
}

/// What a waiter learns: `Some(value)` after a success, `None` after a failure.
type Outcome<V> = Option<V>;

enum Entry<V> {
    InFlight {
        /// Deliveries waiting for this one's outcome. Empty (no allocation) in the
        /// common case of no re-delivery mid-flight, so claiming a key costs no channel.
        waiters: Vec<oneshot::Sender<Outcome<V>>>,
    },
    Done {
        value: V,
        at: Instant,
    },
}

/// A key as its slot stores it. Feishu's event ids (32 hex digits; a v1 `uuid` is 36
/// characters) fit inline: allocating the key of every new event and freeing, on another
/// thread's turn much later, that of every event forgotten was 5 % of the client's worker
/// CPU under load. Longer keys get a box of their own.
enum Key {
    Inline { len: u8, bytes: [u8; Key::INLINE] },
    Boxed(Box<str>),
}

impl Key {
    /// The inline capacity: the largest that keeps a `Key` at 48 bytes.
    const INLINE: usize = 46;

    fn new(key: &str) -> Key {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= Key::INLINE => {
                let mut bytes = [0; Key::INLINE];
                bytes[..key.len()].copy_from_slice(key.as_bytes());
                Key::Inline { len, bytes }
            }
            _ => Key::Boxed(Box::from(key)),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Boxed(b) => b.as_bytes(),
        }
    }
}

/// One key's slot, in the slab of slots. Every claim of a key gets a new `generation`,
/// unique for the life of the table, so a slot index and a generation name one claim
/// exactly: finishing it or forgetting it later goes straight to its slot.
struct Slot<V> {
    hash: u64,
    generation: u64,
    key: Key,
    entry: Entry<V>,
}

/// A success in the order they finished, with what deciding its fate needs: the sweep
/// reads a slot only for the item it removes.
struct Finished {
    slot: u32,
    generation: u64,
    at: Instant,
}

struct State<V> {
    /// Slot numbers, found by their key's hash (FxHash rather than SipHash: keys are
    /// event ids chosen by Feishu, and every event costs a few lookups). The slots
    /// themselves live in `slots`: at the default 10 000 remembered events they are a
    /// megabyte that the cache does not hold, while this index is small enough to stay
    /// in it, so a new key is looked up and inserted without touching a cold slot.
    index: HashTable<u32>,
    slots: Vec<Option<Slot<V>>>,
    /// Free slot numbers, reused most recently freed first (the sweep just touched it).
    free: Vec<u32>,
    /// Successes in the order they finished. An item whose slot was claimed again or
    /// freed since (its generation differs) is stale and skipped.
    finished: VecDeque<Finished>,
    done: usize,
    next_generation: u64,
}

impl<V> State<V> {
    /// The slot of claim `generation`, if it still holds it.
    fn claim_mut(&mut self, slot: u32, generation: u64) -> Option<&mut Slot<V>> {
        self.slots[slot as usize]
            .as_mut()
            .filter(|s| s.generation == generation)
    }

    /// Puts `new` in a free slot and indexes it (`vacant`, from a failed lookup).
    fn occupy(&mut self, new: Slot<V>) -> u32 {
        let hash = new.hash;
        let n = match self.free.pop() {
            Some(n) => {
                self.slots[n as usize] = Some(new);
                n
            }
            None => {
                // More slots than `u32` numbers would be 4 billion events in flight or
                // remembered: `max_entries` bounds the latter, the handler concurrency
                // the former.
                let n = u32::try_from(self.slots.len()).expect("dedupe slots fit in u32");
                self.slots.push(Some(new));
                n
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, n, |&i| slot_hash(slots, i));
        n
    }

    /// Unindexes and frees slot `n`, returning what it held.
    fn vacate(&mut self, n: u32) -> Option<Slot<V>> {
        let slot = self.slots[n as usize].take()?;
        if let Ok(found) = self.index.find_entry(slot.hash, |&i| i == n) {
            found.remove();
        }
        self.free.push(n);
        Some(slot)
    }

    /// Forgets the oldest successes while they are expired or above `max_entries`.
    fn sweep(&mut self, now: Instant, cfg: &DedupeConfig) {
        while let Some(oldest) = self.finished.front() {
            let expired = now.saturating_duration_since(oldest.at) >= cfg.ttl;
            if !(expired || self.done > cfg.max_entries) {
                // The oldest success is kept, and with it every later one.
                break;
            }
            let (n, generation) = (oldest.slot, oldest.generation);
            self.finished.pop_front();
            // A stale item (its key claimed again since) finds nothing.
            let live = self
                .claim_mut(n, generation)
                .is_some_and(|s| matches!(s.entry, Entry::Done { .. }));
            if live {
                self.vacate(n);
                self.done -= 1;
            }
        }
        // Stale items stuck behind a live one (finish times out of order) would otherwise
        // pile up; compacting when they outnumber the live ones keeps this amortised O(1).
        if self.finished.len() > 2 * self.done + 64 {
            let slots = &self.slots;
            self.finished.retain(|f| {
                slots[f.slot as usize].as_ref().is_some_and(|s| {
                    s.generation == f.generation && matches!(s.entry, Entry::Done { .. })
                })
            });
        }
    }
}

/// The hash of slot `n`, which the index holds (for the index's own resizing).
fn slot_hash<V>(slots: &[Option<Slot<V>>], n: u32) -> u64 {
    slots[n as usize].as_ref().map_or(0, |s| s.hash)
}

struct Shared<V> {
    cfg: DedupeConfig,
    state: Mutex<State<V>>,
}

impl<V> Shared<V> {
    fn lock(&self) -> MutexGuard<'_, State<V>> {
        // The state is consistent between statements, so a panic elsewhere while holding
        // the lock (a user `Clone` impl) must not take dedupe down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Remembers the outcome of events by key. Cloning shares the same memory; every
/// operation takes one short lock.
pub struct Dedupe<V: Clone + Send + Sync + 'static> {
    shared: Arc<Shared<V>>,
}

impl<V: Clone + Send + Sync + 'static> Clone for Dedupe<V> {
    fn clone(&self) -> Self {
        Dedupe {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What to do with a delivery.
pub enum Begin<V: Clone + Send + Sync + 'static> {
    /// The caller owns the event: run the handler, then call `succeed` or `fail`.
    Run(DedupeGuard<V>),
    /// Already handled successfully: ack with this value.
    Done(V),
    /// In flight elsewhere: await this for the outcome.
    Wait(WaitHandle<V>),
}

impl<V: Clone + Send + Sync + 'static> Dedupe<V> {
    pub fn new(cfg: DedupeConfig) -> Self {
        Dedupe {
            shared: Arc::new(Shared {
                cfg,
                state: Mutex::new(State {
                    index: HashTable::new(),
                    slots: Vec::new(),
                    free: Vec::new(),
                    finished: VecDeque::new(),
                    done: 0,
                    next_generation: 0,
                }),
            }),
        }
    }

    pub fn config(&self) -> &DedupeConfig {
        &self.shared.cfg
    }

    /// Claims `key` at `now`.
    pub fn begin(&self, key: &str, now: Instant) -> Begin<V> {
        let hash = FxBuildHasher.hash_one(key);
        let cfg = &self.shared.cfg;
        let mut state = self.shared.lock();
        let state = &mut *state;
        state.sweep(now, cfg);
        let generation = state.next_generation;
        // One probe of the index finds the key or tells it is new; only a slot whose
        // hash matches is read to compare keys.
        let found = {
            let slots = &state.slots;
            state
                .index
                .find(hash, |&i| {
                    slots[i as usize]
                        .as_ref()
                        .is_some_and(|s| s.key.as_bytes() == key.as_bytes())
                })
                .copied()
        };
        // (The index holds only occupied slots, so a number found has its slot.)
        let existing = found.and_then(|n| Some((n, state.slots[n as usize].as_mut()?)));
        let n = match existing {
            Some((n, slot)) => match &mut slot.entry {
                Entry::InFlight { waiters } => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    return Begin::Wait(WaitHandle { outcome: rx });
                }
                Entry::Done { value, at } => {
                    if now.saturating_duration_since(*at) < cfg.ttl {
                        return Begin::Done(value.clone());
                    }
                    // Expired but not yet swept (it finished out of order): claimed
                    // again, which leaves its `finished` item stale.
                    state.done -= 1;
                    slot.generation = generation;
                    slot.entry = Entry::InFlight {
                        waiters: Vec::new(),
                    };
                    n
                }
            },
            None => state.occupy(Slot {
                hash,
                generation,
                key: Key::new(key),
                entry: Entry::InFlight {
                    waiters: Vec::new(),
                },
            }),
        };
        state.next_generation += 1;
        Begin::Run(DedupeGuard {
            shared: Arc::clone(&self.shared),
            slot: n,
            generation,
            finished: false,
        })
    }

    /// Keys remembered or in flight.
    pub fn len(&self) -> usize {
        self.shared.lock().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ownership of one in-flight event. Dropping it without `succeed` counts as a failure, so
/// a cancelled or panicking handler task never leaves waiters hanging.
pub struct DedupeGuard<V: Clone + Send + Sync + 'static> {
    shared: Arc<Shared<V>>,
    /// The slot and this claim's generation: enough to find it again.
    slot: u32,
    generation: u64,
    finished: bool,
}

impl<V: Clone + Send + Sync + 'static> DedupeGuard<V> {
    /// The handler succeeded with `value` at `now`: remember it and hand it to waiters.
    pub fn succeed(mut self, value: V, now: Instant) {
        self.finish(Some((value, now)));
    }

    /// The handler failed: forget the key, and let waiters claim it again.
    pub fn fail(mut self) {
        self.finish(None);
    }

    fn finish(&mut self, success: Option<(V, Instant)>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let (n, generation) = (self.slot, self.generation);
        let waiters = {
            let cfg = &self.shared.cfg;
            let mut guard = self.shared.lock();
            let state = &mut *guard;
            // The slot is ours only if no later delivery claimed the key again.
            let Some(slot) = state.claim_mut(n, generation) else {
                return;
            };
            match &success {
                Some((value, at)) => {
                    let old = std::mem::replace(
                        &mut slot.entry,
                        Entry::Done {
                            value: value.clone(),
                            at: *at,
                        },
                    );
                    state.done += 1;
                    state.finished.push_back(Finished {
                        slot: n,
                        generation,
                        at: *at,
                    });
                    state.sweep(*at, cfg);
                    match old {
                        Entry::InFlight { waiters } => waiters,
                        Entry::Done { .. } => Vec::new(),
                    }
                }
                None => match state.vacate(n).map(|s| s.entry) {
                    Some(Entry::InFlight { waiters }) => waiters,
                    _ => Vec::new(),
                },
            }
        };
        // The table is updated before waiters wake, so one that retries after a failure
        // finds the key free and can become the runner.
        let outcome = success.map(|(value, _)| value);
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for DedupeGuard<V> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// A claim on the outcome of an event in flight elsewhere.
pub struct WaitHandle<V: Clone + Send + Sync + 'static> {
    outcome: oneshot::Receiver<Outcome<V>>,
}

impl<V: Clone + Send + Sync + 'static> WaitHandle<V> {
    /// `Some(v)`: the first delivery succeeded with `v`. `None`: it failed or was dropped;
    /// call [`Dedupe::begin`] again (this caller may then become the runner).
    pub async fn wait(self) -> Option<V> {
        self.outcome.await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn dedupe(ttl_secs: u64, max_entries: usize) -> Dedupe<u32> {
        Dedupe::new(DedupeConfig {
            ttl: Duration::from_secs(ttl_secs),
            max_entries,
            store: StoreSpec::Memory,
        })
    }

    fn run(b: Begin<u32>) -> DedupeGuard<u32> {
        match b {
            Begin::Run(g) => g,
            Begin::Done(v) => panic!("expected Run, got Done({v})"),
            Begin::Wait(_) => panic!("expected Run, got Wait"),
        }
    }

    fn wait(b: Begin<u32>) -> WaitHandle<u32> {
        match b {
            Begin::Wait(h) => h,
            Begin::Done(v) => panic!("expected Wait, got Done({v})"),
            Begin::Run(_) => panic!("expected Wait, got Run"),
        }
    }

    fn done(b: Begin<u32>) -> u32 {
        match b {
            Begin::Done(v) => v,
            Begin::Run(_) => panic!("expected Done, got Run"),
            Begin::Wait(_) => panic!("expected Done, got Wait"),
        }
    }

    /// One delivery as the connection would handle it: retry after a failed wait.
    async fn deliver(d: &Dedupe<u32>, key: &str, calls: &AtomicUsize, result: u32) -> u32 {
        loop {
            match d.begin(key, Instant::now()) {
                Begin::Run(guard) => {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // give the other tasks a chance to arrive mid-flight
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                    }
                    guard.succeed(result, Instant::now());
                    return result;
                }
                Begin::Done(v) => return v,
                Begin::Wait(h) => {
                    if let Some(v) = h.wait().await {
                        return v;
                    }
                }
            }
        }
    }

    #[test]
    fn keys_short_and_long_are_told_apart() {
        assert_eq!(std::mem::size_of::<Key>(), 48);
        let d = dedupe(60, 100);
        let now = Instant::now();
        let exact = "k".repeat(Key::INLINE);
        let longer = "k".repeat(Key::INLINE + 1);
        let keys = ["", "a", "ab", exact.as_str(), longer.as_str(), "a\0"];
        for (i, key) in keys.iter().enumerate() {
            run(d.begin(key, now)).succeed(i as u32, now);
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(done(d.begin(key, now)), i as u32, "{key:?}");
        }
        // a prefix of an inline key, padded with the zeros the inline storage holds
        run(d.begin("a\0\0", now));
        run(d.begin(&"k".repeat(300), now));
    }

    #[test]
    fn a_reused_slot_is_not_forgotten_for_its_previous_key() {
        let d = dedupe(60, 100);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        // "late" finishes first but with a later time, so the sweep stops at it and
        // leaves "a"'s success queued behind it.
        run(d.begin("late", t0)).succeed(0, at(50));
        run(d.begin("a", t0)).succeed(1, t0);
        // "a" has expired unswept: claimed again, it fails, and its slot is freed while
        // its first success is still queued.
        run(d.begin("a", at(61))).fail();
        // "b" takes the freed slot and succeeds.
        run(d.begin("b", at(61))).succeed(2, at(61));
        // Past "late"'s expiry the sweep meets the stale item of "a": it must not free
        // the slot "b" now holds.
        assert_eq!(done(d.begin("b", at(111))), 2);
        assert_eq!(d.len(), 1, "late forgotten, b remembered");
        run(d.begin("a", at(111)));
    }

    #[test]
    fn default_config() {
        let cfg = DedupeConfig::default();
        assert_eq!(cfg.ttl, Duration::from_secs(12 * 3600));
        assert_eq!(cfg.max_entries, 10_000);
    }

    #[test]
    fn a_success_is_remembered_and_replayed() {
        let d = dedupe(60, 10);
        let now = Instant::now();
        run(d.begin("e1", now)).succeed(42, now);
        assert_eq!(done(d.begin("e1", now)), 42);
        assert_eq!(d.len(), 1);
        // another key is independent
        drop(run(d.begin("e2", now)));
    }

    #[test]
    fn a_failure_is_never_remembered() {
        let d = dedupe(60, 10);
        let now = Instant::now();
        run(d.begin("e1", now)).fail();
        assert!(d.is_empty());
        run(d.begin("e1", now)).succeed(1, now);
        assert_eq!(done(d.begin("e1", now)), 1);
    }

    #[test]
    fn a_second_delivery_in_flight_waits() {
        let d = dedupe(60, 10);
        let now = Instant::now();
        let _guard = run(d.begin("e1", now));
        let _ = wait(d.begin("e1", now));
        let _ = wait(d.begin("e1", now));
        assert_eq!(d.len(), 1);
    }

    #[tokio::test]
    async fn waiters_get_the_value() {
        let d = dedupe(60, 10);
        let now = Instant::now();
        let guard = run(d.begin("e1", now));
        let waiters: Vec<_> = (0..8)
            .map(|_| tokio::spawn(wait(d.begin("e1", now)).wait()))
            .collect();
        guard.succeed(5, now);
        for w in waiters {
            assert_eq!(w.await.unwrap(), Some(5));
        }
        // a handle taken before the success but awaited after it still sees the value
        let d = dedupe(60, 10);
        let guard = run(d.begin("e1", now));
        let late = wait(d.begin("e1", now));
        guard.succeed(6, now);
        assert_eq!(late.wait().await, Some(6));
    }

    #[tokio::test]
    async fn failure_wakes_waiters_with_none_and_frees_the_key() {
        let d = dedupe(60, 10);
        let now = Instant::now();
        let guard = run(d.begin("e1", now));
        let waiter = tokio::spawn(wait(d.begin("e1", now)).wait());
        guard.fail();
        assert_eq!(waiter.await.unwrap(), None);
        run(d.begin("e1", now));
    }

    #[tokio::test]
    async fn dropping_the_guard_unblocks_waiters() {
        let d = dedupe(60, 10);
        let now = Instant::now();
        let guard = run(d.begin("e1", now));
        let waiter = tokio::spawn(wait(d.begin("e1", now)).wait());
        drop(guard);
        assert_eq!(waiter.await.unwrap(), None);
        assert!(d.is_empty());
        run(d.begin("e1", now));
    }

    #[tokio::test]
    async fn a_cancelled_handler_task_unblocks_waiters() {
        let d = dedupe(60, 10);
        let now = Instant::now();
        let guard = run(d.begin("e1", now));
        let handler = tokio::spawn(async move {
            let _owned = guard;
            std::future::pending::<()>().await;
        });
        let waiter = tokio::spawn(wait(d.begin("e1", now)).wait());
        handler.abort();
        assert!(handler.await.unwrap_err().is_cancelled());
        assert_eq!(waiter.await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exactly_one_of_many_concurrent_deliveries_runs_the_handler() {
        let d = Arc::new(dedupe(60, 100));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (d, calls) = (Arc::clone(&d), Arc::clone(&calls));
                tokio::spawn(async move { deliver(&d, "e1", &calls, 7).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(done(d.begin("e1", Instant::now())), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_failure_exactly_one_waiter_takes_over() {
        let d = Arc::new(dedupe(60, 100));
        let calls = Arc::new(AtomicUsize::new(0));
        let first = run(d.begin("e1", Instant::now()));
        // every delivery is already waiting when the first one fails
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let handle = wait(d.begin("e1", Instant::now()));
                let (d, calls) = (Arc::clone(&d), Arc::clone(&calls));
                tokio::spawn(async move {
                    assert_eq!(handle.wait().await, None);
                    deliver(&d, "e1", &calls, 9).await
                })
            })
            .collect();
        first.fail();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 9);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_keys_each_run_once() {
        let d = Arc::new(dedupe(60, 1_000));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200u32)
            .map(|i| {
                let (d, calls) = (Arc::clone(&d), Arc::clone(&calls));
                let key = format!("e{}", i % 20);
                tokio::spawn(async move { deliver(&d, &key, &calls, i % 20).await == i % 20 })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 20);
        assert_eq!(d.len(), 20);
    }

    #[test]
    fn successes_expire_after_the_ttl() {
        let d = dedupe(60, 10);
        let t0 = Instant::now();
        run(d.begin("e1", t0)).succeed(1, t0);
        let just_before = t0 + Duration::from_secs(60) - Duration::from_nanos(1);
        assert_eq!(done(d.begin("e1", just_before)), 1);
        run(d.begin("e1", t0 + Duration::from_secs(60)));
    }

    #[test]
    fn expired_entries_are_swept_by_any_begin() {
        let d = dedupe(60, 10);
        let t0 = Instant::now();
        run(d.begin("a", t0)).succeed(1, t0);
        run(d.begin("b", t0)).succeed(2, t0 + Duration::from_secs(30));
        assert_eq!(d.len(), 2);
        drop(d.begin("other", t0 + Duration::from_secs(61)));
        assert_eq!(d.len(), 1, "a expired, b not yet, other failed");
        assert_eq!(done(d.begin("b", t0 + Duration::from_secs(61))), 2);
    }

    #[test]
    fn out_of_order_finish_times_still_expire() {
        let d = dedupe(60, 10);
        let t0 = Instant::now();
        // "late" finishes first in order but with a later timestamp
        run(d.begin("late", t0)).succeed(1, t0 + Duration::from_secs(50));
        run(d.begin("early", t0)).succeed(2, t0);
        let t61 = t0 + Duration::from_secs(61);
        run(d.begin("early", t61)).succeed(3, t61);
        assert_eq!(done(d.begin("early", t61)), 3);
        assert_eq!(done(d.begin("late", t61)), 1);
        run(d.begin("late", t0 + Duration::from_secs(110)));
    }

    #[test]
    fn the_oldest_successes_are_evicted_beyond_max_entries() {
        let d = dedupe(3600, 2);
        let now = Instant::now();
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            run(d.begin(key, now)).succeed(i as u32, now);
        }
        assert_eq!(d.len(), 2);
        assert_eq!(done(d.begin("b", now)), 1);
        assert_eq!(done(d.begin("c", now)), 2);
        run(d.begin("a", now));
    }

    #[test]
    fn in_flight_entries_are_never_evicted() {
        let d = dedupe(1, 1);
        let t0 = Instant::now();
        let _flying = run(d.begin("flying", t0));
        for key in ["a", "b", "c"] {
            run(d.begin(key, t0)).succeed(0, t0);
        }
        let later = t0 + Duration::from_secs(3600);
        drop(d.begin("x", later));
        assert_eq!(d.len(), 1);
        let _ = wait(d.begin("flying", later));
    }

    #[test]
    fn max_entries_zero_remembers_nothing_but_still_dedupes_in_flight() {
        let d = dedupe(60, 0);
        let now = Instant::now();
        let guard = run(d.begin("e1", now));
        let _ = wait(d.begin("e1", now));
        guard.succeed(1, now);
        assert!(d.is_empty());
        run(d.begin("e1", now));
    }

    #[test]
    fn stale_bookkeeping_stays_bounded() {
        let d = dedupe(10, 1_000_000);
        let t0 = Instant::now();
        // every key finishes far in the future, then is re-run once expired relative to a
        // pinned early entry that keeps the sweep from advancing
        run(d.begin("pin", t0)).succeed(0, t0 + Duration::from_secs(1_000));
        for i in 0..10_000u64 {
            let key = format!("k{i}");
            let at = t0 + Duration::from_secs(i % 5);
            run(d.begin(&key, at)).succeed(1, at);
            run(d.begin(&key, at + Duration::from_secs(20))).fail();
        }
        let state = d.shared.lock();
        assert!(
            state.finished.len() <= 2 * state.done + 64,
            "{}",
            state.finished.len()
        );
    }
}

/// The table against a plain model, on random operations with times that only move
/// forward: what is remembered is exactly "the successes not yet expired, at most
/// `max_entries`, the latest to finish kept", whatever order the handlers finish in.
#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};

    #[derive(Debug, Clone)]
    enum Op {
        /// Claim key `k` after `step` seconds.
        Begin { k: u8, step: u8 },
        /// Finish one of the running claims (any of them: handlers finish in any
        /// order) at the current time: succeed or fail.
        Finish { ok: bool, pick: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..12, 0u8..4).prop_map(|(k, step)| Op::Begin { k, step }),
            (any::<bool>(), any::<u8>()).prop_map(|(ok, pick)| Op::Finish { ok, pick }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn dedupe_matches_the_model(
            ops in proptest::collection::vec(op(), 1..200),
            max_entries in 0usize..6,
            ttl in 1u64..8,
        ) {
            let d: Dedupe<u32> = Dedupe::new(DedupeConfig {
                ttl: Duration::from_secs(ttl),
                max_entries,
                store: StoreSpec::Memory,
            });
            let t0 = Instant::now();
            let mut secs = 0u64;
            // The model: remembered successes, oldest first, and the keys in flight.
            let mut remembered: BTreeMap<u64, (u8, u32)> = BTreeMap::new();
            let mut order = 0u64;
            let mut flying: HashSet<u8> = HashSet::new();
            let mut running: VecDeque<(u8, DedupeGuard<u32>)> = VecDeque::new();
            let mut value = 0u32;
            let sweep = |remembered: &mut BTreeMap<u64, (u8, u32)>, times: &BTreeMap<u64, u64>, now: u64| {
                while let Some((&o, _)) = remembered.iter().next() {
                    if now - times[&o] >= ttl || remembered.len() > max_entries {
                        remembered.remove(&o);
                    } else {
                        break;
                    }
                }
            };
            let mut times: BTreeMap<u64, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Begin { k, step } => {
                        secs += u64::from(step);
                        let now = t0 + Duration::from_secs(secs);
                        sweep(&mut remembered, &times, secs);
                        let key = format!("ev{k}");
                        let known = remembered.values().find(|(rk, _)| *rk == k).map(|(_, v)| *v);
                        match d.begin(&key, now) {
                            Begin::Run(g) => {
                                prop_assert!(!flying.contains(&k) && known.is_none(), "ran {k}");
                                flying.insert(k);
                                running.push_back((k, g));
                            }
                            Begin::Done(v) => prop_assert_eq!(Some(v), known, "remembered {}", k),
                            Begin::Wait(_) => prop_assert!(flying.contains(&k), "waited on {k}"),
                        }
                    }
                    Op::Finish { ok, pick } => {
                        if running.is_empty() {
                            continue;
                        }
                        let at = usize::from(pick) % running.len();
                        let Some((k, g)) = running.remove(at) else { continue };
                        flying.remove(&k);
                        if ok {
                            value += 1;
                            g.succeed(value, t0 + Duration::from_secs(secs));
                            order += 1;
                            remembered.insert(order, (k, value));
                            times.insert(order, secs);
                            sweep(&mut remembered, &times, secs);
                        } else {
                            g.fail();
                        }
                    }
                }
                prop_assert_eq!(d.len(), remembered.len() + flying.len());
            }
        }
    }
}
