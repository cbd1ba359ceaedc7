//! The mappings the `SIGBUS` handler may repair: a lock-free table of
//! address ranges that a signal handler can read at any moment.
//!
//! Registering and unregistering happen on ordinary threads; lookups happen
//! in the handler, which may interrupt a thread halfway through either.
//! Each slot is a sequence lock: `seq` is odd while the slot is being
//! written, so a reader that sees it odd or changed across its read skips
//! the slot. A slot being written can never be the mapping that faulted: a
//! mapping is registered before any of its bytes are handed out and
//! unregistered only once none is left.

use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// One registered mapping: the address range the handler may repair.
pub(super) struct Slot {
    seq: AtomicUsize,
    live: AtomicBool,
    start: AtomicUsize,
    len: AtomicUsize,
    poisoned: AtomicBool,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            seq: AtomicUsize::new(0),
            live: AtomicBool::new(false),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Takes the slot's write side if the slot's liveness is `want_live`
    /// and nobody else holds it; returns the even sequence number it had.
    fn claim(&self, want_live: bool) -> Option<usize> {
        let seq = self.seq.load(Ordering::Acquire);
        if seq & 1 == 1 || self.live.load(Ordering::Relaxed) != want_live {
            return None;
        }
        self.seq
            .compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        fence(Ordering::Release);
        Some(seq)
    }

    /// The slot's range, if it is live and was not being written meanwhile.
    #[cfg_attr(any(not(unix), mmap_body_portable), allow(dead_code))]
    pub(super) fn range(&self) -> Option<(usize, usize)> {
        let seq = self.seq.load(Ordering::Acquire);
        if seq & 1 == 1 {
            return None;
        }
        let live = self.live.load(Ordering::Relaxed);
        let start = self.start.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (live && self.seq.load(Ordering::Relaxed) == seq).then_some((start, len))
    }

    /// Marks the mapping as having had a page replaced by zeros. Called by
    /// the handler before the zeros can be read, so that whoever reads them
    /// and then checks sees the mark.
    #[cfg_attr(any(not(unix), mmap_body_portable), allow(dead_code))]
    pub(super) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Slots come in blocks that are never freed: the handler walks them
/// without locks, so a block must outlive every reader. There are as many
/// blocks as the most mappings alive at once ever needed.
struct Block {
    slots: [Slot; 64],
    next: AtomicPtr<Block>,
}

static FIRST: Block = Block {
    slots: [const { Slot::new() }; 64],
    next: AtomicPtr::new(std::ptr::null_mut()),
};

fn blocks() -> impl Iterator<Item = &'static Block> {
    std::iter::successors(Some(&FIRST), |block| {
        let next = block.next.load(Ordering::Acquire);
        // SAFETY: `next` is null or a block leaked by `Region::register`,
        // which lives for the rest of the process.
        unsafe { next.as_ref() }
    })
}

/// The registered mapping that holds `addr`, if any. Async-signal-safe:
/// atomic loads only, no allocation, no lock.
#[cfg_attr(any(not(unix), mmap_body_portable), allow(dead_code))]
pub(super) fn find(addr: usize) -> Option<&'static Slot> {
    blocks().flat_map(|block| block.slots.iter()).find(|slot| {
        slot.range()
            .is_some_and(|(start, len)| addr >= start && addr - start < len)
    })
}

/// A mapping registered with the handler for as long as this lives.
#[derive(Debug)]
pub(crate) struct Region {
    slot: &'static Slot,
}

impl Region {
    /// Registers `len` bytes at `start`; `None` for an empty range. Drop the
    /// region before unmapping the range.
    pub(crate) fn register(start: *const u8, len: usize) -> Option<Region> {
        if len == 0 {
            return None;
        }
        loop {
            for block in blocks() {
                for slot in &block.slots {
                    let Some(seq) = slot.claim(false) else {
                        continue;
                    };
                    slot.start.store(start as usize, Ordering::Relaxed);
                    slot.len.store(len, Ordering::Relaxed);
                    slot.poisoned.store(false, Ordering::Relaxed);
                    slot.live.store(true, Ordering::Relaxed);
                    slot.seq.store(seq + 2, Ordering::Release);
                    return Some(Region { slot });
                }
            }
            // Every slot is taken: add a block at the end and look again.
            let fresh = Box::into_raw(Box::new(Block {
                slots: [const { Slot::new() }; 64],
                next: AtomicPtr::new(std::ptr::null_mut()),
            }));
            let last = blocks().last().unwrap_or(&FIRST);
            if last
                .next
                .compare_exchange(
                    std::ptr::null_mut(),
                    fresh,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                // Another thread added one first: use that, free ours.
                // SAFETY: `fresh` came from `Box::into_raw` above and was
                // never shared.
                drop(unsafe { Box::from_raw(fresh) });
            }
        }
    }

    /// `true` once the handler replaced a page of this mapping with zeros.
    pub(crate) fn poisoned(&self) -> bool {
        self.slot.poisoned.load(Ordering::Acquire)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let seq = loop {
            if let Some(seq) = self.slot.claim(true) {
                break seq;
            }
            std::hint::spin_loop();
        };
        self.slot.live.store(false, Ordering::Relaxed);
        self.slot.start.store(0, Ordering::Relaxed);
        self.slot.len.store(0, Ordering::Relaxed);
        self.slot.seq.store(seq + 2, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// Addresses in the upper half of the address space: no user-space
    /// mapping of any other test can ever be there, so lookups of them see
    /// only this test's regions.
    #[cfg(target_pointer_width = "64")]
    fn space(thread: usize) -> usize {
        0xffff_8000_0000_0000 + (thread << 32)
    }

    /// On 32-bit targets: above 3 GiB, the kernel's part.
    #[cfg(not(target_pointer_width = "64"))]
    fn space(thread: usize) -> usize {
        0xc000_0000 + (thread << 16)
    }

    #[test]
    fn a_region_is_found_while_it_lives_and_not_after() {
        let base = space(0xfff);
        let region = Region::register(base as *const u8, 4096).unwrap();
        let slot = find(base + 100).expect("found while registered");
        assert_eq!(slot.range(), Some((base, 4096)));
        assert!(find(base + 4096).is_none(), "one past the end");
        assert!(find(base - 1).is_none(), "one before the start");
        assert!(!region.poisoned());
        slot.poison();
        assert!(region.poisoned());
        drop(region);
        assert!(find(base + 100).is_none(), "gone once dropped");
        // A new region in the same slot starts unpoisoned.
        let again = Region::register(base as *const u8, 4096).unwrap();
        assert!(!again.poisoned());
        assert!(Region::register(base as *const u8, 0).is_none());
    }

    #[test]
    fn more_regions_than_a_block_holds_are_all_found() {
        let base = space(0xffe);
        let regions: Vec<Region> = (0..200)
            .map(|i| Region::register((base + i * 8192) as *const u8, 4096).unwrap())
            .collect();
        for i in 0..200 {
            let slot = find(base + i * 8192 + 1).expect("every region is found");
            assert_eq!(slot.range(), Some((base + i * 8192, 4096)));
            assert!(find(base + i * 8192 + 4096).is_none(), "the gap");
        }
        drop(regions);
        assert!((0..200).all(|i| find(base + i * 8192).is_none()));
    }

    /// Threads register, look up and unregister regions all at once, as
    /// bodies open and close while the handler reads. Each thread owns an
    /// address space of its own: a lookup of one of its live regions must
    /// find exactly that range, a lookup beside it nothing. (Seeded bugs
    /// this catches: a claim that does not compare-and-swap hands one slot
    /// to two threads; a reader that ignores the sequence sees torn or
    /// stale ranges.)
    #[test]
    fn concurrent_register_unregister_and_lookups_agree() {
        let stop = Arc::new(AtomicBool::new(false));
        let (done, results) = std::sync::mpsc::channel();
        for t in 0..8 {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let base = space(t);
                let mut rounds = 0u64;
                while rounds < 20_000 || (!stop.load(Ordering::Relaxed) && rounds < 200_000) {
                    let n = (rounds % 5 + 1) as usize;
                    let regions: Vec<(usize, Region)> = (0..n)
                        .map(|i| {
                            let start = base + i * 0x10_0000 + (rounds as usize % 7) * 4096;
                            let len = 4096 * (i + 1);
                            (start, Region::register(start as *const u8, len).unwrap())
                        })
                        .collect();
                    for (i, (start, _)) in regions.iter().enumerate() {
                        let len = 4096 * (i + 1);
                        let slot = find(start + len / 2).expect("a live region is found");
                        assert_eq!(slot.range(), Some((*start, len)), "thread {t}");
                        assert!(find(start + len).is_none(), "thread {t}: past the end");
                    }
                    drop(regions);
                    assert!(find(base + 4096).is_none(), "thread {t}: unregistered");
                    rounds += 1;
                }
                let _ = done.send(rounds);
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        // A thread that saw a wrong range panics and never reports; one
        // whose slot was taken by another spins in `Drop`: both time out.
        for _ in 0..8 {
            let rounds = results
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("every thread finished, seeing only right ranges");
            assert!(rounds >= 20_000);
        }
    }
}
