//! Unix: `madvise` hints, `MADV_DONTNEED` for sent pages, and the exact
//! kind of a file that is not a regular one.

use std::fs::{File, FileType};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};

use memmap2::{Advice, Mmap, UncheckedAdvice};

/// Tells the kernel the mapping will be read from start to end
/// (`MADV_SEQUENTIAL`: larger read-ahead, pages behind dropped sooner).
pub(crate) fn advise_sequential(map: &Mmap) {
    // Advice is a hint; a kernel that refuses it changes nothing.
    let _ = map.advise(Advice::Sequential);
}

/// Takes the sequential hint back (`MADV_NORMAL`: the kernel's default
/// read-ahead).
pub(crate) fn advise_normal(map: &Mmap) {
    let _ = map.advise(Advice::Normal);
}

/// Starts reading `len` bytes at `offset` from disk (`MADV_WILLNEED`).
pub(crate) fn read_ahead(map: &Mmap, offset: usize, len: usize) {
    let _ = map.advise_range(Advice::WillNeed, offset, len);
}

/// Gives the pages of `offset..offset + len` back to the kernel
/// (`MADV_DONTNEED`).
///
/// # Safety
///
/// `map` is a shared, read-only mapping of a file: there, `MADV_DONTNEED`
/// only unmaps the pages from this process and a later read faults the
/// same bytes back in from the page cache. (On a private or anonymous
/// mapping it would throw their contents away.)
pub(crate) unsafe fn release(map: &Mmap, offset: usize, len: usize) {
    // SAFETY: the caller's promise above. memmap2 rounds the start down to
    // a page boundary and the kernel rounds the length up; both stay
    // inside the mapping. On macOS and the BSDs it is a hint that may
    // leave the pages resident; it never changes their contents.
    let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, offset, len) };
}

/// Why a file of this type cannot be mapped and sent; it is not a regular
/// file.
pub(crate) fn non_regular_reason(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "it is a directory"
    } else if kind.is_fifo() {
        "it is a FIFO (named pipe); stream it instead"
    } else if kind.is_socket() {
        "it is a socket; stream it instead"
    } else if kind.is_char_device() {
        "it is a character device; stream it instead"
    } else if kind.is_block_device() {
        "it is a block device; its size is not a file size"
    } else {
        "it is not a regular file"
    }
}

/// Reads from the start of `file` into `buf`, without moving its cursor.
pub(crate) fn read_start(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    file.read_at(buf, 0)
}

/// Reads `buf.len()` bytes of `file` at `offset` (`pread`); a file that
/// ends first is `UnexpectedEof`.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// Opens `path` for reading without blocking: `O_NONBLOCK`, so that a FIFO
/// or device put at the path after it was checked opens at once (and is
/// then refused by the `fstat` of the open file) instead of waiting for a
/// writer; `O_NOCTTY`, so that a terminal never becomes the process's.
/// Neither flag changes how a regular file is read.
pub(crate) fn open_read(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// What a file's metadata says beyond its size and modification time:
/// the inode's change time, which every write sets and no user can set
/// back (`touch -d` sets the modification time only), and its link count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    ctime: (i64, i64),
    links: u64,
}

pub(crate) fn stamp(meta: &std::fs::Metadata) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    Some(Stamp {
        ctime: (meta.ctime(), meta.ctime_nsec()),
        links: meta.nlink(),
    })
}

/// `true` if the inode changed from `before` to `now` in a way a write in
/// place explains: a new change time with the same link count. A new link
/// count also sets the change time (the file unlinked, another file renamed
/// over its path, a link added); then the change time says nothing about
/// the contents, which the size and modification time still vouch for. A
/// new change time alone is also what `chmod`, `chown`, extended attributes
/// and renaming the file itself leave: those count as changes too (a false
/// alarm that never lets a rewrite through).
pub(crate) fn changed_in_place(before: Option<Stamp>, now: Option<Stamp>) -> bool {
    match (before, now) {
        (Some(before), Some(now)) => before.links == now.links && before.ctime != now.ctime,
        _ => false,
    }
}

/// The size of a page.
pub(crate) fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).max(1)
}

/// `true` if every page of `offset..offset + len` of `map` is in memory
/// (`mincore(2)`), so that reading it takes no major fault. A failed
/// `mincore` answers `true`: the pages are then read where they are used,
/// as without the check.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn resident(map: &Mmap, offset: usize, len: usize) -> bool {
    let page = page_size();
    let base = map.as_ptr() as usize;
    let mut from = (base + offset) & !(page - 1);
    let to = base + offset + len;
    // 1024 pages a call (4 MiB of 4 KiB pages, a window of `warm`'s in one
    // call): a stack buffer, no allocation per frame.
    let mut vec = [0u8; 1024];
    while from < to {
        let span = (to - from).min(vec.len() * page);
        // SAFETY: `from..from + span` lies in the pages of `map`, which is
        // alive; `vec` holds one byte for each of its pages (at most 1024).
        let done =
            unsafe { libc::mincore(from as *mut libc::c_void, span, vec.as_mut_ptr().cast()) };
        if done != 0 {
            return true;
        }
        let pages = span.div_ceil(page);
        if vec[..pages].iter().any(|&v| v & 1 == 0) {
            return false;
        }
        from += span;
    }
    true
}

/// Brings the pages of `offset..offset + len` of `map` (a mapping of `file`
/// from its start, when there is a file) into memory, on the calling thread
/// (a blocking one).
///
/// With a file it is read over the range into a scratch buffer: the page
/// cache then holds the pages, and the reader of the mapping takes minor
/// faults only. (Not `MADV_POPULATE_READ`: it holds the process's mmap lock
/// while it waits for the disk, so any `mmap`/`munmap`/`mprotect` on
/// another thread, an allocator's or a new thread's stack, waits for it,
/// and so do the page faults queued behind that: on a disk throttled to
/// 190 MiB/s the runtime's ticker waited 8–12 ms at worst with it, 3–5 ms
/// with reads, the same as `ReaderStream`'s.) A page the file lost ends
/// the read early; nothing faults here.
///
/// Without a file (`from_mmap`), `MADV_POPULATE_READ` (Linux 5.14) maps the
/// pages in, reporting a lost page as an error instead of raising `SIGBUS`;
/// elsewhere nothing is done.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn populate(map: &Mmap, file: Option<&File>, offset: usize, len: usize) {
    if let Some(file) = file {
        let mut buf = [0u8; 64 * 1024];
        let mut at = offset as u64;
        let end = (offset + len) as u64;
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            match file.read_at(&mut buf[..want], at) {
                Ok(0) | Err(_) => return,
                Ok(n) => at += n as u64,
            }
        }
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // `MADV_POPULATE_READ`, spelt out for libc versions older than it.
        const MADV_POPULATE_READ: libc::c_int = 22;
        let page = page_size();
        let base = map.as_ptr() as usize;
        let from = (base + offset) & !(page - 1);
        // SAFETY: the range lies in the pages of `map`, which is alive;
        // populating reads pages and changes no byte. A page that cannot be
        // read is an error returned, not a signal.
        let _ = unsafe {
            libc::madvise(
                from as *mut libc::c_void,
                base + offset + len - from,
                MADV_POPULATE_READ,
            )
        };
    }
    // Elsewhere a mapping without a file is left to fault in where read.
    #[cfg(not(target_os = "linux"))]
    let _ = map;
}
