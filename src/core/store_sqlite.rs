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

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::error::TransportError;
use super::store::{claim_value, decode, Claim};
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

/// Rows are kept in arrival order (an integer primary key) and found by a unique index on
/// `(app_id, event_id)`. Feishu's event ids are random: keyed by them (as a WITHOUT ROWID
/// table was), every claim and every result rewrote a page of its own, two random 4 KiB
/// WAL frames per event. Here a claim adds one random index entry and appends its row,
/// and a result rewrites only its row, on the last pages, which one commit shares among
/// a burst (about 1.1 frames per event; bench/NOTES.md, "SQLite in arrival order").
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feishu_transport_dedupe (
  id INTEGER PRIMARY KEY,
  app_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  value BLOB NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS feishu_transport_dedupe_key
  ON feishu_transport_dedupe (app_id, event_id);
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

fn connect(path: &Path) -> rusqlite::Result<Connection> {
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
    // Feishu's event ids are random, so claims land all over the key index and every
    // commit dirties about one page per event. SQLite's default 2 MiB cache then spends
    // the store thread reading the same pages again: with a 16 MiB cache, a burst of
    // random ids ran 20 % faster at 10 % less CPU per event (bench/NOTES.md, "Random
    // event ids"). The WAL is checkpointed off the store thread (wal_checkpoint.rs), and
    // truncated back to 64 MiB at most once a checkpoint has caught up.
    conn.pragma_update(None, "cache_size", -16_384)?;
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
    insert: rusqlite::Statement<'c>,
    read: rusqlite::Statement<'c>,
    update: rusqlite::Statement<'c>,
    write: rusqlite::Statement<'c>,
    release: rusqlite::Statement<'c>,
    renew: rusqlite::Statement<'c>,
    scan: rusqlite::Statement<'c>,
    delete_expired: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Statements {
            // A claim is one insert when the key is free (the common case); only a
            // conflict reads the row.
            insert: conn.prepare(
                "INSERT INTO feishu_transport_dedupe (app_id, event_id, value, expires_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )?,
            read: conn.prepare(
                "SELECT value, expires_at FROM feishu_transport_dedupe WHERE app_id = ?1 AND event_id = ?2",
            )?,
            // A result replaces its claim in place (INSERT OR REPLACE deletes the row
            // and inserts it again).
            update: conn.prepare(
                "UPDATE feishu_transport_dedupe SET value = ?3, expires_at = ?4 WHERE app_id = ?1 AND event_id = ?2",
            )?,
            write: conn.prepare(
                "INSERT OR REPLACE INTO feishu_transport_dedupe (app_id, event_id, value, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?,
            release: conn.prepare(
                "DELETE FROM feishu_transport_dedupe WHERE app_id = ?1 AND event_id = ?2 AND value = ?3",
            )?,
            renew: conn.prepare(
                "UPDATE feishu_transport_dedupe SET expires_at = ?4 WHERE app_id = ?1 AND event_id = ?2 AND value = ?3",
            )?,
            // The sweep walks the rows in arrival order, every app's (the file may be
            // shared by several bots), a chunk at a time: no index on `expires_at`,
            // which every claim and result would otherwise update too.
            scan: conn.prepare(
                "SELECT id, expires_at FROM feishu_transport_dedupe WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?,
            delete_expired: conn.prepare(
                "DELETE FROM feishu_transport_dedupe WHERE id = ?1 AND expires_at <= ?2",
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
        if sweep.cursor.is_none() && Instant::now() >= sweep.next_at {
            sweep.start();
        }
        let now = super::status::now_ms() as i64;
        let applied = transaction(&conn, || {
            let answers = apply(&mut stmts, app_id, &batch, now)?;
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

/// Applies `batch`'s operations, in order, inside the caller's transaction.
fn apply(
    stmts: &mut Statements<'_>,
    app_id: &str,
    batch: &[Job],
    now: i64,
) -> rusqlite::Result<Vec<Option<Claim>>> {
    let ms = |d: &Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut answers = Vec::with_capacity(batch.len());
    for op in batch.iter().flat_map(|job| &job.ops) {
        answers.push(match op {
            Op::Claim { key, owner, lease } => {
                let value = claim_value(owner);
                let until = now.saturating_add(ms(lease));
                if stmts.insert.execute(params![app_id, key, value, until])? == 1 {
                    Some(Claim::Owned)
                } else {
                    // Taken: a live value answers the claim; an expired one (a crashed
                    // holder's claim, an old result the sweep has not reached) is
                    // taken over.
                    let (stored, expires_at): (Vec<u8>, i64) = stmts
                        .read
                        .query_row(params![app_id, key], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    if expires_at > now {
                        Some(decode(&stored))
                    } else {
                        stmts.update.execute(params![app_id, key, value, until])?;
                        Some(Claim::Owned)
                    }
                }
            }
            Op::Complete { key, value, ttl } => {
                let until = now.saturating_add(ms(ttl));
                // The claim is normally there to replace; a row swept or released
                // meanwhile is written anew.
                if stmts.update.execute(params![app_id, key, value, until])? == 0 {
                    stmts.write.execute(params![app_id, key, value, until])?;
                }
                None
            }
            Op::Release { key, owner } => {
                stmts
                    .release
                    .execute(params![app_id, key, claim_value(owner)])?;
                None
            }
            Op::Renew { key, owner, lease } => {
                let until = now.saturating_add(ms(lease));
                let renewed =
                    stmts
                        .renew
                        .execute(params![app_id, key, claim_value(owner), until])?;
                Some(if renewed == 1 {
                    Claim::Owned
                } else {
                    Claim::Held
                })
            }
        });
    }
    Ok(answers)
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
                .write
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
            .query_row("SELECT count(*) FROM feishu_transport_dedupe", [], |r| {
                r.get(0)
            })
            .unwrap();
        let live: i64 = conn
            .query_row(
                "SELECT count(*) FROM feishu_transport_dedupe WHERE expires_at > 2000",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(live, rows / 2);
        assert_eq!(left, live, "every expired row is gone, every live one kept");
    }

    #[test]
    fn the_connection_is_tuned_for_random_keys() {
        let path = temp("tuned");
        let conn = connect(&path).unwrap();
        let get = |p: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(get("cache_size"), -16_384);
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
            "CREATE TABLE feishu_transport_dedupe (app_id TEXT, event_id TEXT, value BLOB, expires_at INTEGER, PRIMARY KEY (app_id, event_id)) WITHOUT ROWID",
        )
        .unwrap();
        drop(conn);
        let e = SqliteStore::open(&path, "cli_a", TEST_TTL).err().unwrap();
        assert_eq!(e.code.as_str(), "INVALID_CONFIG");
        assert!(e.message.contains("dedupe.db"), "{}", e.message);
        assert!(e.message.contains("no such column: id"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_file_locked_by_another_process_answers_an_error_within_the_busy_timeout() {
        let path = temp("locked");
        let s = SqliteStore::open(&path, "cli_a", TEST_TTL).unwrap();
        let other = Connection::open(&path).unwrap();
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

    #[test]
    fn a_bursts_results_rewrite_a_few_pages_not_one_each() {
        let path = temp("layout");
        let conn = connect(&path).unwrap();
        let mut stmts = Statements::prepare(&conn).unwrap();
        let random = || format!("{:032x}", rand::random::<u128>());
        let claim_all = |stmts: &mut Statements<'_>, keys: &[String]| {
            transaction(&conn, || {
                for k in keys {
                    stmts
                        .insert
                        .execute(params!["cli_a", k, b"C".as_slice(), 1])?;
                }
                Ok(())
            })
            .unwrap();
        };
        let earlier: Vec<String> = (0..5_000).map(|_| random()).collect();
        claim_all(&mut stmts, &earlier);
        let burst: Vec<String> = (0..200).map(|_| random()).collect();
        claim_all(&mut stmts, &burst);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        transaction(&conn, || {
            for k in &burst {
                stmts
                    .update
                    .execute(params!["cli_a", k, vec![b'R'; 60], 2])?;
            }
            Ok(())
        })
        .unwrap();
        // The WAL now holds exactly the pages the results rewrote: the burst's rows, in
        // arrival order. A result that moves its row and rewrites its index entry
        // (INSERT OR REPLACE) wrote 77 pages here.
        let written: i64 = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        assert!(written <= 20, "{written} pages for 200 results");
    }
}
