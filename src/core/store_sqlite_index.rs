//! The SQLite store's index in memory: for each event id of the app, where the latest row
//! of its log is (`store_sqlite.rs`) and until when it counts.
//!
//! The log in the file has no index of its own. Feishu's event ids are random, so a
//! B-tree on them takes every claim to a page of its own: about one 4 KiB WAL frame per
//! event, which was most of the store's cost (bench/NOTES.md, "SQLite as a log"). Here a
//! claim and a result each append a row, a burst's rows share a few pages, and this map
//! answers which row is the key's. Each store thread keeps its own map and reads the
//! rows other processes appended since it last looked, under the write lock, before
//! deciding anything (`catch_up`), so the map is exactly the file's state when it is
//! used.
//!
//! A Feishu event id is 32 lowercase hex digits, kept as the `u128` it spells (16 bytes,
//! exact). Any other id is kept as its text. With its entry a bucket is 33 bytes, and a
//! hash table has one to two buckets per entry: a million live events (12 h at 23
//! events/s) take about 70 MB. Entries that expired are forgotten at each sweep.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

/// Where a key's latest row is, and when it stops counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: i64,
    pub expires_at: i64,
}

#[derive(Default)]
pub(crate) struct LogIndex {
    /// Ids of 32 lowercase hex digits, by value. Random already, so FxHash's one multiply
    /// spreads them as well as SipHash would, at a fraction of its cost.
    hex: FxHashMap<u128, Entry>,
    /// Every other id (the std hasher: these are not Feishu's and may be anyone's).
    text: HashMap<Box<str>, Entry>,
    /// The id of the last row read or written: the next catch-up reads the rows after it.
    pub seen: i64,
    /// The entries this transaction changed, as they were before, while `undo` is on.
    undo: Vec<(Box<str>, Option<Entry>)>,
    seen_before: i64,
}

/// `key` as the u128 it spells when it is exactly 32 lowercase hex digits (uppercase
/// would give a second spelling of the same number).
fn hex(key: &str) -> Option<u128> {
    if key.len() != 32 {
        return None;
    }
    // One pass, no radix or sign handling: this runs twice per store operation, and
    // `u128::from_str_radix` was 1 % of a SQLite burst's samples on its own.
    key.bytes().try_fold(0u128, |n, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(digit))
    })
}

impl LogIndex {
    /// The key's entry, live or not.
    pub fn get(&self, key: &str) -> Option<Entry> {
        match hex(key) {
            Some(n) => self.hex.get(&n).copied(),
            None => self.text.get(key).copied(),
        }
    }

    /// Sets (`Some`) or removes (`None`) the key's entry, without undo: rows already
    /// committed, by us or by another process.
    pub fn set(&mut self, key: &str, entry: Option<Entry>) -> Option<Entry> {
        match (hex(key), entry) {
            (Some(n), Some(e)) => self.hex.insert(n, e),
            (Some(n), None) => self.hex.remove(&n),
            (None, Some(e)) => self.text.insert(key.into(), e),
            (None, None) => self.text.remove(key),
        }
    }

    /// Starts a transaction: the changes made through [`LogIndex::change`] from now on
    /// are undone by [`LogIndex::rollback`].
    pub fn begin(&mut self) {
        self.undo.clear();
        self.seen_before = self.seen;
    }

    /// Sets the key's entry for a row this transaction wrote, remembering the old one.
    pub fn change(&mut self, key: &str, entry: Option<Entry>) {
        let before = self.set(key, entry);
        self.undo.push((key.into(), before));
    }

    /// Puts back what this transaction changed: its rows were rolled back, and their ids
    /// will be used again.
    pub fn rollback(&mut self) {
        while let Some((key, before)) = self.undo.pop() {
            self.set(&key, before);
        }
        self.seen = self.seen_before;
    }

    /// Forgets the entries that no longer count: the map holds what is live, plus what
    /// expired since the last prune.
    pub fn prune(&mut self, now: i64) {
        self.hex.retain(|_, e| e.expires_at > now);
        self.text.retain(|_, e| e.expires_at > now);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.hex.len() + self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "5e3702a84e847582be8db7fb73283c02";

    fn entry(id: i64) -> Option<Entry> {
        Some(Entry {
            id,
            expires_at: 100,
        })
    }

    #[test]
    fn hex_ids_are_kept_as_numbers_and_other_ids_as_text_exactly() {
        let mut index = LogIndex::default();
        index.set(HEX, entry(1));
        index.set(&HEX.to_uppercase(), entry(2));
        index.set("e1", entry(3));
        index.set(&HEX[..31], entry(4));
        assert_eq!((index.hex.len(), index.text.len()), (1, 3));
        assert_eq!(index.get(HEX), entry(1));
        assert_eq!(index.get(&HEX.to_uppercase()), entry(2));
        assert_eq!(index.get("e1"), entry(3));
        assert_eq!(index.get(&HEX[..31]), entry(4));
        assert_eq!(index.get("e2"), None);
        assert_eq!(hex(HEX), Some(0x5e3702a84e847582be8db7fb73283c02));
        assert_eq!(hex("+e3702a84e847582be8db7fb73283c02"), None);
    }

    #[test]
    fn a_rolled_back_transaction_leaves_the_entries_and_seen_as_they_were() {
        let mut index = LogIndex::default();
        index.set(HEX, entry(1));
        index.seen = 1;
        index.begin();
        index.change(HEX, entry(2));
        index.change("e1", entry(3));
        index.change(HEX, None);
        index.seen = 3;
        index.rollback();
        assert_eq!(index.get(HEX), entry(1));
        assert_eq!(index.get("e1"), None);
        assert_eq!(index.seen, 1);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_prune_keeps_only_what_is_live() {
        let mut index = LogIndex::default();
        index.set(HEX, entry(1));
        index.set(
            "e1",
            Some(Entry {
                id: 2,
                expires_at: 300,
            }),
        );
        index.prune(100);
        assert_eq!(index.get(HEX), None);
        assert_eq!(index.get("e1").map(|e| e.id), Some(2));
    }
}
