//! The owners of the frames' bytes: each keeps the mapping alive and, once
//! the last `Bytes` of its frame is dropped, gives the frame's pages back
//! to the kernel and counts the frame out of those an attempt has in
//! flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::mapping::Mapping;

/// The frames one attempt gave out that their holders have not dropped
/// yet, by the range of the mapping each covers: what the body's last byte
/// waits for, or detaches from the file when the holder keeps them.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    held: Mutex<BTreeMap<usize, usize>>,
}

impl InFlight {
    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, usize>> {
        crate::sync::lock(&self.held)
    }

    /// Counts the frame of `start..end` as given out.
    pub(super) fn gave_out(&self, start: usize, end: usize) {
        self.held().insert(start, end);
    }

    fn dropped(&self, start: usize) {
        self.held().remove(&start);
    }

    /// How many frames are still held.
    pub(super) fn count(&self) -> usize {
        self.held().len()
    }

    /// The ranges still held, adjacent ones merged, in order.
    pub(super) fn ranges(&self) -> Vec<(usize, usize)> {
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (&start, &end) in self.held().iter() {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }
}

/// The owner of one frame's bytes: keeps the mapping alive and, when the
/// last `Bytes` of the frame is dropped, gives its pages back.
pub(super) struct Chunk {
    pub(super) mapping: Arc<Mapping>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) release: bool,
    pub(super) in_flight: Option<Arc<InFlight>>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.mapping.map[self.start..self.end]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.release {
            // SAFETY: `release` is only set for the shared read-only file
            // mappings `MmapBody` makes itself (never for `from_mmap`). For
            // those, MADV_DONTNEED only unmaps the pages from this process;
            // the data stays in the page cache and any later access, by
            // another frame sharing an edge page or by a clone, faults the
            // same bytes back in. `release` skips a mapping with detached
            // pages (anonymous memory, which MADV_DONTNEED would zero).
            unsafe { self.mapping.release(self.start, self.end) };
        }
        if let Some(in_flight) = &self.in_flight {
            in_flight.dropped(self.start);
        }
    }
}

/// The owner of [`Bytes::from`](bytes::Bytes::from)`(MmapBody)`: the whole
/// range, never released, under a read lease where there is one (a writer
/// then waits until the mapping's pages were copied out of the file).
pub(super) struct Whole {
    pub(super) mapping: Arc<Mapping>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Whole {
    /// The whole range of `mapping`, counted as alive for a lease break.
    pub(super) fn new(mapping: Arc<Mapping>, start: usize, end: usize) -> Whole {
        crate::sync::lock(&mapping.leased).whole(true);
        mapping.take_lease();
        Whole {
            mapping,
            start,
            end,
        }
    }
}

impl Drop for Whole {
    fn drop(&mut self) {
        crate::sync::lock(&self.mapping.leased).whole(false);
    }
}

impl AsRef<[u8]> for Whole {
    fn as_ref(&self) -> &[u8] {
        &self.mapping.map[self.start..self.end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_frames_are_counted_and_merged_until_dropped() {
        let in_flight = InFlight::default();
        assert_eq!(in_flight.count(), 0);
        assert!(in_flight.ranges().is_empty());
        in_flight.gave_out(0, 10);
        in_flight.gave_out(10, 20);
        in_flight.gave_out(30, 40);
        assert_eq!(in_flight.count(), 3);
        assert_eq!(in_flight.ranges(), [(0, 20), (30, 40)]);
        in_flight.dropped(10);
        assert_eq!(in_flight.ranges(), [(0, 10), (30, 40)]);
        in_flight.dropped(0);
        in_flight.dropped(30);
        assert_eq!(in_flight.count(), 0);
    }

    /// Frames are given out on one thread and dropped on others, as a
    /// transport's writer task does: the count ends at zero, never below.
    #[test]
    fn frames_dropped_on_other_threads_are_all_counted_out() {
        let in_flight = Arc::new(InFlight::default());
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let rx = Arc::new(Mutex::new(rx));
        let droppers: Vec<_> = (0..4)
            .map(|_| {
                let (in_flight, rx) = (in_flight.clone(), rx.clone());
                std::thread::spawn(move || loop {
                    let next = rx.lock().unwrap().recv();
                    match next {
                        Ok(start) => in_flight.dropped(start),
                        Err(_) => break,
                    }
                })
            })
            .collect();
        for frame in 0..10_000 {
            in_flight.gave_out(frame * 8, frame * 8 + 8);
            tx.send(frame * 8).unwrap();
        }
        drop(tx);
        for dropper in droppers {
            dropper.join().unwrap();
        }
        assert_eq!(in_flight.count(), 0);
    }
}
