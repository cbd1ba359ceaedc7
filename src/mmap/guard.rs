//! Containing `SIGBUS` from files truncated under a mapping.
//!
//! When a mapped file is truncated, the pages past its new end are no
//! longer backed by anything. The kernel turns a read of them into an
//! `EFAULT` when it does the reading itself (a `write`/`writev` of a frame
//! to a plain TCP socket, which is how hyper sends HTTP/1.1), but into a
//! `SIGBUS` signal when a user-space copy reads them: h2's framing of
//! HTTP/2 `DATA`, a TLS stack's encryption, anything that copies a frame.
//! The default action of `SIGBUS` kills the process, and no check made
//! before a frame is handed out can stop a reader that comes later.
//!
//! [`install`] closes that gap the way the JVM does for its mapped buffers
//! and some databases do for theirs: a process-wide `SIGBUS` handler that
//! acts only on faults inside mappings made by this crate. For such a
//! fault it maps a page of zeros over the missing page, marks the mapping
//! *poisoned*, and returns, so the reader gets zeros instead of a signal.
//! Every other `SIGBUS` goes to the handler that was there before (Rust's
//! own, which reports stack overflows, or the default, which ends the
//! process as it would have without this one).
//!
//! Zeros must never reach a peer as if they were the file, so an
//! [`MmapBody`](crate::MmapBody) in a process with the handler installed
//! ends its stream only after:
//!
//! 1. every frame it gave out has been dropped (hyper drops a frame once it
//!    has written or copied it), so every read of the mapping is over;
//! 2. the mapping is checked not to be poisoned, and the file (`fstat`) to
//!    be as long and as old as when it was mapped;
//! 3. the body's last byte, held back until then, is copied and sent.
//!
//! A poisoned or changed file ends the body with
//! [`ErrorKind::Truncated`](crate::ErrorKind::Truncated) or
//! [`ErrorKind::Modified`](crate::ErrorKind::Modified) instead: over
//! HTTP/2 hyper resets the stream, over HTTP/1.1 the connection is closed
//! short of its `Content-Length`. Either way the receiver never gets a
//! complete body.
//!
//! # What holds, with and without it
//!
//! | a file truncated while it is sent | without [`install`] | with [`install`] |
//! |---|---|---|
//! | HTTP/1.1, plain TCP (the kernel reads) | an error (`Truncated`, or hyper's write error for `EFAULT`) | the same |
//! | HTTP/2, TLS, any user-space copy | the process is killed by `SIGBUS` unless the change is seen by the `fstat` before a frame | an error; the process lives |
//! | the receiver gets a complete body | no, except in the instant between the last check and the last read | never |
//! | a file changed in place, same size | `Modified` if the modification time changed before the last check | the same, and checked after the last read |
//!
//! # Limits
//!
//! - A consumer that keeps frames until the stream ends (such as
//!   `http_body_util::BodyExt::collect` on an `MmapBody` itself) would wait
//!   forever for them to be dropped; read a whole body in memory with
//!   `Bytes::from(body)` instead, or don't install the handler in that
//!   process. hyper, h2, tower-http's layers and TLS stacks drop frames as
//!   they send them.
//! - `Bytes::from(MmapBody)` is one frame that lives as long as its holder:
//!   a truncation reads as zeros without killing the process, but nothing
//!   checks it after it was made.
//! - It is one handler for the process: code that later replaces the
//!   `SIGBUS` handler without chaining to the one it found turns it off.
//!   Install it early, before other threads start, as with any signal
//!   handler.

use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Installs the `SIGBUS` handler for the whole process (see the
/// [module docs](self)). Calling it again does nothing.
///
/// # Errors
///
/// The error of `sigaction(2)`; on platforms without `SIGBUS` handling
/// (everything but Unix, and Unix built with `--cfg mmap_body_portable`)
/// [`io::ErrorKind::Unsupported`].
///
/// # Example
///
/// ```
/// // Early in `main`, before threads start:
/// # #[cfg(unix)] {
/// mmap_body::guard::install()?;
/// assert!(mmap_body::guard::is_installed());
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn install() -> io::Result<()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _once = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if is_installed() {
        return Ok(());
    }
    platform::install()?;
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

/// `true` once [`install`] succeeded in this process.
pub fn is_installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// One registered mapping: the address range the handler may repair.
///
/// The fields are read by the signal handler, which may interrupt a thread
/// in the middle of (un)registering: `seq` is a sequence lock, odd while
/// the other fields are being written, so a reader that sees it odd or
/// changed skips the slot. A slot being written cannot be the mapping that
/// faulted: a mapping is registered before any of its bytes are handed out
/// and unregistered only once none is left.
struct Slot {
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

    /// Takes the slot's write side, if the slot is free and nobody else
    /// holds it; returns the even sequence number it had.
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
    fn read(&self) -> Option<(usize, usize)> {
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
/// atomic loads only.
#[cfg_attr(any(not(unix), mmap_body_portable), allow(dead_code))]
fn find(addr: usize) -> Option<&'static Slot> {
    blocks().flat_map(|block| block.slots.iter()).find(|slot| {
        slot.read()
            .is_some_and(|(start, len)| addr >= start && addr - start < len)
    })
}

/// A mapping registered with the handler for as long as this lives.
#[derive(Debug)]
pub(crate) struct Region {
    slot: &'static Slot,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
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

/// Reads the byte at `ptr`, through any repair the handler makes. Volatile,
/// so that the read happens here, before the poison check that follows it.
///
/// # Safety
///
/// `ptr` points into a live mapping.
pub(crate) unsafe fn read_byte(ptr: *const u8) -> u8 {
    // SAFETY: the caller's promise.
    unsafe { std::ptr::read_volatile(ptr) }
}

#[cfg(all(unix, not(mmap_body_portable)))]
mod platform {
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use std::sync::OnceLock;

    use libc::{c_int, c_void, siginfo_t};

    use super::find;

    /// A `sigaction` as found; `Sync` so that it can sit in a static.
    struct Action(libc::sigaction);

    // SAFETY: a `sigaction` is plain data (a handler address, a mask and
    // flags); it is written once, before it is shared, and only read after.
    unsafe impl Sync for Action {}
    // SAFETY: as above.
    unsafe impl Send for Action {}

    /// Where a process-wide handler is kept: the one found when installing.
    static PREVIOUS: OnceLock<Action> = OnceLock::new();

    static PAGE: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn install() -> io::Result<()> {
        // SAFETY: `sysconf` has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page)
            .ok()
            .filter(|p| p.is_power_of_two())
            .ok_or_else(|| io::Error::other("cannot read the page size"))?;
        PAGE.store(page, Ordering::Relaxed);

        // SAFETY: an all-zero `sigaction` is a valid value to fill in.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reads the current action into `previous`; no change.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Kept before ours goes in, so that it can always chain.
        let _ = PREVIOUS.set(Action(previous));

        // SAFETY: as above.
        let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = on_sigbus as *const () as usize;
        // SA_ONSTACK: run on the thread's alternate stack when it has one
        // (Rust's threads do), as the previous handler expects.
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `sa_mask` is ours to initialise.
        unsafe { libc::sigemptyset(&mut ours.sa_mask) };
        // SAFETY: installs a handler that is async-signal-safe (atomic
        // loads, `mmap`, `sigaction`, `raise`, and the previous handler).
        if unsafe { libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The handler. For a fault inside a registered mapping: mark it
    /// poisoned and map a zero page over the faulting page, then return so
    /// the read runs again and sees zeros. Anything else: the previous
    /// handler's business.
    extern "C" fn on_sigbus(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
        // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t`.
        let addr = unsafe { (*info).si_addr() } as usize;
        if let Some(slot) = find(addr) {
            let page = PAGE.load(Ordering::Relaxed);
            let base = addr & !(page - 1);
            // Poisoned before the zeros can be read, so that whoever reads
            // them and then checks sees the poison.
            slot.poisoned.store(true, Ordering::Release);
            // SAFETY: `base..base + page` is a page of a mapping this crate
            // made and still holds (its bytes are being read through a
            // frame that keeps it alive). Replacing it with a private,
            // read-only page of zeros changes no byte anyone else owns:
            // the file's page is gone already. `errno` is only changed if
            // `mmap` fails, and then the process is ended below.
            let zeros = unsafe {
                libc::mmap(
                    base as *mut c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if zeros != libc::MAP_FAILED {
                return;
            }
        }
        // SAFETY: the arguments are the ones this handler was given.
        unsafe { chain(sig, info, context) }
    }

    /// Hands a signal that is not ours to the action found at install.
    unsafe fn chain(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
        // SAFETY: the kernel passes a valid `siginfo_t`.
        let sent = unsafe { (*info).si_code } <= 0; // kill(2), raise(3), sigqueue(3)
        let previous = PREVIOUS.get().map(|a| (a.0.sa_sigaction, a.0.sa_flags));
        match previous {
            Some((handler, flags)) if handler != libc::SIG_DFL && handler != libc::SIG_IGN => {
                if flags & libc::SA_SIGINFO != 0 {
                    // SAFETY: with SA_SIGINFO, `sa_sigaction` holds a
                    // three-argument handler.
                    let handler: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                        unsafe { std::mem::transmute(handler) };
                    handler(sig, info, context);
                } else {
                    // SAFETY: without it, a one-argument handler.
                    let handler: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
                    handler(sig);
                }
            }
            Some((handler, _)) if handler == libc::SIG_IGN && sent => {}
            _ => {
                // The default action: put it back. A fault then happens
                // again when the read is retried and ends the process as it
                // would have without this handler; a sent signal is sent
                // again, to be delivered once this handler returns.
                // SAFETY: an all-zero `sigaction` with SIG_DFL is valid.
                let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
                default.sa_sigaction = libc::SIG_DFL;
                // SAFETY: `sigaction` and `raise` are async-signal-safe.
                unsafe {
                    libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
                    if sent {
                        libc::raise(libc::SIGBUS);
                    }
                }
            }
        }
    }
}

#[cfg(any(not(unix), mmap_body_portable))]
mod platform {
    use std::io;

    pub(super) fn install() -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the SIGBUS guard exists on Unix only (and not in a build with \
             `--cfg mmap_body_portable`)",
        ))
    }
}
