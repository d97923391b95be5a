//! The SQLite dedupe store's write pattern alone, for choosing its table layout (not part
//! of the addon; bench/NOTES.md, "SQLite in arrival order"):
//!
//!     cargo run --release --example sqlite_layout -- LAYOUT PAGE_SIZE BURST EVENTS PREFILL
//!
//! Each burst claims `BURST` random 32-hex event ids in one transaction and stores their
//! results in the next, as the store does for a read burst; `PREFILL` rows are there
//! first. `LAYOUT` is
//! - `key`: a WITHOUT ROWID table keyed by `(app_id, event_id)`, the store's first layout;
//! - `arrival`: rows in arrival order, a unique index on the key, its second;
//! - `log`: rows appended, no index, the key's latest row found in memory: the store's
//!   layout now.
//!
//! The store's PRAGMAs of the time (a 16 MiB cache; the store now keeps SQLite's 2 MiB
//! default, which the log does not need more than); `CHECKPOINT=<pages>` sets
//! `wal_autocheckpoint` (0: none). Prints microseconds per event, wall and CPU (the
//! process's, Linux only).

use std::time::Instant;

use rusqlite::{params, Connection};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [layout, page, burst, events, prefill] = args.as_slice() else {
        eprintln!("usage: sqlite_layout key|arrival PAGE_SIZE BURST EVENTS PREFILL");
        std::process::exit(2);
    };
    let (arrival, log) = match layout.as_str() {
        "key" => (false, false),
        "arrival" => (true, false),
        "log" => (true, true),
        other => panic!("layout {other}: key, arrival or log"),
    };
    let number = |s: &str| s.parse::<usize>().expect("a number");
    let (page, burst, events, prefill) =
        (number(page), number(burst), number(events), number(prefill));
    let checkpoint: i64 = std::env::var("CHECKPOINT")
        .map(|v| v.parse().expect("CHECKPOINT: a number of pages"))
        .unwrap_or(10_000);

    let dir = std::env::temp_dir().join(format!("sqlite-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dedupe.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "page_size", page as i64).unwrap();
    let _: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.pragma_update(None, "cache_size", -16_384).unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", checkpoint)
        .unwrap();
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .unwrap();
    conn.execute_batch(if log {
        "CREATE TABLE d (id INTEGER PRIMARY KEY, app_id TEXT NOT NULL, event_id TEXT NOT NULL, value BLOB NOT NULL, expires_at INTEGER NOT NULL);"
    } else if arrival {
        "CREATE TABLE d (id INTEGER PRIMARY KEY, app_id TEXT NOT NULL, event_id TEXT NOT NULL, value BLOB NOT NULL, expires_at INTEGER NOT NULL);
         CREATE UNIQUE INDEX d_key ON d (app_id, event_id);"
    } else {
        "CREATE TABLE d (app_id TEXT NOT NULL, event_id TEXT NOT NULL, value BLOB NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (app_id, event_id)) WITHOUT ROWID;"
    })
    .unwrap();

    let app = "cli_a1b2c3d4e5f6a7b8";
    let mut seed = 42u64;
    let mut id = move || format!("{:016x}{:016x}", splitmix(&mut seed), splitmix(&mut seed));
    let (claim, result) = (vec![b'c'; 40], vec![b'r'; 60]);
    let mut insert = conn
        .prepare("INSERT INTO d (app_id, event_id, value, expires_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")
        .unwrap();
    let mut update = conn
        .prepare("UPDATE d SET value = ?3, expires_at = ?4 WHERE app_id = ?1 AND event_id = ?2")
        .unwrap();

    if log {
        run_log(&conn, app, &mut id, burst, events, prefill, &claim, &result);
        drop(insert);
        drop(update);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    conn.execute_batch("BEGIN").unwrap();
    for _ in 0..prefill {
        insert.execute(params![app, id(), result, 1]).unwrap();
    }
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();

    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    let mut done = 0;
    while done < events {
        let ids: Vec<String> = (0..burst).map(|_| id()).collect();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for k in &ids {
            insert.execute(params![app, k, claim, 2]).unwrap();
        }
        conn.execute_batch("COMMIT; BEGIN IMMEDIATE").unwrap();
        for k in &ids {
            update.execute(params![app, k, result, 3]).unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        done += burst;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    println!(
        "{layout} page={page} burst={burst} prefill={prefill} checkpoint={checkpoint}: {:.2} µs/event wall, {} µs/event CPU, {:.0} events/s",
        wall * 1e6 / done as f64,
        cpu.map_or("?".into(), |c| format!("{:.2}", c * 1e6 / done as f64)),
        done as f64 / wall
    );
    drop(insert);
    drop(update);
    drop(conn);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `log` layout: every claim and result appends a row, and the key's latest row is
/// found in a map in memory, read from the table first and caught up (the rows after the
/// last one read) at the start of each transaction, as the store does
/// (`src/core/store_sqlite.rs`). The time includes reading the prefilled rows.
#[allow(clippy::too_many_arguments)]
fn run_log(
    conn: &Connection,
    app: &str,
    id: &mut impl FnMut() -> String,
    burst: usize,
    events: usize,
    prefill: usize,
    claim: &[u8],
    result: &[u8],
) {
    use std::hash::BuildHasher;
    let hasher = std::collections::hash_map::RandomState::new();
    let hash = |k: &str| hasher.hash_one(k);
    let mut map: std::collections::HashMap<u64, (i64, i64)> = Default::default();
    let mut append = conn
        .prepare("INSERT INTO d (app_id, event_id, value, expires_at) VALUES (?1, ?2, ?3, ?4)")
        .unwrap();
    let mut tail = conn
        .prepare("SELECT id, event_id, expires_at FROM d WHERE id > ?1 AND app_id = ?2")
        .unwrap();
    conn.execute_batch("BEGIN").unwrap();
    for _ in 0..prefill {
        append.execute(params![app, id(), result, 1]).unwrap();
    }
    conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    // Startup: the map is loaded from the whole table.
    let mut seen = 0i64;
    let mut catch_up = |map: &mut std::collections::HashMap<u64, (i64, i64)>, seen: &mut i64| {
        let mut rows = tail.query(params![*seen, app]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let (rowid, k, exp): (i64, String, i64) =
                (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap());
            map.insert(hash(&k), (rowid, exp));
            *seen = rowid;
        }
    };
    catch_up(&mut map, &mut seen);
    let loaded = started.elapsed();
    let mut done = 0;
    while done < events {
        let ids: Vec<String> = (0..burst).map(|_| id()).collect();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        catch_up(&mut map, &mut seen);
        for k in &ids {
            let h = hash(k);
            assert!(map.get(&h).is_none_or(|e| e.1 < 2));
            append.execute(params![app, k, claim, 2]).unwrap();
            seen = conn.last_insert_rowid();
            map.insert(h, (seen, 2));
        }
        conn.execute_batch("COMMIT; BEGIN IMMEDIATE").unwrap();
        catch_up(&mut map, &mut seen);
        for k in &ids {
            append.execute(params![app, k, result, 3]).unwrap();
            seen = conn.last_insert_rowid();
            map.insert(hash(k), (seen, 3));
        }
        conn.execute_batch("COMMIT").unwrap();
        done += burst;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    println!(
        "log burst={burst} prefill={prefill} (loaded in {loaded:?}): {:.2} µs/event wall, {} µs/event CPU, {:.0} events/s",
        wall * 1e6 / done as f64,
        cpu.map_or("?".into(), |c| format!("{:.2}", c * 1e6 / done as f64)),
        done as f64 / wall
    );
}

/// SplitMix64: random-looking, repeatable ids, as the emulator's.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The process's user + system CPU time (`/proc/self/stat`, clock ticks of 10 ms).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
