//! The `Content-Length` rules, in one place: the request-level check that
//! [`Replay`](super::Replay) makes before sending ([`frame_length`]), and
//! the stream-level check that every attempt of a
//! [`ReplayBody`](super::ReplayBody) makes while sending ([`LengthCheck`]).

use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderValue, Method};
use http_body::{Frame, SizeHint};

use crate::error::{Error, ErrorKind};

/// Methods whose semantics define no request body (RFC 9110 §9.3): an empty
/// body gets no `Content-Length: 0`.
fn defines_no_body(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ]
    .contains(method)
}

fn mismatch(message: String) -> Error {
    Error::new(ErrorKind::ContentLengthMismatch, message)
}

/// What a request body says of its size before it is polled.
#[derive(Debug, Clone)]
pub(super) struct BodySize {
    pub(super) hint: SizeHint,
    /// `is_end_stream()`: the body is known to have no bytes at all.
    pub(super) ended: bool,
}

impl BodySize {
    fn exact(&self) -> Option<u64> {
        if self.ended {
            Some(0)
        } else {
            self.hint.exact()
        }
    }
}

/// Applies the `Content-Length` rules to a request's headers, given what
/// its body says of its size. Returns the length each attempt must send.
///
/// A declared length that the body's size hint contradicts is refused, and
/// so is a declared `0` on a body that may have bytes: an HTTP/1.1 client
/// never polls a body once it has written `Content-Length: 0`, so the
/// streaming length check would never see those bytes, and the server would
/// accept an empty request as complete. An accepted value is written back
/// in its canonical form (one header, no leading zeros), so a peer that
/// parses strictly (HTTP/2 servers do) reads the same number.
pub(super) fn frame_length(
    headers: &mut http::HeaderMap,
    method: &Method,
    size: &BodySize,
) -> Result<Option<u64>, Error> {
    let mut declared: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let parsed = value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                mismatch(format!(
                    "the Content-Length header {value:?} is not a decimal number; \
                     the request was not sent"
                ))
            })?;
        if declared.is_some_and(|d| d != parsed) {
            return Err(mismatch(
                "the request has several Content-Length headers with different values; \
                 the request was not sent"
                    .to_owned(),
            ));
        }
        declared = Some(parsed);
    }
    let chunked = headers.contains_key(TRANSFER_ENCODING);
    let Some(declared) = declared else {
        return match size.exact() {
            Some(exact) if !chunked => {
                if exact > 0 || !defines_no_body(method) {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(exact));
                }
                Ok(Some(exact))
            }
            _ => Ok(None),
        };
    };
    if chunked {
        return Err(mismatch(
            "the request has both Transfer-Encoding and Content-Length, which lets \
             servers disagree on where it ends (request smuggling); remove one. \
             The request was not sent"
                .to_owned(),
        ));
    }
    if let Some(exact) = size.exact() {
        if declared != exact {
            return Err(mismatch(format!(
                "the Content-Length header says {declared} bytes but the body has exactly \
                 {exact}; the request was not sent. Remove the header to have it set from \
                 the body, or fix it"
            )));
        }
    } else if declared < size.hint.lower() {
        return Err(mismatch(format!(
            "the Content-Length header says {declared} bytes but the body has at least \
             {}; the request was not sent. Remove the header, or fix it",
            size.hint.lower()
        )));
    } else if let Some(upper) = size.hint.upper().filter(|&upper| declared > upper) {
        return Err(mismatch(format!(
            "the Content-Length header says {declared} bytes but the body has at most \
             {upper}; the request was not sent. Remove the header, or fix it"
        )));
    } else if declared == 0 {
        return Err(mismatch(
            "the Content-Length header says 0 bytes but the body's size is unknown and it \
             may have bytes, which an HTTP/1.1 client would silently drop; the request was \
             not sent. Remove the header to send the body as it is, or send an empty body"
                .to_owned(),
        ));
    }
    headers.remove(CONTENT_LENGTH);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(declared));
    Ok(Some(declared))
}

/// Holds one attempt of a body to its declared length while it streams.
///
/// When a data frame completes the declared length and the body does not
/// say it has ended, that frame is held back while the body is polled once
/// more: hyper stops reading a body once its `Content-Length` is written,
/// so a body with more to give would otherwise be cut short without anyone
/// noticing. A body that ends early fails instead of ending.
#[derive(Debug, Default)]
pub(super) struct LengthCheck {
    /// Bytes this attempt must send in all (from `Content-Length`).
    expected: Option<u64>,
    /// Bytes this attempt has yielded so far.
    sent: u64,
    /// The frame that completed the declared length, held back until the
    /// body shows it has nothing more.
    held: Option<Bytes>,
    /// A trailers frame to yield after `held`.
    queued: Option<Frame<Bytes>>,
    /// The source returned `None`.
    source_done: bool,
}

impl LengthCheck {
    pub(super) fn new(expected: Option<u64>) -> LengthCheck {
        LengthCheck {
            expected,
            ..LengthCheck::default()
        }
    }

    /// The same check, from the start: for a clone that sends it all again.
    pub(super) fn restart(&self) -> LengthCheck {
        LengthCheck::new(self.expected)
    }

    pub(super) fn expected(&self) -> Option<u64> {
        self.expected
    }

    /// Bytes yielded so far.
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    /// The attempt failed: nothing held is sent.
    pub(super) fn abandon(&mut self) {
        self.held = None;
        self.queued = None;
    }

    /// Bytes held back, counted in the size hint.
    pub(super) fn held_len(&self) -> u64 {
        self.held.as_ref().map_or(0, |d| d.len() as u64)
    }

    pub(super) fn source_done(&self) -> bool {
        self.source_done
    }

    /// `is_end_stream` for the attempt, given the source's.
    pub(super) fn is_end_stream(&self, source_is_end_stream: impl FnOnce() -> bool) -> bool {
        if self.held.is_some() || self.queued.is_some() {
            return false;
        }
        if self.expected.is_some_and(|len| self.sent < len) {
            // Poll once more so that a short body is reported, not sent.
            return false;
        }
        self.source_done || source_is_end_stream()
    }

    /// The next frame of the attempt, pulled from `source` with
    /// `poll_source`; `source_is_end_stream` says whether it has more.
    pub(super) fn poll<S>(
        &mut self,
        cx: &mut Context<'_>,
        source: &mut S,
        poll_source: impl Fn(&mut S, &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>>,
        source_is_end_stream: impl Fn(&S) -> bool,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(frame) = self.queued.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.source_done {
            return self.check_complete();
        }
        loop {
            match ready!(poll_source(source, cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if self.held.is_some() && data.is_empty() => continue,
                    Ok(_) if self.held.is_some() => return Poll::Ready(Some(Err(self.too_long()))),
                    Ok(data) => {
                        let sent = self.sent + data.len() as u64;
                        match self.expected {
                            Some(expected) if sent > expected => {
                                return Poll::Ready(Some(Err(self.too_long())));
                            }
                            Some(expected) if sent == expected && !source_is_end_stream(source) => {
                                self.sent = sent;
                                self.held = Some(data);
                                continue;
                            }
                            _ => {
                                self.sent = sent;
                                return Poll::Ready(Some(Ok(Frame::data(data))));
                            }
                        }
                    }
                    Err(trailers) => match self.held.take() {
                        Some(data) => {
                            self.queued = Some(trailers);
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        None => return Poll::Ready(Some(Ok(trailers))),
                    },
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    self.source_done = true;
                    return match self.held.take() {
                        Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                        None => self.check_complete(),
                    };
                }
            }
        }
    }

    fn too_long(&self) -> Error {
        Error::new(
            ErrorKind::ContentLengthMismatch,
            format!(
                "the request body produced more than its Content-Length of {} bytes; \
                 the request was failed rather than sent cut short. Fix the \
                 Content-Length header or the body",
                self.expected.unwrap_or_default()
            ),
        )
    }

    /// At the end of the body: were all declared bytes sent?
    fn check_complete(&mut self) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.expected {
            Some(expected) if self.sent < expected => Poll::Ready(Some(Err(Error::new(
                ErrorKind::ContentLengthMismatch,
                format!(
                    "the request body ended after {} of the {expected} bytes its \
                     Content-Length declared; the request was failed rather than sent \
                     truncated. Fix the Content-Length header or the body",
                    self.sent
                ),
            )))),
            _ => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        method: Method,
        headers: &[(&str, &str)],
        exact: Option<u64>,
    ) -> (Result<Option<u64>, ErrorKind>, Vec<String>) {
        let hint = exact.map_or_else(SizeHint::new, SizeHint::with_exact);
        run_hint(method, headers, hint)
    }

    fn run_hint(
        method: Method,
        headers: &[(&str, &str)],
        hint: SizeHint,
    ) -> (Result<Option<u64>, ErrorKind>, Vec<String>) {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let size = BodySize {
            ended: hint.exact() == Some(0),
            hint,
        };
        let out = frame_length(&mut map, &method, &size).map_err(|e| e.kind());
        let cl = map
            .get_all(CONTENT_LENGTH)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (out, cl)
    }

    #[test]
    fn sets_content_length_from_exact_size() {
        assert_eq!(
            run(Method::PUT, &[], Some(10)),
            (Ok(Some(10)), vec!["10".into()])
        );
        assert_eq!(
            run(Method::POST, &[], Some(0)),
            (Ok(Some(0)), vec!["0".into()])
        );
        assert_eq!(
            run(Method::GET, &[], Some(3)),
            (Ok(Some(3)), vec!["3".into()])
        );
    }

    #[test]
    fn no_zero_length_on_methods_without_body_semantics() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
        ] {
            assert_eq!(run(m.clone(), &[], Some(0)), (Ok(Some(0)), vec![]), "{m}");
        }
    }

    #[test]
    fn unknown_size_or_chunked_is_left_alone() {
        assert_eq!(run(Method::POST, &[], None), (Ok(None), vec![]));
        assert_eq!(
            run(Method::POST, &[("transfer-encoding", "chunked")], Some(5)),
            (Ok(None), vec![])
        );
    }

    #[test]
    fn declared_length_is_checked() {
        let ok = run(Method::PUT, &[("content-length", "5")], Some(5));
        assert_eq!(ok, (Ok(Some(5)), vec!["5".into()]));
        let streamed = run(Method::PUT, &[("content-length", "5")], None);
        assert_eq!(streamed.0, Ok(Some(5)));
        let mismatched = Err(ErrorKind::ContentLengthMismatch);
        for headers in [
            &[("content-length", "6")][..],
            &[("content-length", "+5")],
            &[("content-length", "")],
            &[("content-length", "5, 5")],
            &[("content-length", "5"), ("content-length", "6")],
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
        ] {
            assert_eq!(
                run(Method::PUT, headers, Some(5)).0,
                mismatched,
                "{headers:?}"
            );
        }
        let repeated = run(
            Method::PUT,
            &[("content-length", "5"), ("content-length", "5")],
            Some(5),
        );
        assert_eq!(repeated.0, Ok(Some(5)));
    }

    fn hint(lower: u64, upper: Option<u64>) -> SizeHint {
        let mut hint = SizeHint::new();
        hint.set_lower(lower);
        if let Some(upper) = upper {
            hint.set_upper(upper);
        }
        hint
    }

    #[test]
    fn declared_length_must_fit_the_size_hint() {
        let mismatched = Err(ErrorKind::ContentLengthMismatch);
        let cl = |v| [("content-length", v)];
        // Below the lower bound, above the upper bound.
        assert_eq!(run_hint(Method::PUT, &cl("5"), hint(6, None)).0, mismatched);
        assert_eq!(
            run_hint(Method::PUT, &cl("9"), hint(0, Some(8))).0,
            mismatched
        );
        // Inside the bounds: the streaming check takes over.
        assert_eq!(
            run_hint(Method::PUT, &cl("7"), hint(6, Some(8))).0,
            Ok(Some(7))
        );
        assert_eq!(
            run_hint(Method::PUT, &cl("6"), hint(6, None)).0,
            Ok(Some(6))
        );
    }

    #[test]
    fn declared_zero_never_hides_a_body_with_bytes() {
        let mismatched = Err(ErrorKind::ContentLengthMismatch);
        let zero = [("content-length", "0")];
        assert_eq!(run_hint(Method::PUT, &zero, SizeHint::new()).0, mismatched);
        assert_eq!(
            run_hint(Method::POST, &zero, hint(0, Some(10))).0,
            mismatched
        );
        // A body known to be empty may say so.
        assert_eq!(
            run_hint(Method::PUT, &zero, hint(0, Some(0))).0,
            Ok(Some(0))
        );
        assert_eq!(run(Method::PUT, &zero, Some(0)).0, Ok(Some(0)));
    }

    #[test]
    fn accepted_lengths_are_written_back_canonical() {
        let zeros = run(
            Method::PUT,
            &[("content-length", "0000000000000000000000005")],
            None,
        );
        assert_eq!(zeros, (Ok(Some(5)), vec!["5".into()]));
        let many_zeros = run(
            Method::PUT,
            &[("content-length", "000000000000000000000000")],
            Some(0),
        );
        assert_eq!(many_zeros, (Ok(Some(0)), vec!["0".into()]));
        let repeated = run(
            Method::PUT,
            &[("content-length", "5"), ("content-length", "05")],
            Some(5),
        );
        assert_eq!(repeated, (Ok(Some(5)), vec!["5".into()]));
    }

    proptest::proptest! {
        /// Any `Content-Length` values and size hints: never a panic; an
        /// accepted request carries one canonical value that is the
        /// number declared and fits the hint.
        #[test]
        fn any_content_length(
            values in proptest::collection::vec("[0-9]{0,25}|[ -~]{0,8}", 0..3),
            lower in 0u64..300,
            extra in proptest::option::of(0u64..300),
            post in proptest::bool::ANY,
        ) {
            let mut map = http::HeaderMap::new();
            for value in &values {
                if let Ok(value) = HeaderValue::from_str(value) {
                    map.append(CONTENT_LENGTH, value);
                }
            }
            let sent: Vec<String> = map
                .get_all(CONTENT_LENGTH)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            let upper = extra.map(|e| lower + e);
            let size = BodySize { hint: hint(lower, upper), ended: upper == Some(0) };
            let method = if post { Method::POST } else { Method::GET };
            let out = frame_length(&mut map, &method, &size);
            let after: Vec<&str> = map
                .get_all(CONTENT_LENGTH)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            match out {
                Ok(Some(n)) => {
                    proptest::prop_assert!(n >= lower && upper.is_none_or(|u| n <= u));
                    if !sent.is_empty() {
                        // Every value sent said n.
                        proptest::prop_assert!(sent.iter().all(|v| v.parse::<u64>() == Ok(n)));
                        proptest::prop_assert!(n > 0 || upper == Some(0));
                    }
                    let canonical = n.to_string();
                    proptest::prop_assert!(after.is_empty() || after == vec![canonical.as_str()]);
                    proptest::prop_assert!(!after.is_empty() || (n == 0 && !post));
                }
                Ok(None) => {
                    proptest::prop_assert!(sent.is_empty() && after.is_empty());
                }
                Err(err) => {
                    proptest::prop_assert_eq!(err.kind(), ErrorKind::ContentLengthMismatch);
                    proptest::prop_assert!(!sent.is_empty());
                }
            }
        }
    }
}
