//! [`ResumeDownloadLayer`]: the settings of a resumed download, and the
//! layer that builds [`ResumeDownload`].

use std::time::Duration;

use tower_layer::Layer;

use super::ResumeDownload;

/// A Tower layer whose responses to `GET` requests resume their body where
/// it broke off (see the [module docs](super)): it builds
/// [`ResumeDownload`].
///
/// ```
/// use std::time::Duration;
/// use mmap_body::download::ResumeDownloadLayer;
///
/// let layer = ResumeDownloadLayer::new()
///     .max_resumes(5)
///     .backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .stall_timeout(Some(Duration::from_secs(20)));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ResumeDownloadLayer {
    pub(super) max_resumes: u32,
    pub(super) backoff: (Duration, Duration),
    pub(super) stall_timeout: Option<Duration>,
    pub(super) max_retry_after: Duration,
}

impl Default for ResumeDownloadLayer {
    fn default() -> ResumeDownloadLayer {
        ResumeDownloadLayer::new()
    }
}

impl ResumeDownloadLayer {
    /// Up to 10 resumes a body, exponential backoff with jitter from
    /// 100 ms to 10 s between them (as [`RetryPolicy`]'s), a stall
    /// timeout of 30 s, and a `Retry-After` of up to 30 s honoured.
    ///
    #[cfg_attr(feature = "retry", doc = "[`RetryPolicy`]: crate::retry::RetryPolicy")]
    pub fn new() -> ResumeDownloadLayer {
        ResumeDownloadLayer {
            max_resumes: 10,
            backoff: (Duration::from_millis(100), Duration::from_secs(10)),
            stall_timeout: Some(Duration::from_secs(30)),
            max_retry_after: Duration::from_secs(30),
        }
    }

    /// How many range requests one body may make, in all (0: a drop is an
    /// error, as without the layer). Every request counts, the ones that
    /// failed or were refused with a `503` included, so that a server
    /// that cuts every connection after a few bytes cannot keep a download
    /// going forever.
    pub fn max_resumes(mut self, resumes: u32) -> ResumeDownloadLayer {
        self.max_resumes = resumes;
        self
    }

    /// The wait before each range request: exponential from `min`,
    /// doubling up to `max`, each plus a random jitter of up to the same
    /// again (tower's `ExponentialBackoff`, as [`RetryPolicy::backoff`]).
    ///
    #[cfg_attr(
        feature = "retry",
        doc = "[`RetryPolicy::backoff`]: crate::retry::RetryPolicy::backoff"
    )]
    pub fn backoff(mut self, min: Duration, max: Duration) -> ResumeDownloadLayer {
        self.backoff = (min, max);
        self
    }

    /// How long a body may go without a byte before it counts as dropped
    /// (wget's `--read-timeout`); `None`: wait forever. The same bound
    /// applies to the head of each range request's answer. A body that
    /// cannot be resumed ends with an `ErrorKind::Io` error when it
    /// stalls.
    ///
    /// The clock is tokio's: the body is polled in a tokio runtime with
    /// its time driver (as hyper-util's and reqwest's clients need).
    pub fn stall_timeout(mut self, timeout: Option<Duration>) -> ResumeDownloadLayer {
        self.stall_timeout = timeout;
        self
    }

    /// The longest `Retry-After` honoured on a `429` or `503` answer to a
    /// range request (default 30 s); one asking for longer ends the body
    /// with an error instead of waiting.
    pub fn max_retry_after(mut self, limit: Duration) -> ResumeDownloadLayer {
        self.max_retry_after = limit;
        self
    }
}

impl<S> Layer<S> for ResumeDownloadLayer {
    type Service = ResumeDownload<S>;

    fn layer(&self, inner: S) -> ResumeDownload<S> {
        ResumeDownload::new(inner, *self)
    }
}
