//! Unique random-looking 128-bit values with no dependency: the
//! `Idempotency-Key`s of `retry` and the boundaries of `multipart` forms.
//!
//! Each value is two SipHash outputs, keyed by the standard library's
//! `RandomState`, over a counter of this process, the process id and the
//! time the first value was made. The standard library seeds `RandomState`
//! from the operating system's secure random source (best effort, as its
//! `HashMap` docs say), so values of other processes and hosts do not
//! follow from these; the counter makes every value of this process a new
//! input, and the process id one of a forked child. They are unique and
//! unpredictable to a peer, not a cryptographic secret.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// A new value, as two halves: never the same twice in one process.
pub(crate) fn unique_128() -> (u64, u64) {
    static SEED: OnceLock<(RandomState, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (state, started) = SEED.get_or_init(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        (RandomState::new(), now.map_or(0, |d| d.as_nanos() as u64))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let half = |lane: u8| {
        let mut hasher = state.build_hasher();
        hasher.write_u8(lane);
        hasher.write_u32(pid);
        hasher.write_u64(*started);
        hasher.write_u64(n);
        hasher.finish()
    };
    (half(0), half(1))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn values_do_not_repeat_and_use_both_halves() {
        let values: HashSet<(u64, u64)> = (0..10_000).map(|_| unique_128()).collect();
        assert_eq!(values.len(), 10_000);
        let highs: HashSet<u64> = values.iter().map(|v| v.0).collect();
        let lows: HashSet<u64> = values.iter().map(|v| v.1).collect();
        assert_eq!((highs.len(), lows.len()), (10_000, 10_000));
    }
}
