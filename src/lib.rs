//! Send and serve large HTTP bodies without copying them, with an exact
//! `Content-Length`, and retry them safely.
//!
//! ```
//! use http_body::Body;
//! use http_body_util::BodyExt;
//! use mmap_body::FileBody;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("report.csv");
//! std::fs::write(&path, "id,total\n1,42\n")?;
//!
//! // No `unsafe`: a read lease (Linux) or `pread` keeps every frame sound,
//! // whoever rewrites the file.
//! let body = FileBody::open(&path)?;
//! // An exact size: hyper sends `Content-Length: 14`, not chunked encoding.
//! assert_eq!(body.size_hint().exact(), Some(14));
//! // A clone for a retry costs a reference count and starts from the top.
//! let retry = body.clone();
//! assert_eq!(body.collect().await?.to_bytes(), "id,total\n1,42\n");
//! assert_eq!(retry.collect().await?.to_bytes(), "id,total\n1,42\n");
//! # Ok(())
//! # }
//! ```
//!
//! Sending it with a hyper-util client:
//!
//! ```no_run
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use mmap_body::FileBody;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let body = FileBody::open("big.iso")?;
//!
//! let client = Client::builder(TokioExecutor::new()).build_http();
//! let request = http::Request::put("http://127.0.0.1:3000/upload").body(body)?;
//! // hyper sends `Content-Length` from the body's exact size, then the file's
//! // pages straight from the page cache, one 1 MiB `Bytes` at a time.
//! let response = client.request(request).await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
//!
//! # What is here
//!
//! - [`FileBody`]: a file body whose `open` is safe: zero-copy slices of a
//!   mapping under a read lease where Linux grants one (a writer waits
//!   until the frames still held were copied), `pread` elsewhere.
//! - [`MmapBody`]: an [`http_body::Body`] over a memory-mapped file. Its
//!   frames are [`bytes::Bytes`] slices of one shared mapping: no byte is
//!   copied in user space, the heap it uses does not grow with the file, the
//!   pages it sent are given back to the kernel, and a clone (for a retry)
//!   costs one reference count. With the feature `tokio` (on by default),
//!   inside a tokio runtime it yields its worker every 2 MiB (shared by
//!   the bodies streaming on that worker) and reads cold pages in on the
//!   blocking pool rather than faulting on the worker.
//! - [`UploadLayer`] (features `retry` and `progress`, on by default): the
//!   whole client stack in one layer, on hyper-util or reqwest: replay,
//!   retries, resumed uploads (feature `resume`) and progress, in the one
//!   order in which they work (see [`upload`]).
//! - [`ReplayLayer`] / [`ReplayBody`] (feature `replay`, on by default): a
//!   Tower layer that sets `Content-Length` from a body's exact size, refuses
//!   requests whose `Content-Length` lies, and makes any request body
//!   replayable so a retry can send it again (see [`replay`]).
//! - [`retry::RetryPolicy`] (feature `retry`, on by default): a
//!   `tower::retry::Policy` that retries these requests safely, above
//!   `tower::timeout` and other layers that box their errors too, and
//!   retries a request of any method that provably never left (a refused
//!   connection; with feature `hyper-errors` (on by default), also a connect error, a request
//!   hyper gave back unwritten, an HTTP/2 `REFUSED_STREAM` or `GOAWAY`).
//! - [`multipart`] (feature `multipart`): `multipart/form-data` uploads
//!   ([`multipart::Form`]) with an exact length, file parts sent as their
//!   `FileBody`'s or `MmapBody`'s own frames, retried at any size by
//!   `ReplayLayer` (a `FormBody` is cloned, never recorded).
//! - [`progress`] (feature `progress`, on by default): upload progress
//!   (bytes sent of the total, per attempt) that restarts from zero when a
//!   retry sends the body again.
//! - [`serve::respond`] (feature `serve`, on by default): the response to a
//!   download of a file body, with `Range`, `If-Range`, `If-Match`,
//!   `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since` and `HEAD`,
//!   for axum, hyper or any tower service.
//! - [`download`] (feature `download`): downloads that survive a dropped
//!   or stalled connection: a layer whose response body resumes with
//!   `Range` and `If-Range`, never mixing two versions, and `save` into a
//!   `.part` file that the next run resumes.
//! - [`proxy`] (feature `proxy`): what a handler forwarding requests
//!   upstream needs: hop-by-hop headers removed both ways, `Via`, the
//!   upstream URI, and `502` / `504` answers when the upstream fails.
//! - `ReplayLayer::spill_to_disk` (feature `spill`): replay a streamed body
//!   of any size, the part past the memory cap kept in a nameless temp file
//!   and read back as `MmapBody` slices.
//! - `reqwest::ReqwestService` (feature `reqwest`): the same stack on a
//!   `reqwest::Client`.
//! - [`guard`]: the `SIGBUS` handler the first file mapping installs, which
//!   contains faults from files truncated under a mapping (HTTP/2, TLS),
//!   and [`guard::opt_out`] for a process that owns `SIGBUS` itself.
//! - [`Error`] / [`ErrorKind`]: one error type with kinds a caller can match,
//!   and [`Error::find_in`] to find it in hyper's, reqwest's or tower's.
//!
//! # Byte counts
//!
//! One rule decides the integer type of every count of bytes in this API,
//! the rule of the standard library and of the crates around it:
//!
//! - bytes **held in memory** at once are a `usize`, as in
//!   `Vec::with_capacity`, axum's `DefaultBodyLimit::max` or tower-http's
//!   `RequestBodyLimitLayer::new`: the replay cap of [`ReplayLayer::new`],
//!   [`ReplayBody::new`], `Replay::new` and the proxy's `max_replay_bytes`
//!   (default [`DEFAULT_MAX_REPLAY_BYTES`], 8 MiB, which explains the
//!   choice), and the frame size of [`MmapBody::chunk_size`]
//!   ([`DEFAULT_CHUNK_SIZE`]);
//! - bytes **of a file, on disk or on the wire**, which pass 4 GiB on any
//!   platform, are a `u64`, as in `File::set_len` and `Content-Length`:
//!   [`MmapBody::len`] and [`slice`](MmapBody::slice), the spill limit of
//!   `spill_to_disk`, resumable uploads' sizes, limits and offsets, and the
//!   counts of [`progress`].
//!
//! So `.max_replay_bytes(8 << 20).spill_to_disk(1 << 30)` on the proxy's
//! builder takes a `usize` (memory) and a `u64` (disk). Integer literals fit
//! either; a `u64` file size given as a memory cap is converted by the
//! caller, who decides what a cap past the address space means.
//!
//! # Platforms
//!
//! Everything builds wherever memmap2 does. On Unix, frames get `madvise`
//! read-ahead and sent pages are given back (`MADV_DONTNEED`); elsewhere
//! (Windows) there is no advice, [`MmapBody::release_sent_pages`] changes
//! nothing, non-regular files are refused as "not a regular file" without
//! the exact kind, and [`guard::install`] returns `Unsupported`. The README's
//! "Platforms" section has the table and what CI proves.
//!
//! # Safety
//!
//! [`FileBody::open`] is safe, and no byte of a `Bytes` it handed out ever
//! changes: under a read lease the kernel makes writers wait until the
//! frames still held were copied out of the file, and without one frames
//! are copies read with `pread` (see [`FileBody`]'s `# Hazards`). Use it
//! for files others may rewrite; the rest of this section is about
//! [`MmapBody`], whose caller makes the promise instead.
//!
//! Mapping a file is `unsafe`, as in [`memmap2`]: another process may
//! truncate or rewrite the file while it is mapped, and reading a page past
//! the new end of a file raises `SIGBUS`, which kills the process.
//! [`MmapBody::open`] and [`MmapBody::from_file`] are therefore `unsafe fn`s
//! whose callers promise the file stays as it is while mapped.
//! [`MmapBody::from_mmap`] is safe: its caller already vouched for the
//! mapping.
//!
//! What the crate does when that promise is broken anyway:
//!
//! - On Linux, an `MmapBody` opened with [`MmapBody::open`] or
//!   [`MmapBody::from_file`] (and so `Bytes::from(MmapBody)`, the whole
//!   file as one `Bytes`, which no check can stand in front of) holds a
//!   read lease on the file where the kernel gives one (nobody has the file open for writing, and
//!   the process owns it or has `CAP_LEASE`). Another process (or this one)
//!   that opens the file for writing or truncates it then waits, a few
//!   milliseconds, while a thread of the crate's copies the frames still
//!   held (all of the mapping while a `Bytes::from(MmapBody)` lives) out of
//!   the file: they keep the file's bytes as they were, and bodies of the
//!   same mapping end with [`ErrorKind::Truncated`] or
//!   [`ErrorKind::Modified`]. The lease
//!   is told with `SIGRTMIN + 7`, directed at that thread alone
//!   (`F_SETOWN_EX`) and read from a `signalfd`: no handler is installed
//!   and no other thread sees it. A process stopped longer than
//!   `/proc/sys/fs/lease-break-time` (45 s) loses the lease.
//! - Before each frame, one `fstat` checks the file is as long and as old as
//!   when it was mapped; a change ends the body with
//!   [`ErrorKind::Truncated`] or [`ErrorKind::Modified`]. The body's last
//!   byte is held back, copied and sent only after the same check, so that
//!   an HTTP/1.1 receiver, which takes a body as complete once
//!   `Content-Length` bytes arrived, never gets the whole length from a
//!   file seen to change.
//! - Over HTTP/1.1 on plain TCP the kernel reads the frames: a page the file
//!   lost is an `EFAULT` write error, not a signal.
//! - HTTP/2 (h2 copies the start of every `DATA` frame) and TLS read frames
//!   in user space, after the check. So the first file mapping installs a
//!   process-wide, chained `SIGBUS` handler (no setup call): a read of a
//!   page the file lost sees zeros and poisons the mapping, and the body
//!   sends its last byte only once its frames are dropped, or detached from
//!   the file if their consumer keeps them, and the mapping is verified:
//!   the process lives, the request fails, the receiver never gets a
//!   complete body, and no consumer waits forever. Faults outside the
//!   crate's mappings go to the handler that was there before.
//!   [`guard::opt_out`] keeps the handler out, for processes that own
//!   `SIGBUS`; a truncation under a user-space copy then kills the process.
//!   The [`guard`] docs have the whole table, and the limits.
//! - [`ReplayLayer`] hands the caller the body's own error over HTTP/2 as
//!   over HTTP/1.1, and a body that failed that way is never retried.
//!
// Items of a feature that is off are not in these docs: their links go to
// docs.rs, which documents every feature.
#![cfg_attr(
    not(all(feature = "retry", feature = "progress")),
    doc = "[`UploadLayer`]: https://docs.rs/mmap-body/latest/mmap_body/upload/struct.UploadLayer.html"
)]
#![cfg_attr(
    not(all(feature = "retry", feature = "progress")),
    doc = "[`upload`]: https://docs.rs/mmap-body/latest/mmap_body/upload/index.html"
)]
#![cfg_attr(
    not(feature = "replay"),
    doc = "[`ReplayLayer`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayLayer.html"
)]
#![cfg_attr(
    not(feature = "replay"),
    doc = "[`ReplayBody`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayBody.html"
)]
#![cfg_attr(
    not(feature = "replay"),
    doc = "[`replay`]: https://docs.rs/mmap-body/latest/mmap_body/replay/index.html"
)]
#![cfg_attr(
    not(feature = "replay"),
    doc = "[`ReplayLayer::new`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayLayer.html#method.new"
)]
#![cfg_attr(
    not(feature = "replay"),
    doc = "[`ReplayBody::new`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayBody.html#method.new"
)]
#![cfg_attr(
    not(feature = "replay"),
    doc = "[`DEFAULT_MAX_REPLAY_BYTES`]: https://docs.rs/mmap-body/latest/mmap_body/constant.DEFAULT_MAX_REPLAY_BYTES.html"
)]
#![cfg_attr(
    not(feature = "retry"),
    doc = "[`retry::RetryPolicy`]: https://docs.rs/mmap-body/latest/mmap_body/retry/struct.RetryPolicy.html"
)]
#![cfg_attr(
    not(feature = "progress"),
    doc = "[`progress`]: https://docs.rs/mmap-body/latest/mmap_body/progress/index.html"
)]
#![cfg_attr(
    not(feature = "serve"),
    doc = "[`serve::respond`]: https://docs.rs/mmap-body/latest/mmap_body/serve/fn.respond.html"
)]
#![cfg_attr(
    not(feature = "multipart"),
    doc = "[`multipart`]: https://docs.rs/mmap-body/latest/mmap_body/multipart/index.html"
)]
#![cfg_attr(
    not(feature = "multipart"),
    doc = "[`multipart::Form`]: https://docs.rs/mmap-body/latest/mmap_body/multipart/struct.Form.html"
)]
#![cfg_attr(
    not(feature = "download"),
    doc = "[`download`]: https://docs.rs/mmap-body/latest/mmap_body/download/index.html"
)]
#![cfg_attr(
    not(feature = "proxy"),
    doc = "[`proxy`]: https://docs.rs/mmap-body/latest/mmap_body/proxy/index.html"
)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "download")]
#[cfg_attr(docsrs, doc(cfg(feature = "download")))]
pub mod download;
mod error;
mod file;
mod mmap;
#[cfg(feature = "multipart")]
#[cfg_attr(docsrs, doc(cfg(feature = "multipart")))]
pub mod multipart;
#[cfg(feature = "progress")]
#[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
pub mod progress;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub mod proxy;
#[cfg(any(feature = "retry", feature = "multipart"))]
mod random;
#[cfg(feature = "replay")]
#[cfg_attr(docsrs, doc(cfg(feature = "replay")))]
pub mod replay;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "resume")]
#[cfg_attr(docsrs, doc(cfg(feature = "resume")))]
pub mod resume;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub mod serve;
mod sync;
mod trace;
#[cfg(all(feature = "retry", feature = "progress"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "retry", feature = "progress"))))]
pub mod upload;

pub use error::{Error, ErrorKind};
pub use file::FileBody;
pub use mmap::guard;
pub use mmap::{MmapBody, DEFAULT_CHUNK_SIZE};
#[cfg(feature = "replay")]
pub use replay::{Replay, ReplayBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};
#[cfg(all(feature = "retry", feature = "progress"))]
pub use upload::{Upload, UploadLayer};
