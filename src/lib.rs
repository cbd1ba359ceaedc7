//! Send and serve large HTTP bodies without copying them, with an exact
//! `Content-Length`, and retry them safely.
//!
//! ```
//! use http_body::Body;
//! use http_body_util::BodyExt;
//! use mmap_body::MmapBody;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("report.csv");
//! std::fs::write(&path, "id,total\n1,42\n")?;
//!
//! // SAFETY: nothing truncates or rewrites the file while it is mapped.
//! let body = unsafe { MmapBody::open(&path)? };
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
//! use mmap_body::MmapBody;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // SAFETY: nothing truncates or rewrites the file while it is being sent.
//! let body = unsafe { MmapBody::open("big.iso")? };
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
//! - [`MmapBody`]: an [`http_body::Body`] over a memory-mapped file. Its
//!   frames are [`bytes::Bytes`] slices of one shared mapping: no byte is
//!   copied in user space, the heap it uses does not grow with the file, the
//!   pages it sent are given back to the kernel, and a clone (for a retry)
//!   costs one reference count.
//! - [`ReplayLayer`] / [`ReplayBody`] (feature `replay`, on by default): a
//!   Tower layer that sets `Content-Length` from a body's exact size, refuses
//!   requests whose `Content-Length` lies, and makes any request body
//!   replayable so a retry can send it again (see [`replay`]).
//! - [`retry::RetryPolicy`] (feature `retry`, on by default): a
//!   `tower::retry::Policy` that retries these requests safely.
//! - [`progress`] (feature `progress`, on by default): upload progress
//!   (bytes sent of the total, per attempt) that restarts from zero when a
//!   retry sends the body again.
//! - [`serve::respond`] (feature `serve`, on by default): the response to a
//!   download of a file body, with `Range`, `If-Range`, `If-None-Match`,
//!   `If-Modified-Since` and `HEAD`, for axum, hyper or any tower service.
//! - [`Error`] / [`ErrorKind`]: one error type with kinds a caller can match.
//!
//! # Safety
//!
//! Mapping a file is `unsafe`, as in [`memmap2`]: another process may
//! truncate or rewrite the file while it is mapped, and reading a page past
//! the new end of a file kills the process with `SIGBUS`.
//! [`MmapBody::open`] and [`MmapBody::from_file`] are therefore `unsafe fn`s
//! whose callers promise the file stays as it is while mapped. The body
//! checks the file before every frame and stops with an
//! [`ErrorKind::Truncated`] or [`ErrorKind::Modified`] error when it sees a
//! change; that narrows the window but does not close it.
//! [`MmapBody::from_mmap`] is safe: its caller already vouched for the
//! mapping.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod mmap;
#[cfg(feature = "progress")]
#[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
pub mod progress;
#[cfg(feature = "replay")]
#[cfg_attr(docsrs, doc(cfg(feature = "replay")))]
pub mod replay;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub mod retry;
#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub mod serve;

pub use error::{Error, ErrorKind};
pub use mmap::guard;
pub use mmap::{MmapBody, DEFAULT_CHUNK_SIZE};
#[cfg(feature = "replay")]
pub use replay::{Replay, ReplayBody, ReplayLayer};
