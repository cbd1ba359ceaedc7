//! `multipart/form-data` uploads (RFC 7578) with an exact length, file
//! parts sent zero-copy, and retries at any size (feature `multipart`).
//!
//! ```
//! use http::header::CONTENT_TYPE;
//! use http_body::Body;
//! use mmap_body::multipart::{Form, FormBody, Part};
//! use mmap_body::FileBody;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("holiday.mp4");
//! # std::fs::write(&path, vec![7u8; 4096])?;
//! let video = FileBody::open(&path)?;
//! let form = Form::new()
//!     .text("title", "holiday.mp4")
//!     .part("file", Part::file(video).file_name("holiday.mp4").mime_str("video/mp4")?);
//! let request = http::Request::post("http://127.0.0.1:3000/upload")
//!     .header(CONTENT_TYPE, form.content_type()) // multipart/form-data; boundary=…
//!     .body(form.into_body())?;
//! // Headers, the 4096 bytes of the file and the closing delimiter: hyper
//! // sends `Content-Length`, then the file's frames between two small
//! // header frames.
//! let body: &FormBody = request.body();
//! assert!(body.size_hint().exact().unwrap() > 4096);
//! # Ok(())
//! # }
//! ```
//!
//! [`Form`] builds the form (reqwest's names: [`Form::text`],
//! [`Form::part`], [`Part::file_name`], [`Part::mime_str`]) and
//! [`Form::into_body`] turns it into a [`FormBody`]: headers and values in
//! memory as a few `Bytes`, each file part ([`Part::file`] for a
//! [`FileBody`](crate::FileBody), [`Part::mmap`] for an
//! [`MmapBody`](crate::MmapBody) of a file the program owns) as that
//! body's own frames between them, zero-copy where the body is. The whole length is known before a byte is sent,
//! and a clone (one reference count) sends the form again from the start.
//!
//! # Retries
//!
//! A `FormBody` passes [`ReplayLayer`] as the crate's own bodies do: the
//! layer clones it for each attempt instead of recording it, so a form
//! with a file part of any size is replayable, whatever the layer's cap,
//! and each attempt is still held to the request's `Content-Length`.
//! Before a retry the policy asks [`FormBody::verify`] (one `fstat` per
//! file part) whether the files are still as they were mapped.
//!
//! ```no_run
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use mmap_body::multipart::{Form, FormBody, Part};
//! use mmap_body::retry::RetryPolicy;
//! use mmap_body::{FileBody, ReplayBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};
//! use tower::retry::RetryLayer;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<FormBody>>();
//! let service = ServiceBuilder::new()
//!     .layer(ReplayLayer::new(DEFAULT_MAX_REPLAY_BYTES))
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     .service(client);
//! let file = FileBody::open("big.iso")?;
//! let form = Form::new().part("file", Part::file(file).file_name("big.iso"));
//! let request = http::Request::put("http://127.0.0.1:3000/upload")
//!     .header(http::header::CONTENT_TYPE, form.content_type())
//!     .body(form.into_body())?;
//! // A 503 or a dropped connection half-way: the whole form again, from the file.
//! let response = service.oneshot(request).await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! reqwest users send it the same way through
//! [`ReqwestService`] (feature `reqwest`):
//! `client.post(url).header(CONTENT_TYPE, form.content_type())`
//! `.send_through(&stack, form.into_body())`.
//!
//! # The boundary
//!
//! Each [`Form::new`] draws a new boundary, `mmap-body-` and 32 hex digits
//! (128 bits from SipHash keyed by the standard library's `RandomState`,
//! which the operating system's random source seeds, over a counter of
//! the process). The content is not searched for it: that would read every
//! file part twice. It does not need to be. A boundary is drawn after the
//! content exists and is unknown to whoever wrote it, so the chance that
//! `n` bytes of content hold it somewhere is at most `n / 2^128`: below
//! `2^-88` for a terabyte. Guessing it is no easier for someone who saw
//! earlier forms: each boundary is a new hash output.
//!
//! # Names and file names
//!
//! Field names and file names are sent between the quotes of
//! `Content-Disposition`, escaped as the WHATWG HTML standard's
//! multipart/form-data encoding does, which is what browsers send: `"` as
//! `%22`, CR as `%0D`, LF as `%0A`. Everything else, non-ASCII included, is
//! sent as UTF-8, as RFC 7578 §5.1 allows (no `filename*=`, which its §4.2
//! says not to use). A name cannot end its quotes or its header line, so
//! it can never add a parameter (a `filename`), a header or a part of its
//! own. multer and axum's `Multipart` hand the name over as it was sent
//! (`%22` stays `%22`); a server that wants the original back decodes the
//! three escapes itself.
//!
//! # Hazards
//!
//! - **Some parsers ignore the quotes.** multer 3 (and so axum's
//!   `Multipart`) looks for `filename=` anywhere in `Content-Disposition`,
//!   inside a quoted name too: a field named `x"; filename="a.sh` arrives
//!   named `x%22; filename=%22a.sh`, as the rules say, but such a parser
//!   also reads a file name `%22a.sh"` out of it. Browsers send the same
//!   bytes. Do not let untrusted input choose field names, or refuse names
//!   holding `filename` before building the form.
//! - **Escaping is not reversible.** A name that already holds `%22`
//!   arrives as one that held `"`; the same goes for `%0D` and `%0A`. A
//!   server that must tell them apart needs names without them.
//! - **A file part is the file as it is while the form is sent.** A
//!   change its body sees (a [`FileBody`](crate::FileBody)'s lease broken,
//!   an [`MmapBody`](crate::MmapBody)'s checks) ends the form with an
//!   error instead of sending a short or mixed part (see [`FormBody`]), and
//!   a form whose file changed is not retried. An `MmapBody` part keeps
//!   the promise its caller made when mapping it.
//! - **Text is sent as given.** A browser turns line breaks in text fields
//!   into CRLF; `Form::text` sends the string's bytes unchanged.
//!
#![cfg_attr(feature = "replay", doc = "[`ReplayLayer`]: crate::ReplayLayer")]
#![cfg_attr(
    not(feature = "replay"),
    doc = "[`ReplayLayer`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayLayer.html"
)]
#![cfg_attr(
    feature = "reqwest",
    doc = "[`ReqwestService`]: crate::reqwest::ReqwestService"
)]
#![cfg_attr(
    not(feature = "reqwest"),
    doc = "[`ReqwestService`]: https://docs.rs/mmap-body/latest/mmap_body/reqwest/struct.ReqwestService.html"
)]

mod body;
mod encode;
mod form;
mod part;
#[cfg(test)]
mod tests;

pub use body::FormBody;
pub use form::Form;
pub use part::Part;
