//! Every platform memmap2 supports: no access advice, no page release, and
//! only "directory" or "not a regular file" for what cannot be mapped.
//!
//! Windows uses it, and so does Unix when built with
//! `--cfg mmap_body_portable`, which CI does to keep this file compiled and
//! tested on Linux.

use std::fs::{File, FileType};
use std::io;

use memmap2::Mmap;

/// No advice: memmap2 offers none outside Unix. The OS's own read-ahead
/// for mapped files applies.
pub(crate) fn advise_sequential(_map: &Mmap) {}

/// No advice to take back.
pub(crate) fn advise_normal(_map: &Mmap) {}

/// No read-ahead hint outside Unix; pages are read when first touched.
pub(crate) fn read_ahead(_map: &Mmap, _offset: usize, _len: usize) {}

/// Nothing is released: the pages of sent frames stay mapped until the
/// body, its clones and its `Bytes` are dropped. They are clean pages of a
/// file, which the OS may still reclaim under memory pressure.
///
/// # Safety
///
/// None needed here; `unsafe` to match the Unix version, whose caller
/// promises `map` is a shared, read-only mapping of a file.
pub(crate) unsafe fn release(_map: &Mmap, _offset: usize, _len: usize) {}

/// Why a file of this type cannot be mapped and sent; it is not a regular
/// file.
pub(crate) fn non_regular_reason(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "it is a directory"
    } else {
        "it is not a regular file (a pipe, socket or device); stream it instead"
    }
}

/// Reads from the start of `file` into `buf`.
#[cfg(windows)]
pub(crate) fn read_start(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    // Moves the cursor; nothing in this crate reads through it.
    std::os::windows::fs::FileExt::seek_read(file, buf, 0)
}

/// Reads from the start of `file` into `buf`.
#[cfg(not(windows))]
pub(crate) fn read_start(mut file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    // Moves the cursor; nothing in this crate reads through it.
    file.seek(SeekFrom::Start(0))?;
    file.read(buf)
}

/// Opens `path` for reading (the open file is checked to be a regular file
/// right after).
pub(crate) fn open_read(path: &std::path::Path) -> io::Result<File> {
    File::open(path)
}

/// Nothing beyond size and modification time is kept here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp;

pub(crate) fn stamp(_meta: &std::fs::Metadata) -> Option<Stamp> {
    None
}

pub(crate) fn changed_in_place(_before: Option<Stamp>, _now: Option<Stamp>) -> bool {
    false
}

/// Reads `buf.len()` bytes of `file` at `offset`, for a
/// [`FileBody`](crate::FileBody) without a lease (every one, here); a file
/// that ends first is `UnexpectedEof`. Unix: `pread`; Windows: positioned
/// reads (which move the cursor, through which nothing in this crate
/// reads); elsewhere a seek and reads, under a lock, since they share the
/// cursor.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(file, buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file ended before the bytes asked for",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        use std::io::{Read, Seek, SeekFrom};
        static CURSOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _cursor = crate::sync::lock(&CURSOR);
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

/// Pages are never swapped in place here (and no `SIGBUS` guard makes it
/// needed).
///
/// # Safety
///
/// None needed; `unsafe` to match the Unix version.
pub(crate) unsafe fn detach(
    _addr: *const u8,
    _len: usize,
    _copied: usize,
    _file: &File,
    _offset: u64,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "pages cannot be swapped in place on this platform",
    ))
}

/// A page, for rounding; nothing here depends on its exact size.
pub(crate) fn page_size() -> usize {
    4096
}

/// No `mincore` here: pages are taken as resident, and read where used.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn resident(_map: &Mmap, _offset: usize, _len: usize) -> bool {
    true
}

/// Nothing to bring in ahead (never called: every range is "resident").
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn populate(_map: &Mmap, _file: Option<&File>, _offset: usize, _len: usize) {}
