//! Maps keyed by sequence numbers the transport hands out itself: hashing them with a
//! multiply instead of SipHash is safe (nobody outside chooses the keys) and is cheaper on
//! the per-event path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a `u64` with one multiply (Fibonacci hashing).
#[derive(Default)]
pub struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map from sequence numbers to `V`.
pub type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;
