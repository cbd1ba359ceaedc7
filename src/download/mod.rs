//! Downloads that survive a dropped connection: [`ResumeDownloadLayer`]
//! resumes a response body where it broke off, and [`save()`] resumes a
//! download into a file across runs.
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use mmap_body::download::ResumeDownloadLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
//! let client = ServiceBuilder::new()
//!     .layer(ResumeDownloadLayer::new())
//!     .service(client);
//!
//! let request = http::Request::get("http://127.0.0.1:3000/big.iso").body(Empty::new())?;
//! let response = client.oneshot(request).await?;
//! // A DownloadBody: when the connection drops mid-body, it asks again for
//! // `Range: bytes=N-` with `If-Range` and goes on from byte N.
//! let mut body = response.into_body();
//! while let Some(frame) = body.frame().await {
//!     if let Ok(bytes) = frame?.into_data() {
//!         // write `bytes` somewhere
//! #       let _ = bytes;
//!     }
//! }
//! println!("resumed at {:?}", body.resumed_at());
//! # Ok(())
//! # }
//! ```
//!
//! To a file, resumable after the process is killed too:
//!
//! ```no_run
//! # use bytes::Bytes;
//! # use http_body_util::Empty;
//! # use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! # use mmap_body::download::ResumeDownloadLayer;
//! # use tower::ServiceBuilder;
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
//! let client = ServiceBuilder::new().layer(ResumeDownloadLayer::new()).service(client);
//! let request = http::Request::get("http://127.0.0.1:3000/big.iso").body(Empty::new())?;
//! // Writes big.iso.part (and big.iso.part.meta), renamed to big.iso once whole.
//! let saved = mmap_body::download::save(client, request, "big.iso").await?;
//! println!("{} bytes, {} of them this time", saved.len, saved.written);
//! # Ok(())
//! # }
//! ```
//!
//! # What is resumed, and how it is checked
//!
//! Only the body of a `GET` answered `200` with a `Content-Length`, or
//! `206` with a single `Content-Range` (a request of the caller's own for
//! a range), carrying a **strong validator**: a strong `ETag`, or, when
//! there is no `ETag` at all, a `Last-Modified` at least one second
//! before the answer's `Date` (RFC 9110 §8.8.2.2; §13.1.5 forbids a date
//! in `If-Range` otherwise). When such a body fails, ends short of its
//! length, or brings no byte for the
//! [stall timeout](ResumeDownloadLayer::stall_timeout), the layer waits
//! (backoff, or the `Retry-After` of a `429` / `503`) and sends the
//! original request again (method, URI, headers and extensions, cloned
//! before the first call) with `Range: bytes=N-` and `If-Range: <the
//! validator>`. The answer must be a `206` whose `Content-Range` is
//! exactly `bytes N-<last>/<the same complete length>` with the same
//! validator; then its bytes follow the ones handed out, and the consumer
//! sees one body.
//!
//! - A `200` (the representation changed, or the server ignores ranges),
//!   a `412`, a `416`, another validator, another range or length: the
//!   body ends with [`ErrorKind::Modified`](crate::ErrorKind::Modified).
//!   No byte of the second version is handed out, and no byte twice.
//! - A `429`, `502`, `503` or `504`: asked again, counted as a resume.
//! - A redirect, a `404` or any other status: the body ends with
//!   [`ErrorKind::Protocol`](crate::ErrorKind::Protocol). A resume goes
//!   to the URI that began the download, nowhere else (and a redirect is
//!   not followed).
//! - Without a strong validator (a weak `ETag` is none) or a known length
//!   a drop is an error, as without the layer: there would be no way to
//!   tell the rest belongs to the same bytes.
//!
//! Every resume counts against
//! [`max_resumes`](ResumeDownloadLayer::max_resumes) (10 by default);
//! when they run out, the body ends with an
//! [`ErrorKind::Io`](crate::ErrorKind::Io) error whose source is the
//! last drop's.
//!
//! # Hazards
//!
//! - The validator is all that ties the two answers together. A server
//!   whose strong `ETag` does not change when the file does (an `ETag`
//!   made of the size and a modification time the change kept) resumes
//!   into a file of two versions. nginx, tower-http's `ServeFile` and
//!   this crate's [`serve`](crate::serve) make theirs from size and
//!   modification time.
//! - A client below the layer that decodes `Content-Encoding` (reqwest's
//!   `gzip`) changes what the byte offsets count: turn decoding off, or
//!   ask for `Accept-Encoding: identity`, for a resumed download.
//! - The request's headers go with every resume, credentials included,
//!   to the same URI only.
//! - A `DownloadBody` is `Send`, not `Sync`, and its timers are tokio's.
//!
//! # Progress
//!
//! With feature `progress`, a request that carries a
//! [`Progress`](crate::progress::Progress) in its extensions has its
//! download counted there: each answer (the first, and each resumed one)
//! is an attempt, [`sent`](crate::progress::Progress::sent) counts the
//! bytes the body handed out (a download's "sent" is what it received),
//! starting from the offset the answer begins at, and
//! [`total`](crate::progress::Progress::total) is the end of the bytes
//! asked for (the file's length).
//!
//! # Events
//!
//! With feature `tracing`, `DEBUG` events of target
//! `mmap_body::download`, as the upload side's `retrying request` /
//! `not retrying request`: `resuming download` (a drop: `uri`, `offset`,
//! `complete`, `resume` (its number), `retry_after`, `wait_ms`, `error`),
//! `resumed download` (the `206` continues it), `not resuming download`
//! (`why`: another version, a wrong range, a redirect, `max_resumes`...),
//! `download not resumable` (no strong validator or length), and
//! [`save()`]'s `saving download`, `saving download from its .part` and
//! `the .part is of another version: saving from the start`.

mod blocking;
mod body;
mod continuation;
mod future;
mod layer;
mod part;
mod plan;
mod resume_body;
mod save;
mod service;
mod stall;
#[cfg(test)]
mod tests;

pub use body::DownloadBody;
pub use future::ResponseFuture;
pub use layer::ResumeDownloadLayer;
pub use save::{save, Saved};
pub use service::ResumeDownload;
