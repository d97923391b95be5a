//! Maps keyed by sequence numbers the transport hands out itself: hashed with
//! rustc-hash's FxHash (one multiply per key) instead of SipHash, which is safe because
//! nobody outside chooses the keys, and cheaper on the per-event path. The same hasher
//! keys dedupe's table (src/core/dedupe.rs) and mixes the emulator's event ids
//! (`IdHasher` in src/emulator/mod.rs): one hasher in the crate.

/// A map from sequence numbers to `V`.
pub type SeqMap<V> = rustc_hash::FxHashMap<u64, V>;
