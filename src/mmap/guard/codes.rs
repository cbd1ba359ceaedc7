//! What a `SIGBUS`'s `si_code` says: a read of a page a truncated file no
//! longer backs (the guard repairs it, inside the crate's mappings), a
//! fault of another kind (left to the previous action, and it faults again
//! if nobody repairs it), or a signal that will not come back by itself
//! (sent with `kill(2)`, `sigqueue(3)`, `tgkill(2)`, or reported once by
//! the kernel, as a memory error found in the background is).
//!
//! What each kernel reports for a read past the end of a file's mapping:
//!
//! - Linux and Android: `BUS_ADRERR` on every architecture (`do_sigbus`
//!   and its arch twins). `BUS_OBJERR` is not used for it, `BUS_ADRALN` is
//!   alignment, `BUS_MCEERR_AR` / `_AO` are hardware memory errors: none is
//!   repaired. Sent signals have codes `<= 0` (`SI_USER`, `SI_QUEUE`,
//!   `SI_TKILL`, ...) or `SI_KERNEL`.
//! - FreeBSD: `BUS_OBJERR` (`vm_fault_trap` turns `KERN_OUT_OF_BOUNDS`, a
//!   page the pager cannot supply past the end of the object, into it);
//!   `BUS_ADRERR` is accepted as on the other BSDs. Sent signals have codes
//!   above `0x10000` (`SI_USER` is `0x10001`), which older versions of this
//!   crate took for faults.
//! - macOS on x86-64: `BUS_ADRERR`; on Apple silicon, `BUS_ADRALN` (xnu's
//!   `sendsig` for arm gives every `SIGBUS` that code). xnu fills `si_code`
//!   by signal number, also for a `SIGBUS` sent with `kill(2)`: there a
//!   sent signal cannot be told from a fault (see the module docs' limits).
//! - Other Unix: `BUS_ADRERR` and `BUS_OBJERR`, as POSIX names them.

use libc::c_int;

/// `true` if `code` is what the kernel reports for a read of a page that a
/// truncated file no longer backs: the only `SIGBUS` the guard repairs
/// (and only inside one of the crate's mappings).
pub(super) fn is_fault(code: c_int) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return code == libc::BUS_ADRERR;
    #[cfg(all(any(target_os = "macos", target_os = "ios"), target_arch = "aarch64"))]
    return code == libc::BUS_ADRALN || code == libc::BUS_ADRERR;
    #[allow(unreachable_code)]
    {
        code == libc::BUS_ADRERR || code == libc::BUS_OBJERR
    }
}

/// `true` if `code` is a fault of the running instruction, which faults
/// again when the handler returns unless someone repaired it: the previous
/// action's handler decides what happens to it, and nothing is put back
/// after it. `false` for a signal that comes once (sent, queued, or a
/// memory error reported in the background).
pub(super) fn recurs(code: c_int) -> bool {
    if is_fault(code) || code == libc::BUS_ADRALN {
        return true;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return code == libc::BUS_OBJERR || code == libc::BUS_MCEERR_AR;
    // The BSDs' own fault codes (FreeBSD's `BUS_OOMERR` is 100) are small;
    // their sent signals' codes start at 0x10000.
    #[allow(unreachable_code)]
    {
        code > 0 && code < 0x10000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn linux_repairs_only_bus_adrerr() {
        // The codes the kernel gives a read past the end of a file's
        // mapping, and every other it can give a SIGBUS.
        let table = [
            ("BUS_ADRERR", libc::BUS_ADRERR, true, true),
            ("BUS_ADRALN", libc::BUS_ADRALN, false, true),
            ("BUS_OBJERR", libc::BUS_OBJERR, false, true),
            ("BUS_MCEERR_AR", libc::BUS_MCEERR_AR, false, true),
            // A memory error found in the background: reported once.
            ("BUS_MCEERR_AO", libc::BUS_MCEERR_AO, false, false),
            ("SI_USER (kill)", libc::SI_USER, false, false),
            ("SI_QUEUE (sigqueue)", libc::SI_QUEUE, false, false),
            ("SI_TKILL (tgkill, raise)", libc::SI_TKILL, false, false),
            ("SI_KERNEL", libc::SI_KERNEL, false, false),
            ("SI_ASYNCIO", libc::SI_ASYNCIO, false, false),
        ];
        for (name, code, fault, recurring) in table {
            assert_eq!(is_fault(code), fault, "is_fault({name})");
            assert_eq!(recurs(code), recurring, "recurs({name})");
        }
    }

    /// Whatever the platform, no sent signal is ever repaired, and the
    /// codes nobody defines are not faults.
    #[test]
    fn sent_signals_and_unknown_codes_are_never_repaired() {
        // Linux's SI_USER, SI_QUEUE, SI_TKILL, SI_KERNEL; the BSDs' and
        // macOS's SI_USER, SI_QUEUE; nobody's.
        for code in [0, -1, -6, 0x80, 0x10001, 0x10002, 1000, -1000] {
            assert!(!is_fault(code), "is_fault({code})");
        }
        for code in [-1, -6, -1000, 0x10001, 0x10002, 0x10007] {
            assert!(!recurs(code), "recurs({code})");
        }
    }
}
