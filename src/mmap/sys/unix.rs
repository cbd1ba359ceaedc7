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
