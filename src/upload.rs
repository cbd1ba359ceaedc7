//! The whole client stack in one layer: [`UploadLayer`] puts
//! [`IdempotencyKeyLayer`] (off until
//! [`idempotency_keys(true)`](UploadLayer::idempotency_keys)),
//! [`ReplayLayer`], `RetryLayer(`[`RetryPolicy`]`)`, `ResumeLayer` (feature
//! `resume`) and [`TrackProgressLayer`] around a client in the one order in
//! which they work, for hyper-util's `Client` and for
//! `ReqwestService` (feature `reqwest`) alike.
//!
//! ```no_run
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use mmap_body::{MmapBody, UploadLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = ServiceBuilder::new()
//!     .layer(UploadLayer::new())
//!     .service(Client::builder(TokioExecutor::new()).build_http());
//!
//! // SAFETY: nothing truncates or rewrites the file while it is sent.
//! let body = unsafe { MmapBody::open("big.iso")? };
//! let request = http::Request::put("http://127.0.0.1:3000/upload").body(body)?;
//! // Content-Length from the file's size; sent again after a 503 or a
//! // dropped connection; each attempt counted into a `Progress` put in the
//! // request's extensions. (`UploadLayer::new().resume(ResumeLayer::new())`:
//! // resumed from the server's offset where it speaks the draft.)
//! let response = client.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
//!
//! # Why one layer
//!
//! Each part works only in its place: [`IdempotencyKeyLayer`] outside the
//! retries (a key given to each attempt would be given after the policy
//! decided, and differ between attempts), [`ReplayLayer`] outside the retries
//! (a request must be cloneable before `tower::retry` clones it),
//! `ResumeLayer` inside them (each attempt, not the request, is resumed:
//! outside, it compiles and every retry resends a whole append the server
//! then refuses), [`TrackProgressLayer`] inside both (it counts each attempt,
//! from the offset a resumed one starts at). `UploadLayer` is that order,
//! with each part's own settings: [`replay`](UploadLayer::replay),
//! [`retry`](UploadLayer::retry), `resume` (feature `resume`),
//! [`idempotency_keys`](UploadLayer::idempotency_keys).
//!
//! The client below it receives `http::Request<ProgressBody<ReplayBody<B>>>`;
//! hyper-util's `build_http()` and `ReqwestService` (feature `reqwest`) take
//! that as it is. A timeout per attempt belongs to the client (reqwest's
//! `timeout`, or a `tower::timeout::TimeoutLayer` on the service given to
//! `layer`), so that a stalled attempt is an error the policy retries.

use std::task::{Context, Poll};

use http::Request;
use tower::retry::Retry;
use tower_layer::Layer;
use tower_service::Service;

use crate::progress::{TrackProgress, TrackProgressLayer};
use crate::replay::DEFAULT_MAX_REPLAY_BYTES;
#[cfg(feature = "resume")]
use crate::resume::{Resume, ResumeLayer};
#[cfg(doc)]
use crate::retry::IdempotencyKeyLayer;
use crate::retry::RetryPolicy;
use crate::{Replay, ReplayLayer};

/// Replay, retry, resume and progress around a client, in that order: see
/// the [module docs](self).
#[derive(Debug, Clone)]
pub struct UploadLayer {
    replay: ReplayLayer,
    policy: RetryPolicy,
    #[cfg(feature = "resume")]
    resume: ResumeLayer,
    keys: bool,
}

impl Default for UploadLayer {
    fn default() -> UploadLayer {
        UploadLayer::new()
    }
}

impl UploadLayer {
    /// Records up to [`DEFAULT_MAX_REPLAY_BYTES`] of each streamed body and
    /// retries with [`RetryPolicy::default`]; resumes nothing until
    /// `resume` (feature `resume`) says so (a resumable upload costs
    /// two round trips more, against servers that may not speak the draft).
    pub fn new() -> UploadLayer {
        UploadLayer {
            replay: ReplayLayer::new(DEFAULT_MAX_REPLAY_BYTES),
            policy: RetryPolicy::default(),
            #[cfg(feature = "resume")]
            resume: ResumeLayer::new().min_size(u64::MAX),
            keys: false,
        }
    }

    /// How request bodies are kept for a replay: its cap, and a spill to
    /// disk past it (`ReplayLayer::new(1 << 20).spill_to_disk(4 << 30)`).
    pub fn replay(mut self, replay: ReplayLayer) -> UploadLayer {
        self.replay = replay;
        self
    }

    /// Which failures are retried, how often, and after what wait.
    pub fn retry(mut self, policy: RetryPolicy) -> UploadLayer {
        self.policy = policy;
        self
    }

    /// Whether to give each POST and PATCH without an `Idempotency-Key` a
    /// new one, the same for all its attempts, so that the policy retries
    /// it after a dropped connection or a 503 (default: no). Turn it on
    /// only for servers that honour the key (draft-ietf-httpapi-idempotency-key-header:
    /// a repeated key is answered from the server's record, not processed
    /// again); see [`IdempotencyKeyLayer`], the layer this puts outside
    /// the retries.
    pub fn idempotency_keys(mut self, add: bool) -> UploadLayer {
        self.keys = add;
        self
    }

    /// Resumes uploads as `resume` says (`ResumeLayer::new()`: bodies of
    /// 1 MiB and more, where the server speaks the resumable-upload draft;
    /// see [`crate::resume`]): a retry then sends only what the server
    /// lacks.
    #[cfg(feature = "resume")]
    #[cfg_attr(docsrs, doc(cfg(feature = "resume")))]
    pub fn resume(mut self, resume: ResumeLayer) -> UploadLayer {
        self.resume = resume;
        self
    }
}

/// The layers below the retries.
#[cfg(feature = "resume")]
type Attempt<S> = Resume<TrackProgress<S>>;
#[cfg(not(feature = "resume"))]
type Attempt<S> = TrackProgress<S>;

/// The stack as `ServiceBuilder` would build it.
type Stack<S> = Replay<Retry<RetryPolicy, Attempt<S>>>;

impl<S> Layer<S> for UploadLayer {
    type Service = Upload<S>;

    fn layer(&self, client: S) -> Upload<S> {
        let attempt = TrackProgressLayer::new().layer(client);
        #[cfg(feature = "resume")]
        let attempt = self.resume.layer(attempt);
        let retry = Retry::new(self.policy.clone(), attempt);
        Upload {
            stack: self.replay.layer(retry),
            keys: self.keys,
        }
    }
}

/// The service of [`UploadLayer`]: a client with idempotency keys, replay,
/// retries, resumed uploads and progress.
#[derive(Debug, Clone)]
pub struct Upload<S> {
    stack: Stack<S>,
    /// `IdempotencyKeyLayer`'s work, done here, outside the whole stack.
    keys: bool,
}

impl<S, B> Service<Request<B>> for Upload<S>
where
    Stack<S>: Service<Request<B>>,
{
    type Response = <Stack<S> as Service<Request<B>>>::Response;
    type Error = <Stack<S> as Service<Request<B>>>::Error;
    type Future = <Stack<S> as Service<Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.stack.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if self.keys {
            crate::retry::add_key(&mut request);
        }
        self.stack.call(request)
    }
}
