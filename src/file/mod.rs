//! [`FileBody`]: a file body whose constructor is safe, zero-copy under a
//! read lease and read with `pread` where the kernel gives none.

mod read;

use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::error::{Error, ErrorKind};
use crate::mmap::{open_read, with_path, FileOrigin, DEFAULT_CHUNK_SIZE};
use crate::MmapBody;
use read::ReadBody;

/// An [`http_body::Body`] that sends a file, or a range of it, and whose
/// constructor is safe: nobody has to promise to leave the file alone.
///
/// Where the kernel grants this process a read lease on the file (Linux,
/// `fcntl(F_SETLEASE, F_RDLCK)`), it is sent as an [`MmapBody`] is: frames
/// are zero-copy [`Bytes`] slices of a mapping of the file. The lease is
/// what makes that sound. Another process's (or this one's) `open` of the
/// file for writing, and its truncation, wait until the crate was told and
/// let go; before it lets go, every range of the file a frame still holds
/// is copied out of the file's pages (a private copy put in place of the
/// mapped pages), and no frame is handed out after. The writer waits
/// milliseconds, the `Bytes` already handed out keep the bytes they had,
/// and the body (and its clones) end with [`ErrorKind::Modified`].
///
/// Where there is no lease, frames are read from the file with `pread`
/// (one copy each, 1 MiB at a time, on tokio's blocking pool inside a
/// runtime with the feature `tokio`, one read ahead of the frame going
/// out). The kernel refuses a lease when the file is open for writing
/// anywhere (this process included), when the process is neither the
/// file's owner nor has `CAP_LEASE`, on file systems without leases (most
/// network and FUSE ones), and everywhere but Linux.
/// [`is_mapped`](FileBody::is_mapped) says which path a body took.
///
/// Either way:
///
/// - [`size_hint`](http_body::Body::size_hint) is exact (hyper sends a
///   `Content-Length`); [`Clone`] is O(1) and starts again at the start of
///   the range, so [`ReplayLayer`] and a retry never record it;
///   [`slice`](FileBody::slice) makes a sub-range without copying.
/// - The file is checked (one `fstat`) before each mapped frame and after
///   each read, and the body ends with [`ErrorKind::Truncated`] if it
///   shrank or [`ErrorKind::Modified`] if it changed, as [`MmapBody`]'s
///   checks do. A receiver never gets the whole length of a body whose file
///   was seen to change.
///
/// # Hazards
///
/// - **The lease's signal.** The crate is told of a break by a realtime
///   signal, `SIGRTMIN + 7`, directed at a thread of its own
///   (`mmap-body-leases`, started with the first lease), which blocks it
///   and reads it from a `signalfd`. No handler is installed and no other
///   thread is sent it. A program that uses `SIGRTMIN + 7` itself, and
///   blocks it in all its other threads, may see its signals taken by that
///   thread: call [`FileBody::disable_leases`] first, and every `FileBody`
///   reads with `pread`.
/// - **A process that is stopped** (`SIGSTOP`, a debugger) cannot answer
///   a break: the writer waits until `/proc/sys/fs/lease-break-time` (45 s
///   by default) passes and the kernel lets it go on, and frames held
///   then may change. The same holds if the held frames are more than
///   half the memory the process may still take (Linux: `MemAvailable` and
///   its memory cgroup), which are then not copied: a consumer that keeps
///   a whole large file (`collect()`) should read it another way.
/// - **Without a lease** the frames are copies, which never change, but a
///   writer may change the file between two reads. The checks see it by
///   its size and time stamps; two writes within one tick of the file
///   system's clock (a few milliseconds) and no change of size can go
///   unseen, as for every reader of a file that is being written.
///
/// Prefer [`MmapBody`] where the program owns the files it sends (no lease
/// to take, no `pread` fallback, every platform), and `FileBody` for files
/// others may rewrite: a directory someone deploys to, a user's upload.
///
/// # Example
///
/// ```
/// use http_body::Body;
/// use http_body_util::BodyExt;
/// use mmap_body::FileBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("report.csv");
/// std::fs::write(&path, "id,total\n1,42\n")?;
///
/// let body = FileBody::open(&path)?; // no `unsafe`
/// assert_eq!(body.size_hint().exact(), Some(14));
/// let totals = body.slice(9..)?;
/// assert_eq!(totals.collect().await?.to_bytes(), "1,42\n");
/// # Ok(())
/// # }
/// ```
///
#[cfg_attr(feature = "replay", doc = "[`ReplayLayer`]: crate::ReplayLayer")]
#[cfg_attr(
    not(feature = "replay"),
    doc = "[`ReplayLayer`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayLayer.html"
)]
#[derive(Debug, Clone)]
pub struct FileBody {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Mapped(MmapBody),
    Read(ReadBody),
}

impl FileBody {
    /// Opens the regular file at `path` for reading and takes a read lease
    /// on it where the kernel gives one (see the type's docs).
    ///
    /// # Errors
    ///
    /// The error of opening or mapping the file, with the path in its
    /// message; [`io::ErrorKind::InvalidInput`] for a directory, FIFO,
    /// socket, device or a `/proc`-style file (size 0, not empty). The
    /// path is opened without blocking, so a FIFO is refused, not waited on.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileBody> {
        let path = path.as_ref();
        let file = open_read(path).map_err(|e| with_path(e, "cannot open", path))?;
        FileBody::new(FileOrigin::of(file, Some(path.to_owned()))?)
    }

    /// A body of an already open regular file.
    ///
    /// A lease is only given for a descriptor opened read-only: one opened
    /// for writing (or read and write) is always read with `pread`.
    ///
    /// # Errors
    ///
    /// As [`open`](FileBody::open).
    pub fn from_file(file: File) -> io::Result<FileBody> {
        FileBody::new(FileOrigin::of(file, None)?)
    }

    /// [`open`](FileBody::open), and the file's metadata from the same
    /// descriptor (what `serve::ServeDir`'s cache compares a path with).
    /// The `open`'s error is the system's own (its kind and code decide
    /// the status a server answers with).
    #[cfg(feature = "serve")]
    pub(crate) fn open_with_metadata(path: &Path) -> io::Result<(FileBody, std::fs::Metadata)> {
        let file = open_read(path)?;
        let meta = file.metadata()?;
        let body = FileBody::new(FileOrigin::of(file, Some(path.to_owned()))?)?;
        Ok((body, meta))
    }

    /// `true` unless this body's lease was broken or its mapping lost a
    /// page (no system call): a clone of it can still be sent.
    #[cfg(feature = "serve")]
    pub(crate) fn intact(&self) -> bool {
        match &self.inner {
            Inner::Mapped(body) => body.intact(),
            Inner::Read(_) => true,
        }
    }

    fn new(origin: FileOrigin) -> io::Result<FileBody> {
        let inner = match MmapBody::map_leased(origin)? {
            Ok(body) => Inner::Mapped(body),
            Err(origin) => Inner::Read(ReadBody::new(origin, DEFAULT_CHUNK_SIZE)),
        };
        Ok(FileBody { inner })
    }

    /// No `FileBody` takes a read lease from now on (bodies that hold one
    /// keep it): every one reads with `pread`, and the crate never uses the
    /// signal `SIGRTMIN + 7`. For a program that uses that signal itself;
    /// call it before the first `FileBody` is opened.
    pub fn disable_leases() {
        crate::mmap::disable_leases();
    }

    /// `true` if frames are zero-copy slices of a leased mapping, `false`
    /// if they are read with `pread`.
    pub fn is_mapped(&self) -> bool {
        matches!(self.inner, Inner::Mapped(_))
    }

    /// The number of bytes this body sends from its start.
    pub fn len(&self) -> u64 {
        match &self.inner {
            Inner::Mapped(body) => body.len(),
            Inner::Read(body) => {
                let (start, end) = body.range();
                end - start
            }
        }
    }

    /// `true` for a body of zero bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file's modification time when it was opened; `None` where the
    /// platform keeps none.
    pub fn modified(&self) -> Option<SystemTime> {
        match &self.inner {
            Inner::Mapped(body) => body.modified(),
            Inner::Read(body) => body.origin().modified,
        }
    }

    /// The mapped body inside; `None` where the file is read with `pread`.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn into_mmap(self) -> Option<MmapBody> {
        match self.inner {
            Inner::Mapped(body) => Some(body),
            Inner::Read(_) => None,
        }
    }

    /// Where this body's range starts in the file.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn offset(&self) -> u64 {
        match &self.inner {
            Inner::Mapped(body) => body.offset(),
            Inner::Read(body) => body.range().0,
        }
    }

    /// A body for a sub-range of this one, relative to its start, sharing
    /// its mapping (or file): for `Range` answers, multipart parts or a
    /// resumed upload.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::OutOfRange`] if the range ends past
    /// [`len`](FileBody::len) or starts after it ends. Never panics.
    pub fn slice(&self, range: impl RangeBounds<u64>) -> Result<FileBody, Error> {
        let inner = match &self.inner {
            Inner::Mapped(body) => Inner::Mapped(body.slice(range)?),
            Inner::Read(body) => {
                let (start, _) = body.range();
                let (from, to) = bounds(&range, self.len())?;
                Inner::Read(body.slice(start + from, start + to))
            }
        };
        Ok(FileBody { inner })
    }

    /// Sets the size of each frame, in bytes (values below 1 count as 1);
    /// [`DEFAULT_CHUNK_SIZE`] by default. On the
    /// `pread` path it is also the size of each read.
    pub fn chunk_size(mut self, bytes: usize) -> FileBody {
        self.inner = match self.inner {
            Inner::Mapped(body) => Inner::Mapped(body.chunk_size(bytes)),
            Inner::Read(mut body) => {
                body.set_chunk(bytes.max(1));
                Inner::Read(body)
            }
        };
        self
    }

    /// Checks now (one `fstat`) that the file is as long, as old and as
    /// unwritten as when it was opened, and, if leased, that the lease was
    /// not broken. A retry policy asks this before sending a clone again.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Truncated`] or [`ErrorKind::Modified`], saying what
    /// changed; [`ErrorKind::Io`] if the `fstat` fails.
    pub fn verify(&self) -> Result<(), Error> {
        match &self.inner {
            Inner::Mapped(body) => body.verify(),
            Inner::Read(body) => body.verify(),
        }
    }
}

/// `range` of a body of `len` bytes as `from..to`.
fn bounds(range: &impl RangeBounds<u64>, len: u64) -> Result<(u64, u64), Error> {
    let from = match range.start_bound() {
        Bound::Included(&n) => Some(n),
        Bound::Excluded(&n) => n.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let to = match range.end_bound() {
        Bound::Included(&n) => n.checked_add(1),
        Bound::Excluded(&n) => Some(n),
        Bound::Unbounded => Some(len),
    };
    match (from, to) {
        (Some(from), Some(to)) if from <= to && to <= len => Ok((from, to)),
        _ => Err(Error::new(
            ErrorKind::OutOfRange,
            format!(
                "slice {:?}..{:?} does not fit a body of {len} bytes; \
                 ask for a range within 0..={len}",
                range.start_bound(),
                range.end_bound()
            ),
        )),
    }
}

impl From<MmapBody> for FileBody {
    /// The mapped body as a `FileBody` (for APIs that take one), under the
    /// promise made when it was mapped: it holds no lease of its own.
    fn from(body: MmapBody) -> FileBody {
        FileBody {
            inner: Inner::Mapped(body),
        }
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.get_mut().inner {
            Inner::Mapped(body) => Pin::new(body).poll_frame(cx),
            Inner::Read(body) => body
                .poll_next(cx)
                .map(|frame| frame.map(|frame| frame.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Mapped(body) => body.is_end_stream(),
            Inner::Read(body) => body.remaining() == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Mapped(body) => body.size_hint(),
            Inner::Read(body) => SizeHint::with_exact(body.remaining()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;

    fn assert_traits<T: Send + Sync + Unpin + Clone + 'static>() {}

    #[test]
    fn body_is_send_sync_unpin_clone() {
        assert_traits::<FileBody>();
    }

    #[test]
    fn a_descriptor_open_for_writing_reads_with_pread() {
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, b"0123456789").unwrap();
        let body = FileBody::from_file(file).unwrap();
        assert!(!body.is_mapped());
        assert_eq!(body.size_hint().exact(), Some(10));
        let inner = body.slice(2..8).unwrap();
        assert_eq!(inner.len(), 6);
        assert_eq!(inner.slice(1..3).unwrap().len(), 2);
        for bad in [inner.slice(0..7), inner.slice(7..), body.slice(..=10)] {
            assert_eq!(bad.unwrap_err().kind(), ErrorKind::OutOfRange);
        }
    }
}
