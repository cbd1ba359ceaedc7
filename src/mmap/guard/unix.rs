//! The `SIGBUS` handler on Unix: repairs faults inside registered mappings
//! with a page of zeros and hands every other `SIGBUS` to the handler that
//! was there before.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use libc::{c_int, c_void, siginfo_t};

use super::registry::find;

/// A `sigaction` as found; `Sync` so that it can sit in a static.
struct Action(libc::sigaction);

// SAFETY: a `sigaction` is plain data (a handler address, a mask and
// flags); it is written once, before it is shared, and only read after.
unsafe impl Sync for Action {}
// SAFETY: as above.
unsafe impl Send for Action {}

/// The action found when installing, which every fault that is not ours
/// goes to.
static PREVIOUS: OnceLock<Action> = OnceLock::new();

static PAGE: AtomicUsize = AtomicUsize::new(0);

/// Installs the handler, keeping the action it replaces.
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
    // (Rust's threads do), as the previous handler expects. SA_NODEFER is
    // not set: a second SIGBUS on the same thread while this handler runs
    // (which only a bug in it could cause) waits, as the default would.
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

/// The handler. For a fault inside a registered mapping: mark it poisoned
/// and map a zero page over the faulting page, then return so the read
/// runs again and sees zeros. Anything else: the previous handler's
/// business.
extern "C" fn on_sigbus(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t`.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // A positive code is a fault (BUS_ADRERR and the like); a signal sent
    // with kill(2) or sigqueue(3) has none, and its `si_addr` is not an
    // address: never repair anything for it.
    let slot = if code > 0 { find(addr) } else { None };
    if let Some(slot) = slot {
        // `mmap` may set errno; the interrupted code must not see it.
        let _errno = SavedErrno::new();
        let page = PAGE.load(Ordering::Relaxed);
        let base = addr & !(page - 1);
        slot.poison();
        // SAFETY: `base..base + page` is a page of a mapping this crate
        // made and still holds (its bytes are being read through a frame
        // that keeps it alive). Replacing it with a private, read-only page
        // of zeros changes no byte anyone else owns: the file's page is
        // gone already. `errno` is only changed if `mmap` fails, and then
        // the signal goes on to the previous action below.
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

/// errno, saved when made and put back when dropped: a handler must leave
/// it as it found it.
struct SavedErrno(c_int);

impl SavedErrno {
    fn new() -> SavedErrno {
        SavedErrno(errno_location().map_or(0, |at| {
            // SAFETY: the thread's own errno, always valid to read.
            unsafe { *at }
        }))
    }
}

impl Drop for SavedErrno {
    fn drop(&mut self) {
        if let Some(at) = errno_location() {
            // SAFETY: the thread's own errno, always valid to write.
            unsafe { *at = self.0 };
        }
    }
}

/// Where the calling thread's errno lives.
fn errno_location() -> Option<*mut c_int> {
    #[cfg(any(target_os = "linux", target_os = "dragonfly"))]
    // SAFETY: no preconditions; returns the thread's errno address.
    return Some(unsafe { libc::__errno_location() });
    #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
    // SAFETY: as above.
    return Some(unsafe { libc::__errno() });
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    // SAFETY: as above.
    return Some(unsafe { libc::__error() });
    #[allow(unreachable_code)]
    None
}

/// Hands a signal that is not ours to the action found at install.
///
/// # Safety
///
/// The arguments are those the kernel passed to [`on_sigbus`].
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
            // The default action: put it back. A fault then happens again
            // when the read is retried and ends the process as it would
            // have without this handler; a sent signal is sent again, to be
            // delivered once this handler returns.
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
