//! [`MmapBody`]: an HTTP body whose frames are slices of a memory-mapped file.

mod chunk;
pub mod guard;
mod hold;
mod lease;
mod mapping;
mod open;
mod release;
mod sys;
mod warm;

use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use memmap2::Mmap;

use crate::error::{Error, ErrorKind};
use chunk::{Chunk, InFlight, Whole};
pub(crate) use lease::disable as disable_leases;
pub(crate) use mapping::Origin as FileOrigin;
use mapping::{Mapping, Origin};
pub(crate) use open::with_path;
use open::{maybe_with_path, reject_non_regular};
pub(crate) use sys::{open_read, read_exact_at};
use warm::Warm;

/// The frame size an [`MmapBody`] uses unless told otherwise: 1 MiB.
///
/// Chosen by measurement (`cargo bench --bench bench`, 64 KiB,
/// 1 MiB and 4 MiB frames side by side; the README has the numbers). Below
/// 1 MiB the per-frame cost (one `fstat`, one read-ahead hint, one
/// `madvise`, one `Bytes` owner and hyper's bookkeeping) shows in the CPU
/// time; above it nothing is gained, more of the file stays resident
/// between being faulted in and given back, and HTTP/2 (whose send buffer
/// is 1 MiB in hyper) does slightly worse. The heap used is the same at
/// every size.
pub const DEFAULT_CHUNK_SIZE: usize = 1024 * 1024;

/// A body of at most this many bytes (and no longer than its
/// [`chunk_size`](MmapBody::chunk_size)) is copied whole, after the file's
/// last check, and sent as one frame, instead of zero-copy frames and a last
/// byte of its own (see [`MmapBody::poll_tail`]).
///
/// A small last write after a small write before it waits, under Nagle's
/// algorithm, for the peer's delayed ACK (40 ms on Linux) on a socket
/// without `TCP_NODELAY`: the default of hyper-util's `HttpConnector` and
/// of `axum::serve`. A small body in one write is not held. Longer bodies
/// keep their last byte apart: their earlier writes hold full TCP segments,
/// which the peer acknowledges at once.
const SMALL: usize = 64 * 1024;

/// An [`http_body::Body`] that sends a memory-mapped file, or a range of it,
/// without copying it.
///
/// Each frame is a [`Bytes`] made with [`Bytes::from_owner`] over the one
/// shared mapping: the bytes go from the page cache to the socket and are
/// never copied in user space, and the heap used is the same few hundred
/// bytes whatever the size of the file.
///
/// - [`size_hint`](http_body::Body::size_hint) is exact, so hyper sends a
///   `Content-Length` and no chunked encoding; it shrinks as frames go out.
/// - [`Clone`] is O(1) and the clone starts again at the start of the range,
///   which is what a retry needs.
/// - Pages already sent are given back to the kernel (see
///   [`release_sent_pages`](MmapBody::release_sent_pages)), so sending a
///   1 GiB file keeps only a few MiB of it resident.
/// - Before each frame one `fstat` checks that the file is still as long as
///   and no newer than when it was mapped. If it shrank, the body ends with
///   an [`ErrorKind::Truncated`] error instead of touching pages past the new
///   end of the file (which would kill the process with `SIGBUS`); if it
///   changed, with [`ErrorKind::Modified`]. A clone about to replay does the
///   same check first, so a retry never sends a changed file.
/// - The last byte is a frame of its own, copied and sent only after the
///   same check: a receiver never gets the whole length of a body whose
///   file was seen to change. A body of at most 64 KiB is copied whole
///   after that check and sent as one frame instead: one write, which a
///   socket without `TCP_NODELAY` sends at once, where Nagle's algorithm
///   would hold a small last write for the peer's delayed ACK (40 ms).
///
/// # Errors
///
/// Opening is I/O: [`open`](MmapBody::open) and
/// [`from_file`](MmapBody::from_file) return [`std::io::Error`], as
/// `File::open` and `Mmap::map` do, naming the path and what is wrong with
/// it (`InvalidInput` for a file that is not a regular one). Everything
/// after the file is mapped (a [`slice`](MmapBody::slice) out of range, a
/// file that changed while it was sent, [`verify`](MmapBody::verify))
/// returns this crate's [`Error`], whose [`kind`](Error::kind) says which;
/// it converts into an `io::Error` for code that wants one story.
///
/// # On a tokio runtime
///
/// With the `tokio` feature (on by default), inside a tokio runtime, a
/// body is a good neighbour to the other tasks of its worker thread:
///
/// - it gives the worker back (tokio's `yield_now`) after every 2 MiB it
///   hands out, or sooner once half a millisecond has passed since it got
///   the worker back (a connection that writes slower than 2 MiB a
///   millisecond: HTTP/2, TLS, a busy machine). One upload never holds a
///   worker for more than about that and one frame's write. A yield holds
///   until the runtime has woken the body: a consumer that polls it again
///   at once (hyper's HTTP/1.1 dispatcher does) gets `Pending` until then.
///   Bodies streaming on the same worker thread share those 2 MiB: with
///   `n` of them each sends frames of `2 MiB / n` (in 64 KiB steps, at
///   least 64 KiB, never more than [`chunk_size`](MmapBody::chunk_size))
///   and yields after each, so the worker's timers and I/O wait about as
///   long for 32 uploads as for one;
/// - before a frame goes out it checks that the frame's pages are in
///   memory (`mincore`), and if they are not, reads them in on tokio's
///   blocking pool (a read of the file into the page cache) and waits
///   for that instead of letting hyper's `write()` take the page faults on
///   the worker; once one frame was cold, the next one is read ahead there
///   while the current one goes out.
///
/// Outside a runtime, or without the feature, frames are always ready at
/// once and their pages fault in where they are read, as with any mapping.
///
/// # What it does to the process
///
/// The first file an `MmapBody` maps installs the crate's `SIGBUS` handler
/// for the whole process (once; see [`guard`]). It acts only on faults in
/// this crate's mappings, which a file truncated while HTTP/2 or TLS copies
/// a frame causes: the page reads as zeros, the body fails with
/// [`ErrorKind::Truncated`] instead of sending its tail, and the
/// process lives. Every other `SIGBUS` goes to the handler installed
/// before (yours, Rust's, or the default, which ends the process). Call
/// [`guard::opt_out`] before the first mapping to keep it out.
///
/// A thread that blocks `SIGBUS` gets the kernel's default on a fault (the
/// process is killed) whatever handler is installed, so a body first
/// polled on such a thread reads its frames from the file with `pread`
/// (one copy each) instead of handing out the mapping, and ends with
/// [`ErrorKind::Truncated`] if the file shrinks. A thread that blocks
/// `SIGBUS` and copies frames handed out on another thread is still
/// killed by a truncation: don't block `SIGBUS` in threads that run
/// hyper's connection tasks (see [`guard`]).
///
/// With the handler, the tail goes only once no frame of the attempt
/// can still be read from the file. Transports drop frames as they write
/// them; the body yields to them for as long as they keep dropping (on
/// tokio, until the runtime has polled its I/O). A consumer that keeps
/// frames to the end (`collect()`, `axum::body::to_bytes`, a channel, a
/// recording), or a transport stuck on a full socket, is never made to
/// wait: the pages of the frames it still holds are replaced in place by a
/// private copy of themselves (Linux; elsewhere the tail
/// goes after the checks), so the bytes it keeps are the file's as it was,
/// whatever happens to the file afterwards. Besides the tail, that
/// copy is the only one the crate makes of file bytes, and only of frames
/// held back at the end; it lives as long as the mapping (the body and its
/// clones), and those pages are never given back early. The copy is made
/// on tokio's blocking pool inside a runtime (not on the worker), and only
/// if it fits in half the memory the process may still take (Linux:
/// `MemAvailable` and the memory cgroup's limit): a consumer that keeps
/// more, such as `collect()` of a file larger than that, gets an
/// [`ErrorKind::Io`] error (its source `OutOfMemory`) instead of the OOM
/// killer. Take a file whole with `Bytes::from(body)`, which copies
/// nothing.
///
/// # Example
///
/// ```
/// use http_body_util::BodyExt;
/// use mmap_body::MmapBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let path = std::env::temp_dir().join("mmap-body-doc-example.txt");
/// std::fs::write(&path, b"hello, world")?;
///
/// // SAFETY: this example owns the file; nothing truncates or rewrites it
/// // while it is mapped.
/// let body = unsafe { MmapBody::open(&path)? };
/// assert_eq!(body.len(), 12);
///
/// let world = body.slice(7..)?;
/// assert_eq!(world.collect().await?.to_bytes(), "world");
/// # std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct MmapBody {
    mapping: Arc<Mapping>,
    /// The range of the mapping this body sends.
    start: usize,
    end: usize,
    /// The next byte to send.
    pos: usize,
    chunk: usize,
    release: bool,
    /// Read the next frame ahead (and the mapping was advised sequential).
    hints: bool,
    /// The frames of this attempt not dropped yet, while the SIGBUS guard
    /// is installed; made with the first frame.
    in_flight: Option<Arc<InFlight>>,
    /// How many frames were still held when the tail was last asked
    /// for: while that number falls, the holder is dropping them.
    held_before: Option<usize>,
    /// Yields to the runtime and loads cold pages off its workers.
    warm: Warm,
    /// A detach of the frames a consumer holds, running off the worker.
    detaching: hold::Detaching,
    /// Frames are copies read with `pread`, not slices of the mapping: the
    /// thread that first polled this attempt blocks `SIGBUS` (see
    /// [What it does to the process](MmapBody#what-it-does-to-the-process)).
    /// `None` until that first poll.
    pread: Option<bool>,
}

impl MmapBody {
    /// Opens and maps the regular file at `path`.
    ///
    /// The path is opened without blocking and the open file is checked to
    /// be a regular file, so naming a FIFO (even one put at the path a
    /// moment before) returns an error instead of blocking.
    ///
    /// # Errors
    ///
    /// The error of opening or mapping the file, with the path in its
    /// message; [`io::ErrorKind::InvalidInput`] naming the path and the
    /// reason for a directory, FIFO, socket, device or a `/proc`-style file
    /// that reports size 0 but is not empty.
    ///
    /// # Safety
    ///
    /// As for [`memmap2::Mmap::map`]: the caller promises that, while this
    /// body, any clone of it or any [`Bytes`] it produced is alive, the file
    /// is neither truncated nor modified, by this process or another.
    /// Truncation under the mapping makes reads past the new end raise
    /// `SIGBUS` (which the crate's handler turns into zeros and an error,
    /// unless the program [opted out](guard::opt_out)); a change in place
    /// changes bytes already handed out as immutable `Bytes`. The body
    /// checks the file before every frame and before its tail, and
    /// stops with an error when it sees a change, which narrows that window
    /// but cannot close it: bytes rewritten between the check and the
    /// socket write are still read. Map only files that your program owns
    /// or that are written once and then left alone.
    ///
    /// On Linux, where the kernel grants this process a read lease on the
    /// file (see [`FileBody`](crate::FileBody)), the body holds one for as
    /// long as the mapping lives: a writer that comes anyway waits until
    /// the frames still held were copied out of the file, and the body ends
    /// with [`ErrorKind::Truncated`] or [`ErrorKind::Modified`]; a truncated
    /// file then never fails other streams of an HTTP/2 connection. The
    /// promise still stands where no lease is given. [`FileBody::open`]
    /// needs none.
    ///
    /// [`FileBody::open`]: crate::FileBody::open
    pub unsafe fn open(path: impl AsRef<Path>) -> io::Result<MmapBody> {
        let path = path.as_ref();
        // For the message: a socket or device is named as such before any
        // open. What counts is the check of the open file in `map_file`:
        // the path may name something else by the time it is opened, which
        // `open_read` makes sure cannot block.
        let meta = std::fs::metadata(path).map_err(|e| with_path(e, "cannot stat", path))?;
        reject_non_regular(&meta, Some(path))?;
        let file = sys::open_read(path).map_err(|e| with_path(e, "cannot open", path))?;
        // SAFETY: the caller's promise above is the one `map_file` needs.
        unsafe { MmapBody::map_file(file, Some(path.to_owned())) }
    }

    /// Maps an already open regular file.
    ///
    /// # Errors
    ///
    /// The error of mapping the file; [`io::ErrorKind::InvalidInput`] for a
    /// file that is not a regular file (see [`MmapBody::open`]).
    ///
    /// # Safety
    ///
    /// The same promise as [`MmapBody::open`]: while the body, its clones or
    /// its `Bytes` are alive, the file is neither truncated nor modified.
    pub unsafe fn from_file(file: File) -> io::Result<MmapBody> {
        // SAFETY: the caller's promise above is the one `map_file` needs.
        unsafe { MmapBody::map_file(file, None) }
    }

    /// Wraps a mapping the caller already made, and vouched for when it
    /// called the `unsafe` [`memmap2::Mmap::map`].
    ///
    /// There is no file to check, so the body does no integrity check, and
    /// it never gives pages back to the kernel (see
    /// [`release_sent_pages`](MmapBody::release_sent_pages)).
    pub fn from_mmap(map: Mmap) -> MmapBody {
        MmapBody::new(Mapping::new(map, None), false)
    }

    /// A body over a shared, read-only mapping of a file this crate owns and
    /// only appends to (the replay's spill file): no integrity check (the
    /// file grows while it is read), and pages given back as they are sent.
    #[cfg_attr(not(feature = "replay"), allow(dead_code))]
    pub(crate) fn from_appended_file(map: Mmap) -> MmapBody {
        sys::advise_sequential(&map);
        MmapBody::new(Mapping::new(map, None), true)
    }

    /// # Safety
    /// The caller's promise of [`MmapBody::open`].
    unsafe fn map_file(file: File, path: Option<PathBuf>) -> io::Result<MmapBody> {
        let origin = Origin::of(file, path)?;
        // SAFETY: `origin.file` is a regular file, and the caller promised
        // not to truncate or change it while the mapping lives.
        let map = unsafe { Mmap::map(&origin.file) }
            .map_err(|e| maybe_with_path(e, "cannot map", origin.path.as_deref()))?;
        sys::advise_sequential(&map);
        let body = MmapBody::new(Mapping::new(map, Some(origin)), true);
        // Where the kernel gives one, a read lease backs the caller's
        // promise: a writer that comes anyway waits until the frames still
        // held were copied out of the file (see `FileBody`).
        body.mapping.take_lease();
        Ok(body)
    }

    /// Maps `origin`'s file under a read lease (see [`FileBody`]): the
    /// body, or the file back (as it is now) where the kernel gives no
    /// lease, or the file changed between its `fstat` and the lease.
    ///
    /// [`FileBody`]: crate::FileBody
    pub(crate) fn map_leased(origin: Origin) -> io::Result<Result<MmapBody, Origin>> {
        if !lease::enabled() {
            return Ok(Err(origin));
        }
        let path = origin.path.clone();
        // Kept for a read with `pread` if the lease is refused: the
        // mapping's own descriptor closes with it.
        let spare = origin.file.try_clone().map_err(|e| {
            maybe_with_path(
                e,
                "cannot duplicate the descriptor of",
                origin.path.as_deref(),
            )
        })?;
        // SAFETY: no byte of the mapping is read before the lease is
        // held: a mapping itself reads nothing, and `advise_sequential`
        // is advice. Once the lease is held, the kernel makes every writer
        // and truncation of the file wait until a break was answered, and
        // a break copies every range handed out before it lets go (and no
        // frame is handed out after it), which is the promise `map` needs.
        // Without the lease the mapping is dropped unread.
        let map = unsafe { Mmap::map(&origin.file) }
            .map_err(|e| maybe_with_path(e, "cannot map", origin.path.as_deref()))?;
        sys::advise_sequential(&map);
        let len = origin.len;
        let body = MmapBody::new(Mapping::new(map, Some(origin)), true);
        // The file as it was when its size was read is the file leased: a
        // writer that came and went between the two leaves a new change
        // time, and the body would be of a file that no longer is.
        if body.mapping.take_lease() && body.mapping.check_file(len as usize).is_ok() {
            return Ok(Ok(body));
        }
        drop(body);
        // The file again, as it is now.
        Origin::of(spare, path).map(Err)
    }

    fn new(mapping: Mapping, release: bool) -> MmapBody {
        let end = mapping.map.len();
        MmapBody {
            mapping: Arc::new(mapping),
            start: 0,
            end,
            pos: 0,
            chunk: DEFAULT_CHUNK_SIZE,
            release,
            hints: true,
            in_flight: None,
            held_before: None,
            warm: Warm::default(),
            detaching: hold::Detaching::default(),
            pread: None,
        }
    }

    /// The number of bytes this body sends from its start.
    pub fn len(&self) -> u64 {
        (self.end - self.start) as u64
    }

    /// `true` for a body of zero bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The modification time the file had when it was mapped; `None` for
    /// [`from_mmap`](MmapBody::from_mmap) and where the platform keeps none.
    /// [`serve::respond`] builds `Last-Modified` and `ETag` from it.
    ///
    #[cfg_attr(feature = "serve", doc = "[`serve::respond`]: crate::serve::respond")]
    #[cfg_attr(
        not(feature = "serve"),
        doc = "[`serve::respond`]: https://docs.rs/mmap-body/latest/mmap_body/serve/fn.respond.html"
    )]
    pub fn modified(&self) -> Option<SystemTime> {
        self.mapping.origin.as_ref()?.modified
    }

    /// Where this body's range starts in the file.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn offset(&self) -> u64 {
        self.start as u64
    }

    /// `true` unless the mapping's lease was broken or a page of it lost:
    /// a clone would still send the file (no system call; the file's own
    /// changes are [`verify`](MmapBody::verify)'s).
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    pub(crate) fn intact(&self) -> bool {
        self.mapping.intact()
    }

    /// A zero-copy body for a sub-range of this one, relative to its start:
    /// for HTTP `Range` responses, multipart parts or resuming an upload.
    ///
    /// The new body starts at its own beginning and keeps this body's
    /// options.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::OutOfRange`] if the range ends past [`len`](MmapBody::len)
    /// or starts after it ends. Never panics.
    pub fn slice(&self, range: impl RangeBounds<u64>) -> Result<MmapBody, Error> {
        let len = self.len();
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
            (Some(from), Some(to)) if from <= to && to <= len => Ok(MmapBody {
                start: self.start + from as usize,
                end: self.start + to as usize,
                pos: self.start + from as usize,
                ..self.clone()
            }),
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

    /// Sets the size of each frame, in bytes (values below 1 count as 1).
    ///
    /// The default is [`DEFAULT_CHUNK_SIZE`], which explains the choice.
    /// Inside a tokio runtime, frames are shorter while other bodies stream
    /// on the same worker thread (see [On a tokio
    /// runtime](MmapBody#on-a-tokio-runtime)).
    pub fn chunk_size(mut self, bytes: usize) -> MmapBody {
        self.chunk = bytes.max(1);
        self
    }

    /// Whether to tell the kernel how the file will be read (on by
    /// default): the mapping is advised sequential (`MADV_SEQUENTIAL`:
    /// larger read-ahead) and each frame asks for the next one to be read
    /// from disk while it goes out (`MADV_WILLNEED`; on a tokio runtime,
    /// cold pages are read on its blocking pool instead, see the type's
    /// docs). Off: the kernel's default read-ahead alone. The advice is the mapping's, shared by the
    /// body's clones and slices. No effect where the OS has no such advice.
    pub fn access_hints(mut self, hints: bool) -> MmapBody {
        if !hints {
            sys::advise_normal(&self.mapping.map);
        }
        self.hints = hints;
        self
    }

    /// Whether to give each frame's pages back to the kernel
    /// (`madvise(MADV_DONTNEED)`) once the last `Bytes` of that frame is
    /// dropped, i.e. once hyper has written it to the socket. On by default.
    ///
    /// The file is mapped shared and read-only, so the pages stay in the
    /// page cache and a later read (by a clone, a retry or another body)
    /// faults the same bytes back in. It is what keeps the resident memory
    /// of a 1 GiB upload to 2–3 MiB instead of 1 GiB. Adjacent frames are
    /// given back together, a megabyte at a time (each `madvise` makes the
    /// kernel flush the TLB of every CPU the process runs on), so a mapping
    /// keeps a few ranges of sent pages mapped (at most 8, each under
    /// 1 MiB and a frame) beyond the frames in flight.
    /// Its cost at the default frame size is within the noise of our
    /// measurements; turn it off to keep a small, hot file mapped in for
    /// many sends.
    ///
    /// Bodies made with [`from_mmap`](MmapBody::from_mmap) never release
    /// pages: that mapping may be private or anonymous, where
    /// `MADV_DONTNEED` would throw its contents away.
    ///
    /// # Platforms
    ///
    /// Pages are released on Unix only (on macOS and the BSDs
    /// `MADV_DONTNEED` is a hint the kernel may act on later). Elsewhere,
    /// Windows included, this setting changes nothing: the pages of sent
    /// frames stay mapped until the body, its clones and its `Bytes` are
    /// dropped. They are clean pages of a file, which the OS can still
    /// reclaim under memory pressure, but the resident memory of a big
    /// upload grows with the bytes sent.
    pub fn release_sent_pages(mut self, release: bool) -> MmapBody {
        self.release = release && self.mapping.origin.is_some();
        self
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// The next frame, of `len` bytes; never the body's last byte, which
    /// [`poll_tail`](MmapBody::poll_tail) sends.
    fn next_frame(&mut self, len: usize) -> Result<Bytes, Error> {
        let end = self.pos + len;
        self.mapping.verify(self.end)?;
        // Start reading the following frame from disk while this one goes
        // out; a cold file then streams at disk speed. (Not on a runtime,
        // where `warm` knows the pages ahead resident or reads them on the
        // blocking pool: there the advice would cost a system call a frame
        // for nothing, or block the worker on a cold range.)
        let ahead = len.min(self.end - end);
        if ahead > 0 && self.hints && !self.warm.reads_ahead() {
            sys::read_ahead(&self.mapping.map, end, ahead);
        }
        if self.pread == Some(true) {
            let frame = self.mapping.read_copy(self.pos, end)?;
            self.pos = end;
            self.warm.sent(len);
            return Ok(frame);
        }
        // Only a file's mapping can lose pages; the others need no hold.
        // (Tracked with or without the guard, so that one installed late
        // still finds every frame.)
        let in_flight = if self.mapping.origin.is_some() {
            let in_flight = self.in_flight.get_or_insert_with(Arc::default);
            crate::sync::lock(&self.mapping.leased)
                .hand_out(in_flight, (self.pos, end), || self.mapping.broken_error())?;
            Some(Arc::clone(in_flight))
        } else {
            None
        };
        let frame = Bytes::from_owner(Chunk {
            mapping: Arc::clone(&self.mapping),
            start: self.pos,
            end,
            release: self.release,
            in_flight,
        });
        self.pos = end;
        self.warm.sent(len);
        Ok(frame)
    }

    /// The body's last byte (all of a body of at most [`SMALL`] bytes),
    /// copied and sent as one frame once the rest is verified.
    ///
    /// HTTP/1.1 takes a body as complete once `Content-Length` bytes have
    /// arrived, and HTTP/2 once the frame with `END_STREAM` has: the tail
    /// is the only thing that can still stop a receiver from accepting a
    /// body read from a changed file. With the SIGBUS guard installed a
    /// page the file lost reads as zeros, so the tail goes only once no
    /// frame of this attempt can still be read from the file: all were
    /// dropped, or those still held were detached from it (see [`guard`]).
    /// Then the file is checked unchanged, the tail copied (through the
    /// guard), the mapping checked unpoisoned, and the copy sent.
    fn poll_tail(&mut self, cx: &mut Context<'_>) -> Poll<Result<Bytes, Error>> {
        ready!(self.poll_released(cx))?;
        // Checked before the read too: without the guard, reading a page
        // the file lost would raise SIGBUS.
        self.mapping.check_file(self.end)?;
        let len = self.end - self.pos;
        let tail = if self.pread == Some(true) {
            self.mapping.read_copy(self.pos, self.end)?
        } else {
            // SAFETY: `pos..end` is inside the mapping, which `self` keeps
            // alive; a page the file lost since the check reads as zeros
            // under the guard and poisons the mapping, which `verify` then
            // reports.
            unsafe { guard::copy_out(self.mapping.map.as_ptr().add(self.pos), len) }
        };
        self.mapping.verify(self.end)?;
        self.pos = self.end;
        self.warm.sent(len);
        self.warm.finished();
        Poll::Ready(Ok(tail))
    }

    /// Checks now, with one `fstat`, that the file is as long, as old and
    /// as unwritten as when it was mapped, and that no read of the mapping
    /// hit a page it lost. A retry policy asks this before sending a clone
    /// again ([`ReplayBody::is_replayable`] does), since a connection can
    /// break on a changed file before the body itself sees the change.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Truncated`] or [`ErrorKind::Modified`], saying what
    /// changed; [`ErrorKind::Io`] if the `fstat` fails. Always `Ok` for
    /// [`from_mmap`](MmapBody::from_mmap) bodies, which have no file.
    ///
    #[cfg_attr(
        feature = "replay",
        doc = "[`ReplayBody::is_replayable`]: crate::ReplayBody::is_replayable"
    )]
    #[cfg_attr(
        not(feature = "replay"),
        doc = "[`ReplayBody::is_replayable`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayBody.html#method.is_replayable"
    )]
    pub fn verify(&self) -> Result<(), Error> {
        self.mapping.verify(self.end)
    }
}

impl Clone for MmapBody {
    /// An O(1) copy that starts again at the start of the range (a
    /// reference count on the mapping; no byte is copied).
    fn clone(&self) -> MmapBody {
        MmapBody {
            mapping: Arc::clone(&self.mapping),
            pos: self.start,
            in_flight: None,
            held_before: None,
            warm: Warm::default(),
            detaching: hold::Detaching::default(),
            pread: None,
            ..*self
        }
    }
}

impl From<MmapBody> for Bytes {
    /// The body's whole range (from its start, whatever was already sent) as
    /// one zero-copy `Bytes`, for APIs that take `Bytes`, such as
    /// `reqwest::Body::from`.
    ///
    /// The `Bytes` keeps the mapping alive, and its pages stay resident once
    /// touched. It cannot check the file before each read as the body does.
    /// Where the kernel gives this process a read lease on the file (Linux:
    /// a file opened read-only, as [`MmapBody::open`] does, that nobody has
    /// open for writing, and that the process owns or has `CAP_LEASE` for),
    /// the mapping holds one (taken when the file was opened, or now) for
    /// as long as it lives: another `open` of the file for
    /// writing, or its truncation, then waits until the mapping's pages were
    /// copied out of the file (if the copy fits in half the memory the
    /// process may still take), so its bytes stay the file's as they were
    /// and a receiver never gets zeros or two versions of the file. Without
    /// a lease, the safety promise made when the file was mapped covers it
    /// for as long as it lives.
    fn from(body: MmapBody) -> Bytes {
        if body.is_empty() {
            return Bytes::new();
        }
        Bytes::from_owner(Whole::new(body.mapping, body.start, body.end))
    }
}

impl http_body::Body for MmapBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.pread.is_none() && this.remaining() > 0 {
            // One query a body (a clone or slice asks again): a thread that
            // blocks SIGBUS is never handed frames of the mapping.
            this.pread = Some(this.mapping.origin.is_some() && guard::blocks_sigbus());
        }
        let frame = match this.remaining() {
            0 => return Poll::Ready(None),
            1 => ready!(this.poll_tail(cx)),
            // A small body whole.
            small if small <= SMALL.min(this.chunk) && this.pos == this.start => {
                // Its pages in memory first, as for any frame.
                let frame = (this.pos, small, this.end);
                ready!(this.warm.poll_ready(&this.mapping, frame, this.hints, cx));
                ready!(this.poll_tail(cx))
            }
            _ => {
                // Up to `chunk` bytes, or less: the body's share of the
                // worker while others stream too.
                let most = this.chunk.min(this.remaining() - 1);
                let frame = (this.pos, most, this.end);
                let len = ready!(this.warm.poll_ready(&this.mapping, frame, this.hints, cx));
                this.next_frame(len)
            }
        };
        match frame {
            Ok(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Err(err) => {
                // Nothing more can be sent from a file that changed.
                this.pos = this.end;
                Poll::Ready(Some(Err(err)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;

    fn assert_traits<T: Send + Sync + Unpin + Clone + 'static>() {}

    #[test]
    fn body_is_send_sync_unpin_clone() {
        assert_traits::<MmapBody>();
    }

    #[test]
    fn empty_file_is_an_empty_body() {
        let file = tempfile::tempfile().unwrap();
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::from_file(file) }.unwrap();
        assert!(body.is_empty());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(Bytes::from(body).is_empty());
    }

    /// A file written between its `fstat` and the lease is not mapped:
    /// the sizes recorded would not be the file's. It comes back as it is
    /// now, for `FileBody` to read with `pread`.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_changed_between_its_fstat_and_the_lease_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let origin = Origin::of(open_read(&path).unwrap(), Some(path.clone())).unwrap();
        // A writer comes and goes before the lease is asked for.
        std::fs::write(&path, b"a longer file now").unwrap();
        match MmapBody::map_leased(origin).unwrap() {
            Ok(_) => panic!("mapped with the old size"),
            Err(now) => assert_eq!(now.len, 17),
        }
        // Unchanged, the same call maps it under a lease.
        let origin = Origin::of(open_read(&path).unwrap(), Some(path)).unwrap();
        assert!(MmapBody::map_leased(origin).unwrap().is_ok());
    }

    #[test]
    fn slice_bounds_are_checked_without_panics() {
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, b"0123456789").unwrap();
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::from_file(file) }.unwrap();
        assert_eq!(body.slice(..).unwrap().len(), 10);
        assert_eq!(body.slice(10..).unwrap().len(), 0);
        assert_eq!(body.slice(2..=4).unwrap().len(), 3);
        assert_eq!(Bytes::from(body.slice(2..=4).unwrap()), "234");
        let inner = body.slice(2..8).unwrap();
        assert_eq!(Bytes::from(inner.slice(1..3).unwrap()), "34");
        for bad in [inner.slice(0..7), inner.slice(7..), body.slice(..=10)] {
            assert_eq!(bad.unwrap_err().kind(), ErrorKind::OutOfRange);
        }
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = body.slice(5..3);
        assert_eq!(inverted.unwrap_err().kind(), ErrorKind::OutOfRange);
        let overflow = body.slice((Bound::Excluded(u64::MAX), Bound::Unbounded));
        assert_eq!(overflow.unwrap_err().kind(), ErrorKind::OutOfRange);
        assert_eq!(
            body.slice(..=u64::MAX).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
    }
}
