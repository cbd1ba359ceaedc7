//! The one mapping an [`MmapBody`](super::MmapBody) and its clones, slices
//! and frames share, and the checks that the file behind it is unchanged.

use std::fs::File;
use std::path::PathBuf;
use std::time::SystemTime;

use memmap2::Mmap;

use super::guard;
use crate::error::{Error, ErrorKind};

/// The file behind a mapping, kept open to check it has not changed.
#[derive(Debug)]
pub(super) struct Origin {
    pub(super) file: File,
    pub(super) path: Option<PathBuf>,
    pub(super) len: u64,
    pub(super) modified: Option<SystemTime>,
}

impl Origin {
    fn name(&self) -> String {
        match &self.path {
            Some(path) => format!("`{}`", path.display()),
            None => "the mapped file".to_owned(),
        }
    }
}

#[derive(Debug)]
pub(super) struct Mapping {
    /// Registered with the SIGBUS guard; declared first so that it is
    /// dropped, and unregistered, before `map` is unmapped.
    region: Option<guard::Region>,
    pub(super) map: Mmap,
    /// `None` for [`MmapBody::from_mmap`](super::MmapBody::from_mmap): the caller vouched for the mapping
    /// and there is no file to check.
    pub(super) origin: Option<Origin>,
}

impl Mapping {
    pub(super) fn new(map: Mmap, origin: Option<Origin>) -> Mapping {
        Mapping {
            region: guard::Region::register(map.as_ptr(), map.len()),
            map,
            origin,
        }
    }

    /// `true` once the SIGBUS guard replaced a page of this mapping with
    /// zeros: some bytes read from it were not the file's.
    fn poisoned(&self) -> bool {
        self.region.as_ref().is_some_and(guard::Region::poisoned)
    }

    fn name(&self) -> String {
        self.origin
            .as_ref()
            .map_or_else(|| "the mapped file".to_owned(), Origin::name)
    }

    /// [`check`](Mapping::check), after first making sure no read of the
    /// mapping hit a page the file no longer has.
    pub(super) fn verify(&self, end: usize) -> Result<(), Error> {
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
        self.check(end)
    }

    /// Checks, with one `fstat`, that bytes up to `end` are still backed by
    /// the file and that the file has not changed since it was mapped.
    pub(super) fn check(&self, end: usize) -> Result<(), Error> {
        let Some(origin) = &self.origin else {
            return Ok(());
        };
        let meta = origin.file.metadata().map_err(|e| {
            Error::io(
                format!("could not fstat {} to check it is unchanged", origin.name()),
                e,
            )
        })?;
        if meta.len() < end as u64 {
            return Err(Error::new(
                ErrorKind::Truncated,
                format!(
                    "{} shrank from {} to {} bytes while {} bytes of it were being sent; \
                     the body stopped before reading past the end of the file. \
                     Send it again once the writer has finished with it.",
                    origin.name(),
                    origin.len,
                    meta.len(),
                    end
                ),
            ));
        }
        if meta.len() != origin.len || meta.modified().ok() != origin.modified {
            return Err(Error::new(
                ErrorKind::Modified,
                format!(
                    "{} changed since it was mapped (size {} -> {} bytes or a new \
                     modification time); the bytes sent would not be the bytes mapped. \
                     Open the file again to send its new contents.",
                    origin.name(),
                    origin.len,
                    meta.len()
                ),
            ));
        }
        Ok(())
    }
}
