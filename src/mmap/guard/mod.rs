//! Containing `SIGBUS` from files truncated under a mapping.
//!
//! When a mapped file is truncated, the pages past its new end are no
//! longer backed by anything. The kernel turns a read of them into an
//! `EFAULT` when it does the reading itself (a `write`/`writev` of a frame
//! to a plain TCP socket, which is how hyper sends HTTP/1.1), but into a
//! `SIGBUS` signal when a user-space copy reads them: h2's framing of
//! HTTP/2 `DATA`, a TLS stack's encryption, anything that copies a frame.
//! The default action of `SIGBUS` ends the process, and no check made
//! before a frame is handed out can stop a reader that comes later.
//!
//! # What the crate does to the process
//!
//! The first time an [`MmapBody`](crate::MmapBody) maps a file, the crate
//! installs a process-wide `SIGBUS` handler, once, under a lock (so threads
//! opening files at once install it once). No setup call is needed.
//!
//! - A fault inside one of this crate's file mappings is repaired: a page
//!   of zeros is mapped over the missing page, the mapping is marked
//!   *poisoned*, and the read goes on and sees zeros. The body that owns
//!   the mapping then ends with [`ErrorKind::Truncated`](crate::ErrorKind::Truncated) instead of
//!   sending its last byte (see below), so no receiver takes the zeros for
//!   the file.
//!   Only a fault the kernel reports as a read of a page the file no
//!   longer backs is repaired (`si_code` `BUS_ADRERR` on Linux, Android
//!   and macOS on x86-64, `BUS_OBJERR` on FreeBSD; never a signal sent
//!   with `kill(2)`, an alignment fault or a hardware memory error).
//! - Every other `SIGBUS` goes to the action that was installed before
//!   (the handler is *chained*), as the kernel would have delivered it
//!   there: a handler of the program's own or Rust's own runs with its
//!   `sa_mask` blocked (and `SIGBUS` too, unless it has `SA_NODEFER`), and
//!   once only if it has `SA_RESETHAND`; `SIG_IGN` drops a sent signal; the
//!   default ends the process exactly as it would have without this crate.
//! - A `SIGBUS` sent with `kill(2)`, `sigqueue(3)` or `raise(3)` never
//!   turns the guard off (but on macOS, see the limits below). If the handler it went to reset `SIGBUS` to the
//!   default (Rust's own does, for any address outside its guard page),
//!   the default is the previous action from then on, and the crate's
//!   handler is put back in front of it.
//! - A handler the program installs *later* replaces this one. If it
//!   chains to the action it found (as well-behaved handlers do, and as
//!   this one does), both keep working; if it does not, faults in this
//!   crate's mappings end the process again.
//!
//! # Threads that block `SIGBUS`
//!
//! The kernel never runs a handler for a fault on a thread that blocks
//! `SIGBUS`: it resets the signal to the default and ends the process. The
//! guard cannot help such a thread, so an `MmapBody` first polled on one
//! (one `pthread_sigmask` query a body, at its first frame; a clone or
//! slice asks again) hands out no frame of the mapping: its frames are
//! copies read from the file with `pread`, one copy each, and a truncated
//! file ends it with `Truncated`. What stays open: a thread that blocks
//! `SIGBUS` and copies frames that a body polled on *another*, unblocked
//! thread handed out (a TLS or h2 connection task on a thread of its own)
//! is killed by a truncation. Don't block `SIGBUS` in threads that poll
//! bodies or run hyper's connection tasks, or keep both on the same
//! threads (a tokio runtime's `on_thread_start` applies to all of its).
//!
//! A process that owns `SIGBUS` itself (a JVM embedding, a database with
//! its own mapped-file handler) calls [`opt_out`] before the first file is
//! mapped: the crate then never touches the signal, and a file truncated
//! while a user-space copy reads it ends the process, as any `mmap` does.
//! [`install`] installs the handler explicitly (also after an opt-out).
//!
//! # How a body ends, with the handler
//!
//! Zeros must never reach a peer as if they were the file, so an
//! `MmapBody` sends the last byte of its range on its own, last, and only
//! once nothing can still read the mapping for it:
//!
//! 1. If every frame it gave out has been dropped (hyper, h2 and TLS
//!    stacks drop a frame once they have written or copied it), every read
//!    is over. The body yields to its consumer while frames are still being
//!    dropped, so a transport a frame or two behind gets there first.
//! 2. A consumer that keeps frames until the end (`collect()`,
//!    `axum::body::to_bytes`, a channel, a recording) never drops them
//!    before it asks for the last byte. Waiting would hang it, so instead
//!    the pages of the frames it still holds are replaced, in place and
//!    atomically, by a private copy of themselves (Linux: `mremap(2)`): the
//!    bytes it holds no longer belong to the file, and no later truncation
//!    can reach them. `mremap` can fail after it unmapped the range (under
//!    a memory cgroup at its limit): the file is then mapped back over it
//!    and the body fails with an I/O error; if even that fails the process
//!    aborts with a message. The frames never point at unmapped memory.
//! 3. Then the mapping is checked not to be poisoned and the file (one
//!    `fstat`) to be unchanged, and the last byte is read and sent.
//!
//! A poisoned or changed file ends the body with
//! [`ErrorKind::Truncated`](crate::ErrorKind::Truncated) or
//! [`ErrorKind::Modified`](crate::ErrorKind::Modified) instead: over
//! HTTP/2 hyper resets the stream, over HTTP/1.1 the connection is closed
//! short of its `Content-Length`. Either way the receiver never gets a
//! complete body, and no consumer waits for anything but its own reads.
//!
//! # What holds
//!
//! | a file truncated while it is sent | handler installed (the default) | after [`opt_out`] |
//! |---|---|---|
//! | HTTP/1.1, plain TCP (the kernel reads) | an error (`Truncated`, or hyper's write error for `EFAULT`) | the same |
//! | HTTP/2, TLS, any user-space copy | an error; the process lives | the process is killed by `SIGBUS` unless the `fstat` before a frame sees the change first |
//! | the receiver gets a complete body | never | no, except in the instant between the last check and the last read |
//! | a consumer that keeps every frame | gets the whole body, or an error | the same |
//!
//! # Limits
//!
//! - `Bytes::from(MmapBody)` is one frame that lives as long as its holder:
//!   a truncation reads as zeros (with the handler) or raises `SIGBUS`
//!   (without), and nothing checks it after it was made.
//! - On Unix other than Linux there is no `mremap`: a consumer that keeps
//!   frames gets the last byte after the checks, and a truncation after
//!   that reads as zeros in the frames it still holds.
//! - macOS gives a `SIGBUS` sent with `kill(2)` the `si_code` of a fault
//!   (xnu fills it in by signal number; on Apple silicon every `SIGBUS`,
//!   a read past the end of a file included, is `BUS_ADRALN`, which the
//!   guard repairs there). A sent one is then taken for a fault at a stale
//!   address: passed on as a fault, a previous handler that resets the
//!   default (Rust's) still turns the guard off; in the rare case that the
//!   address lies in one of the crate's mappings, a page reads as zeros
//!   and its body fails with `Truncated`.
//! - On platforms without `SIGBUS` (Windows, which refuses to truncate a
//!   mapped file) there is nothing to install.

#[cfg(all(unix, not(mmap_body_portable)))]
mod codes;
mod registry;
#[cfg(all(unix, not(mmap_body_portable)))]
mod unix;
#[cfg(all(unix, not(mmap_body_portable)))]
use unix as platform;
#[cfg(any(not(unix), mmap_body_portable))]
mod unsupported;
#[cfg(any(not(unix), mmap_body_portable))]
use unsupported as platform;

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

pub(crate) use registry::Region;

/// Nothing decided yet: the first file mapping installs the handler.
const UNDECIDED: u8 = 0;
const INSTALLED: u8 = 1;
/// [`opt_out`] was called: only [`install`] installs.
const OPTED_OUT: u8 = 2;
/// Installing on first use failed (or the platform has no `SIGBUS`).
const UNAVAILABLE: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNDECIDED);
static LOCK: Mutex<()> = Mutex::new(());

/// Installs the `SIGBUS` handler for the whole process now (see the
/// [module docs](self)), instead of when the first file is mapped. Calling
/// it again does nothing; it also installs after [`opt_out`].
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
/// # #[cfg(unix)] {
/// mmap_body::guard::install()?;
/// assert!(mmap_body::guard::is_installed());
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn install() -> io::Result<()> {
    let _once = crate::sync::lock(&LOCK);
    if STATE.load(Ordering::Acquire) == INSTALLED {
        return Ok(());
    }
    platform::install()?;
    STATE.store(INSTALLED, Ordering::Release);
    Ok(())
}

/// Keeps the crate from installing its `SIGBUS` handler, for a process
/// that handles `SIGBUS` itself. Call it before the first file is mapped.
///
/// Returns `false` if the handler is installed already (by [`install`] or
/// by a file mapped earlier): it is never taken out again, since bodies
/// alive then may rely on it. Without it, a file truncated while a
/// user-space copy (HTTP/2, TLS) reads it ends the process with `SIGBUS`;
/// see the table in the [module docs](self).
///
/// ```
/// // First thing in `main` of a process that owns SIGBUS:
/// if !mmap_body::guard::opt_out() {
///     eprintln!("mmap-body's SIGBUS handler was installed already");
/// }
/// ```
#[must_use = "`false` says the handler was installed already"]
pub fn opt_out() -> bool {
    let _once = crate::sync::lock(&LOCK);
    match STATE.load(Ordering::Acquire) {
        INSTALLED => false,
        _ => {
            STATE.store(OPTED_OUT, Ordering::Release);
            true
        }
    }
}

/// `true` once the crate's `SIGBUS` handler is installed in this process,
/// by [`install`] or by the first file mapped. Code that later replaces the
/// handler without chaining to it turns it off, which this cannot see.
pub fn is_installed() -> bool {
    is_active()
}

/// The handler was installed by this crate: bodies may see zeros where a
/// file was truncated, and hold their last byte back for that.
pub(crate) fn is_active() -> bool {
    STATE.load(Ordering::Acquire) == INSTALLED
}

/// `true` if the calling thread blocks `SIGBUS`: a fault there ends the
/// process whatever handler is installed (the kernel does not deliver a
/// blocked synchronous signal, it kills). One `pthread_sigmask` call.
pub(crate) fn blocks_sigbus() -> bool {
    platform::blocks_sigbus()
}

/// Installs the handler when a file is first mapped, unless the program
/// opted out or an earlier attempt failed.
pub(crate) fn ensure() {
    if STATE.load(Ordering::Acquire) != UNDECIDED {
        return;
    }
    let _once = crate::sync::lock(&LOCK);
    if STATE.load(Ordering::Acquire) != UNDECIDED {
        return;
    }
    let state = match platform::install() {
        Ok(()) => INSTALLED,
        // Nothing to report to: the body works as a plain mapping, as on
        // platforms without the signal.
        Err(_) => UNAVAILABLE,
    };
    STATE.store(state, Ordering::Release);
}

/// Copies the `len` bytes at `ptr`, through any repair the handler makes;
/// the copy is complete before anything that follows (the poison check),
/// which a compiler fence keeps from moving above it.
///
/// # Safety
///
/// `ptr..ptr + len` lies inside a live mapping.
pub(crate) unsafe fn copy_out(ptr: *const u8, len: usize) -> bytes::Bytes {
    // SAFETY: the caller's promise: `len` bytes at `ptr` are mapped, and
    // the mapping outlives this borrow.
    let bytes = bytes::Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
    // The handler runs on this thread, between instructions: a fence for
    // the compiler is the ordering a signal handler needs.
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    bytes
}
