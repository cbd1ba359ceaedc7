//! reqwest 0.13 (feature `reqwest`): requests built as reqwest users build
//! them, sent through the stack of this crate, answered as a
//! `reqwest::Response`.
//!
//! ```no_run
//! use mmap_body::reqwest::{RequestBuilderExt, ReqwestService};
//! use mmap_body::{MmapBody, UploadLayer};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = reqwest::Client::new();
//! // Content-Length, replay, retries (backoff, Retry-After, a budget),
//! // progress: in the order in which they work.
//! let stack = ServiceBuilder::new()
//!     .layer(UploadLayer::new())
//!     .service(ReqwestService::new(client.clone()));
//!
//! // SAFETY: nothing truncates or rewrites the file while it is being sent.
//! let body = unsafe { MmapBody::open("big.iso")? };
//! let response = client
//!     .put("https://storage.example/upload")
//!     .query(&[("name", "big.iso")])
//!     .bearer_auth("token")
//!     .timeout(std::time::Duration::from_secs(60)) // each attempt
//!     .send_through(&stack, body) // instead of `.body(..).send()`
//!     .await?; // a `reqwest::Response`; a `SendError` (`?` into anyhow too)
//! println!("{}", response.error_for_status()?.text().await?);
//! # Ok(())
//! # }
//! ```
//!
//! [`RequestBuilderExt::send_through`] puts what reqwest's builder made
//! (URL, query, headers, auth, timeout) into an `http::Request` with the
//! given body, and [`ReqwestService`] at the bottom of the stack sends each
//! attempt through the `reqwest::Client`, its body through
//! `reqwest::Body::wrap`. A POST to a server that honours
//! `Idempotency-Key` is retried too with
//! `UploadLayer::new().idempotency_keys(true)` (see
//! [`IdempotencyKeyLayer`](crate::retry::IdempotencyKeyLayer)).
//!
//! # Why a stack, not reqwest's own retries
//!
//! reqwest 0.13 can send an [`MmapBody`](crate::MmapBody) two ways, and each
//! gives something up. `reqwest::Body::from(Bytes::from(body))` is one
//! zero-copy `Bytes` with an exact length that reqwest can clone for its own
//! retries, but every page of the file stays resident until the request is
//! dropped, and the checks for a file changed under the mapping are gone.
//! `reqwest::Body::wrap(body)` keeps the length, the page release and the
//! checks, but reqwest never retries it: its `try_clone` only clones
//! in-memory bodies.
//!
//! Behind the layers, every attempt sends its own clone of the body, so a
//! reqwest upload keeps all of it. The stack can also be called with an
//! `http::Request` of one's own:
//!
//! ```no_run
//! use mmap_body::progress::Progress;
//! use mmap_body::reqwest::ReqwestService;
//! use mmap_body::{MmapBody, UploadLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let service = ServiceBuilder::new()
//!     .layer(UploadLayer::new())
//!     .service(ReqwestService::new(reqwest::Client::new()));
//!
//! // SAFETY: nothing truncates or rewrites the file while it is being sent.
//! let body = unsafe { MmapBody::open("big.iso")? };
//! let mut request = http::Request::put("http://127.0.0.1:3000/upload").body(body)?;
//! let progress = Progress::new();
//! request.extensions_mut().insert(progress.clone());
//! let response = service.oneshot(request).await?; // http::Response<reqwest::Body>
//! println!("{} after {} attempt(s)", response.status(), progress.attempt());
//! # Ok(())
//! # }
//! ```
//!
//! # Which reqwest path to take
//!
//! | | `Body::from(Bytes::from(body))` | `Body::wrap(body)` | `send_through` / `ReqwestService` behind the layers |
//! |---|---|---|---|
//! | zero-copy | yes | yes | yes |
//! | exact `Content-Length` | yes | yes (from `size_hint`) | yes (set by `ReplayLayer`, checked while sent) |
//! | resident memory | every page sent stays resident until the `Bytes` is dropped (the whole file) | pages sent are given back | pages sent are given back |
//! | a file changed while sent | not checked: the caller's promise must hold while the `Bytes` lives | the body fails with `Truncated` / `Modified` (in the error chain over HTTP/1.1; over HTTP/2 the caller sees a reset stream) | `Truncated` / `Modified`, over HTTP/2 too, never retried |
//! | retries | reqwest's own: by default only protocol NACKs (HTTP/2 `REFUSED_STREAM`); with `ClientBuilder::retry`, statuses too, but no backoff and no `Retry-After` | none: reqwest cannot clone it | [`RetryPolicy`]: dropped connections and 502/503/504/429, exponential backoff with jitter, `Retry-After`, a budget, idempotent methods only |
//! | progress per attempt | no | by hand ([`Progress::track`]) | [`TrackProgressLayer`], from zero at each attempt |
//!
//! # reqwest-middleware and reqwest-retry
//!
//! `reqwest-retry`'s `RetryTransientMiddleware` (0.9, on
//! `reqwest-middleware` 0.5 and reqwest 0.13) clones the `reqwest::Request`
//! with `try_clone` before each attempt, and fails the request before
//! sending it ("Request object is not cloneable. Are you passing a streaming
//! body?") when that gives `None`, which it does for every body reqwest
//! holds as a stream: `Body::wrap` and `Body::wrap_stream`, so an
//! `MmapBody` sent without copying its pages. A `Middleware` of ours cannot
//! make such a body cloneable: a middleware receives a `reqwest::Request`
//! whose body is already reqwest's own opaque `Body`, and reqwest clones
//! only the in-memory kind (`Body::from(Bytes)`, the path that keeps the
//! whole file resident and unchecked). So this crate offers no middleware
//! that claims to make `reqwest-retry` work with these bodies; a request
//! built with reqwest's builder goes through the stack with
//! [`send_through`](RequestBuilderExt::send_through) instead, with the
//! policy's backoff, `Retry-After`, budget and idempotency rules.
//!
//! # Errors
//!
//! The service fails with a boxed `reqwest::Error`, whose source chain
//! keeps hyper-util's and hyper's errors and, over HTTP/1.1, the body's
//! when the body failed. So [`RetryPolicy`] still retries a refused or
//! dropped connection, and never retries a body that failed for good (a
//! file changed under the mapping, a length mismatch): it finds this
//! crate's [`Error`](crate::Error) in the chain, and the [`ReplayBody`]
//! that failed is no longer replayable either way. Over HTTP/2 hyper only
//! reports a reset stream for a failed body; behind [`ReplayLayer`] the
//! caller still gets the body's error first, with reqwest's as its source.
//! [`Error::find_in`](crate::Error::find_in) finds it in both cases.
//!
//! # Hazards
//!
//! - `reqwest::Body::wrap` needs a body that is `Send + Sync`. A body that
//!   is only `Send` (axum's `Body`, for one) goes through [`ReplayLayer`]
//!   first: [`ReplayBody`] is `Sync` for any `Send` body, so an axum proxy
//!   can forward its incoming body with `ReqwestService` (as
//!   `proxy::ReverseProxy::builder(..).build_with(ReqwestService::new(..))`
//!   does).
//! - reqwest's own `Client` settings still apply to each attempt: a
//!   `timeout` on the client or on the request builder is per attempt
//!   here, not for the whole retried request. Put a `tower::timeout`
//!   outside `RetryLayer` for that.
//! - The client inside the stack sends: a builder taken from another
//!   client gives [`send_through`](RequestBuilderExt::send_through) its
//!   URL, headers and timeout, not that client's settings.
//! - reqwest's own retries (`ClientBuilder::retry`) never see these bodies
//!   (they cannot clone them); the policy here is the only one that runs.
//!
//! [`ReplayLayer`]: crate::ReplayLayer
//! [`ReplayBody`]: crate::ReplayBody
//! [`RetryPolicy`]: crate::retry::RetryPolicy
//! [`TrackProgressLayer`]: crate::progress::TrackProgressLayer
//! [`Progress::track`]: crate::progress::Progress::track

mod error;
mod send;
mod service;

pub use error::SendError;
pub use send::{BodyAlreadySet, RequestBuilderExt, SendThrough};
pub use service::{ReqwestService, ResponseFuture};
