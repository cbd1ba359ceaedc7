//! What [`ResumeDownload`](super::ResumeDownload) keeps of a `GET` for
//! its response's body: a way to send the request again ([`Refetch`]),
//! the settings, and the request's `Progress`; and the decision, at the
//! first answer, whether its body can be resumed.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderValue, Response, Uri};
use http_body::Body;

use super::body::DownloadBody;
use super::continuation::{extent_of, strong_validator};
use super::resume_body::Resume;
use super::ResumeDownloadLayer;
use crate::error::BoxError;
#[cfg(feature = "progress")]
use crate::progress::Progress;
use crate::trace::trace_event;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Sends the original request again with `range` and `if_range`.
pub(crate) trait Refetch<B>: Send {
    fn refetch(
        &mut self,
        range: HeaderValue,
        if_range: HeaderValue,
    ) -> BoxFuture<Result<Response<B>, BoxError>>;
}

/// What the service keeps of a `GET` for its response's body.
pub(crate) struct Plan<B> {
    refetch: Box<dyn Refetch<B>>,
    settings: ResumeDownloadLayer,
    uri: Uri,
    #[cfg(feature = "progress")]
    progress: Option<Progress>,
}

impl<B: Body<Data = Bytes>> Plan<B>
where
    B::Error: Into<BoxError>,
{
    pub(crate) fn new<R>(
        refetch: Box<dyn Refetch<B>>,
        settings: ResumeDownloadLayer,
        request: &http::Request<R>,
    ) -> Plan<B> {
        Plan {
            refetch,
            settings,
            uri: request.uri().clone(),
            #[cfg(feature = "progress")]
            progress: request.extensions().get::<Progress>().cloned(),
        }
    }

    /// The body of the first answer (`parts`, `body`).
    pub(crate) fn body(self, parts: &http::response::Parts, body: B) -> DownloadBody<B> {
        if !parts.status.is_success() {
            return DownloadBody::plain(body);
        }
        // The length is held to whenever it is known, resumable or not: a
        // body short of it, or past it, never looks complete.
        let extent = extent_of(parts.status, &parts.headers);
        let resumable = extent.zip(strong_validator(&parts.headers));
        #[cfg(feature = "progress")]
        let progress = self.progress.map(|progress| {
            let (offset, total) = match extent {
                Some(e) => (e.start, Some(e.end)),
                None => (0, body.size_hint().exact()),
            };
            let attempt = progress.begin(offset, total);
            (progress, attempt)
        });
        let resume = match resumable {
            Some((extent, validator)) if self.settings.max_resumes > 0 => Some(Resume::new(
                self.refetch,
                validator,
                extent,
                self.settings,
                self.uri,
            )),
            _ => {
                trace_event!(
                    target: "mmap_body::download",
                    tracing::Level::DEBUG,
                    uri = %self.uri,
                    status = parts.status.as_u16(),
                    why = "no strong validator, no length, or max_resumes(0)",
                    "download not resumable"
                );
                None
            }
        };
        DownloadBody::first(
            body,
            extent,
            resume,
            self.settings.stall_timeout,
            #[cfg(feature = "progress")]
            progress,
        )
    }
}
