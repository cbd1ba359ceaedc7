//! [`Replay`]: the service, where the `Content-Length` rules live.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request};
use http_body::{Body, SizeHint};
use tower_service::Service;

use super::{ReplayBody, ResponseFuture};
use crate::error::{Error, ErrorKind};

use crate::error::BoxError;

/// Sets `Content-Length` from each request body's exact size, refuses
/// requests whose `Content-Length` disagrees with their body, and wraps
/// each body in a [`ReplayBody`] so the request can be cloned and sent again.
///
/// Made by [`ReplayLayer`](super::ReplayLayer); see the
/// [module docs](crate::replay) for the rules.
#[derive(Debug, Clone)]
pub struct Replay<S> {
    inner: S,
    max_replay_bytes: usize,
}

impl<S> Replay<S> {
    /// Wraps `inner`, recording at most `max_replay_bytes` of each streamed
    /// request body.
    pub fn new(inner: S, max_replay_bytes: usize) -> Replay<S> {
        Replay {
            inner,
            max_replay_bytes,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for Replay<S>
where
    S: Service<Request<ReplayBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let size = BodySize {
            hint: body.size_hint(),
            ended: body.is_end_stream(),
        };
        match frame_length(&mut parts.headers, &parts.method, &size) {
            Ok(expected) => {
                let body = ReplayBody::new(body, self.max_replay_bytes).expect_len(expected);
                let outcome = body.outcome();
                ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)), outcome)
            }
            Err(err) => ResponseFuture::refused(err),
        }
    }
}

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
struct BodySize {
    hint: SizeHint,
    /// `is_end_stream()`: the body is known to have no bytes at all.
    ended: bool,
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
fn frame_length(
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
