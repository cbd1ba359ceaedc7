//! What differs between platforms for a mapped file body: access advice,
//! giving sent pages back, and telling regular files from the rest.
//!
//! - `unix.rs` (every Unix): `madvise` advice and `MADV_DONTNEED`, and the
//!   exact reason a file is not a regular one (FIFO, socket, device).
//! - `detach.rs` (every Unix; Linux only does it): the pages of frames held
//!   to the end swapped for a private copy in place (`mremap(2)`), and the
//!   file mapped back where that fails.
//! - `memory.rs`: how much memory the process may still take (Linux:
//!   `MemAvailable` and its memory cgroup's headroom), what a detach is
//!   measured against.
//! - `portable.rs` (everything else, and Unix built with
//!   `--cfg mmap_body_portable`, which is how CI tests it on Linux): no
//!   advice, no page release, and "not a regular file" for anything that
//!   is neither a file nor a directory.
//!
//! Both probe a file that reports a size of 0 for contents (the
//! `/proc`-style files); only how they read its first byte differs.

mod memory;
pub(super) use memory::headroom;

#[cfg(all(unix, not(mmap_body_portable)))]
mod detach;
#[cfg(all(unix, not(mmap_body_portable)))]
pub(super) use detach::detach;
#[cfg(all(unix, not(mmap_body_portable)))]
mod unix;
#[cfg(all(unix, not(mmap_body_portable)))]
pub(crate) use unix::*;

#[cfg(any(not(unix), mmap_body_portable))]
mod portable;
#[cfg(any(not(unix), mmap_body_portable))]
pub(crate) use portable::*;
