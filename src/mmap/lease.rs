//! Read leases (Linux `fcntl(F_SETLEASE, F_RDLCK)`): the kernel makes
//! another `open` of the file for writing, or its truncation, wait until
//! the lease holder lets go (or `/proc/sys/fs/lease-break-time`, 45 s by
//! default, passes), and tells the holder with a signal.
//!
//! The crate's leases are told with a realtime signal, `SIGRTMIN + 7`,
//! directed at one thread of the crate's own
//! (`F_SETOWN_EX` with `F_OWNER_TID`), `mmap-body-leases`, which blocks it
//! and reads it from a `signalfd`: no handler is installed, no other thread
//! ever receives it, and nothing runs in a signal handler. That thread
//! copies the pages the lease protects out of the file ([`Mapping::detach`])
//! and then lets go, so the writer proceeds in milliseconds, and no byte
//! handed out as `Bytes` changes.
//!
//! A lease is refused where the kernel refuses it: the file is open for
//! writing (by anyone, this process included), the process is neither the
//! file's owner nor has `CAP_LEASE`, the file system has no leases, or the
//! descriptor was opened for writing. Elsewhere than Linux there are none.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use super::chunk::InFlight;
use super::mapping::Mapping;
use crate::error::{Error, ErrorKind};

/// What a break of a mapping's lease copies: the frames each attempt still
/// holds, or all of the mapping while a `Bytes::from(MmapBody)` lives; and
/// whether a break came, after which no frame is handed out. Taken under
/// the mapping's lock both when a frame is handed out and when a break
/// comes, so that no frame escapes the copy.
#[derive(Debug, Default)]
pub(super) struct Leased {
    broken: bool,
    attempts: Vec<Weak<InFlight>>,
    wholes: usize,
}

impl Leased {
    /// Counts `start..end` as handed out by the attempt `in_flight`;
    /// refused once a break came.
    pub(super) fn hand_out(
        &mut self,
        in_flight: &Arc<InFlight>,
        (start, end): (usize, usize),
        broken: impl FnOnce() -> Error,
    ) -> Result<(), Error> {
        if self.broken {
            return Err(broken());
        }
        if !self
            .attempts
            .iter()
            .any(|a| a.as_ptr() == Arc::as_ptr(in_flight))
        {
            self.attempts.retain(|a| a.strong_count() > 0);
            self.attempts.push(Arc::downgrade(in_flight));
        }
        in_flight.gave_out(start, end);
        Ok(())
    }

    /// One more (`true`) or one fewer whole `Bytes` of the mapping alive.
    pub(super) fn whole(&mut self, alive: bool) {
        if alive {
            self.wholes += 1;
        } else {
            self.wholes = self.wholes.saturating_sub(1);
        }
    }

    /// A break came: what must be copied out of the file of a mapping of
    /// `len` bytes before the writer may go on.
    pub(super) fn broken(&mut self, len: usize) -> Vec<(usize, usize)> {
        self.broken = true;
        if self.wholes > 0 {
            return vec![(0, len)];
        }
        let mut ranges: Vec<(usize, usize)> = self
            .attempts
            .iter()
            .filter_map(Weak::upgrade)
            .flat_map(|attempt| attempt.ranges())
            .collect();
        ranges.sort_unstable();
        ranges.dedup();
        ranges
    }

    /// Whether a break came.
    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// The error of a body whose file's lease was broken:
    /// [`ErrorKind::Truncated`] if the file is now `truncated`, else
    /// [`ErrorKind::Modified`].
    pub(super) fn error(name: &str, truncated: bool) -> Error {
        let (kind, what) = if truncated {
            (ErrorKind::Truncated, "truncated")
        } else {
            (ErrorKind::Modified, "opened for writing")
        };
        Error::new(
            kind,
            format!(
                "{name} was {what} by another process while it was being sent: the \
                 body's read lease on it was broken, the frames already handed out were \
                 copied out of the file first (they keep its bytes as they were), and the \
                 body stops here. Send it again once the writer has finished with it."
            ),
        )
    }
}

/// Set by [`disable`]: no lease is taken from then on.
static DISABLED: AtomicBool = AtomicBool::new(false);

/// No read lease is taken from now on (see
/// [`FileBody::disable_leases`](crate::FileBody::disable_leases)).
pub(crate) fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}

/// Whether leases may be taken: not [`disable`]d, and on Linux.
pub(crate) fn enabled() -> bool {
    cfg!(target_os = "linux") && !DISABLED.load(Ordering::Relaxed)
}

/// A read lease on a mapping's file, held while this lives.
#[derive(Debug)]
pub(super) struct Lease {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

impl Lease {
    /// A read lease on `mapping`'s file, whose break detaches the whole
    /// mapping before it lets go; `None` where the kernel (or the
    /// platform) gives none.
    pub(super) fn take(mapping: &Arc<Mapping>) -> Option<Lease> {
        if !enabled() {
            return None;
        }
        imp::take(mapping)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        imp::release(self.fd);
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub(super) fn take(_mapping: &Arc<Mapping>) -> Option<Lease> {
        None
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, RawFd};
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Arc, Mutex, OnceLock, Weak};

    use libc::c_int;

    use super::{Lease, Mapping};
    use crate::sync::lock;

    // fcntl(2) commands and values libc does not name on every Linux
    // target (the asm-generic values, which every architecture uses).
    const F_SETSIG: c_int = 10;
    const F_SETOWN_EX: c_int = 15;
    const F_OWNER_TID: c_int = 0;

    #[repr(C)]
    struct FOwnerEx {
        kind: c_int,
        pid: libc::pid_t,
    }

    /// The signal the crate's leases are told with: `SIGRTMIN + 7`.
    fn signal() -> c_int {
        libc::SIGRTMIN() + 7
    }

    /// The leases held, by descriptor: how many holders, and the mapping
    /// whose pages a break copies.
    #[derive(Default)]
    struct Held {
        by_fd: HashMap<RawFd, (usize, Weak<Mapping>)>,
    }

    /// The listening thread, and the leases.
    struct Listener {
        /// The thread's id, which each lease's break signal is sent to.
        tid: AtomicI32,
        held: Mutex<Held>,
    }

    /// The listener, once its thread runs; `None` if it could not start.
    static LISTENER: OnceLock<Option<&'static Listener>> = OnceLock::new();

    /// The listener, started with the first lease.
    fn listener() -> Option<&'static Listener> {
        *LISTENER.get_or_init(start)
    }

    fn start() -> Option<&'static Listener> {
        let listener: &'static Listener = Box::leak(Box::new(Listener {
            tid: AtomicI32::new(0),
            held: Mutex::default(),
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("mmap-body-leases".into())
            .spawn(move || listen(listener, tx))
            .ok()?;
        let tid = rx.recv().ok()??;
        listener.tid.store(tid, Ordering::Release);
        Some(listener)
    }

    /// The thread: blocks the signal, reads it from a `signalfd`, and
    /// answers each break; sends its id first, or `None` if it cannot
    /// listen.
    fn listen(listener: &'static Listener, tx: std::sync::mpsc::Sender<Option<libc::pid_t>>) {
        // SAFETY: an empty set filled with one signal; the calls only
        // write the set they are given and this thread's mask.
        let sfd = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal());
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
        };
        if sfd < 0 {
            let _ = tx.send(None);
            return;
        }
        // SAFETY: the gettid system call has no preconditions. (Through
        // syscall(2): the libc function is only in glibc 2.30 and later.)
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        let _ = tx.send(libc::pid_t::try_from(tid).ok());
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: an all-zero signalfd_siginfo is a valid buffer.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            // SAFETY: reads at most `size` bytes into `info`, which has them.
            let read = unsafe { libc::read(sfd, (&raw mut info).cast(), size) };
            if usize::try_from(read) == Ok(size) {
                broken(listener, info.ssi_fd);
            }
        }
    }

    /// A break of the lease on `fd`: the mapping's pages copied out of the
    /// file, then the lease let go.
    fn broken(listener: &Listener, fd: RawFd) {
        let mapping = lock(&listener.held)
            .by_fd
            .get(&fd)
            .and_then(|(_, mapping)| mapping.upgrade());
        // Gone: its lease was let go when the last holder dropped it.
        let Some(mapping) = mapping else {
            return;
        };
        // SAFETY: `fd` is the mapping's file, open while `mapping` lives.
        if unsafe { libc::fcntl(fd, libc::F_GETLEASE) } == libc::F_RDLCK {
            // Not being broken (a signal of an earlier lease on a reused
            // descriptor): nothing to do.
            return;
        }
        mapping.on_lease_break();
        // SAFETY: as above; letting go of a read lease.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
    }

    pub(super) fn take(mapping: &Arc<Mapping>) -> Option<Lease> {
        let file = &mapping.origin.as_ref()?.file;
        let fd = file.as_raw_fd();
        let listener = listener()?;
        let mut held = lock(&listener.held);
        if let Some((count, _)) = held.by_fd.get_mut(&fd) {
            // SAFETY: `fd` is open while `mapping` lives.
            if unsafe { libc::fcntl(fd, libc::F_GETLEASE) } != libc::F_RDLCK {
                return None;
            }
            *count += 1;
            return Some(Lease { fd });
        }
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            pid: listener.tid.load(Ordering::Acquire),
        };
        // SAFETY: `fd` is the mapping's open file; the calls set where its
        // lease break is signalled, and take the lease.
        let leased = unsafe {
            libc::fcntl(fd, F_SETSIG, signal()) == 0
                && libc::fcntl(fd, F_SETOWN_EX, &owner) == 0
                && libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0
        };
        if !leased {
            return None;
        }
        held.by_fd.insert(fd, (1, Arc::downgrade(mapping)));
        Some(Lease { fd })
    }

    pub(super) fn release(fd: RawFd) {
        let Some(Some(listener)) = LISTENER.get() else {
            return;
        };
        let mut held = lock(&listener.held);
        if let Some((count, _)) = held.by_fd.get_mut(&fd) {
            *count -= 1;
            if *count == 0 {
                held.by_fd.remove(&fd);
                // SAFETY: the holder's mapping, and so `fd`, is still open.
                unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
            }
        }
    }
}
