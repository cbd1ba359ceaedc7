//! The one mapping an [`MmapBody`](super::MmapBody) and its clones, slices
//! and frames share, and the checks that the file behind it is unchanged.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use memmap2::Mmap;

use super::lease::{Lease, Leased};
use super::open::{maybe_with_path, reject_non_regular, reject_pseudo_file};
use super::release::Pending;
use super::{guard, sys};
use crate::error::{Error, ErrorKind};

/// The steps in which sent pages are given back: the kernel's default
/// fault-around window (`/sys/kernel/mm/.../fault_around_bytes`), so that a
/// step is never mapped back in for the frame after it.
const RELEASE_STEP: usize = 64 << 10;

/// The file behind a mapping (or a [`FileBody`](crate::FileBody) read with
/// `pread`), kept open to check it has not changed.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) file: File,
    pub(crate) path: Option<PathBuf>,
    pub(crate) len: u64,
    pub(crate) modified: Option<SystemTime>,
    /// The inode's change time and link count, where the platform has them.
    pub(super) stamp: Option<sys::Stamp>,
}

impl Origin {
    /// The open regular `file` as it is now (one `fstat`), named by `path`
    /// in errors.
    ///
    /// # Errors
    ///
    /// The `fstat`'s; [`std::io::ErrorKind::InvalidInput`] for a file that
    /// is not a regular one, or a `/proc`-style file (size 0, not empty).
    pub(crate) fn of(file: File, path: Option<PathBuf>) -> std::io::Result<Origin> {
        let meta = file
            .metadata()
            .map_err(|e| maybe_with_path(e, "cannot stat", path.as_deref()))?;
        reject_non_regular(&meta, path.as_deref())?;
        if meta.len() == 0 {
            reject_pseudo_file(&file, path.as_deref())?;
        }
        Ok(Origin {
            len: meta.len(),
            modified: meta.modified().ok(),
            stamp: sys::stamp(&meta),
            file,
            path,
        })
    }

    pub(crate) fn name(&self) -> String {
        match &self.path {
            Some(path) => format!("`{}`", path.display()),
            None => "the file".to_owned(),
        }
    }

    /// One `fstat`: bytes up to `end` are still in the file, and it has
    /// not changed since it was opened ([`ErrorKind::Truncated`] or
    /// [`ErrorKind::Modified`] if it has), traced (feature `tracing`).
    pub(crate) fn check(&self, end: u64) -> Result<(), Error> {
        traced(self.check_quietly(end))
    }

    fn check_quietly(&self, end: u64) -> Result<(), Error> {
        let meta = self.file.metadata().map_err(|e| {
            Error::io(
                format!("could not fstat {} to check it is unchanged", self.name()),
                e,
            )
        })?;
        if meta.len() < end {
            return Err(Error::new(
                ErrorKind::Truncated,
                format!(
                    "{} shrank from {} to {} bytes while {} bytes of it were being sent; \
                     the body stopped before reading past the end of the file. \
                     Send it again once the writer has finished with it.",
                    self.name(),
                    self.len,
                    meta.len(),
                    end
                ),
            ));
        }
        if meta.len() != self.len
            || meta.modified().ok() != self.modified
            || sys::changed_in_place(self.stamp, sys::stamp(&meta))
        {
            return Err(Error::new(
                ErrorKind::Modified,
                format!(
                    "{} changed since it was opened (size {} -> {} bytes, or a new \
                     modification or inode change time: written, or its mode or owner \
                     changed); the bytes sent would not be the bytes opened. \
                     Open the file again to send its new contents.",
                    self.name(),
                    self.len,
                    meta.len()
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub(super) struct Mapping {
    /// The file's read lease, where the kernel gave one; declared first so
    /// that it is let go before the file is closed.
    lease: OnceLock<Option<Lease>>,
    /// What a break of the lease copies, and whether one came.
    pub(super) leased: Mutex<Leased>,
    /// Registered with the SIGBUS guard; declared before `map` so that it
    /// is dropped, and unregistered, before `map` is unmapped.
    region: Option<guard::Region>,
    pub(super) map: Mmap,
    /// `None` for [`MmapBody::from_mmap`](super::MmapBody::from_mmap): the caller vouched for the mapping
    /// and there is no file to check.
    pub(super) origin: Option<Origin>,
    /// The page ranges (offsets) detached from the file, replaced by a
    /// private copy: never released, since `MADV_DONTNEED` would zero a
    /// private page. Frames take it shared to release their pages (and skip
    /// the release while it is taken exclusive); [`detach`](Mapping::detach)
    /// takes it exclusive.
    detached: RwLock<Vec<(usize, usize)>>,
    /// Dropped frames whose pages wait to be given back in one batch.
    sent: Pending,
}

impl Mapping {
    /// A mapping of a file (`origin`), for which the `SIGBUS` guard is
    /// installed unless the program opted out, or one the caller vouched
    /// for.
    pub(super) fn new(map: Mmap, origin: Option<Origin>) -> Mapping {
        // Only a file's mapping can lose pages. Registered whole pages,
        // as the handler repairs them: a copy of the last page may read
        // past the file's length (as `detach` does not, but a `memmove`
        // may load a vector beyond its range).
        let region = if origin.is_some() {
            guard::ensure();
            let page = sys::page_size();
            let len = (map.len() + page - 1) & !(page - 1);
            guard::Region::register(map.as_ptr(), len)
        } else {
            None
        };
        Mapping {
            lease: OnceLock::new(),
            leased: Mutex::default(),
            region,
            map,
            origin,
            detached: RwLock::new(Vec::new()),
            sent: Pending::default(),
        }
    }

    /// Takes a read lease on the file, where the kernel gives one (see
    /// [`Lease`]), the first time it is asked: when a whole `Bytes` of the
    /// mapping is made. From then on a break also covers the frames of
    /// every body of the mapping ([`Leased`]).
    pub(super) fn take_lease(self: &Arc<Self>) -> bool {
        self.lease.get_or_init(|| Lease::take(self)).is_some()
    }

    /// Gives the pages of the dropped frame `start..end` back to the
    /// kernel, with those of adjacent frames dropped before it, once they
    /// add up to a [batch](super::release::BATCH) or reach the mapping's
    /// end. Ranges are given back in whole [`RELEASE_STEP`]s: those from
    /// the step `start` is in up to the one `end` is in, which the range
    /// after it gives back. Steps that hold a detached page are left
    /// mapped, and nothing is given back while a detach is under way (not
    /// releasing a page is always safe, and a frame's drop never waits for
    /// a copy).
    ///
    /// The kernel maps a file's pages in by aligned 64 KiB windows
    /// (fault-around): a frame whose first page shares such a window with
    /// pages already given back would map them back in with it, and they
    /// would stay resident. Frames of any length, released step by step,
    /// never leave a window half given back.
    ///
    /// # Safety
    ///
    /// The mapping is a shared, read-only mapping of a file (see
    /// [`sys::release`]).
    pub(super) unsafe fn release(&self, start: usize, end: usize) {
        for (from, to) in self
            .sent
            .add(start, end, self.map.len())
            .into_iter()
            .flatten()
        {
            // SAFETY: the caller's promise.
            unsafe { self.release_now(from, to) };
        }
    }

    /// Gives the pages of `start..end` back at once, as
    /// [`release`](Mapping::release) describes.
    ///
    /// # Safety
    ///
    /// As for [`release`](Mapping::release).
    pub(super) unsafe fn release_now(&self, start: usize, end: usize) {
        let step = RELEASE_STEP.max(sys::page_size());
        let (from, to) = (start & !(step - 1), end & !(step - 1));
        if from >= to {
            return;
        }
        let Ok(detached) = self.detached.try_read() else {
            return;
        };
        // The detached ranges (page-aligned) inside this one, in order:
        // only the whole steps between them are given back.
        let mut private: Vec<(usize, usize)> = detached
            .iter()
            .copied()
            .filter(|&(a, b)| a < to && from < b)
            .collect();
        private.sort_unstable();
        let mut at = from;
        for (a, b) in private.into_iter().chain([(to, to)]) {
            let (first, last) = ((at + step - 1) & !(step - 1), a.min(to) & !(step - 1));
            if first < last {
                // SAFETY: the caller's promise; `first..last` lies between
                // detached ranges, so no page of it is private, and none
                // becomes private while `detached` is held.
                unsafe { sys::release(&self.map, first, last - first) };
            }
            at = at.max(b);
        }
    }

    /// `true` if the pages of `start..end` are in memory: handing them out
    /// costs the reader no disk read.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(super) fn resident(&self, start: usize, end: usize) -> bool {
        sys::resident(&self.map, start, end - start)
    }

    /// Reads the pages of `start..end` in, on the calling (blocking) thread.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(super) fn populate(&self, start: usize, end: usize) {
        let file = self.origin.as_ref().map(|origin| &origin.file);
        sys::populate(&self.map, file, start, end - start);
    }

    /// Replaces the pages of `ranges` (offsets into the mapping) with a
    /// private copy of themselves, so that the frames over them keep their
    /// bytes whatever happens to the file. The bytes copied are the file's
    /// only if [`verify`](Mapping::verify) passes afterwards. Where pages
    /// cannot be swapped in place (Unix other than Linux and Android), does
    /// nothing.
    pub(super) fn detach(&self, ranges: &[(usize, usize)]) -> Result<(), Error> {
        // Only a file's mapping has frames tracked, and a file to map back.
        let Some(origin) = &self.origin else {
            return Ok(());
        };
        let mut detached = crate::sync::write(&self.detached);
        let page = sys::page_size();
        let base = self.map.as_ptr() as usize;
        debug_assert_eq!(base & (page - 1), 0, "a file mapping starts on a page");
        let len = self.map.len();
        for &(start, end) in ranges {
            let from = start & !(page - 1);
            let to = ((end + page - 1) & !(page - 1)).min((len + page - 1) & !(page - 1));
            if to <= from {
                continue;
            }
            // Past the file's length, the last page reads as zeros: the
            // copy leaves them so and reads nothing there.
            let copied = to.min(len) - from;
            let addr = (base + from) as *const u8;
            // SAFETY: `from..to` is page-aligned and inside the pages of
            // this mapping, which `self` keeps mapped: a shared, read-only
            // mapping of `origin.file` from its start (so at offset
            // `from`); the `copied` bytes read lie in the file's length,
            // registered with the SIGBUS guard (installed: the caller
            // checked).
            let copy = unsafe { sys::detach(addr, to - from, copied, &origin.file, from as u64) };
            match copy {
                Ok(()) => detached.push((from, to)),
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return Ok(()),
                Err(e) => {
                    return Err(Error::io(
                        format!(
                            "could not copy the {} bytes of {} its reader still holds, \
                             to end the body safely",
                            end - start,
                            self.name()
                        ),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    /// A copy of the bytes `start..end` read from the file with `pread`,
    /// not through the mapping: what a thread that blocks `SIGBUS` gets,
    /// since no handler can repair a page it reads that the file lost. A
    /// file that ends first is [`ErrorKind::Truncated`], as the check says.
    pub(super) fn read_copy(&self, start: usize, end: usize) -> Result<bytes::Bytes, Error> {
        let Some(origin) = &self.origin else {
            return Err(Error::new(ErrorKind::Io, "no file to read a copy from"));
        };
        let mut buf = vec![0u8; end - start];
        if let Err(e) = sys::read_exact_at(&origin.file, &mut buf, start as u64) {
            // A file that shrank says so; any other failure is I/O.
            self.check_file(end)?;
            return Err(Error::io(
                format!("could not read {} to send it", origin.name()),
                e,
            ));
        }
        Ok(bytes::Bytes::from(buf))
    }

    /// `true` while no break of the lease came and no page was lost: a
    /// new body of the mapping can still send it (no system call).
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(super) fn intact(&self) -> bool {
        !crate::sync::lock(&self.leased).is_broken() && !self.poisoned()
    }

    /// `true` once the SIGBUS guard replaced a page of this mapping with
    /// zeros: some bytes read from it were not the file's.
    fn poisoned(&self) -> bool {
        self.region.as_ref().is_some_and(guard::Region::poisoned)
    }

    /// The file's read lease is being broken (a writer waits for it): no
    /// frame is handed out from now on, and the pages of those still held
    /// (all of them while a `Bytes::from(MmapBody)` lives) are copied out of
    /// the file, if the copy fits in half the memory the process may still
    /// take, so that no `Bytes` over them changes.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(super) fn on_lease_break(&self) {
        let ranges = crate::sync::lock(&self.leased).broken(self.map.len());
        let bytes: u64 = ranges.iter().map(|(start, end)| (end - start) as u64).sum();
        if sys::headroom().is_some_and(|room| bytes > room / 2) {
            return;
        }
        let _ = self.detach(&ranges);
    }

    /// The error of a body of this mapping once its lease was broken: the
    /// file truncated (now shorter than mapped) or otherwise written.
    pub(super) fn broken_error(&self) -> Error {
        let shrank = self.origin.as_ref().and_then(|origin| {
            let now = origin.file.metadata().ok()?.len();
            (now < origin.len).then_some((origin.len, now))
        });
        Leased::error(&self.name(), shrank)
    }

    pub(super) fn name(&self) -> String {
        self.origin
            .as_ref()
            .map_or_else(|| "the mapped file".to_owned(), Origin::name)
    }

    /// Everything that can be known now: no read of the mapping hit a page
    /// the file no longer has (the guard's poison), then
    /// [`check_file`](Mapping::check_file).
    pub(super) fn verify(&self, end: usize) -> Result<(), Error> {
        traced(self.verify_quietly(end))
    }

    fn verify_quietly(&self, end: usize) -> Result<(), Error> {
        if crate::sync::lock(&self.leased).is_broken() {
            return Err(self.broken_error());
        }
        if self.poisoned() {
            return Err(Error::new(
                ErrorKind::Truncated,
                format!(
                    "{} was truncated while it was being sent: pages past its new end \
                     were read as zeros (the SIGBUS guard kept the process alive), so \
                     the body was failed rather than sent with them. Send it again once \
                     the writer has finished with it.",
                    self.name()
                ),
            ));
        }
        self.check_file_quietly(end)
    }

    /// The file alone, with one `fstat`: bytes up to `end` are still backed
    /// by it and it has not changed since it was mapped. (The mapping's
    /// poison is [`verify`](Mapping::verify)'s.)
    pub(super) fn check_file(&self, end: usize) -> Result<(), Error> {
        traced(self.check_file_quietly(end))
    }

    fn check_file_quietly(&self, end: usize) -> Result<(), Error> {
        // A break's error first: it says why the file changed.
        if crate::sync::lock(&self.leased).is_broken() {
            return Err(self.broken_error());
        }
        match &self.origin {
            Some(origin) => origin.check_quietly(end as u64),
            None => Ok(()),
        }
    }
}

/// A file found changed is a `tracing` event (feature `tracing`).
fn traced(checked: Result<(), Error>) -> Result<(), Error> {
    if let Err(err) = &checked {
        crate::trace::trace_event!(
            target: "mmap_body::mmap",
            tracing::Level::WARN,
            kind = %err.kind(),
            error = %err,
            "file changed under its mapping"
        );
        let _ = err;
    }
    checked
}
