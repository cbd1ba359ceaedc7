//! [`RetryPolicy`]: a `tower::retry::Policy` for requests whose bodies are
//! [`ReplayBody`]s.
//!
//! Put it inside a [`ReplayLayer`](crate::ReplayLayer) (see
//! [`replay`](crate::replay) for why):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mmap_body::retry::RetryPolicy;
//! use tower::retry::budget::TpsBudget;
//!
//! let policy = RetryPolicy::default()
//!     .max_attempts(4)
//!     .backoff(Duration::from_millis(50), Duration::from_secs(2))
//!     .budget(Arc::new(TpsBudget::new(Duration::from_secs(10), 1, 0.2)));
//! # let _ = policy;
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::time::Sleep;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;
use tower::util::rng::HasherRng;

use crate::ReplayBody;

mod classify;
mod idempotency;
pub(crate) mod retry_after;

use classify::{is_permanent, unsent};
#[cfg(feature = "progress")]
pub(crate) use idempotency::add_key;
pub use idempotency::{IdempotencyKey, IdempotencyKeyLayer, IDEMPOTENCY_KEY};
use retry_after::retry_after;

/// Retries requests that failed for reasons a retry can fix, when it is
/// safe to send them again.
///
/// A request is retried when all of these hold:
///
/// - it has been tried fewer than [`max_attempts`](RetryPolicy::max_attempts)
///   times (3 by default, counting the first);
/// - the attempt got a response with a status to retry (502, 503, 504 and
///   429 by default), or failed before any response (a refused or dropped
///   connection), unless the failure came from the body itself (a truncated
///   or changed file, a length mismatch: see
///   [`Error::is_permanent`](crate::Error::is_permanent));
/// - its method is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE —
///   RFC 9110 §9.2.2), or it carries an `Idempotency-Key` (below), or
///   [`retry_non_idempotent`] allows it, or the attempt provably sent
///   nothing (below);
/// - its body can still be replayed ([`ReplayBody::is_replayable`]);
/// - the retry budget, if any, has room;
/// - a `Retry-After` on a 429 or 503 asks for no longer than
///   [`max_retry_after`](RetryPolicy::max_retry_after) (30 s by default).
///
/// The wait before a retry is `Retry-After` when the response has one, and
/// otherwise exponential backoff with jitter (tower's
/// [`ExponentialBackoff`]): 100 ms, 200 ms, 400 ms ... up to 10 s by
/// default, plus up to the same again at random.
///
/// When it does not retry, the caller gets the last attempt's response or
/// error unchanged.
///
/// # Requests that never left
///
/// A POST (or any other method) is retried, within the same attempts,
/// backoff and budget, when its attempt failed in a way that proves no
/// byte of it reached the server, so that no side effect can have
/// happened ([`retry_unsent`], on by default):
///
/// - the connection was refused (an `ECONNREFUSED` in the error's chain,
///   whatever the client), or, with feature `hyper-errors` (on by default), hyper-util's client
///   reports a connect error (`is_connect()`: DNS, connect, TLS handshake),
///   as does reqwest's with feature `reqwest`;
/// - with feature `hyper-errors`: hyper gave the request back unwritten
///   (`is_canceled()`: its pooled connection closed first);
/// - with feature `hyper-errors`, over HTTP/2: the server reset the stream with
///   `REFUSED_STREAM` (RFC 9113 §8.7: closed before any processing), or
///   sent `GOAWAY` with a last stream id below the request's stream
///   (RFC 9113 §6.8).
///
/// # Requests with an `Idempotency-Key`
///
/// A request of any method that carries an [`IDEMPOTENCY_KEY`] header
/// (draft-ietf-httpapi-idempotency-key-header) is retried as an idempotent
/// one is ([`retry_idempotency_key`], on by default): a server that speaks
/// the draft answers a repeated key from its record instead of processing
/// the request again. [`IdempotencyKeyLayer`], outside `RetryLayer`, gives
/// each POST and PATCH a key of its own, the same for all its attempts;
/// see its docs for when to use it.
///
/// With feature `resume`, a request whose upload resource holds part of
/// its body (see [`resume`][resume-mod]) is retried whatever its method
/// too: the retry appends at the offset the server reports.
///
/// Anything else that fails a non-idempotent request — a connection reset
/// or dropped mid-body, a timeout, an HTTP/2 reset with another reason —
/// may have reached the server, and is returned to the caller unless
/// [`retry_non_idempotent`] says otherwise. The evidence is read from the
/// error the service below the retry layer returns: hyper-util's and
/// reqwest's errors, and boxed errors (tower's `timeout` and `buffer`, a
/// `BoxError`) are looked into along their source chains; the walk stops
/// at an error that came from the request body itself.
///
/// [`retry_non_idempotent`]: RetryPolicy::retry_non_idempotent
/// [`retry_unsent`]: RetryPolicy::retry_unsent
/// [`retry_idempotency_key`]: RetryPolicy::retry_idempotency_key
/// [`IDEMPOTENCY_KEY`]: crate::retry::IDEMPOTENCY_KEY
#[cfg_attr(feature = "resume", doc = "\n[resume-mod]: crate::resume")]
#[cfg_attr(
    not(feature = "resume"),
    doc = "\n[resume-mod]: https://docs.rs/mmap-body/latest/mmap_body/resume/index.html"
)]
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: usize,
    attempts: usize,
    backoff: Option<ExponentialBackoff<HasherRng>>,
    statuses: Vec<StatusCode>,
    max_retry_after: Duration,
    retry_connection_errors: bool,
    retry_non_idempotent: bool,
    retry_unsent: bool,
    retry_idempotency_key: bool,
    budget: Option<Arc<TpsBudget>>,
}

/// Tower's exponential backoff with a jitter of up to 100%. `None` only if
/// tower refused the arguments, which the clamping here rules out.
pub(crate) fn make_backoff(min: Duration, max: Duration) -> Option<ExponentialBackoff<HasherRng>> {
    let min = min.max(Duration::from_millis(1));
    let max = max.max(min);
    ExponentialBackoffMaker::new(min, max, 1.0, HasherRng::default())
        .ok()
        .map(|mut maker| maker.make_backoff())
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            attempts: 0,
            backoff: make_backoff(Duration::from_millis(100), Duration::from_secs(10)),
            statuses: vec![
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
                StatusCode::TOO_MANY_REQUESTS,
            ],
            max_retry_after: Duration::from_secs(30),
            retry_connection_errors: true,
            retry_non_idempotent: false,
            retry_unsent: true,
            retry_idempotency_key: true,
            budget: None,
        }
    }
}

impl RetryPolicy {
    /// The default policy; see the type's docs.
    pub fn new() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// How many times a request is sent at most, the first included
    /// (values below 1 count as 1, which never retries).
    pub fn max_attempts(mut self, attempts: usize) -> RetryPolicy {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Exponential backoff from `min`, doubling up to `max`, each wait
    /// plus a random jitter of up to the same again (capped at `max`).
    pub fn backoff(mut self, min: Duration, max: Duration) -> RetryPolicy {
        self.backoff = make_backoff(min, max);
        self
    }

    /// The response statuses to retry (default: 502, 503, 504, 429).
    pub fn retry_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> RetryPolicy {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// The longest `Retry-After` honoured on a 429 or 503; a response asking
    /// for longer is returned to the caller instead (default: 30 s).
    pub fn max_retry_after(mut self, limit: Duration) -> RetryPolicy {
        self.max_retry_after = limit;
        self
    }

    /// Whether to retry attempts that failed without a response, such as a
    /// refused or dropped connection (default: yes).
    pub fn retry_connection_errors(mut self, retry: bool) -> RetryPolicy {
        self.retry_connection_errors = retry;
        self
    }

    /// Whether to retry methods that are not idempotent, such as POST and
    /// PATCH (default: no). Turn it on only when the server makes every
    /// repeat harmless; for a server that dedupes by key, send an
    /// `Idempotency-Key` instead
    /// ([`retry_idempotency_key`](RetryPolicy::retry_idempotency_key)).
    pub fn retry_non_idempotent(mut self, retry: bool) -> RetryPolicy {
        self.retry_non_idempotent = retry;
        self
    }

    /// Whether to retry a request of any method when its attempt provably
    /// sent nothing: a refused connection, hyper giving it back unwritten,
    /// an HTTP/2 `REFUSED_STREAM` or a `GOAWAY` below its stream (default:
    /// yes; see [Requests that never left](RetryPolicy#requests-that-never-left)).
    /// It widens only which methods may be retried: attempts, backoff,
    /// budget and [`retry_connection_errors`](RetryPolicy::retry_connection_errors)
    /// still apply.
    pub fn retry_unsent(mut self, retry: bool) -> RetryPolicy {
        self.retry_unsent = retry;
        self
    }

    /// Whether to retry a request of any method that carries an
    /// [`IDEMPOTENCY_KEY`] header, as an
    /// idempotent one (default: yes; see
    /// [Requests with an `Idempotency-Key`](RetryPolicy#requests-with-an-idempotency-key)).
    /// Turn it off when keys are sent to a server that does not honour them.
    pub fn retry_idempotency_key(mut self, retry: bool) -> RetryPolicy {
        self.retry_idempotency_key = retry;
        self
    }

    /// Limits retries across every request that shares `budget` (clones of
    /// this policy share it), so that a failing server is not hit by a
    /// storm of retries. Each first attempt deposits, each retry withdraws.
    pub fn budget(mut self, budget: Arc<TpsBudget>) -> RetryPolicy {
        self.budget = Some(budget);
        self
    }

    /// Why `req` may be sent again whatever its attempt did, if it may:
    /// its method, its key, or `retry_non_idempotent`.
    fn method_allowed<B>(&self, req: &Request<B>) -> Option<&'static str> {
        if is_idempotent(req.method()) {
            Some("idempotent method")
        } else if self.retry_idempotency_key && idempotency::has_key(req) {
            Some("idempotency key")
        } else if self.retry_non_idempotent {
            Some("retry_non_idempotent")
        } else {
            None
        }
    }

    /// How long to wait before retrying this response, if it is to be
    /// retried.
    fn response_delay<T>(&self, res: &Response<T>) -> Option<Wait> {
        let status = res.status();
        if !self.statuses.contains(&status) {
            return None;
        }
        if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
            return Some(Wait::Backoff);
        }
        match retry_after(res.headers(), SystemTime::now()) {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(Wait::RetryAfter(wait)),
            None => Some(Wait::Backoff),
        }
    }
}

/// Whether part of the body is held by an upload resource, so that a retry
/// resumes it (feature `resume`): safe for any method.
fn resuming<B>(body: &ReplayBody<B>) -> bool {
    #[cfg(feature = "resume")]
    return body.is_resuming();
    #[cfg(not(feature = "resume"))]
    {
        let _ = body;
        false
    }
}

/// What a failed attempt came to, in a few words for `tracing`: the
/// status, or why an error proves the request unsent, or "error".
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
fn outcome<T, E>(result: &Result<Response<T>, E>, unsent: Option<classify::Unsent>) -> String {
    match (result, unsent) {
        (Ok(res), _) => format!("status {}", res.status().as_u16()),
        (Err(_), Some(unsent)) => format!("unsent: {}", unsent.as_str()),
        (Err(_), None) => "error".to_owned(),
    }
}

/// The `tracing` event of a failed attempt that is not retried.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
fn trace_not_retrying<B, E: 'static>(
    req: &Request<ReplayBody<B>>,
    attempt: usize,
    outcome: &str,
    why: &str,
    err: &E,
) {
    crate::trace::trace_event!(
        target: "mmap_body::retry",
        tracing::Level::DEBUG,
        method = %req.method(),
        uri = %req.uri(),
        attempt,
        reason = outcome,
        why,
        error = classify::as_error(err).map(|e| e.to_string()),
        "not retrying request"
    );
}

/// How long a retry waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The policy's backoff, with jitter.
    Backoff,
    /// What the server's `Retry-After` asked for.
    RetryAfter(Duration),
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

impl<B, ResB, E> Policy<Request<ReplayBody<B>>, Response<ResB>, E> for RetryPolicy
where
    B: Body<Data = Bytes>,
    E: 'static,
{
    type Future = Sleep;

    fn retry(
        &mut self,
        req: &mut Request<ReplayBody<B>>,
        result: &mut Result<Response<ResB>, E>,
    ) -> Option<Sleep> {
        self.attempts += 1;
        let (delay, unsent) = match result {
            Ok(res) => (self.response_delay(res), None),
            Err(err) if self.retry_connection_errors && !is_permanent(err) => (
                Some(Wait::Backoff),
                unsent(err).filter(|_| self.retry_unsent),
            ),
            Err(_) => (None, None),
        };
        let resuming = resuming(req.body());
        let Some(delay) = delay else {
            if let (Some(budget), Ok(_)) = (&self.budget, &*result) {
                // A response that needs no retry: the server is answering.
                budget.deposit();
            }
            if let Err(err) = &*result {
                let why = if self.retry_connection_errors {
                    "the body failed for good (a changed file, a length mismatch)"
                } else {
                    "retry_connection_errors is off"
                };
                trace_not_retrying(req, self.attempts, &outcome(result, unsent), why, err);
            } else if let Ok(res) = &*result {
                if self.statuses.contains(&res.status()) {
                    let why = "Retry-After asks for longer than max_retry_after";
                    trace_not_retrying(req, self.attempts, &outcome(result, unsent), why, &());
                }
            }
            return None;
        };
        let safe = self.method_allowed(req).or(if unsent.is_some() {
            Some("sent nothing")
        } else if resuming {
            Some("resumed")
        } else {
            None
        });
        let why_not = if self.attempts >= self.max_attempts {
            Some("max_attempts reached")
        } else if safe.is_none() {
            Some("the method is not idempotent, the request has no Idempotency-Key, and it may have reached the server")
        } else if !req.body().is_replayable() {
            Some("the body cannot be replayed (past the cap, lost, or its file changed)")
        } else if self
            .budget
            .as_ref()
            .is_some_and(|budget| !budget.withdraw())
        {
            Some("the retry budget is spent")
        } else {
            None
        };
        if let Some(why) = why_not {
            let outcome = outcome(result, unsent);
            match &*result {
                Err(err) => trace_not_retrying(req, self.attempts, &outcome, why, err),
                Ok(_) => trace_not_retrying(req, self.attempts, &outcome, why, &()),
            }
            return None;
        }
        let sleep = match delay {
            Wait::RetryAfter(wait) => tokio::time::sleep(wait),
            Wait::Backoff => match &mut self.backoff {
                Some(backoff) => backoff.next_backoff(),
                None => tokio::time::sleep(Duration::from_millis(100)),
            },
        };
        crate::trace::trace_event!(
            target: "mmap_body::retry",
            tracing::Level::DEBUG,
            method = %req.method(),
            uri = %req.uri(),
            attempt = self.attempts,
            reason = %outcome(result, unsent),
            wait_ms = sleep.deadline().saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64,
            retry_after = matches!(delay, Wait::RetryAfter(_)),
            replay = if resuming { "resume" } else { req.body().replay_source() },
            budget = self.budget.is_some(),
            safe,
            "retrying request"
        );
        Some(sleep)
    }

    fn clone_request(&mut self, req: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        // Requests that will never be retried are not cloned at all. Any
        // method may be retried when its attempt sent nothing, or when it
        // is a resumable upload.
        if self.max_attempts <= 1
            || !(self.retry_unsent
                || cfg!(feature = "resume")
                || self.method_allowed(req).is_some())
        {
            return None;
        }
        if !req.body().is_replayable() {
            return None;
        }
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(&m.parse().unwrap()), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT"] {
            assert!(!is_idempotent(&m.parse().unwrap()), "{m}");
        }
    }
}
