//! Sent pages given back to the kernel in batches: one `madvise` per
//! [`BATCH`] of adjacent frames, not one per frame.
//!
//! Each `MADV_DONTNEED` ends in a TLB flush, and in a process with more
//! than one thread (tokio's blocking pool, the lease listener) that flush
//! interrupts every other CPU the process ran on and waits for it. With
//! small frames (many bodies sharing a worker hand out 64 KiB each) that
//! wait was a sixth of the sending thread's time; in batches it is gone,
//! and a body keeps at most one batch more mapped.

use crate::sync::lock;
use std::sync::Mutex;

/// Bytes of sent frames gathered before they are given back at once: the
/// default frame's length, so that a body of default frames gives each
/// frame back as it goes, as before.
pub(super) const BATCH: usize = 1 << 20;

/// Ranges gathered at once: one per body streaming from the mapping (a
/// file served to several clients, slices of it sent at once), up to
/// this many; past it the oldest is given back as it is.
const SLOTS: usize = 8;

/// The ranges of a mapping whose frames were dropped but whose pages
/// were not given back yet, oldest first.
#[derive(Debug, Default)]
pub(super) struct Pending(Mutex<Vec<(usize, usize)>>);

/// What to give back now: up to two ranges (the oldest one gathered, when
/// no slot is left for a range apart, and the one the new frame joined,
/// once it is full).
pub(super) type Due = [Option<(usize, usize)>; 2];

impl Pending {
    /// Adds the dropped frame `start..end` of a mapping `len` long to the
    /// range it touches (or to a range of its own), and says what to give
    /// back now: that range once it holds [`BATCH`] bytes or reaches the
    /// mapping's end (nothing comes after it), and the oldest range when
    /// a new one finds no slot.
    pub(super) fn add(&self, start: usize, end: usize, len: usize) -> Due {
        let mut pending = lock(&self.0);
        let mut due = [None, None];
        let at = match pending
            .iter()
            .position(|&(from, to)| start <= to && from <= end)
        {
            Some(at) => {
                let (from, to) = pending[at];
                pending[at] = (from.min(start), to.max(end));
                at
            }
            None => {
                if pending.len() == SLOTS {
                    due[0] = Some(pending.remove(0));
                }
                pending.push((start, end));
                pending.len() - 1
            }
        };
        let (from, to) = pending[at];
        if to - from >= BATCH || to >= len {
            due[1] = Some(pending.remove(at));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: usize = 1 << 10;

    #[test]
    fn adjacent_frames_are_given_back_once_a_batch_is_full() {
        let pending = Pending::default();
        let len = 64 * BATCH;
        let frame = 64 * K;
        let mut given = Vec::new();
        for i in 0..(2 * BATCH / frame) {
            given.extend(
                pending
                    .add(i * frame, (i + 1) * frame, len)
                    .into_iter()
                    .flatten(),
            );
        }
        assert_eq!(given, [(0, BATCH), (BATCH, 2 * BATCH)]);
        assert!(lock(&pending.0).is_empty());
    }

    #[test]
    fn the_last_frame_gives_back_what_is_gathered() {
        let pending = Pending::default();
        assert_eq!(pending.add(0, 64 * K, 100 * K), [None, None]);
        assert_eq!(
            pending.add(64 * K, 100 * K, 100 * K),
            [None, Some((0, 100 * K))]
        );
    }

    #[test]
    fn bodies_of_one_mapping_gather_apart_until_the_slots_run_out() {
        let pending = Pending::default();
        let len = 64 * BATCH;
        let frame = 64 * K;
        // SLOTS slices of the mapping, streaming at once.
        for body in 0..SLOTS {
            assert_eq!(
                pending.add(body * BATCH, body * BATCH + frame, len),
                [None, None]
            );
        }
        // Out of order but touching: joined to its range.
        assert_eq!(pending.add(BATCH - frame, BATCH, len), [None, None]);
        assert_eq!(lock(&pending.0)[1], (BATCH - frame, BATCH + frame));
        // One body more: the oldest range is given back as it is.
        assert_eq!(
            pending.add(40 * BATCH, 40 * BATCH + frame, len),
            [Some((0, frame)), None]
        );
        assert_eq!(lock(&pending.0).len(), SLOTS);
    }

    #[test]
    fn concurrent_drops_give_every_byte_back_once() {
        // Frames dropped from several threads in any order: what is
        // given back, plus what is left pending, covers every frame.
        let pending = std::sync::Arc::new(Pending::default());
        let frame = 64 * K;
        let frames = 256;
        let len = frames * frame;
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let pending = std::sync::Arc::clone(&pending);
                std::thread::spawn(move || {
                    let mut given = Vec::new();
                    for i in (t..frames).step_by(4) {
                        given.extend(
                            pending
                                .add(i * frame, (i + 1) * frame, len)
                                .into_iter()
                                .flatten(),
                        );
                    }
                    given
                })
            })
            .collect();
        let mut covered = vec![false; frames];
        let mut given: Vec<(usize, usize)> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        given.extend(lock(&pending.0).iter().copied());
        for (from, to) in given {
            for seen in &mut covered[from / frame..to / frame] {
                *seen = true;
            }
        }
        assert!(covered.iter().all(|&c| c), "a frame was never given back");
    }
}
