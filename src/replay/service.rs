//! [`Replay`]: the service, where the `Content-Length` rules live.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderValue, Method, Request};
use http_body::Body;
use tower_service::Service;

use super::{ReplayBody, ResponseFuture};
use crate::error::{Error, ErrorKind};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
        match frame_length(&mut parts.headers, &parts.method, body.size_hint().exact()) {
            Ok(expected) => {
                let body = ReplayBody::new(body, self.max_replay_bytes).expect_len(expected);
                ResponseFuture::called(self.inner.call(Request::from_parts(parts, body)))
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

/// Applies the `Content-Length` rules to a request's headers, given its
/// body's exact size if known. Returns the length each attempt must send.
fn frame_length(
    headers: &mut http::HeaderMap,
    method: &Method,
    exact: Option<u64>,
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
    match (declared, exact) {
        (Some(_), _) if chunked => Err(mismatch(
            "the request has both Transfer-Encoding and Content-Length, which lets \
             servers disagree on where it ends (request smuggling); remove one. \
             The request was not sent"
                .to_owned(),
        )),
        (Some(declared), Some(exact)) if declared != exact => Err(mismatch(format!(
            "the Content-Length header says {declared} bytes but the body has exactly \
             {exact}; the request was not sent. Remove the header to have it set from \
             the body, or fix it"
        ))),
        (Some(declared), _) => Ok(Some(declared)),
        (None, Some(exact)) if !chunked => {
            if exact > 0 || !defines_no_body(method) {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(exact));
            }
            Ok(Some(exact))
        }
        (None, _) => Ok(None),
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
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let out = frame_length(&mut map, &method, exact).map_err(|e| e.kind());
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
}
