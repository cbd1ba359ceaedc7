//! Resumable uploads (feature `resume`): a retry sends only what the server
//! does not hold yet, after asking it how much arrived, instead of the
//! whole body again. This follows the IETF draft "Resumable Uploads for
//! HTTP", [`DRAFT`] (revision 12, July 2026), interop version
//! [`INTEROP_VERSION`], on both sides:
//!
//! - [`ResumeLayer`], for clients, given to [`UploadLayer`](crate::UploadLayer),
//!   which puts it inside the retries so that
//!   [`RetryPolicy`](crate::retry::RetryPolicy)'s attempts, backoff and
//!   budget apply to each resumed append:
//!
//!   ```no_run
//!   # use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//!   # use mmap_body::{resume::ResumeLayer, MmapBody, UploadLayer};
//!   # use tower::{ServiceBuilder, ServiceExt};
//!   # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!   let service = ServiceBuilder::new()
//!       .layer(UploadLayer::new().resume(ResumeLayer::new()))
//!       .service(Client::builder(TokioExecutor::new()).build_http());
//!   // SAFETY: nothing changes the file while it is sent.
//!   let body = unsafe { MmapBody::open("big.iso")? };
//!   let request = http::Request::post("http://127.0.0.1:3000/files").body(body)?;
//!   let response = service.oneshot(request).await?;
//!   # let _ = response; Ok(()) }
//!   ```
//!
//! - [`Uploads`], for servers: the upload resources and the answers an
//!   axum or hyper handler gives (its docs list the routes a handler adds).
//!
//! # What the client does
//!
//! For a `POST`, `PUT` or `PATCH` whose body's size is known and at least
//! [`ResumeLayer::min_size`] (1 MiB), the first attempt asks the target
//! with `OPTIONS` whether it takes resumable uploads (its `Accept-Patch`
//! names `application/partial-upload`, which the draft requires of such a
//! resource). If it does not, the request is sent as it is, and retried as
//! any other. If it does, the client creates the upload resource with an
//! empty request (the request's method, target and headers, `Upload-Complete:
//! ?0`, `Upload-Length`: the draft's "careful creation"; hyper and axum
//! servers cannot send the `104` interim response that would announce the
//! resource during a one-request upload), then sends the whole body to it
//! in a `PATCH` with `Upload-Offset: 0` and `Upload-Complete: ?1`.
//!
//! When that attempt fails (the connection drops, a timeout, a 503) and the
//! policy retries, the next attempt asks the upload resource for its
//! offset (`HEAD`) and sends only the rest: [`ReplayBody::resume_from`]
//! (a slice of an [`MmapBody`](crate::MmapBody), or the recording read
//! from there, its spill file mapped from the offset). Any method is
//! retried this way, since an append at a stated offset cannot apply
//! twice. An upload resource that is gone (`404`, `410`, to the offset
//! query, or once to an append) is created again and the body sent whole. An offset past the body is an error, never
//! appended to, and an answer that calls the upload complete at an offset
//! short of the body is an error ([`ErrorKind::Protocol`](crate::ErrorKind::Protocol)),
//! never a success. A changed file is never resumed (`Modified`, as for any
//! replay). The final response carries [`Resumed`] in its extensions:
//! where the upload resource is and the offset of each append.
//!
//! # Hazards
//!
//! - Two round trips more than a plain upload (`OPTIONS`, creation), which
//!   is why small bodies are sent plainly.
//! - The upload resource is told the original request's headers
//!   (authorization, cookies), except those that describe its content. The
//!   server names it, so it must be on the request's origin (scheme, host
//!   and port): one elsewhere fails the request with
//!   [`ErrorKind::Protocol`](crate::ErrorKind::Protocol), nothing sent
//!   there. [`ResumeLayer::allow_cross_origin`] follows it, without
//!   `Authorization`, `Cookie` and `Proxy-Authorization`.
//! - A completed upload whose answer was lost is found complete by the
//!   next attempt's `HEAD`, whose `204` is then the caller's answer: the
//!   draft has no way to fetch the lost answer.

//! # What the server speaks
//!
//! [`Uploads`] answers each request in the interop version it names: 3
//! (URLSession on iOS 17 and macOS 14), 4, 5 (iOS 18.0; tus-js-client's
//! `ietf-draft-03`), 6 (iOS 18.1 and later; tus-js-client's
//! `ietf-draft-05`; tusd), 7 and 8 (the newest text; 9 is taken as 8). The
//! words differ (`Upload-Incomplete` in 3; an append without a
//! completeness field is the last one up to 6; `application/partial-upload`
//! required from 6; `201` or `204` for an append that leaves the upload
//! incomplete; `expires` or `max-age` in `Upload-Limit`), the upload does
//! not: one created in one version can be resumed in another. Every answer
//! carries `Upload-Offset` and the version the request named. A request in
//! another version is not a creation ([`Uploads::is_creation`]): the
//! application takes it as a plain upload.
//!
//! **No `104` interim response.** hyper 1.x cannot send one from a server
//! (its HTTP/1.1 encoder answers `500` for a 1xx status; server-side 1xx
//! is an open pull request, hyperium/hyper#3815), so neither can axum. What
//! each client does without it:
//!
//! - URLSession sends the whole body in the creation request and learns
//!   the upload's URI only from a `104`. Its uploads to an `Uploads`
//!   server succeed as plain uploads, in its dialect; one cut mid-body is
//!   not resumed but sent again (the server keeps nothing of it: no one
//!   knows where it is).
//! - tus-js-client and this crate's [`ResumeLayer`] create the upload with
//!   an empty request first (the draft's careful creation) and read its URI
//!   from the `201`: cut uploads resume from the server's offset.

mod body;
mod client;
mod fields;
mod server;
mod session;

pub use body::ResumeBody;
pub use client::{Resume, ResumeLayer, Resumed};
pub use fields::{
    Limits, DRAFT, INTEROP_VERSION, PARTIAL_UPLOAD, UPLOAD_COMPLETE, UPLOAD_DRAFT_INTEROP_VERSION,
    UPLOAD_LENGTH, UPLOAD_LIMIT, UPLOAD_OFFSET,
};
pub use server::{Completed, Handled, Uploads};

pub(crate) use session::Session;

#[cfg(doc)]
use crate::ReplayBody;
