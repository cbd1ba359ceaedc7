//! The `SIGBUS` handler on Unix: repairs faults inside registered mappings
//! with a page of zeros and hands every other `SIGBUS` to the action that
//! was there before, as that action would have taken it.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use libc::{c_int, c_void, siginfo_t};

use super::codes::{is_fault, recurs};
use super::registry::find;

/// A `sigaction` as found; `Sync` so that it can sit in a static.
struct Action(libc::sigaction);

// SAFETY: a `sigaction` is plain data (a handler address, a mask and
// flags); it is written once, before it is shared, and only read after.
unsafe impl Sync for Action {}
// SAFETY: as above.
unsafe impl Send for Action {}

/// The action found when installing, which every signal that is not ours
/// goes to.
static PREVIOUS: OnceLock<Action> = OnceLock::new();

/// Set once the previous action is the default: it had `SA_RESETHAND` and
/// took a signal (the kernel would have reset it), or its handler reset
/// `SIGBUS` to the default for a signal that does not come back (Rust's
/// own handler does that for every address outside its guard page).
static PREVIOUS_IS_DEFAULT: AtomicBool = AtomicBool::new(false);

static PAGE: AtomicUsize = AtomicUsize::new(0);

/// The crate's action: [`on_sigbus`], with `SA_SIGINFO` and `SA_ONSTACK`
/// (run on the thread's alternate stack when it has one, as Rust's threads
/// do, and as the previous handler expects). `SA_NODEFER` is not set: a
/// second `SIGBUS` on the same thread while the handler runs (which only a
/// bug in it could cause) waits, as the default would. Async-signal-safe.
fn ours() -> libc::sigaction {
    // SAFETY: an all-zero `sigaction` is a valid value to fill in.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = on_sigbus as *const () as usize;
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `sa_mask` is ours to initialise.
    unsafe { libc::sigemptyset(&mut ours.sa_mask) };
    ours
}

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

    // SAFETY: installs a handler that is async-signal-safe (atomics,
    // `mmap`, `sigaction`, `pthread_sigmask`, `sigpending`, `raise`, and
    // the previous handler).
    if unsafe { libc::sigaction(libc::SIGBUS, &ours(), std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `true` if the calling thread blocks `SIGBUS`: the kernel then kills the
/// process on a fault there instead of running any handler.
pub(super) fn blocks_sigbus() -> bool {
    // SAFETY: an all-zero `sigset_t` is a valid value to fill in.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: reads this thread's mask into `mask`; no change.
    let read = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) };
    // SAFETY: `mask` is a valid set.
    read == 0 && unsafe { libc::sigismember(&mask, libc::SIGBUS) } == 1
}

/// The handler. For a fault inside a registered mapping: mark it poisoned
/// and map a zero page over the faulting page, then return so the read
/// runs again and sees zeros. Anything else: the previous action's
/// business.
extern "C" fn on_sigbus(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // `mmap`, `sigaction` and the previous handler may set errno; the
    // interrupted code must not see it.
    let _errno = SavedErrno::new();
    // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t`.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only a fault of the kind a truncated file causes is repaired: the
    // `si_addr` of a sent signal is not an address (or a stale one), and an
    // alignment or hardware memory error is not the file's doing.
    let slot = if is_fault(code) { find(addr) } else { None };
    if let Some(slot) = slot {
        let page = PAGE.load(Ordering::Relaxed);
        let base = addr & !(page - 1);
        slot.poison();
        // SAFETY: `base..base + page` is a page of a mapping this crate
        // made and still holds (its bytes are being read through a frame
        // that keeps it alive). Replacing it with a private, read-only page
        // of zeros changes no byte anyone else owns: the file's page is
        // gone already. If `mmap` fails the signal goes on to the previous
        // action below.
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
    unsafe { chain(sig, info, context, recurs(code)) }
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

/// Hands a signal that is not ours to the action found at install, as the
/// kernel would have delivered it to that action: the default ends the
/// process, `SIG_IGN` drops a signal that does not recur, and a handler
/// runs with its own `sa_mask` blocked (and `SIGBUS` itself unless it has
/// `SA_NODEFER`); with `SA_RESETHAND` it runs once, the default after.
///
/// A signal that does not come back by itself (`recurring` false: sent
/// with `kill(2)` and the like) leaves the crate's handler installed even
/// if the previous handler reset `SIGBUS` to the default (Rust's does for
/// any address outside its guard page): the previous action is then the
/// default from now on, and the crate's handler stays in front of it.
/// A fault that recurs is left to what the previous handler did: if it
/// repaired nothing and reset the default, the fault ends the process.
///
/// # Safety
///
/// The arguments are those the kernel passed to [`on_sigbus`].
unsafe fn chain(sig: c_int, info: *mut siginfo_t, context: *mut c_void, recurring: bool) {
    let previous = match PREVIOUS.get() {
        Some(action) if !PREVIOUS_IS_DEFAULT.load(Ordering::Acquire) => &action.0,
        _ => return default_action(),
    };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || (handler == libc::SIG_IGN && recurring) {
        // An ignored fault is not ignored by the kernel either: it kills.
        return default_action();
    }
    if handler == libc::SIG_IGN {
        return;
    }
    if previous.sa_flags & libc::SA_RESETHAND != 0 {
        PREVIOUS_IS_DEFAULT.store(true, Ordering::Release);
    }
    // SAFETY: an all-zero `sigset_t` is a valid value to fill in.
    let mut before: libc::sigset_t = unsafe { std::mem::zeroed() };
    let during = with_mask_of(previous, &mut before);
    // SAFETY: `during` is a valid set; `pthread_sigmask` is
    // async-signal-safe and changes this thread's mask only.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &during, std::ptr::null_mut()) };
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, `sa_sigaction` holds a three-argument
        // handler, given the arguments the kernel gave this one.
        let handler: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        handler(sig, info, context);
    } else {
        // SAFETY: without it, a one-argument handler.
        let handler: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        handler(sig);
    }
    // SAFETY: as above; the mask this handler ran with.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut()) };
    if !recurring {
        keep_ours();
    }
}

/// The mask the previous action's handler runs with: this thread's mask
/// now (stored into `before`), its `sa_mask`, and `SIGBUS` unless it has
/// `SA_NODEFER`. Async-signal-safe.
fn with_mask_of(previous: &libc::sigaction, before: &mut libc::sigset_t) -> libc::sigset_t {
    // SAFETY: reads this thread's mask into `before`; no change.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), before) };
    let mut during = *before;
    for signal in 1..=64 {
        // SAFETY: both sets are valid; a number that is no signal here is
        // an error (`EINVAL`, errno is put back) that adds nothing.
        unsafe {
            if libc::sigismember(&previous.sa_mask, signal) == 1 {
                libc::sigaddset(&mut during, signal);
            }
        }
    }
    // SAFETY: `during` is a valid set.
    unsafe {
        if previous.sa_flags & libc::SA_NODEFER != 0 {
            libc::sigdelset(&mut during, libc::SIGBUS);
        } else {
            libc::sigaddset(&mut during, libc::SIGBUS);
        }
    }
    during
}

/// After the previous handler took a signal that does not recur: if it
/// reset `SIGBUS` to the default, that is the previous action from now
/// on, and the crate's handler goes back in front of it. Left alone if it
/// installed something else (a program's choice, as a handler installed
/// later is), or if a `SIGBUS` is pending (it raised one for the default
/// to end the process with). Async-signal-safe.
fn keep_ours() {
    // SAFETY: an all-zero `sigaction` is a valid value to fill in.
    let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the current action; no change.
    if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut now) } != 0
        || now.sa_sigaction != libc::SIG_DFL
    {
        return;
    }
    // SAFETY: an all-zero `sigset_t` is a valid value to fill in.
    let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: fills `pending` with this thread's and the process's
    // pending signals.
    let raised = unsafe {
        libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGBUS) == 1
    };
    if raised {
        return;
    }
    PREVIOUS_IS_DEFAULT.store(true, Ordering::Release);
    // SAFETY: installs the crate's handler again, as `install` did.
    unsafe { libc::sigaction(libc::SIGBUS, &ours(), std::ptr::null_mut()) };
}

/// The default action, as the kernel would take it: `SIGBUS` is reset to
/// the default and raised again, to be delivered (and end the process)
/// once this handler returns. A fault would also fault again and end it;
/// a sent signal would not come back by itself. Async-signal-safe.
fn default_action() {
    // SAFETY: an all-zero `sigaction` with SIG_DFL is valid.
    let mut default: libc::sigaction = unsafe { std::mem::zeroed() };
    default.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `sigaction` and `raise` are async-signal-safe.
    unsafe {
        libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
        libc::raise(libc::SIGBUS);
    }
}
