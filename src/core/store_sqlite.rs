//! The SQLite dedupe store (`dedupe.store: 'sqlite:<path>'`): one file, shared by the
//! processes of one host, durable across restarts.
//!
//! SQLite calls block, so they run on a thread of their own, never on a tokio worker. The
//! thread takes every request queued when it wakes and answers them from one
//! transaction: under a burst, one commit (one WAL append) serves many events, which is
//! what keeps this store near the memory store's throughput. A reply is sent only after
//! its transaction committed, so a result is on disk before its ack is written.
//!
//! WAL with `synchronous=NORMAL`: a commit survives the process being killed (what a
//! redeploy or a crash does); a power cut may lose the last commits, whose events are
//! then handled again (README, Reliability).

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::error::TransportError;
use super::store::{claim_value, decode, Claim};
use super::store_sqlite_index::{Entry, LogIndex};
use super::wal_checkpoint::Checkpoints;

/// One request to the store thread.
pub enum Op {
    Claim {
        key: String,
        owner: String,
        lease: Duration,
    },
    Complete {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    Release {
        key: String,
        owner: String,
    },
    /// Extends our claim by `lease` from now, only while the row still holds it: answers
    /// `Owned` when it did, `Held` when the claim is gone or someone else's.
    Renew {
        key: String,
        owner: String,
        lease: Duration,
    },
}

type Answer = Result<Option<Claim>, String>;
/// The answers to a request of many operations, one per operation, in order.
type Answers = Result<Vec<Option<Claim>>, String>;

/// One request: its operations are answered together, after the transaction holding
/// them committed.
struct Job {
    ops: Vec<Op>,
    reply: oneshot::Sender<Answers>,
}

/// The handle of the store thread; the thread ends when the last handle is dropped.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
}

/// Operations answered by one transaction at most (a request is never split): bounds how
/// long the first of them waits for the last.
const MAX_BATCH: usize = 512;
/// How often a sweep of expired rows starts, at least and at most; in between, a twelfth
/// of the time a result is kept (`dedupe.ttlMs`), see [`sweep_interval`].
const SWEEP_MIN: Duration = Duration::from_secs(60);
const SWEEP_MAX: Duration = Duration::from_secs(3600);
/// Rows a sweep reads per transaction: the write lock, which other processes on the
/// file wait for, is held for a bounded scan however large the table.
const SWEEP_CHUNK: i64 = 2048;
/// How long a write waits for another process's transaction on the same file. Theirs
/// last milliseconds (a batch, a sweep chunk); a file locked for longer is an outage, and
/// an event waits on two writes (its claim, its result) before its ack, which Feishu
/// expects within 3 s: waiting 5 s each, as before, acked a burst after 10 s.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// The store is a log: every claim, result, renewal and release appends a row holding
/// the key's new state, and a key's latest row is its state. An empty value is a release
/// (the key is free again). Rows never change once written, and nothing but the sweep
/// deletes them.
///
/// Feishu's event ids are random: a B-tree keyed by them (a WITHOUT ROWID table first,
/// then a unique index) took every claim to a page of its own, one 4 KiB WAL frame per
/// event, most of the store's cost. Appended rows of a burst share a few pages, and the
/// key's latest row is found in memory (`store_sqlite_index.rs`): 16 µs of CPU per event
/// before, 3 to 4 now (bench/NOTES.md, "SQLite as a log").
///
/// `AUTOINCREMENT`: ids are never used twice, even once the sweep deleted the last rows,
/// so "the rows after the last I read" is exact for every process on the file.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feishu_transport_dedupe_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  app_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  value BLOB NOT NULL,
  expires_at INTEGER NOT NULL
);
";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its thread. A file
    /// that is not a SQLite database, or cannot be opened, is INVALID_CONFIG naming it.
    /// Results live `ttl`; expired rows are swept every [`sweep_interval`]`(ttl)`.
    pub fn open(path: &Path, app_id: &str, ttl: Duration) -> Result<SqliteStore, TransportError> {
        let conn = connect(path).map_err(|e| {
            TransportError::invalid_config(format!(
                "dedupe.store: {} cannot be used as a SQLite database: {e}",
                path.display()
            ))
        })?;
        let (jobs, rx) = mpsc::channel();
        let app_id = app_id.to_string();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("feishu-dedupe-sqlite".into())
            .spawn(move || serve(conn, &path, &app_id, rx, sweep_interval(ttl)))
            .map_err(|e| {
                TransportError::invalid_config(format!(
                    "dedupe.store: the SQLite thread could not start: {e}"
                ))
            })?;
        Ok(SqliteStore { jobs })
    }

    /// Runs `op` on the store thread. `Ok(None)` for writes, `Ok(Some(claim))` for a
    /// claim.
    pub async fn run(&self, op: Op) -> Answer {
        let mut answers = self.run_many(vec![op]).await?;
        Ok(answers.pop().flatten())
    }

    /// Runs `ops` in one request (one channel send and one wake, in one transaction),
    /// answered one per operation, in order.
    pub async fn run_many(&self, ops: Vec<Op>) -> Answers {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { ops, reply })
            .map_err(|_| "the SQLite store thread is gone".to_string())?;
        rx.await
            .map_err(|_| "the SQLite store thread is gone".to_string())?
    }
}

/// How long opening the file waits out other connections on its first statements, and
/// how often it tries again meanwhile. Setting WAL mode on a new file and creating the
/// table take locks that SQLite refuses at once, without its busy handler, when another
/// process is doing the same (two bots starting together, one restarting while another
/// writes). Such a refusal is over within milliseconds; a file still locked after this
/// is reported.
const OPEN_WAIT: Duration = Duration::from_secs(5);
const OPEN_RETRY: Duration = Duration::from_millis(10);

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let give_up = Instant::now() + OPEN_WAIT;
    loop {
        match setup(path) {
            Err(e) if is_busy(&e) && Instant::now() < give_up => std::thread::sleep(OPEN_RETRY),
            done => return done,
        }
    }
}

/// A lock another connection holds: SQLITE_BUSY or SQLITE_LOCKED.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One attempt at opening the file and readying it for the store.
fn setup(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Reading the journal mode is the first read of the file: a file that is not a
    // database fails here ("file is not a database").
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "WAL mode was refused (journal mode {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // SQLite's default page cache (2 MiB) is enough: rows are appended and read back
    // near the end of the log, never looked up all over the file. The WAL is checkpointed
    // off the store thread (wal_checkpoint.rs), and truncated back to 64 MiB at most once
    // a checkpoint has caught up.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.execute_batch(SCHEMA)?;
    // A table of the same name but another shape (a file another program made, or an
    // earlier layout) fails here, naming what is missing, rather than every request.
    drop(Statements::prepare(&conn)?);
    Ok(conn)
}

/// The statements of the store thread, prepared once for its life (rusqlite's own
/// statement cache would bring in a hasher under a license the project has not taken).
struct Statements<'c> {
    append: rusqlite::Statement<'c>,
    tail: rusqlite::Statement<'c>,
    row: rusqlite::Statement<'c>,
    scan: rusqlite::Statement<'c>,
    delete_expired: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Statements {
            append: conn.prepare(
                "INSERT INTO feishu_transport_dedupe_log (app_id, event_id, value, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?,
            // The rows appended since the last read, by anyone, in order. Other apps'
            // rows (bots sharing the file) are read too, once, so that the next read
            // starts after them rather than going through them again.
            tail: conn.prepare(
                "SELECT id, app_id = ?2, event_id, length(value) = 0, expires_at FROM feishu_transport_dedupe_log WHERE id > ?1 ORDER BY id",
            )?,
            row: conn.prepare("SELECT value FROM feishu_transport_dedupe_log WHERE id = ?1")?,
            // The sweep walks the rows in arrival order, every app's (the file may be
            // shared by several bots), a chunk at a time.
            scan: conn.prepare(
                "SELECT id, expires_at FROM feishu_transport_dedupe_log WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?,
            delete_expired: conn.prepare(
                "DELETE FROM feishu_transport_dedupe_log WHERE id = ?1 AND expires_at <= ?2",
            )?,
        })
    }
}

/// The store thread: answers queued requests in batches until every handle is gone, and
/// sweeps expired rows a chunk at a time.
fn serve(conn: Connection, path: &Path, app_id: &str, jobs: mpsc::Receiver<Job>, every: Duration) {
    let mut stmts = match Statements::prepare(&conn) {
        Ok(s) => s,
        Err(e) => {
            // The schema was made by `connect`; failing here means the file changed
            // under us. Every request is answered with the error.
            let why = format!("SQLite: {e}");
            while let Ok(job) = jobs.recv() {
                let _ = job.reply.send(Err(why.clone()));
            }
            return;
        }
    };
    // The whole log is read once, here, outside any write lock (a reader does not block
    // the file's writers in WAL mode): about 1 s for a million rows, which the first
    // requests wait for. Should it fail, the first transaction reads it.
    let mut log = Log {
        index: LogIndex::default(),
        app_id,
    };
    let _ = log.catch_up(&mut stmts, super::status::now_ms() as i64);
    // Without its checkpointer (no thread could start) the store keeps SQLite's own
    // automatic checkpoint, inline.
    let checkpoints = Checkpoints::start(&conn, path).ok();
    let mut sweep = Sweep {
        next_at: Instant::now() + every,
        every,
        cursor: None,
    };
    loop {
        let first = if sweep.cursor.is_some() {
            // Sweeping: requests first, and the sweep's next chunk while none waits.
            match jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::TryRecvError::Empty) => {
                    let now = super::status::now_ms() as i64;
                    let swept = transaction(&conn, || sweep.chunk(&mut stmts, now));
                    if swept.is_err() {
                        // Tried again at the next sweep; reads ignore expired rows anyway.
                        sweep.cursor = None;
                    }
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        } else {
            match jobs.recv_timeout(sweep.next_at.saturating_duration_since(Instant::now())) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    sweep.start();
                    log.index.prune(super::status::now_ms() as i64);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        // Group commit: the requests that queued while the last transaction ran share the
        // next one. Nothing waits for more to come: each read burst is already one request
        // (durable.rs), and lingering 300 µs for company cost a burst 15 % of its
        // throughput (bench/NOTES.md, "SQLite in arrival order").
        let mut ops = first.ops.len();
        let mut batch = vec![first];
        while ops < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => {
                    ops += job.ops.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let now = super::status::now_ms() as i64;
        if sweep.cursor.is_none() && Instant::now() >= sweep.next_at {
            sweep.start();
            log.index.prune(now);
        }
        // Before the catch-up: a transaction that fails while catching up undoes nothing
        // of the last one (which committed), and its rows are read again next time.
        log.index.begin();
        let applied = transaction(&conn, || {
            // Under the write lock: what other processes appended first, so that every
            // decision below is taken on the file's state.
            log.catch_up(&mut stmts, now)?;
            let answers = log.apply(&mut stmts, &batch, now)?;
            // Under a steady load the queue is never empty: the sweep advances by a
            // chunk inside the batches' transactions too.
            sweep.chunk(&mut stmts, now)?;
            Ok(answers)
        });
        if let Some(c) = &checkpoints {
            c.committed(&conn);
        }
        match applied {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for job in batch {
                    let mine = answers.by_ref().take(job.ops.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                // Our rows were rolled back: so are their entries.
                log.index.rollback();
                let why = format!("SQLite: {e}");
                for job in batch {
                    let _ = job.reply.send(Err(why.clone()));
                }
            }
        }
    }
}

/// Runs `f` in one immediate transaction (the write lock taken up front, so two
/// processes never both read a key as free and both claim it), rolled back on any error.
fn transaction<T>(
    conn: &Connection,
    f: impl FnOnce() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let done = conn
        .execute_batch("BEGIN IMMEDIATE")
        .and_then(|()| f())
        .and_then(|v| conn.execute_batch("COMMIT").map(|()| v));
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

/// How often the sweep of expired rows starts: a twelfth of the time results are kept,
/// between a minute and an hour. With no index on `expires_at` (every claim and result
/// would update it) a sweep reads the whole table, about 1 µs a row, so a sweep every
/// minute would cost a table of a million rows (12 h of 23 events/s) 1 to 2 % of a core
/// for ever; once an hour (the default 12 h TTL) it costs 0.03 %, and the file holds at
/// most a twelfth more rows than are live. A short TTL is swept as often as it needs.
pub(crate) fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 12).clamp(SWEEP_MIN, SWEEP_MAX)
}

/// Where the sweep of expired rows is: it walks the rows in arrival order a chunk per
/// transaction, so it never holds the file's write lock for a whole-table scan.
struct Sweep {
    next_at: Instant,
    every: Duration,
    /// The row id the next chunk starts after; `None` between sweeps.
    cursor: Option<i64>,
}

impl Sweep {
    fn start(&mut self) {
        self.cursor = Some(0);
        self.next_at = Instant::now() + self.every;
    }

    /// Deletes the expired rows among the next `SWEEP_CHUNK` (of every app: the file may
    /// be shared by several bots); the sweep ends at the table's end.
    fn chunk(&mut self, stmts: &mut Statements<'_>, now: i64) -> rusqlite::Result<()> {
        let Some(after) = self.cursor.take() else {
            return Ok(());
        };
        let mut expired = Vec::new();
        let mut read = 0;
        let mut last = after;
        let mut rows = stmts.scan.query(params![after, SWEEP_CHUNK])?;
        while let Some(row) = rows.next()? {
            read += 1;
            last = row.get(0)?;
            if row.get::<_, i64>(1)? <= now {
                expired.push(last);
            }
        }
        drop(rows);
        for id in expired {
            stmts.delete_expired.execute(params![id, now])?;
        }
        if read == SWEEP_CHUNK {
            self.cursor = Some(last);
        }
        Ok(())
    }
}

/// One app's log in the file and its index in memory.
struct Log<'a> {
    index: LogIndex,
    app_id: &'a str,
}

impl Log<'_> {
    /// Reads the rows appended since the last read (by other processes; ours are in the
    /// index already), oldest first: each of the app's is its key's state now.
    fn catch_up(&mut self, stmts: &mut Statements<'_>, now: i64) -> rusqlite::Result<()> {
        let mut rows = stmts.tail.query(params![self.index.seen, self.app_id])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            self.index.seen = id;
            if !row.get::<_, bool>(1)? {
                continue;
            }
            let (released, expires_at): (bool, i64) = (row.get(3)?, row.get(4)?);
            // An id that is not text was not written by this store: no event of ours can
            // have it, and failing on it would fail every transaction after.
            let Ok(key) = row.get_ref(2)?.as_str() else {
                continue;
            };
            // A release, or a state already over, leaves the key free.
            let live = !released && expires_at > now;
            self.index
                .set(key, live.then_some(Entry { id, expires_at }));
        }
        Ok(())
    }

    /// The key's live state: its entry and its row's value.
    fn live(
        &self,
        stmts: &mut Statements<'_>,
        key: &str,
        now: i64,
    ) -> rusqlite::Result<Option<(Entry, Vec<u8>)>> {
        let Some(entry) = self.index.get(key).filter(|e| e.expires_at > now) else {
            return Ok(None);
        };
        // A row swept meanwhile (by another process whose clock said it had expired) is
        // a free key.
        let value = stmts
            .row
            .query_row(params![entry.id], |r| r.get::<_, Vec<u8>>(0))
            .optional()?;
        Ok(value.map(|v| (entry, v)))
    }

    /// The key's entry while it is `owner`'s live claim.
    fn ours(
        &self,
        stmts: &mut Statements<'_>,
        key: &str,
        owner: &str,
        now: i64,
    ) -> rusqlite::Result<Option<Entry>> {
        let mine = claim_value(owner);
        let live = self.live(stmts, key, now)?;
        Ok(live.filter(|(_, stored)| *stored == mine).map(|(e, _)| e))
    }

    /// Appends the key's new state and points its entry at it (`None`: released).
    fn append(
        &mut self,
        stmts: &mut Statements<'_>,
        key: &str,
        value: &[u8],
        expires_at: i64,
    ) -> rusqlite::Result<()> {
        let id = stmts
            .append
            .insert(params![self.app_id, key, value, expires_at])?;
        self.index.seen = id;
        let entry = (!value.is_empty()).then_some(Entry { id, expires_at });
        self.index.change(key, entry);
        Ok(())
    }

    /// Applies `batch`'s operations, in order, inside the caller's transaction.
    fn apply(
        &mut self,
        stmts: &mut Statements<'_>,
        batch: &[Job],
        now: i64,
    ) -> rusqlite::Result<Vec<Option<Claim>>> {
        let ms = |d: &Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut answers = Vec::with_capacity(batch.len());
        for op in batch.iter().flat_map(|job| &job.ops) {
            answers.push(match op {
                Op::Claim { key, owner, lease } => match self.live(stmts, key, now)? {
                    // A live value answers the claim; a free key, an expired claim (a
                    // crashed holder's) or an expired result is ours.
                    Some((_, stored)) => Some(decode(&stored)),
                    None => {
                        let until = now.saturating_add(ms(lease));
                        self.append(stmts, key, &claim_value(owner), until)?;
                        Some(Claim::Owned)
                    }
                },
                Op::Complete { key, value, ttl } => {
                    // Whatever the key held: normally our claim, or nothing if it was
                    // released or swept meanwhile.
                    self.append(stmts, key, value, now.saturating_add(ms(ttl)))?;
                    None
                }
                Op::Release { key, owner } => {
                    if let Some(entry) = self.ours(stmts, key, owner, now)? {
                        // The release row lives as long as the claim it ends, so the
                        // sweep never leaves that claim (or an older one, which expires
                        // no later: see Renew) as the key's latest row.
                        self.append(stmts, key, &[], entry.expires_at)?;
                    }
                    None
                }
                Op::Renew { key, owner, lease } => {
                    match self.ours(stmts, key, owner, now)? {
                        Some(entry) => {
                            // Never sooner than before, so a key's rows expire in order.
                            let until = now.saturating_add(ms(lease)).max(entry.expires_at);
                            self.append(stmts, key, &claim_value(owner), until)?;
                            Some(Claim::Owned)
                        }
                        None => Some(Claim::Held),
                    }
                }
            });
        }
        Ok(answers)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::frame::AckPayload;
    use crate::core::store::result_value;

    /// The result lifetime the tests open stores with (its sweep interval is not reached).
    pub(crate) const TEST_TTL: Duration = Duration::from_secs(12 * 3600);

    #[test]
    fn the_sweep_runs_at_a_twelfth_of_the_ttl_between_a_minute_and_an_hour() {
        assert_eq!(
            sweep_interval(Duration::from_secs(12 * 3600)),
            Duration::from_secs(3600)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(2 * 3600)),
            Duration::from_secs(600)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(30 * 86_400)),
            Duration::from_secs(3600)
        );
    }

    /// A fresh database path in a directory of its own (also used by durable.rs's tests).
    pub(crate) fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "feishu-store-{}-{name}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("dedupe.db")
    }

    /// A connection of its own on the store's file, as another process on the host has
    /// (also used by durable.rs's tests).
    pub(crate) fn side_connection(path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    fn claim(key: &str, owner: &str, lease_ms: u64) -> Op {
        Op::Claim {
            key: key.into(),
            owner: owner.into(),
            lease: Duration::from_millis(lease_ms),
        }
    }

    fn release(key: &str, owner: &str) -> Op {
        Op::Release {
            key: key.into(),
            owner: owner.into(),
        }
    }

    fn complete(key: &str, payload: &AckPayload, ttl_ms: u64) -> Op {
        Op::Complete {
            key: key.into(),
            value: result_value(payload),
            ttl: Duration::from_millis(ttl_ms),
        }
    }

    #[tokio::test]
    async fn claim_complete_release_and_share_across_handles() {
        let path = temp("basic");
        let a = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let b = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let other_app = SqliteStore::open(&path, "cli_b", TEST_TTL).unwrap();
        assert_eq!(
            a.run(claim("e1", "a:1", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
        assert_eq!(
            b.run(claim("e1", "b:1", 60_000)).await,
            Ok(Some(Claim::Held))
        );
        assert_eq!(
            other_app.run(claim("e1", "c:1", 60_000)).await,
            Ok(Some(Claim::Owned)),
            "keys are namespaced by app id"
        );
        let data = AckPayload::OkWithData(b"{\"ok\":1}".to_vec());
        a.run(complete("e1", &data, 60_000)).await.unwrap();
        assert_eq!(
            b.run(claim("e1", "b:2", 60_000)).await,
            Ok(Some(Claim::Done(data)))
        );
        // a release by someone else's token leaves the claim; the owner's frees it
        assert_eq!(
            a.run(claim("e2", "a:2", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
        b.run(release("e2", "b:9")).await.unwrap();
        assert_eq!(
            b.run(claim("e2", "b:3", 60_000)).await,
            Ok(Some(Claim::Held))
        );
        a.run(release("e2", "a:2")).await.unwrap();
        assert_eq!(
            b.run(claim("e2", "b:4", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
    }

    #[tokio::test]
    async fn an_expired_claim_or_result_is_taken_over() {
        let path = temp("expiry");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        assert_eq!(
            s.run(claim("e1", "dead:1", 50)).await,
            Ok(Some(Claim::Owned))
        );
        assert_eq!(s.run(claim("e1", "b:1", 50)).await, Ok(Some(Claim::Held)));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.run(claim("e1", "b:2", 50)).await, Ok(Some(Claim::Owned)));
        s.run(complete("e1", &AckPayload::Ok, 50)).await.unwrap();
        assert_eq!(
            s.run(claim("e1", "c:1", 50)).await,
            Ok(Some(Claim::Done(AckPayload::Ok)))
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.run(claim("e1", "c:2", 50)).await, Ok(Some(Claim::Owned)));
    }

    #[tokio::test]
    async fn a_batched_claim_answers_each_key_by_what_it_finds() {
        let path = temp("batch");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let other = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        s.run(claim("done", "a:1", 60_000)).await.unwrap();
        s.run(complete("done", &AckPayload::Ok, 60_000))
            .await
            .unwrap();
        other.run(claim("held", "b:1", 60_000)).await.unwrap();
        other.run(claim("expired", "b:2", 1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let found = s
            .run_many(vec![
                claim("done", "a:2", 60_000),
                claim("held", "a:3", 60_000),
                claim("expired", "a:4", 60_000),
                claim("free", "a:5", 60_000),
            ])
            .await
            .unwrap();
        assert_eq!(
            found,
            vec![
                Some(Claim::Done(AckPayload::Ok)),
                Some(Claim::Held),
                Some(Claim::Owned),
                Some(Claim::Owned),
            ]
        );
        // The expired claim was taken over: it is ours now, released by our token only.
        other.run(release("expired", "b:2")).await.unwrap();
        assert_eq!(
            other.run(claim("expired", "b:3", 60_000)).await,
            Ok(Some(Claim::Held))
        );
        s.run(release("expired", "a:4")).await.unwrap();
        assert_eq!(
            other.run(claim("expired", "b:4", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
    }

    fn renew(key: &str, owner: &str, lease_ms: u64) -> Op {
        Op::Renew {
            key: key.into(),
            owner: owner.into(),
            lease: Duration::from_millis(lease_ms),
        }
    }

    #[tokio::test]
    async fn a_renewal_extends_only_our_own_claim() {
        let path = temp("renew");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        assert_eq!(s.run(claim("e1", "a:1", 150)).await, Ok(Some(Claim::Owned)));
        // Renewed past its first lease: still held a lease and a half later.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.run(renew("e1", "a:1", 150)).await, Ok(Some(Claim::Owned)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.run(claim("e1", "b:1", 150)).await, Ok(Some(Claim::Held)));
        // Another owner's claim (a takeover) is neither extended nor ours.
        assert_eq!(
            s.run(renew("e2", "a:2", 60_000)).await,
            Ok(Some(Claim::Held))
        );
        s.run(claim("e3", "b:3", 50)).await.unwrap();
        assert_eq!(
            s.run(renew("e3", "a:3", 60_000)).await,
            Ok(Some(Claim::Held))
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            s.run(claim("e3", "c:3", 60_000)).await,
            Ok(Some(Claim::Owned)),
            "the other owner's claim expired on its own lease"
        );
        // A result is not a claim: a late renewal leaves it as it is.
        s.run(complete("e1", &AckPayload::Ok, 60_000))
            .await
            .unwrap();
        assert_eq!(s.run(renew("e1", "a:1", 1)).await, Ok(Some(Claim::Held)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            s.run(claim("e1", "d:1", 60_000)).await,
            Ok(Some(Claim::Done(AckPayload::Ok)))
        );
    }

    #[tokio::test]
    async fn a_result_whose_claim_is_gone_is_still_stored() {
        let path = temp("gone");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        s.run(claim("e1", "a:1", 60_000)).await.unwrap();
        s.run(release("e1", "a:1")).await.unwrap();
        s.run(complete("e1", &AckPayload::Ok, 60_000))
            .await
            .unwrap();
        assert_eq!(
            s.run(claim("e1", "a:2", 60_000)).await,
            Ok(Some(Claim::Done(AckPayload::Ok)))
        );
    }

    #[test]
    fn the_sweep_deletes_every_expired_row_a_chunk_at_a_time() {
        let path = temp("sweep");
        let conn = connect(&path).unwrap();
        let mut stmts = Statements::prepare(&conn).unwrap();
        let rows = SWEEP_CHUNK * 2 + 100;
        // Two apps, expired and live rows interleaved across the chunks.
        for i in 0..rows {
            let app = if i % 3 == 0 { "cli_b" } else { "cli_a" };
            let expires_at = if i % 2 == 0 { 1_000 } else { 3_000 };
            stmts
                .append
                .execute(params![
                    app,
                    format!("e{i:06}"),
                    b"D".as_slice(),
                    expires_at
                ])
                .unwrap();
        }
        let mut sweep = Sweep {
            next_at: Instant::now(),
            every: SWEEP_MIN,
            cursor: None,
        };
        sweep.start();
        let mut chunks = 0;
        while sweep.cursor.is_some() {
            sweep.chunk(&mut stmts, 2_000).unwrap();
            chunks += 1;
        }
        assert!(chunks >= 3, "{chunks} chunks");
        let left: i64 = conn
            .query_row(
                "SELECT count(*) FROM feishu_transport_dedupe_log",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let live: i64 = conn
            .query_row(
                "SELECT count(*) FROM feishu_transport_dedupe_log WHERE expires_at > 2000",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(live, rows / 2);
        assert_eq!(left, live, "every expired row is gone, every live one kept");
    }

    #[test]
    fn the_connection_keeps_its_wal_short_and_commits_without_an_fsync_each() {
        let path = temp("tuned");
        let conn = connect(&path).unwrap();
        let get = |p: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(get("journal_size_limit"), 64 * 1024 * 1024);
        // NORMAL: a commit survives the process being killed, without an fsync each.
        assert_eq!(get("synchronous"), 1);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_invalid_config() {
        let path = temp("garbage");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let e = SqliteStore::open(&path, "cli_a", TEST_TTL).err().unwrap();
        assert_eq!(e.code.as_str(), "INVALID_CONFIG");
        assert!(e.message.contains("not a database"), "{}", e.message);
        assert!(e.message.contains("dedupe.db"), "{}", e.message);
    }

    #[test]
    fn a_table_of_another_shape_is_invalid_config() {
        let path = temp("shape");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE feishu_transport_dedupe_log (app_id TEXT, event_id TEXT, value BLOB, expires_at INTEGER, PRIMARY KEY (app_id, event_id)) WITHOUT ROWID",
        )
        .unwrap();
        drop(conn);
        let e = SqliteStore::open(&path, "cli_a", TEST_TTL).err().unwrap();
        assert_eq!(e.code.as_str(), "INVALID_CONFIG");
        assert!(e.message.contains("dedupe.db"), "{}", e.message);
        assert!(e.message.contains("no such column: id"), "{}", e.message);
    }

    #[test]
    fn processes_opening_one_new_file_at_once_all_open_it() {
        // Two processes starting together (or one restarting while another writes) meet
        // on the file's first statements: setting WAL mode and creating the table take
        // locks that SQLite refuses at once, without its busy handler.
        for round in 0..40 {
            let path = temp(&format!("race{round}"));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|i| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteStore::open(&path, &format!("cli_{i}"), TEST_TTL).map(drop)
                    })
                })
                .collect();
            for o in openers {
                if let Err(e) = o.join().unwrap() {
                    panic!("round {round}: {}", e.message);
                }
            }
        }
    }

    #[tokio::test]
    async fn a_file_locked_by_another_process_answers_an_error_within_the_busy_timeout() {
        let path = temp("locked");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let other = side_connection(&path);
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = Instant::now();
        let found = s.run(claim("e1", "a:1", 60_000)).await;
        let waited = started.elapsed();
        assert!(
            matches!(&found, Err(e) if e.contains("locked")),
            "{found:?}"
        );
        // A claim and a result each wait this long at most, both within the 3 s in
        // which Feishu expects the ack.
        assert!(waited >= BUSY_TIMEOUT, "{waited:?}");
        assert!(waited < BUSY_TIMEOUT * 3 / 2, "{waited:?}");
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(
            s.run(claim("e1", "a:2", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
    }

    /// The WAL frames written since the log was last reset (another connection's view).
    fn wal_frames(side: &Connection) -> i64 {
        side.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    #[tokio::test]
    async fn a_bursts_claims_and_results_each_write_a_few_pages_not_one_per_event() {
        let path = temp("layout");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let random = || format!("{:032x}", rand::random::<u128>());
        let earlier: Vec<Op> = (0..5_000)
            .map(|_| claim(&random(), "a:0", 60_000))
            .collect();
        s.run_many(earlier).await.unwrap();
        let side = side_connection(&path);
        let burst: Vec<String> = (0..200).map(|_| random()).collect();
        let reset = || {
            side.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap()
        };
        reset();
        let claims = burst.iter().map(|k| claim(k, "a:1", 60_000)).collect();
        let owned = s.run_many(claims).await.unwrap();
        assert!(owned.iter().all(|a| *a == Some(Claim::Owned)));
        let for_claims = wal_frames(&side);
        reset();
        let data = AckPayload::OkWithData(vec![b'R'; 60]);
        let results = burst.iter().map(|k| complete(k, &data, 60_000)).collect();
        s.run_many(results).await.unwrap();
        let for_results = wal_frames(&side);
        // The rows are appended, a burst's on the same few pages. A claim that inserts
        // into an index on the random event ids (the layout before) wrote 180 to 200
        // pages for these 200 claims.
        assert!(for_claims <= 20, "{for_claims} pages for 200 claims");
        assert!(for_results <= 20, "{for_results} pages for 200 results");
    }

    #[tokio::test]
    async fn a_store_opened_on_the_file_reads_every_state_in_it() {
        let path = temp("reopen");
        let a = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let hex = format!("{:032x}", rand::random::<u128>());
        for key in ["done", "held", "released", "renewed", hex.as_str()] {
            a.run(claim(key, "a:1", 60_000)).await.unwrap();
        }
        a.run(complete("done", &AckPayload::Ok, 60_000))
            .await
            .unwrap();
        a.run(complete(&hex, &AckPayload::Ok, 60_000))
            .await
            .unwrap();
        a.run(release("released", "a:1")).await.unwrap();
        a.run(renew("renewed", "a:1", 60_000)).await.unwrap();
        drop(a);
        let b = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let found = b
            .run_many(vec![
                claim("done", "b:1", 60_000),
                claim(&hex, "b:1", 60_000),
                claim("held", "b:1", 60_000),
                claim("released", "b:1", 60_000),
                claim("renewed", "b:1", 60_000),
                claim("new", "b:1", 60_000),
            ])
            .await
            .unwrap();
        let done = Some(Claim::Done(AckPayload::Ok));
        let (held, owned) = (Some(Claim::Held), Some(Claim::Owned));
        assert_eq!(
            found,
            vec![done.clone(), done, held.clone(), owned.clone(), held, owned]
        );
    }

    /// A transaction that fails takes its entries with it. Its rows' ids are used again by
    /// the next rows: an entry left behind would point at another key's row.
    #[tokio::test]
    async fn a_failed_batch_leaves_no_entry_behind() {
        let path = temp("rollback");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let side = side_connection(&path);
        side.execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON feishu_transport_dedupe_log WHEN NEW.event_id = 'bad' BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        )
        .unwrap();
        let failed = s
            .run_many(vec![
                claim("good", "a:1", 60_000),
                claim("bad", "a:1", 60_000),
            ])
            .await;
        assert!(
            matches!(&failed, Err(e) if e.contains("injected failure")),
            "{failed:?}"
        );
        side.execute_batch("DROP TRIGGER boom").unwrap();
        // Takes the id the failed claim of "good" had.
        assert_eq!(
            s.run(claim("other", "a:2", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
        assert_eq!(
            s.run(claim("good", "a:3", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
    }

    /// Another process reads "the rows after the last one I read": an id used again once
    /// the sweep deleted the last rows would be a row it never reads.
    #[tokio::test]
    async fn ids_are_never_used_again_once_the_last_rows_are_swept() {
        let path = temp("ids");
        let a = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let b = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        a.run(claim("e1", "a:1", 60_000)).await.unwrap();
        b.run(claim("e2", "b:1", 60_000)).await.unwrap();
        // Every row gone, as a sweep does once they have expired.
        let side = side_connection(&path);
        side.execute_batch("DELETE FROM feishu_transport_dedupe_log")
            .unwrap();
        a.run(claim("e3", "a:2", 60_000)).await.unwrap();
        assert_eq!(
            b.run(claim("e3", "b:2", 60_000)).await,
            Ok(Some(Claim::Held))
        );
    }

    #[tokio::test]
    async fn a_renewal_never_shortens_a_claim() {
        let path = temp("shorter");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        s.run(claim("e1", "a:1", 60_000)).await.unwrap();
        assert_eq!(s.run(renew("e1", "a:1", 1)).await, Ok(Some(Claim::Owned)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            s.run(claim("e1", "b:1", 60_000)).await,
            Ok(Some(Claim::Held))
        );
    }

    #[test]
    fn a_catch_up_reads_other_apps_rows_and_foreign_ids_once_and_skips_them() {
        let path = temp("apps");
        let conn = connect(&path).unwrap();
        let mut stmts = Statements::prepare(&conn).unwrap();
        let mut log = Log {
            index: LogIndex::default(),
            app_id: "cli_a",
        };
        for (app, key) in [("cli_a", "e1"), ("cli_b", "e2"), ("cli_b", "e1")] {
            stmts
                .append
                .execute(params![app, key, b"C".as_slice(), i64::MAX])
                .unwrap();
        }
        // Not written by the store (a blob id): skipped, not an error for ever after.
        let last = stmts
            .append
            .insert(params![
                "cli_a",
                b"\xff".as_slice(),
                b"C".as_slice(),
                i64::MAX
            ])
            .unwrap();
        log.catch_up(&mut stmts, 0).unwrap();
        assert_eq!(
            log.index.seen, last,
            "the next read starts after cli_b's rows"
        );
        assert_eq!(
            log.index.get("e1").map(|e| e.id),
            Some(1),
            "cli_a's own row"
        );
        assert_eq!(log.index.get("e2"), None);
    }
}
