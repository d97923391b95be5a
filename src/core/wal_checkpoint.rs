//! Checkpoints of the SQLite store's write-ahead log, run off the store thread.
//!
//! SQLite's own automatic checkpoint runs inside the commit that crosses its threshold:
//! the store thread copies the whole WAL into the database file and waits for two
//! fsyncs, while every event waiting on a claim or a result waits with it. Here the store
//! connection's automatic checkpoint is replaced by a WAL hook that only notes the WAL's
//! size; past [`CHECKPOINT_AT`] pages the store thread asks a thread of its own, with its
//! own connection, for a PASSIVE checkpoint, which copies what it can without blocking
//! the writer. With commits back to back the WAL can then outgrow what the checkpointer
//! copies; past [`BACKSTOP`] pages the store thread checkpoints inline, as SQLite would.
//! (bench/NOTES.md, "SQLite in arrival order": the inline checkpoint's fsyncs were a
//! quarter of a burst's time on the store thread.)

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

/// WAL pages past which the checkpointer is asked to copy the log into the database: 40
/// MiB of 4 KiB pages. Random event ids dirty a page each, so a longer log lets more of
/// them be rewritten in the WAL before they are copied once (bench/NOTES.md, "Random
/// event ids").
pub(crate) const CHECKPOINT_AT: c_int = 10_000;
/// WAL pages past which the store thread checkpoints itself: the checkpointer has not
/// caught up (commits came back to back, or its connection failed).
pub(crate) const BACKSTOP: c_int = 4 * CHECKPOINT_AT;

thread_local! {
    /// The WAL's size in pages after this thread's last commit. SQLite's WAL hook takes
    /// a plain function, so the count goes through a slot of the committing thread's own
    /// (one store thread per store, so stores in one process never share a slot).
    static WAL_PAGES: Cell<c_int> = const { Cell::new(0) };
}

fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(pages);
    Ok(())
}

/// The store thread's side: installed on its connection, asked after each commit.
pub(crate) struct Checkpoints {
    wanted: mpsc::SyncSender<()>,
    /// The WAL's size when the last checkpoint was asked for: the next is asked for
    /// [`CHECKPOINT_AT`] pages later (or once the log has been reset), not after every
    /// commit to a log that a busy writer keeps long.
    asked_at: Cell<c_int>,
}

/// What a commit that left the WAL a given length calls for.
#[derive(Debug, PartialEq)]
enum Next {
    Nothing,
    /// A checkpoint, asked of the checkpointer.
    Ask,
    /// A checkpoint on the store thread itself: the checkpointer fell behind.
    Inline,
}

impl Checkpoints {
    /// Replaces `conn`'s automatic checkpoint and starts the checkpointer, with a
    /// connection of its own to `path`. Call it on the thread that will commit.
    pub(crate) fn start(conn: &Connection, path: &Path) -> std::io::Result<Checkpoints> {
        let own = Connection::open(path).map_err(std::io::Error::other)?;
        // A capacity of one: requests made while a checkpoint runs fold into one more.
        let (wanted, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("feishu-dedupe-wal".into())
            .spawn(move || checkpointer(own, rx))?;
        conn.wal_hook(Some(note_wal_pages));
        Ok(Checkpoints {
            wanted,
            asked_at: Cell::new(0),
        })
    }

    /// After a commit: asks for a checkpoint once the WAL is long enough, and
    /// checkpoints inline once it is far too long.
    pub(crate) fn committed(&self, conn: &Connection) {
        // 0: no commit since the last call wrote to the log (a transaction failed).
        match self.next(WAL_PAGES.replace(0)) {
            Next::Nothing => {}
            Next::Ask => {
                let _ = self.wanted.try_send(());
            }
            Next::Inline => {
                let _ = checkpoint(conn);
            }
        }
    }

    fn next(&self, pages: c_int) -> Next {
        if pages == 0 {
            return Next::Nothing;
        }
        if pages < self.asked_at.get() {
            // The log was reset: it is written again from its first page.
            self.asked_at.set(0);
        }
        if pages >= BACKSTOP {
            Next::Inline
        } else if pages >= self.asked_at.get() + CHECKPOINT_AT {
            self.asked_at.set(pages);
            Next::Ask
        } else {
            Next::Nothing
        }
    }
}

/// The checkpointer: one PASSIVE checkpoint per request, until the store is gone.
fn checkpointer(conn: Connection, wanted: mpsc::Receiver<()>) {
    // Its checkpoints fsync the WAL before copying and the database after, as the
    // store's own would (`synchronous=NORMAL`).
    let _ = conn.pragma_update(None, "synchronous", "NORMAL");
    while wanted.recv().is_ok() {
        // A failure (the file busy, or gone) is tried again at the next request, and the
        // store thread's backstop bounds the WAL meanwhile.
        let _ = checkpoint(&conn);
    }
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoints() -> (Checkpoints, mpsc::Receiver<()>) {
        let (wanted, rx) = mpsc::sync_channel(1);
        let c = Checkpoints {
            wanted,
            asked_at: Cell::new(0),
        };
        (c, rx)
    }

    #[test]
    fn a_checkpoint_is_asked_for_every_checkpoint_at_pages_until_the_backstop() {
        let (c, _rx) = checkpoints();
        assert_eq!(c.next(0), Next::Nothing, "no commit wrote the log");
        assert_eq!(c.next(CHECKPOINT_AT - 1), Next::Nothing);
        assert_eq!(c.next(CHECKPOINT_AT), Next::Ask);
        // A busy writer keeps the log long: not asked again at every commit.
        assert_eq!(c.next(CHECKPOINT_AT + 100), Next::Nothing);
        assert_eq!(c.next(2 * CHECKPOINT_AT), Next::Ask);
        assert_eq!(c.next(2 * CHECKPOINT_AT + 1), Next::Nothing);
        assert_eq!(c.next(BACKSTOP), Next::Inline);
        // Reset by a checkpoint that caught up: counted from its start again.
        assert_eq!(c.next(10), Next::Nothing);
        assert_eq!(c.next(CHECKPOINT_AT + 10), Next::Ask);
    }

    #[test]
    fn the_checkpointer_copies_the_log_into_the_database_off_the_committing_thread() {
        let path = crate::core::store_sqlite::tests::temp("checkpoint");
        let conn = Connection::open(&path).unwrap();
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        let c = Checkpoints::start(&conn, &path).unwrap();
        let db_len = || std::fs::metadata(&path).unwrap().len();
        let before = db_len();
        // Rows of a page each, a commit per ten, until the log is long enough.
        let mut pages = 0;
        while pages < CHECKPOINT_AT {
            conn.execute_batch("BEGIN").unwrap();
            for _ in 0..10 {
                conn.execute("INSERT INTO t (v) VALUES (zeroblob(4000))", [])
                    .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
            pages = WAL_PAGES.get();
            c.committed(&conn);
        }
        // Nothing but a checkpoint writes the database file in WAL mode, and this
        // thread ran none (its automatic checkpoint is off: the log reached
        // CHECKPOINT_AT pages with the file untouched).
        assert_eq!(db_len(), before);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while db_len() < before + 4000 * CHECKPOINT_AT as u64 / 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint: the database is {} bytes",
                db_len()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
