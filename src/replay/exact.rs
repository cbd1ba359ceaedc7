//! [`ExactLength`]: a body held to the length its `Content-Length`
//! declared, one attempt at a time, as http-body-util's `Limited` holds one
//! to a limit.
//!
//! A body that ends short of its declared length, or runs past it, fails
//! with [`ErrorKind::ContentLengthMismatch`] instead of ending: a request cut
//! short or run long is how a server reads half a request, or the start of
//! the next one, as a complete request (see the [module docs](super)).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::{Error, ErrorKind};

pin_project! {
    /// Yields the inner body's frames while they stay within `expected`
    /// bytes, and fails if the body ends short of them or runs past them.
    ///
    /// When a data frame completes the expected length and the body does not
    /// say it has ended, that one frame is held back while the body is
    /// polled once more: hyper stops reading a body once its
    /// `Content-Length` is written, so a body with more to give would
    /// otherwise be cut short without anyone noticing. Nothing else is held
    /// back. An attempt that failed is over: after an error (its own or the
    /// inner body's) it yields nothing more, and nothing held is sent.
    pub(super) struct ExactLength<B> {
        #[pin]
        inner: B,
        // Bytes the body must yield in all (`None`: any number).
        expected: Option<u64>,
        // Bytes yielded so far, held ones included.
        sent: u64,
        // The frame that completed `expected`, held back until the body
        // shows it has nothing more.
        held: Option<Bytes>,
        // A trailers frame to yield after `held`.
        queued: Option<Frame<Bytes>>,
        // The inner body returned `None`.
        inner_done: bool,
        // An error was yielded: the attempt is over.
        failed: bool,
    }
}

impl<B> ExactLength<B> {
    /// Holds `inner` to `expected` bytes (`None`: no check).
    pub(super) fn new(inner: B, expected: Option<u64>) -> ExactLength<B> {
        ExactLength {
            inner,
            expected,
            sent: 0,
            held: None,
            queued: None,
            inner_done: false,
            failed: false,
        }
    }

    /// The same check from the start, over a clone of the inner body (which
    /// for the bodies wrapped here sends everything again from the start).
    pub(super) fn restart(&self) -> ExactLength<B>
    where
        B: Clone,
    {
        ExactLength::new(self.inner.clone(), self.expected)
    }

    /// The wrapped body.
    pub(super) fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The wrapped body, without the check.
    pub(super) fn into_inner(self) -> B {
        self.inner
    }

    /// The bytes the body must yield, if the check is on.
    pub(super) fn expected(&self) -> Option<u64> {
        self.expected
    }

    /// Bytes of the inner body taken so far (a held frame included).
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    fn held_len(&self) -> u64 {
        self.held.as_ref().map_or(0, |d| d.len() as u64)
    }
}

/// The body ran past its declared length: `at_least` bytes.
fn too_long(expected: u64, at_least: u64) -> Error {
    Error::new(
        ErrorKind::ContentLengthMismatch,
        format!(
            "body longer than declared: the request body produced at least {at_least} \
             bytes, more than the {expected} its Content-Length declared; the request \
             was failed rather than sent cut short. Fix the Content-Length header or the \
             body (or remove the header to have it set from the body's size)"
        ),
    )
}

/// The body ended after `sent` of its `expected` bytes.
fn too_short(expected: u64, sent: u64) -> Error {
    Error::new(
        ErrorKind::ContentLengthMismatch,
        format!(
            "body shorter than declared: the request body ended after {sent} of the \
             {expected} bytes its Content-Length declared; the request was failed rather \
             than sent truncated. Fix the Content-Length header or the body (or remove \
             the header to have it set from the body's size)"
        ),
    )
}

impl<B> Body for ExactLength<B>
where
    B: Body<Data = Bytes, Error = Error>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        if let Some(frame) = this.queued.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let out = loop {
            if *this.inner_done {
                break match *this.expected {
                    Some(expected) if *this.sent < expected => {
                        Some(Err(too_short(expected, *this.sent)))
                    }
                    _ => None,
                };
            }
            let frame = match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    *this.inner_done = true;
                    match this.held.take() {
                        Some(data) => break Some(Ok(Frame::data(data))),
                        None => continue,
                    }
                }
                Poll::Ready(Some(Err(err))) => break Some(Err(err)),
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(trailers) => match this.held.take() {
                    Some(data) => {
                        *this.queued = Some(trailers);
                        break Some(Ok(Frame::data(data)));
                    }
                    None => break Some(Ok(trailers)),
                },
            };
            let sent = *this.sent + data.len() as u64;
            match *this.expected {
                Some(expected) if sent > expected => break Some(Err(too_long(expected, sent))),
                // Past a held frame, only empty frames fit.
                _ if this.held.is_some() => continue,
                Some(expected) if sent == expected && !this.inner.is_end_stream() => {
                    *this.sent = sent;
                    *this.held = Some(data);
                }
                _ => {
                    *this.sent = sent;
                    break Some(Ok(Frame::data(data)));
                }
            }
        };
        if let Some(Err(_)) = &out {
            *this.failed = true;
            *this.held = None;
            *this.queued = None;
        }
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        if self.failed {
            return true;
        }
        if self.held.is_some() || self.queued.is_some() {
            return false;
        }
        if self.expected.is_some_and(|len| self.sent < len) {
            // Poll once more so that a short body is reported, not sent.
            return false;
        }
        self.inner_done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.held_len();
        if self.failed || self.inner_done {
            return SizeHint::with_exact(held);
        }
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::Waker;

    use http::HeaderMap;
    use http_body_util::BodyExt;

    use super::*;

    /// One step of a [`Script`].
    #[derive(Clone)]
    enum Step {
        Data(&'static str),
        Trailers(HeaderMap),
        Fail(Error),
    }

    /// A hand-made body: these steps, one a poll, then `None`. It says it
    /// has ended only after its last step when `tells_end` (as `Full`
    /// does); otherwise only once it returned `None` (as a stream does).
    /// Past its steps it is `Pending` forever if `hangs`, so a test sees
    /// whether it was polled again. A clone starts again from the start.
    struct Script {
        all: Vec<Step>,
        steps: VecDeque<Step>,
        tells_end: bool,
        hangs: bool,
        done: bool,
    }

    fn script(frames: &[&'static str]) -> Script {
        Script {
            all: frames.iter().map(|f| Step::Data(f)).collect(),
            steps: frames.iter().map(|f| Step::Data(f)).collect(),
            tells_end: false,
            hangs: false,
            done: false,
        }
    }

    impl Script {
        fn telling_end(mut self) -> Script {
            self.tells_end = true;
            self
        }

        fn hanging(mut self) -> Script {
            self.hangs = true;
            self
        }

        fn then(mut self, step: Step) -> Script {
            self.all.push(step.clone());
            self.steps.push_back(step);
            self
        }
    }

    impl Clone for Script {
        fn clone(&self) -> Script {
            Script {
                all: self.all.clone(),
                steps: self.all.iter().cloned().collect(),
                tells_end: self.tells_end,
                hangs: self.hangs,
                done: false,
            }
        }
    }

    impl Body for Script {
        type Data = Bytes;
        type Error = Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
            match self.steps.pop_front() {
                Some(Step::Data(data)) => Poll::Ready(Some(Ok(Frame::data(data.into())))),
                Some(Step::Trailers(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                Some(Step::Fail(err)) => Poll::Ready(Some(Err(err))),
                None if self.hangs => Poll::Pending,
                None => {
                    self.done = true;
                    Poll::Ready(None)
                }
            }
        }

        fn is_end_stream(&self) -> bool {
            self.done || (self.tells_end && self.steps.is_empty())
        }

        fn size_hint(&self) -> SizeHint {
            let left = self
                .steps
                .iter()
                .map(|step| match step {
                    Step::Data(data) => data.len() as u64,
                    _ => 0,
                })
                .sum();
            SizeHint::with_exact(left)
        }
    }

    fn poll(body: &mut ExactLength<Script>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
    }

    /// Every frame, until the first error or pending poll.
    fn drain(body: &mut ExactLength<Script>) -> (Vec<String>, Option<Error>) {
        let mut seen = Vec::new();
        loop {
            match poll(body) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => seen.push(String::from_utf8(data.to_vec()).unwrap()),
                    Err(frame) => seen.push(format!("{:?}", frame.into_trailers().ok())),
                },
                Poll::Ready(Some(Err(err))) => return (seen, Some(err)),
                Poll::Ready(None) | Poll::Pending => return (seen, None),
            }
        }
    }

    /// Every frame, failing the test on an error.
    fn drain_ok(body: &mut ExactLength<Script>) -> Vec<String> {
        match drain(body) {
            (seen, None) => seen,
            (_, Some(err)) => panic!("{err}"),
        }
    }

    fn mismatch_message(err: Option<Error>) -> String {
        let err = err.expect("an error");
        assert_eq!(err.kind(), ErrorKind::ContentLengthMismatch, "{err}");
        err.to_string()
    }

    #[tokio::test]
    async fn an_exact_body_comes_through_whole() {
        for inner in [script(&["ab", "cde"]), script(&["ab", "cde"]).telling_end()] {
            let body = ExactLength::new(inner, Some(5));
            assert_eq!(body.size_hint().exact(), Some(5));
            assert!(!body.is_end_stream());
            let bytes = body.collect().await.unwrap().to_bytes();
            assert_eq!(bytes, "abcde");
        }
        let mut body = ExactLength::new(script(&["ab", "cde"]), Some(5));
        assert_eq!(drain_ok(&mut body), ["ab", "cde"]);
        assert_eq!(body.sent(), 5);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn a_short_body_fails_instead_of_ending() {
        let mut body = ExactLength::new(script(&["ab", "c"]), Some(5));
        let (seen, err) = drain(&mut body);
        assert_eq!(seen, ["ab", "c"]);
        let message = mismatch_message(err);
        assert!(message.contains("ended after 3 of the 5"), "{message}");
        // Nothing more, and consumers can tell.
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn a_long_body_fails_at_the_frame_that_runs_past() {
        // One byte too many, in the middle of a frame.
        let mut body = ExactLength::new(script(&["ab", "cdef"]), Some(5));
        let (seen, err) = drain(&mut body);
        assert_eq!(seen, ["ab"]);
        let message = mismatch_message(err);
        assert!(
            message.contains("at least 6 bytes, more than the 5"),
            "{message}"
        );
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    #[test]
    fn the_frame_that_completes_the_length_waits_for_the_end() {
        // The body does not say it has ended: its last frame is held back
        // until the body shows whether more comes. More does: the held
        // frame is never yielded.
        let mut body = ExactLength::new(script(&["ab", "cde", "f"]), Some(5));
        let (seen, err) = drain(&mut body);
        assert_eq!(seen, ["ab"]);
        assert!(mismatch_message(err).contains("longer than declared"));
        // Empty frames past the held one are no extra bytes.
        let inner = script(&["ab", "cde", "", ""]);
        let mut body = ExactLength::new(inner, Some(5));
        assert_eq!(drain_ok(&mut body), ["ab", "cde"]);
    }

    #[test]
    fn holds_back_nothing_a_body_that_tells_its_end_does_not_need() {
        // This body is pending forever after its frames: a check that held
        // the last frame back would never yield it.
        let inner = script(&["ab", "cde"]).telling_end().hanging();
        let mut body = ExactLength::new(inner, Some(5));
        assert_eq!(drain_ok(&mut body), ["ab", "cde"]);
        assert!(body.is_end_stream());
        // The same without telling: the frame is held, and counted.
        let mut body = ExactLength::new(script(&["ab", "cde"]).hanging(), Some(5));
        assert_eq!(drain_ok(&mut body), ["ab"]);
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().lower(), 3);
    }

    #[test]
    fn an_unknown_length_is_not_checked() {
        let mut body = ExactLength::new(script(&["ab", "cde", "f"]), None);
        let (seen, err) = drain(&mut body);
        assert_eq!((seen.concat(), err.is_none()), ("abcdef".to_owned(), true));
        assert!(body.is_end_stream());
        assert_eq!(body.expected(), None);
    }

    #[test]
    fn zero_means_no_byte() {
        let mut empty = ExactLength::new(script(&[]), Some(0));
        assert_eq!(drain_ok(&mut empty), Vec::<String>::new());
        let mut one = ExactLength::new(script(&["x"]), Some(0));
        let (seen, err) = drain(&mut one);
        assert!(seen.is_empty());
        assert!(mismatch_message(err).contains("at least 1 bytes, more than the 0"));
    }

    #[test]
    fn trailers_follow_the_held_frame() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        let inner = script(&["ab", "cde"]).then(Step::Trailers(trailers.clone()));
        let mut body = ExactLength::new(inner, Some(5));
        let (seen, err) = drain(&mut body);
        assert!(err.is_none());
        assert_eq!(seen, ["ab", "cde", &format!("{:?}", Some(trailers))]);
        // Trailers before the declared length is reached: still short.
        let mut cut = HeaderMap::new();
        cut.insert("x-checksum", "abc".parse().unwrap());
        let inner = script(&["ab"]).then(Step::Trailers(cut));
        let (seen, err) = drain(&mut ExactLength::new(inner, Some(5)));
        assert_eq!(seen.len(), 2);
        assert!(mismatch_message(err).contains("ended after 2 of the 5"));
    }

    #[test]
    fn inner_errors_pass_through_and_end_the_attempt() {
        let failure = Error::new(ErrorKind::Truncated, "the file shrank");
        let inner = script(&["ab", "cde"])
            .then(Step::Fail(failure))
            .then(Step::Data("never"));
        let mut body = ExactLength::new(inner, Some(5));
        let (seen, err) = drain(&mut body);
        // The frame that completed the length was held and is dropped.
        assert_eq!(seen, ["ab"]);
        let err = err.expect("the inner error");
        assert_eq!(err.kind(), ErrorKind::Truncated);
        assert_eq!(
            err.to_string(),
            "file truncated while mapped: the file shrank"
        );
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert!(body.is_end_stream());
    }

    #[test]
    fn a_restart_checks_the_clone_from_zero() {
        let mut first = ExactLength::new(script(&["ab", "cde"]), Some(5));
        assert_eq!(drain(&mut first).0, ["ab", "cde"]);
        let mut again = first.restart();
        assert_eq!((again.sent(), again.expected()), (0, Some(5)));
        assert_eq!(again.size_hint().exact(), Some(5));
        assert_eq!(drain_ok(&mut again), ["ab", "cde"]);
    }
}
