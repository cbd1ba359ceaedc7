//! Unix: detaching the pages of held frames from their file, in place
//! (Linux's `mremap(2)`), and never leaving a hole where the move failed.

use std::fs::File;
use std::io;

/// Replaces the pages of `len` bytes at `addr` (page-aligned, inside a
/// mapping of `file` whose byte `offset` is at `addr`) with a private,
/// read-only copy of their first `copied` bytes (the rest zeros), in one
/// step: the copy is made in fresh anonymous memory, then moved over the
/// range with `mremap(MREMAP_FIXED)`, which swaps the page-table entries
/// under the address-space lock. A thread reading the range meanwhile sees
/// the file's bytes or the copy's, which are the same bytes.
///
/// `mremap` can fail after it unmapped the destination (`ENOMEM`, under a
/// memory cgroup at its limit): frames still point into the range, so it is
/// never left a hole. The copy is freed and `file` mapped back over the
/// range as it was (shared, read-only), and the error returned; if even
/// that fails, the process aborts with a message on stderr.
///
/// # Safety
///
/// `addr..addr + len` is page-aligned and lies inside a live, shared,
/// read-only mapping of `file` (at `offset`) that the caller owns; its
/// first `copied` bytes (at most `len`) may be read (through the `SIGBUS`
/// guard if the file may have been truncated).
#[cfg(target_os = "linux")]
pub(crate) unsafe fn detach(
    addr: *const u8,
    len: usize,
    copied: usize,
    file: &File,
    offset: u64,
) -> io::Result<()> {
    use libc::{c_void, MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    // SAFETY: a fresh anonymous mapping; no address is imposed.
    let copy = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if copy == MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    #[cfg(test)]
    seam::LAST_COPY.with(|at| at.set(copy as usize));
    // SAFETY: `copy` is `len` writable bytes of our own; `addr` is
    // `copied <= len` readable bytes (the caller's promise); they cannot
    // overlap. The rest of `copy` stays zero, as a fresh mapping is.
    unsafe { std::ptr::copy_nonoverlapping(addr, copy.cast::<u8>(), copied.min(len)) };
    // SAFETY: `copy` is ours; making it read-only is what the range was.
    // The move replaces the caller's range, whose frames then read the
    // copy: the same bytes.
    let moved = unsafe {
        libc::mprotect(copy, len, PROT_READ);
        move_over(copy, len, addr as *mut c_void)
    };
    if let Err(err) = moved {
        // SAFETY: `copy` is still ours: the move failed.
        unsafe { libc::munmap(copy, len) };
        // SAFETY: the caller's promise: the range is `file`'s, at `offset`.
        unsafe { map_back(addr as *mut c_void, len, file, offset) };
        return Err(err);
    }
    Ok(())
}

/// `mremap(MREMAP_FIXED)` of `len` bytes from `from` over `to`. Under
/// `cfg(test)` a seam can make it fail as a memory cgroup at its limit
/// does: the destination unmapped, then `ENOMEM`.
///
/// # Safety
///
/// `from` is a mapping of `len` bytes of the caller's own; `to..to + len`
/// may be replaced.
#[cfg(target_os = "linux")]
unsafe fn move_over(from: *mut libc::c_void, len: usize, to: *mut libc::c_void) -> io::Result<()> {
    #[cfg(test)]
    if seam::FAIL_MREMAP.with(|fail| fail.replace(false)) {
        // SAFETY: the caller allows `to..to + len` to be replaced; unmapping
        // it is what the failing kernel call leaves.
        unsafe { libc::munmap(to, len) };
        return Err(io::Error::from_raw_os_error(libc::ENOMEM));
    }
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    // SAFETY: the caller's promise above.
    if unsafe { libc::mremap(from, len, len, flags, to) } == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Maps `len` bytes of `file` at `offset` over `addr` again, as the
/// mapping was made (shared, read-only): the frames over it read the
/// file's bytes, checked as every frame is. If that fails too, aborts with
/// a message on stderr: the frames would point at unmapped memory, or at
/// another mapping's bytes once the range is reused.
///
/// # Safety
///
/// `addr..addr + len` is part of a mapping of `file` at `offset` that the
/// caller owns (or was, until a failed `mremap` unmapped it).
#[cfg(target_os = "linux")]
unsafe fn map_back(addr: *mut libc::c_void, len: usize, file: &File, offset: u64) {
    use std::os::unix::io::AsRawFd;
    let at = libc::off_t::try_from(offset).unwrap_or(-1);
    #[cfg(test)]
    let at = if seam::FAIL_MAP_BACK.with(|fail| fail.get()) {
        -1
    } else {
        at
    };
    // SAFETY: the caller's promise: the range is this process's, held for
    // the file's mapping; mapping the file there again is what it was.
    let back = unsafe {
        libc::mmap(
            addr,
            len,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_FIXED,
            file.as_raw_fd(),
            at,
        )
    };
    if back != addr {
        let message: &[u8] = b"mmap-body: mremap(2) failed after unmapping the pages of frames \
            still held, and mapping the file back failed too; aborting rather than leave \
            them pointing at unmapped memory\n";
        // SAFETY: writes the message's bytes to stderr; a failed write
        // changes nothing.
        unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
        std::process::abort();
    }
}

/// No `mremap` outside Linux (Android's libc has none): the pages cannot
/// be swapped in one step.
///
/// # Safety
///
/// None needed; `unsafe` to match the Linux version.
#[cfg(not(target_os = "linux"))]
pub(crate) unsafe fn detach(
    _addr: *const u8,
    _len: usize,
    _copied: usize,
    _file: &File,
    _offset: u64,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no mremap(2) on this platform",
    ))
}

/// Test seams, per thread (a detach runs on its caller's thread), so that
/// tests running at once never see each other's.
#[cfg(all(test, target_os = "linux"))]
pub(crate) mod seam {
    use std::cell::Cell;

    thread_local! {
        /// The next `mremap` fails as under a memory cgroup at its limit.
        pub(crate) static FAIL_MREMAP: Cell<bool> = const { Cell::new(false) };
        /// Mapping the file back fails (the process then aborts).
        pub(crate) static FAIL_MAP_BACK: Cell<bool> = const { Cell::new(false) };
        /// Where the last copy was made, to check it was freed.
        pub(crate) static LAST_COPY: Cell<usize> = const { Cell::new(0) };
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    const PAGE: usize = 4096;

    /// A temp file of `pages` pages, each byte its offset's low bits mixed
    /// with the page number, and a shared read-only mapping of it.
    fn mapped(pages: usize) -> (File, memmap2::Mmap, Vec<u8>) {
        let bytes: Vec<u8> = (0..pages * PAGE)
            .map(|i| (i as u8) ^ ((i / PAGE) as u8).wrapping_mul(37))
            .collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        // SAFETY: the temp file is private to this test and never changed.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        (file, map, bytes)
    }

    /// `true` if `len` bytes at `addr` are mapped (`mincore` answers
    /// `ENOMEM` for a range with unmapped pages).
    fn is_mapped(addr: usize, len: usize) -> bool {
        let mut vec = vec![0u8; len.div_ceil(PAGE)];
        // SAFETY: `mincore` only reads the page tables for the range and
        // writes one byte a page into `vec`.
        unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr().cast()) == 0 }
    }

    #[test]
    fn a_detach_copies_the_pages_in_place() {
        let (file, map, bytes) = mapped(6);
        let at = map.as_ptr() as usize + PAGE;
        // SAFETY: pages 1 and 2 of a mapping of `file` at offset PAGE.
        unsafe { detach(at as *const u8, 2 * PAGE, 2 * PAGE, &file, PAGE as u64) }.unwrap();
        assert_eq!(&map[..], &bytes[..], "the same bytes, now a private copy");
    }

    /// A `mremap` that fails after unmapping the destination (a memory
    /// cgroup at its limit) leaves the range mapped to the file again,
    /// returns the error, and frees the copy. (Without the map-back the
    /// range is a hole, which `mincore` reports; reading it is SIGSEGV.)
    #[test]
    fn a_failed_mremap_maps_the_file_back_and_frees_the_copy() {
        if std::env::var("MMAP_BODY_DETACH_CHILD").is_ok() {
            return;
        }
        let page = crate::mmap::sys::page_size();
        assert_eq!(page, PAGE, "the test's page size");
        let (file, map, bytes) = mapped(6);
        let at = map.as_ptr() as usize + 2 * PAGE;
        seam::FAIL_MREMAP.with(|fail| fail.set(true));
        // SAFETY: pages 2 to 4 of a mapping of `file` at offset 2 pages.
        let err = unsafe { detach(at as *const u8, 3 * PAGE, 3 * PAGE, &file, 2 * PAGE as u64) }
            .expect_err("the move failed");
        assert_eq!(err.raw_os_error(), Some(libc::ENOMEM));
        assert!(is_mapped(at, 3 * PAGE), "a hole where the file was");
        assert_eq!(&map[..], &bytes[..], "the file's bytes, all of them");
        let copy = seam::LAST_COPY.with(Cell::get);
        assert_ne!(copy, 0);
        assert!(!is_mapped(copy, 3 * PAGE), "the copy was not freed");
        // The next detach of the range works, with the seam spent.
        // SAFETY: as above.
        unsafe { detach(at as *const u8, 3 * PAGE, 3 * PAGE, &file, 2 * PAGE as u64) }.unwrap();
        assert_eq!(&map[..], &bytes[..]);
    }

    /// Where the file cannot be mapped back either, the process aborts
    /// with a message instead of leaving a hole: run in a child, this test
    /// binary started again for it alone.
    #[test]
    fn a_failed_map_back_aborts_with_a_message() {
        if std::env::var("MMAP_BODY_DETACH_CHILD").is_ok() {
            let (file, map, _) = mapped(4);
            seam::FAIL_MREMAP.with(|fail| fail.set(true));
            seam::FAIL_MAP_BACK.with(|fail| fail.set(true));
            let at = map.as_ptr() as usize + PAGE;
            // SAFETY: page 1 of a mapping of `file` at offset PAGE.
            let _ = unsafe { detach(at as *const u8, PAGE, PAGE, &file, PAGE as u64) };
            eprintln!("detach returned");
            std::process::exit(0);
        }
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "mmap::sys::detach::tests::a_failed_map_back_aborts_with_a_message",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env("MMAP_BODY_DETACH_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&child.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.status.signal(), Some(libc::SIGABRT), "{stderr}");
        assert!(
            stderr.contains("mapping the file back failed too"),
            "{stderr}"
        );
        assert!(!stderr.contains("detach returned"), "{stderr}");
    }

    use std::cell::Cell;
}
