//! Sent pages given back to the kernel in batches: one `madvise` per
//! [`BATCH`] of adjacent frames, not one per frame.
//!
//! Each `MADV_DONTNEED` ends in a TLB flush, and in a process with more
//! than one thread (tokio's blocking pool, the lease listener) that flush
//! interrupts every other CPU the process ran on and waits for it. With
//! small frames (many bodies sharing a worker hand out 64 KiB each) that
//! wait was a sixth of the sending thread's time; in batches it is gone.
//! A mapping keeps at most [`SLOTS`] ranges of sent pages mapped, each
//! under a batch plus a frame, beyond the frames still held.

use crate::sync::lock;
use std::sync::Mutex;

/// Bytes of sent frames gathered before they are given back at once: the
/// default frame's length, so that a body of default frames gives each
/// frame back as it goes, as before.
pub(super) const BATCH: usize = 1 << 20;

/// Ranges gathered at once: one per body streaming from the mapping (a
/// file served to several clients, slices of it sent at once), up to
/// this many; past it the range least recently added to is given back as
/// it is (more bodies than this on one mapping give back about one frame
/// at a time, as without batches).
const SLOTS: usize = 8;

/// The ranges of a mapping whose frames were dropped but whose pages
/// were not given back yet, the one added to last at the end.
#[derive(Debug, Default)]
pub(super) struct Pending(Mutex<Vec<(usize, usize)>>);

/// What to give back now: up to two ranges (the one least recently added
/// to, when no slot is left for a range apart, and the one the new frame
/// joined, once it is full).
pub(super) type Due = [Option<(usize, usize)>; 2];

impl Pending {
    /// Adds the dropped frame `start..end` of a mapping `len` long to the
    /// ranges it touches (joining two that it bridges, as frames dropped
    /// out of order do) or to a range of its own, and says what to give
    /// back now: that range once it holds [`BATCH`] bytes or reaches the
    /// mapping's end (nothing comes after it), and the range least
    /// recently added to when a new one finds no slot.
    pub(super) fn add(&self, start: usize, end: usize, len: usize) -> Due {
        let mut pending = lock(&self.0);
        let mut due = [None, None];
        let (mut from, mut to) = (start, end);
        let before = pending.len();
        // Every range the frame touches joins it.
        pending.retain(|&(a, b)| {
            let touches = start <= b && a <= end;
            if touches {
                (from, to) = (from.min(a), to.max(b));
            }
            !touches
        });
        if pending.len() == before && pending.len() == SLOTS {
            due[0] = Some(pending.remove(0));
        }
        if to - from >= BATCH || to >= len {
            due[1] = Some((from, to));
        } else {
            pending.push((from, to));
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
        // Out of order but touching: joined to its range, now the one
        // added to last.
        assert_eq!(pending.add(BATCH - frame, BATCH, len), [None, None]);
        assert_eq!(
            lock(&pending.0).last(),
            Some(&(BATCH - frame, BATCH + frame))
        );
        // Body 0 goes on; then one body more: the range least recently
        // added to (body 2's) is given back as it is, not body 0's.
        assert_eq!(pending.add(frame, 2 * frame, len), [None, None]);
        assert_eq!(
            pending.add(40 * BATCH, 40 * BATCH + frame, len),
            [Some((2 * BATCH, 2 * BATCH + frame)), None]
        );
        assert_eq!(lock(&pending.0).len(), SLOTS);
        assert!(lock(&pending.0).contains(&(0, 2 * frame)));
    }

    #[test]
    fn a_frame_dropped_late_joins_the_ranges_on_both_sides() {
        let pending = Pending::default();
        let len = 64 * BATCH;
        let frame = 64 * K;
        assert_eq!(pending.add(0, frame, len), [None, None]);
        assert_eq!(pending.add(2 * frame, 3 * frame, len), [None, None]);
        assert_eq!(lock(&pending.0).len(), 2);
        // The frame between them, dropped last: one range again, which
        // goes on growing to a batch.
        assert_eq!(pending.add(frame, 2 * frame, len), [None, None]);
        assert_eq!(*lock(&pending.0), [(0, 3 * frame)]);
        let mut given = Vec::new();
        for i in 3..(BATCH / frame) {
            given.extend(
                pending
                    .add(i * frame, (i + 1) * frame, len)
                    .into_iter()
                    .flatten(),
            );
        }
        assert_eq!(given, [(0, BATCH)]);
        assert!(lock(&pending.0).is_empty());
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

    /// Kilobytes resident of the mapping at `base..base + len` (all its
    /// pieces: a detach splits it), from `/proc/self/smaps`.
    #[cfg(all(target_os = "linux", not(mmap_body_portable)))]
    fn resident_kib(base: usize, len: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut kib = 0;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = base <= a && b <= base + len;
                    continue;
                }
            }
            if let (true, Some(rss)) = (inside, line.strip_prefix("Rss:")) {
                kib += rss
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<usize>()
                    .unwrap();
            }
        }
        kib
    }

    /// Pages detached from the file (private copies that frames still
    /// hold) are never given back: `MADV_DONTNEED` would turn them into
    /// zeros under those frames. The whole steps around them are.
    #[cfg(all(target_os = "linux", not(mmap_body_portable)))]
    #[test]
    fn giving_back_skips_the_detached_pages_and_only_them() {
        let len = 1 << 20;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        // SAFETY: the temp file is private to this test.
        let body = unsafe { crate::MmapBody::from_file(file) }.unwrap();
        let mapping = &body.mapping;
        let base = mapping.map.as_ptr() as usize;
        assert!(mapping.map[..] == bytes[..]);
        let (a, b) = (200 << 10, 300 << 10);
        mapping.detach(&[(a, b)]).unwrap();
        assert!(resident_kib(base, len) >= 1000, "all of it was read");
        // SAFETY: `MmapBody`'s own shared, read-only mapping of a file.
        unsafe { mapping.release_now(0, len) };
        // The detached pages keep their bytes; the steps that hold none of
        // them were given back: what stays is the detached range and the
        // two 64 KiB steps it shares with the file's pages.
        assert!(
            mapping.map[a..b] == bytes[a..b],
            "a detached page was given back"
        );
        let kept = resident_kib(base, len);
        assert!(kept <= 100 + 2 * 64, "{kept} KiB still mapped");
        // The rest reads back from the file.
        assert!(mapping.map[..] == bytes[..], "the file's bytes read back");
    }
}
