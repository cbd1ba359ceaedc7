//! [`DownloadBody`]: the first answer's body, then, each time it drops or
//! stalls, the body of a range request that continues it (checked by
//! [`continuation`](super::continuation)), as one body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Response, Uri};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;
use tower::retry::backoff::{Backoff, ExponentialBackoff};
use tower::util::rng::HasherRng;

use super::continuation::{continuation, Extent, Validator, Verdict};
use super::plan::{BoxFuture, Refetch};
use super::stall::Stall;
use super::ResumeDownloadLayer;
use crate::error::{BoxError, Error, ErrorKind};
#[cfg(feature = "progress")]
use crate::progress::Progress;
use crate::trace::trace_event;

/// The response body of [`ResumeDownload`](super::ResumeDownload).
///
/// It yields the first answer's bytes; when that body fails (the
/// connection dropped), ends short of its length, or brings no byte for
/// the [stall timeout](ResumeDownloadLayer::stall_timeout), it sends the
/// request again with `Range: bytes=N-` and `If-Range`, checks that the
/// answer continues the same representation from byte N (see the [module
/// docs](super)), and goes on with its bytes. Its consumer sees one body:
/// no byte twice, none missing, none of another version: an answer that
/// is not the continuation ends it with
/// [`ErrorKind::Modified`].
///
/// `size_hint` is the first answer's length less the bytes handed out.
/// Errors are boxed: the inner body's own (when it cannot be resumed), or
/// an [`Error`] (find it with
/// [`Error::find_in`](crate::Error::find_in)).
///
/// It is `Send` (not `Sync`), and its timers are tokio's: poll it in a
/// tokio runtime with its time driver, as hyper-util's client needs.
pub struct DownloadBody<B> {
    phase: Phase<B>,
    /// Bytes handed to the consumer.
    delivered: u64,
    /// What the first answer carries, when it said (a resumable body).
    extent: Option<Extent>,
    stall: Option<Stall>,
    resume: Option<Box<Resume<B>>>,
    #[cfg(feature = "progress")]
    progress: Option<(Progress, u32)>,
}

enum Phase<B> {
    Body(Pin<Box<B>>),
    /// The backoff (or `Retry-After`) before a range request.
    Wait(Pin<Box<Sleep>>),
    /// A range request, waiting for its answer's head.
    Ask(BoxFuture<Result<Response<B>, BoxError>>),
    Ended,
}

pub(super) struct Resume<B> {
    refetch: Box<dyn Refetch<B>>,
    validator: Validator,
    extent: Extent,
    settings: ResumeDownloadLayer,
    /// Made at the first drop: most bodies never need one.
    backoff: Option<ExponentialBackoff<HasherRng>>,
    resumed_at: Vec<u64>,
    uri: Uri,
}

impl<B> Resume<B> {
    pub(super) fn new(
        refetch: Box<dyn Refetch<B>>,
        validator: Validator,
        extent: Extent,
        settings: ResumeDownloadLayer,
        uri: Uri,
    ) -> Box<Resume<B>> {
        Box::new(Resume {
            refetch,
            validator,
            extent,
            settings,
            backoff: None,
            resumed_at: Vec::new(),
            uri,
        })
    }
}

impl<B> DownloadBody<B> {
    /// The first answer's `body`, resumable when `resume` is given.
    pub(super) fn first(
        body: B,
        extent: Option<Extent>,
        resume: Option<Box<Resume<B>>>,
        stall_timeout: Option<Duration>,
        #[cfg(feature = "progress")] progress: Option<(Progress, u32)>,
    ) -> DownloadBody<B> {
        DownloadBody {
            phase: Phase::Body(Box::pin(body)),
            delivered: 0,
            extent,
            stall: stall_timeout.map(Stall::new),
            resume,
            #[cfg(feature = "progress")]
            progress,
        }
    }

    /// `body` passed through: not a `GET`, not a success.
    pub(crate) fn plain(body: B) -> DownloadBody<B>
    where
        B: Body,
    {
        DownloadBody {
            phase: Phase::Body(Box::pin(body)),
            delivered: 0,
            extent: None,
            stall: None,
            resume: None,
            #[cfg(feature = "progress")]
            progress: None,
        }
    }

    /// Where each range request started, in order: empty when the first
    /// answer's body went through whole (or could not be resumed).
    pub fn resumed_at(&self) -> &[u64] {
        self.resume.as_ref().map_or(&[], |r| &r.resumed_at)
    }

    /// Whether a drop of this body would be resumed: the answer to a `GET`
    /// was a `200` with a `Content-Length` or a `206` with a
    /// `Content-Range`, with a strong validator.
    pub fn is_resumable(&self) -> bool {
        self.resume.is_some()
    }

    /// Bytes handed out so far (of this body, not counting the offset a
    /// `206` began at).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Ends the body with `err`.
    fn fail(&mut self, err: impl Into<BoxError>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.phase = Phase::Ended;
        Poll::Ready(Some(Err(err.into())))
    }

    /// The body broke off with `err`: wait, then ask for the rest, or give
    /// `err` back when it cannot be resumed. `after`: a `Retry-After`.
    fn dropped(&mut self, err: BoxError, after: Option<Duration>) -> Result<(), BoxError> {
        let Some(resume) = self.resume.as_mut() else {
            self.phase = Phase::Ended;
            return Err(err);
        };
        let at = resume.extent.start + self.delivered;
        let made = resume.resumed_at.len();
        if made >= resume.settings.max_resumes as usize {
            self.phase = Phase::Ended;
            let message = format!(
                "the download of {} broke off at byte {at} of {} and {made} resumes did not \
                 finish it (ResumeDownloadLayer::max_resumes)",
                resume.uri, resume.extent.complete
            );
            let stop = Stop::new(ErrorKind::Io, "max_resumes reached", message);
            return Err(stop.traced(&resume.uri, at, None, Some(err)));
        }
        let sleep = match after {
            Some(wait) if wait > resume.settings.max_retry_after => {
                self.phase = Phase::Ended;
                let message = format!(
                    "the server asks to wait {wait:?} before the download of {} goes on from \
                     byte {at}, longer than max_retry_after ({:?})",
                    resume.uri, resume.settings.max_retry_after
                );
                let why = "Retry-After longer than max_retry_after";
                let stop = Stop::new(ErrorKind::Io, why, message);
                return Err(stop.traced(&resume.uri, at, None, Some(err)));
            }
            Some(wait) => Box::pin(tokio::time::sleep(wait)),
            None => {
                let (min, max) = resume.settings.backoff;
                if resume.backoff.is_none() {
                    resume.backoff = crate::retry::make_backoff(min, max);
                }
                match &mut resume.backoff {
                    Some(backoff) => Box::pin(backoff.next_backoff()),
                    // (tower refused the clamped arguments: never seen)
                    None => Box::pin(tokio::time::sleep(min)),
                }
            }
        };
        trace_event!(
            target: "mmap_body::download",
            tracing::Level::DEBUG,
            uri = %resume.uri,
            offset = at,
            complete = resume.extent.complete,
            resume = made + 1,
            retry_after = after.is_some(),
            wait_ms = sleep.deadline().saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64,
            error = %err,
            "resuming download"
        );
        self.phase = Phase::Wait(sleep);
        Ok(())
    }

    /// Sends the range request for the bytes from where the body stopped.
    fn ask(&mut self) {
        let Some(resume) = self.resume.as_mut() else {
            // (only a resumable body waits)
            self.phase = Phase::Ended;
            return;
        };
        let at = resume.extent.start + self.delivered;
        resume.resumed_at.push(at);
        let range = resume.extent.range_from(at);
        self.phase = Phase::Ask(
            resume
                .refetch
                .refetch(range, resume.validator.value().clone()),
        );
        if let Some(stall) = &mut self.stall {
            stall.touch();
        }
    }

    /// The answer to a range request: its body goes on, or the download
    /// ends, or another request is made.
    fn answer(&mut self, response: Response<B>) -> Result<(), BoxError> {
        let Some(resume) = self.resume.as_mut() else {
            // (only a resumable body asks)
            self.phase = Phase::Ended;
            return Ok(());
        };
        let at = resume.extent.start + self.delivered;
        let status = response.status();
        let verdict = continuation(
            status,
            response.headers(),
            &resume.extent,
            at,
            &resume.validator,
            SystemTime::now(),
        );
        let uri = &resume.uri;
        match verdict {
            Verdict::Continue => {
                trace_event!(
                    target: "mmap_body::download",
                    tracing::Level::DEBUG,
                    uri = %uri,
                    offset = at,
                    "resumed download"
                );
                #[cfg(feature = "progress")]
                if let Some((progress, attempt)) = &mut self.progress {
                    *attempt = progress.begin(at, Some(resume.extent.end));
                }
                self.phase = Phase::Body(Box::pin(response.into_body()));
                if let Some(stall) = &mut self.stall {
                    stall.touch();
                }
                Ok(())
            }
            Verdict::AskAgain(after) => {
                let err = Error::new(
                    ErrorKind::Io,
                    format!("the range request from byte {at} was answered {status}"),
                );
                self.dropped(err.into(), after)
            }
            Verdict::Modified(why) => {
                self.phase = Phase::Ended;
                let message = format!(
                    "{why}; the download of {uri} stopped at byte {at}, every byte handed out \
                     is of the first version: download it again from the start"
                );
                let stop = Stop::new(ErrorKind::Modified, &why, message);
                Err(stop.traced(uri, at, Some(status.as_u16()), None))
            }
            Verdict::Protocol(why) => {
                self.phase = Phase::Ended;
                let message = format!("{why}; the download of {uri} stopped at byte {at}");
                let stop = Stop::new(ErrorKind::Protocol, &why, message);
                Err(stop.traced(uri, at, Some(status.as_u16()), None))
            }
        }
    }

    fn stall_error(&self) -> BoxError {
        let timeout = self.stall.as_ref().map_or(Duration::ZERO, |s| s.timeout);
        Error::new(
            ErrorKind::Io,
            format!(
                "no byte for {timeout:?} after byte {} of the body (stall_timeout)",
                self.delivered
            ),
        )
        .into()
    }
}

impl<B> Body for DownloadBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.phase {
                Phase::Body(body) => match body.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            let len = data.len() as u64;
                            let total = this.delivered.saturating_add(len);
                            if let Some(extent) = this.extent.filter(|e| total > e.len()) {
                                return this.fail(Error::new(
                                    ErrorKind::Protocol,
                                    format!(
                                        "the server sent more than the {} bytes it announced",
                                        extent.len()
                                    ),
                                ));
                            }
                            this.delivered = total;
                            if let Some(stall) = &mut this.stall {
                                stall.touch();
                            }
                            #[cfg(feature = "progress")]
                            if let Some((progress, attempt)) = &this.progress {
                                progress.add(*attempt, len);
                            }
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Poll::Ready(Some(Err(err))) => {
                        if let Err(err) = this.dropped(err.into(), None) {
                            return this.fail(err);
                        }
                    }
                    Poll::Ready(None) => match this.extent {
                        Some(extent) if this.delivered < extent.len() => {
                            let short = Error::new(
                                ErrorKind::Io,
                                format!(
                                    "the body ended after {} of its {} bytes",
                                    this.delivered,
                                    extent.len()
                                ),
                            );
                            if let Err(err) = this.dropped(short.into(), None) {
                                return this.fail(err);
                            }
                        }
                        _ => {
                            this.phase = Phase::Ended;
                            return Poll::Ready(None);
                        }
                    },
                    Poll::Pending => {
                        if !this.stall.as_mut().is_some_and(|s| s.stalled(cx)) {
                            return Poll::Pending;
                        }
                        let err = this.stall_error();
                        if let Err(err) = this.dropped(err, None) {
                            return this.fail(err);
                        }
                    }
                },
                Phase::Wait(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.ask();
                }
                Phase::Ask(answer) => match answer.as_mut().poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        if let Err(err) = this.answer(response) {
                            return this.fail(err);
                        }
                    }
                    Poll::Ready(Err(err)) => {
                        if let Err(err) = this.dropped(err, None) {
                            return this.fail(err);
                        }
                    }
                    Poll::Pending => {
                        if !this.stall.as_mut().is_some_and(|s| s.stalled(cx)) {
                            return Poll::Pending;
                        }
                        let err = this.stall_error();
                        if let Err(err) = this.dropped(err, None) {
                            return this.fail(err);
                        }
                    }
                },
                Phase::Ended => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.phase {
            Phase::Ended => true,
            Phase::Body(body) => {
                body.is_end_stream() && self.extent.is_none_or(|e| self.delivered >= e.len())
            }
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (self.extent, &self.phase) {
            (Some(extent), _) => SizeHint::with_exact(extent.len() - self.delivered),
            (None, Phase::Body(body)) => body.size_hint(),
            (None, Phase::Ended) => SizeHint::with_exact(0),
            (None, _) => SizeHint::default(),
        }
    }
}

impl<B> fmt::Debug for DownloadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Body(_) => "body",
            Phase::Wait(_) => "waiting to resume",
            Phase::Ask(_) => "asking for the rest",
            Phase::Ended => "ended",
        };
        f.debug_struct("DownloadBody")
            .field("phase", &phase)
            .field("delivered", &self.delivered)
            .field("extent", &self.extent)
            .field("resumed_at", &self.resumed_at())
            .finish()
    }
}

/// Why a download is not resumed: its error, and the `not resuming
/// download` event that says so.
struct Stop<'a> {
    kind: ErrorKind,
    why: &'a str,
    message: String,
}

impl<'a> Stop<'a> {
    fn new(kind: ErrorKind, why: &'a str, message: String) -> Stop<'a> {
        Stop { kind, why, message }
    }

    /// The error (with `source`, the failure that asked for a resume), after
    /// the event (feature `tracing`): `uri`, `offset`, the range answer's
    /// `status` where there was one, `why`.
    fn traced(self, uri: &Uri, at: u64, status: Option<u16>, source: Option<BoxError>) -> BoxError {
        trace_event!(
            target: "mmap_body::download",
            tracing::Level::DEBUG,
            uri = %uri,
            offset = at,
            status = status,
            why = %self.why,
            error = source.as_ref().map(tracing::field::display),
            "not resuming download"
        );
        let _ = (uri, at, status, self.why);
        let err = Error::new(self.kind, self.message);
        match source {
            Some(source) => err.with_source(source).into(),
            None => err.into(),
        }
    }
}
