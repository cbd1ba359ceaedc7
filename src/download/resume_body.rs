//! What a [`DownloadBody`] does when its answer breaks off: wait, ask for
//! the rest with a range request, and take the answer only when it
//! continues the same representation (or say why not).

use std::time::{Duration, SystemTime};

use http::{Response, Uri};
use tower::retry::backoff::{Backoff, ExponentialBackoff};
use tower::util::rng::HasherRng;

use super::body::{DownloadBody, Phase};
use super::continuation::{continuation, Extent, Validator, Verdict};
use super::plan::Refetch;
use super::ResumeDownloadLayer;
use crate::error::{BoxError, Error, ErrorKind};
use crate::trace::trace_event;

/// What a resumable body needs to ask for the rest of itself.
pub(super) struct Resume<B> {
    pub(super) refetch: Box<dyn Refetch<B>>,
    pub(super) validator: Validator,
    pub(super) extent: Extent,
    pub(super) settings: ResumeDownloadLayer,
    /// Made at the first drop: most bodies never need one.
    pub(super) backoff: Option<ExponentialBackoff<HasherRng>>,
    pub(super) resumed_at: Vec<u64>,
    pub(super) uri: Uri,
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
    /// The body broke off with `err`: wait, then ask for the rest, or give
    /// `err` back when it cannot be resumed. `after`: a `Retry-After`.
    pub(super) fn dropped(
        &mut self,
        err: BoxError,
        after: Option<Duration>,
    ) -> Result<(), BoxError> {
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
    pub(super) fn ask(&mut self) {
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
    pub(super) fn answer(&mut self, response: Response<B>) -> Result<(), BoxError> {
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

    pub(super) fn stall_error(&self) -> BoxError {
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
