//! `Content-Length` and replayable request bodies, as a Tower layer.
//!
//! [`ReplayLayer`] wraps a client service (a hyper-util `Client`, a
//! `tower::retry::Retry` around one, anything that takes
//! `http::Request<ReplayBody<B>>`). For every request it:
//!
//! 1. sets `Content-Length` from the body's exact size when the request has
//!    neither `Content-Length` nor `Transfer-Encoding` (no
//!    `Content-Length: 0` on GET, HEAD, DELETE, OPTIONS, TRACE or CONNECT,
//!    whose semantics define no body — RFC 9110 §8.6);
//! 2. refuses, before a byte is sent, a request whose `Content-Length`
//!    disagrees with its body's exact size, is malformed, is repeated with
//!    different values, or comes with `Transfer-Encoding`;
//! 3. wraps the body in a [`ReplayBody`], which checks while streaming that
//!    it sends exactly the declared length, and which any clone can send
//!    again from the start.
//!
//! ```
//! use std::time::Duration;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use mmap_body::retry::RetryPolicy;
//! use mmap_body::{MmapBody, ReplayBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};
//! use tower::retry::RetryLayer;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<MmapBody>>();
//! let service = ServiceBuilder::new()
//!     .layer(ReplayLayer::new(DEFAULT_MAX_REPLAY_BYTES))
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     .service(client);
//! // `service.oneshot(request)` now sends an `MmapBody` of any size, or up to
//! // 8 MiB of a streamed body, again after a 503 or a dropped connection.
//! # }
//! ```
//!
//! # Bodies that restart by cloning
//!
//! A body of your own whose clones start again from its first byte (an
//! in-memory buffer, a body read from a file again on each clone) is
//! declared so with [`ReplayBody::restartable`]; the layer then clones it
//! for each retry, at any size, instead of recording it, and still holds
//! each attempt to its `Content-Length`:
//!
//! ```no_run
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! # use mmap_body::ReplayBody;
//! # #[derive(Clone)] struct MyBody(Full<Bytes>);
//! # impl http_body::Body for MyBody { type Data = Bytes; type Error = std::convert::Infallible;
//! # fn poll_frame(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>)
//! #   -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
//! #   std::pin::Pin::new(&mut self.0).poll_frame(cx) } }
//! # let my_body = MyBody(Full::new(Bytes::from("...")));
//! let request = http::Request::put("http://127.0.0.1:3000/upload")
//!     .body(ReplayBody::restartable(my_body))
//!     .unwrap();
//! // service.oneshot(request): replayed by cloning, whatever ReplayLayer's cap.
//! ```
//!
//! A body already wrapped in a [`ReplayBody`] (by hand, or by another
//! `ReplayLayer`) passes the layer the same way: it is cloned, never
//! recorded twice, and its own cap is the one that counts. The crate's own
//! [`MmapBody`](crate::MmapBody), `Full<Bytes>` and `Empty<Bytes>` need no
//! declaration. A `Clone` body that is not declared is recorded like any
//! other: Rust cannot ask a generic type whether it is `Clone`.
//!
//! # Why the layer sits outside the retry layer
//!
//! `tower::retry` clones each request before sending it, so the body must
//! already be a cloneable [`ReplayBody`] when it reaches the retry layer:
//! `ReplayLayer` goes first (outside), `RetryLayer` second (inside). The
//! other way round, the request could not be cloned, and the
//! `Content-Length` check would run once per attempt instead of once.
//!
//! # Hazards
//!
//! - **Length mismatches smuggle and truncate requests.** A
//!   `Content-Length` that is shorter than the body makes a server read the
//!   rest as the start of another request on the same connection; a longer
//!   one leaves it waiting for bytes that never come, or glued to the next
//!   request's. That is why a mismatch is refused before anything is sent,
//!   and why a body that turns out shorter or longer than declared while
//!   streaming fails with [`ErrorKind::ContentLengthMismatch`] instead of
//!   sending a truncated or over-long request.
//! - **Replaying a request that changes state can do it twice.** A POST
//!   whose response was lost may have been applied. [`RetryPolicy`] retries
//!   only idempotent methods (RFC 9110 §9.2.2) unless told otherwise.
//! - **Replay needs the bytes.** A streamed body is recorded only up to the
//!   cap; past it, [`ReplayBody::is_replayable`] turns false, the retry
//!   policy gives up, and the caller gets the failed attempt's response or
//!   error. Memory for the recording is shared with the frames hyper sends
//!   (the `Bytes` are reference-counted, not copied), so the cap bounds what
//!   is kept alive, not what is copied.
//! - **Spilling uses disk.** With [`ReplayLayer::spill_to_disk`] (feature
//!   `spill`), bytes past the cap go to a temp file, up to the limit given,
//!   for every request in flight at once: size the limit and the spill
//!   directory ([`ReplayLayer::spill_dir`]) for your concurrency, as nginx's
//!   `client_body_temp_path` is. The files have no name (nothing to clean up,
//!   even after a crash) and are freed with the body's last clone. A disk
//!   that is full or slow never fails the attempt in flight: a write error
//!   makes the body non-replayable
//!   ([`ErrorKind::SpillFailed`](crate::ErrorKind::SpillFailed)), and the
//!   attempt waits for the disk only when the writer is 2 MiB behind.
//!
//! # Past the cap: spill to disk
//!
//! A proxy receives streamed bodies of any size. nginx keeps a request body
//! in memory up to `client_body_buffer_size` and writes the rest to a temp
//! file, so that it can send it again to the next upstream; linkerd and
//! Envoy stop at an in-memory limit. `spill_to_disk` does what nginx does:
//! frames are handed to a writer thread as reference-counted `Bytes`, and
//! a replay reads the file back as [`MmapBody`](crate::MmapBody) slices,
//! whose pages are given back as they are sent. On Linux the writer copies
//! the frames into a 1 MiB buffer and writes it past the page cache
//! (`O_DIRECT`): the one copy the kernel would make anyway, without filling
//! the page cache with a body that is read back only on a retry, and with
//! less CPU (the README has the numbers); where the file system refuses
//! that, or the disk is slow, it writes through the page cache. A 256 MiB upload retried twice through an axum proxy so set up
//! keeps the whole process's heap at 4.5 MiB, the same as for 64 MiB (the
//! repository's tests measure it).
//!
//! [`ErrorKind::ContentLengthMismatch`]: crate::ErrorKind::ContentLengthMismatch
// Items of a feature that is off are not in these docs: their links go to
// docs.rs, which documents every feature.
#![cfg_attr(feature = "retry", doc = "[`RetryPolicy`]: crate::retry::RetryPolicy")]
#![cfg_attr(
    not(feature = "retry"),
    doc = "[`RetryPolicy`]: https://docs.rs/mmap-body/latest/mmap_body/retry/struct.RetryPolicy.html"
)]
#![cfg_attr(
    not(feature = "spill"),
    doc = "[`ReplayLayer::spill_to_disk`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayLayer.html#method.spill_to_disk"
)]
#![cfg_attr(
    not(feature = "spill"),
    doc = "[`ReplayLayer::spill_dir`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayLayer.html#method.spill_dir"
)]

#[cfg_attr(not(feature = "spill"), allow(dead_code))]
mod append;
mod body;
mod content_length;
mod exact;
mod future;
mod layer;
mod recording;
mod restart;
mod service;
mod source;
mod spill;
mod storage;
#[cfg(test)]
mod tests;

pub use body::ReplayBody;
pub use future::ResponseFuture;
pub use layer::ReplayLayer;
pub use service::Replay;

/// The replay cap this crate's examples and [`ReverseProxy`] use unless told
/// otherwise: 8 MiB of each streamed request body kept in memory for a retry.
///
/// Why 8 MiB: it holds the bodies an API takes in one request (JSON, a
/// form, a photo), so a proxy retries them without touching a disk; a
/// bigger body is an upload, better sent as a file body or spilled to disk
/// past the cap ([`ReplayLayer::spill_to_disk`], feature `spill`). It is
/// a cap, not a buffer: nothing is allocated up front, and a recording
/// copies nothing (it keeps the `Bytes` hyper already has), so a body of
/// 4 KiB holds 4 KiB. What it bounds is what one request in flight keeps
/// alive until its answer: a server with a thousand streamed uploads at
/// once may hold up to 8 GiB, and should lower the cap or spill.
///
/// Bodies that restart by cloning ([`MmapBody`](crate::MmapBody),
/// `Full`, `Empty`, [`ReplayBody::restartable`]) are never recorded, so the
/// cap does not limit them: a client that sends files can leave it as it is.
///
/// A `usize`, as every count of bytes held in memory in this crate is (see
/// [Byte counts](crate#byte-counts)).
///
#[cfg_attr(
    feature = "proxy",
    doc = "[`ReverseProxy`]: crate::proxy::ReverseProxy"
)]
#[cfg_attr(
    not(feature = "proxy"),
    doc = "[`ReverseProxy`]: https://docs.rs/mmap-body/latest/mmap_body/proxy/struct.ReverseProxy.html"
)]
#[cfg_attr(
    not(feature = "spill"),
    doc = "[`ReplayLayer::spill_to_disk`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayLayer.html#method.spill_to_disk"
)]
pub const DEFAULT_MAX_REPLAY_BYTES: usize = 8 << 20;
