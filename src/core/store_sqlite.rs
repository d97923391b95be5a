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
}

type Answer = Result<Option<Claim>, String>;

struct Job {
    op: Op,
    reply: oneshot::Sender<Answer>,
}

/// The handle of the store thread; the thread ends when the last handle is dropped.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
}

/// Requests answered by one transaction at most: bounds how long the first of them
/// waits for the last.
const MAX_BATCH: usize = 512;
/// How long the thread waits for more requests after the first of a batch.
const LINGER: Duration = Duration::from_micros(300);
/// How often expired rows are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long a write waits for another process's transaction on the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feishu_transport_dedupe (
  app_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  value BLOB NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (app_id, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feishu_transport_dedupe_expiry
  ON feishu_transport_dedupe (expires_at);
";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its thread. A file
    /// that is not a SQLite database, or cannot be opened, is INVALID_CONFIG naming it.
    pub fn open(path: &Path, app_id: &str) -> Result<SqliteStore, TransportError> {
        let conn = connect(path).map_err(|e| {
            TransportError::invalid_config(format!(
                "dedupe.store: {} cannot be used as a SQLite database: {e}",
                path.display()
            ))
        })?;
        let (jobs, rx) = mpsc::channel();
        let app_id = app_id.to_string();
        std::thread::Builder::new()
            .name("feishu-dedupe-sqlite".into())
            .spawn(move || serve(conn, &app_id, rx))
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
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
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
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// The statements of the store thread, prepared once for its life (rusqlite's own
/// statement cache would bring in a hasher under a license the project has not taken).
struct Statements<'c> {
    read: rusqlite::Statement<'c>,
    write: rusqlite::Statement<'c>,
    release: rusqlite::Statement<'c>,
    sweep: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Statements {
            read: conn.prepare(
                "SELECT value FROM feishu_transport_dedupe WHERE app_id = ?1 AND event_id = ?2 AND expires_at > ?3",
            )?,
            write: conn.prepare(
                "INSERT OR REPLACE INTO feishu_transport_dedupe (app_id, event_id, value, expires_at) VALUES (?1, ?2, ?3, ?4)",
            )?,
            release: conn.prepare(
                "DELETE FROM feishu_transport_dedupe WHERE app_id = ?1 AND event_id = ?2 AND value = ?3",
            )?,
            // Every app's expired rows: the file may be shared by several bots.
            sweep: conn.prepare("DELETE FROM feishu_transport_dedupe WHERE expires_at <= ?1")?,
        })
    }
}

/// The store thread: answers queued requests in batches until every handle is gone.
fn serve(conn: Connection, app_id: &str, jobs: mpsc::Receiver<Job>) {
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
    let mut last_sweep = Instant::now();
    while let Ok(first) = jobs.recv() {
        // Requests come one per event from many tasks: waiting a moment for the ones
        // right behind the first lets one commit serve a burst (a commit per request
        // was the store's main cost), for at most `LINGER` of latency.
        let mut batch = vec![first];
        let until = Instant::now() + LINGER;
        while batch.len() < MAX_BATCH {
            let left = until.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let sweep = last_sweep.elapsed() >= SWEEP_EVERY;
        if sweep {
            last_sweep = Instant::now();
        }
        // One immediate transaction (the write lock taken up front, so two processes
        // never both read a key as free and both claim it), rolled back on any error.
        let applied = conn
            .execute_batch("BEGIN IMMEDIATE")
            .and_then(|()| apply(&mut stmts, app_id, &batch, sweep))
            .and_then(|answers| conn.execute_batch("COMMIT").map(|()| answers));
        match applied {
            Ok(answers) => {
                for (job, answer) in batch.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                let why = format!("SQLite: {e}");
                for job in batch {
                    let _ = job.reply.send(Err(why.clone()));
                }
            }
        }
    }
}

/// Applies `batch` inside the caller's transaction.
fn apply(
    stmts: &mut Statements<'_>,
    app_id: &str,
    batch: &[Job],
    sweep: bool,
) -> rusqlite::Result<Vec<Option<Claim>>> {
    let now = super::status::now_ms() as i64;
    let ms = |d: &Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        answers.push(match &job.op {
            Op::Claim { key, owner, lease } => {
                let live: Option<Vec<u8>> = stmts
                    .read
                    .query_row(params![app_id, key, now], |r| r.get(0))
                    .optional()?;
                match live {
                    Some(value) => Some(decode(&value)),
                    None => {
                        stmts.write.execute(params![
                            app_id,
                            key,
                            claim_value(owner),
                            now.saturating_add(ms(lease))
                        ])?;
                        Some(Claim::Owned)
                    }
                }
            }
            Op::Complete { key, value, ttl } => {
                stmts
                    .write
                    .execute(params![app_id, key, value, now.saturating_add(ms(ttl))])?;
                None
            }
            Op::Release { key, owner } => {
                stmts
                    .release
                    .execute(params![app_id, key, claim_value(owner)])?;
                None
            }
        });
    }
    if sweep {
        stmts.sweep.execute(params![now])?;
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::AckPayload;
    use crate::core::store::result_value;

    fn temp(name: &str) -> std::path::PathBuf {
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

    #[tokio::test]
    async fn claim_complete_release_and_share_across_handles() {
        let path = temp("basic");
        let a = SqliteStore::open(&path, "cli_a").unwrap();
        let b = SqliteStore::open(&path, "cli_a").unwrap();
        let other_app = SqliteStore::open(&path, "cli_b").unwrap();
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
        a.run(Op::Complete {
            key: "e1".into(),
            value: result_value(&data),
            ttl: Duration::from_secs(60),
        })
        .await
        .unwrap();
        assert_eq!(
            b.run(claim("e1", "b:2", 60_000)).await,
            Ok(Some(Claim::Done(data)))
        );
        // a release by someone else's token leaves the claim; the owner's frees it
        assert_eq!(
            a.run(claim("e2", "a:2", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
        b.run(Op::Release {
            key: "e2".into(),
            owner: "b:9".into(),
        })
        .await
        .unwrap();
        assert_eq!(
            b.run(claim("e2", "b:3", 60_000)).await,
            Ok(Some(Claim::Held))
        );
        a.run(Op::Release {
            key: "e2".into(),
            owner: "a:2".into(),
        })
        .await
        .unwrap();
        assert_eq!(
            b.run(claim("e2", "b:4", 60_000)).await,
            Ok(Some(Claim::Owned))
        );
    }

    #[tokio::test]
    async fn an_expired_claim_or_result_is_taken_over() {
        let path = temp("expiry");
        let s = SqliteStore::open(&path, "cli_a").unwrap();
        assert_eq!(
            s.run(claim("e1", "dead:1", 50)).await,
            Ok(Some(Claim::Owned))
        );
        assert_eq!(s.run(claim("e1", "b:1", 50)).await, Ok(Some(Claim::Held)));
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.run(claim("e1", "b:2", 50)).await, Ok(Some(Claim::Owned)));
        s.run(Op::Complete {
            key: "e1".into(),
            value: result_value(&AckPayload::Ok),
            ttl: Duration::from_millis(50),
        })
        .await
        .unwrap();
        assert_eq!(
            s.run(claim("e1", "c:1", 50)).await,
            Ok(Some(Claim::Done(AckPayload::Ok)))
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.run(claim("e1", "c:2", 50)).await, Ok(Some(Claim::Owned)));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_invalid_config() {
        let path = temp("garbage");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let e = SqliteStore::open(&path, "cli_a").err().unwrap();
        assert_eq!(e.code.as_str(), "INVALID_CONFIG");
        assert!(e.message.contains("not a database"), "{}", e.message);
        assert!(e.message.contains("dedupe.db"), "{}", e.message);
    }
}
