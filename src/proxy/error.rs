//! What a proxy answers when forwarding fails: [`error_status`],
//! [`error_response`], and [`Refused`] for requests it will not forward.

use std::fmt;
use std::io;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::error::find_source;
use crate::{Error, ErrorKind};

/// A request [`upstream_request`](super::upstream_request) will not
/// forward, or an upstream's response
/// [`downstream_response`](super::downstream_response) will not pass on,
/// with the status to answer the client with; its `Display` is a short
/// reason, safe to show the client.
#[derive(Debug, Clone)]
pub struct Refused {
    status: StatusCode,
    reason: &'static str,
}

impl Refused {
    pub(crate) fn new(status: StatusCode, reason: &'static str) -> Refused {
        Refused { status, reason }
    }

    /// The status to answer the client with: `400 Bad Request` for a
    /// request that is malformed (its path, `Host` or `Content-Length`),
    /// `501 Not Implemented` for what this proxy does not forward
    /// (`CONNECT`, transfer codings), `502 Bad Gateway` for a response it
    /// cannot pass on.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for Refused {}

/// The status a proxy answers with when forwarding a request failed with
/// `err` (an error from the client stack, or a [`Refused`]), and a short
/// reason for the client. The whole source chain is searched:
///
/// | found in the chain | status | why |
/// |---|---|---|
/// | [`Refused`] | its [`status`](Refused::status) | the request was not sent |
/// | an [`Error`] of kind [`Body`](ErrorKind::Body) or [`ContentLengthMismatch`](ErrorKind::ContentLengthMismatch) | `400 Bad Request` | the client's own request body failed, ended before its `Content-Length`, or ran past it |
/// | `tower::timeout::error::Elapsed`, or an [`io::Error`] of kind `TimedOut` | `504 Gateway Timeout` | the upstream did not answer in time |
/// | an [`io::Error`] of kind `ConnectionRefused` | `502 Bad Gateway` | nothing listens upstream |
/// | anything else | `502 Bad Gateway` | the connection or the protocol failed upstream |
///
/// A body the client cut short is the client's fault, not the upstream's:
/// answering `502` would page whoever runs the upstream, and would invite
/// the client (or a proxy in front) to retry a request that is no better
/// the second time. So it gets a `400`, as nginx answers a request body it
/// could not read (the client that hung up will not see it; one that only
/// sent too few bytes will). Every other failure of a request that reached
/// the client stack is the upstream's, including
/// [`ReplayBufferExceeded`](ErrorKind::ReplayBufferExceeded), which only
/// means the retry after an upstream failure was impossible.
pub fn error_status(err: &(dyn std::error::Error + 'static)) -> (StatusCode, &'static str) {
    if let Some(refused) = find::<Refused>(err) {
        return (refused.status, refused.reason);
    }
    if let Some(ours) = Error::find_in(err) {
        if matches!(
            ours.kind(),
            ErrorKind::Body | ErrorKind::ContentLengthMismatch
        ) {
            return (
                StatusCode::BAD_REQUEST,
                "the request body ended early, failed, or did not match its Content-Length",
            );
        }
    }
    if find::<tower::timeout::error::Elapsed>(err).is_some()
        || find_io(err, io::ErrorKind::TimedOut)
    {
        return (
            StatusCode::GATEWAY_TIMEOUT,
            "the upstream server did not answer in time",
        );
    }
    if find_io(err, io::ErrorKind::ConnectionRefused) {
        return (
            StatusCode::BAD_GATEWAY,
            "the upstream server refused the connection",
        );
    }
    (
        StatusCode::BAD_GATEWAY,
        "the connection to the upstream server failed",
    )
}

/// The response for a request whose forwarding failed with `err`: the
/// status and reason of [`error_status`], as `text/plain`. The reason never
/// includes `err`'s own message, which may name internal hosts; log that.
///
/// `B` is any body that can be made from a `String`: `String` itself,
/// `axum::body::Body`, `http_body_util::Full<Bytes>`.
///
/// ```
/// use std::io;
///
/// let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
/// let res: http::Response<String> = mmap_body::proxy::error_response(&refused);
/// assert_eq!(res.status(), 502);
/// assert_eq!(res.body(), "502 Bad Gateway: the upstream server refused the connection\n");
/// ```
pub fn error_response<B: From<String>>(err: &(dyn std::error::Error + 'static)) -> Response<B> {
    let (status, reason) = error_status(err);
    let text = format!("{status}: {reason}\n");
    let mut res = Response::new(B::from(text));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn find<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    find_source(err, |_| true)
}

fn find_io(err: &(dyn std::error::Error + 'static), kind: io::ErrorKind) -> bool {
    find_source::<io::Error>(err, |e| e.kind() == kind).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a source, as hyper's and tower's wrap others.
    #[derive(Debug)]
    struct Wrapped(&'static str, Box<dyn std::error::Error + Send + Sync>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.1)
        }
    }

    fn wrap(e: impl std::error::Error + Send + Sync + 'static) -> Wrapped {
        Wrapped(
            "client error",
            Box::new(Wrapped("hyper error", Box::new(e))),
        )
    }

    #[test]
    fn statuses() {
        type Boxed = Box<dyn std::error::Error + Send + Sync>;
        let ours = |kind| Error::new(kind, "test");
        let cases: Vec<(Boxed, u16)> = vec![
            (
                Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
                502,
            ),
            (
                Box::new(wrap(io::Error::from(io::ErrorKind::ConnectionRefused))),
                502,
            ),
            (
                Box::new(wrap(io::Error::from(io::ErrorKind::ConnectionReset))),
                502,
            ),
            (Box::new(io::Error::from(io::ErrorKind::TimedOut)), 504),
            (
                Box::new(wrap(io::Error::from(io::ErrorKind::TimedOut))),
                504,
            ),
            (Box::new(tower::timeout::error::Elapsed::new()), 504),
            (Box::new(wrap(tower::timeout::error::Elapsed::new())), 504),
            (Box::new(ours(ErrorKind::Body)), 400),
            (Box::new(wrap(ours(ErrorKind::ContentLengthMismatch))), 400),
            // The client's body failed, whatever failed under it.
            (
                Box::new(
                    ours(ErrorKind::Body).with_source(io::Error::from(io::ErrorKind::TimedOut)),
                ),
                400,
            ),
            // The retry after an upstream failure was impossible: upstream's.
            (
                Box::new(
                    ours(ErrorKind::ReplayBufferExceeded)
                        .with_source(wrap(io::Error::from(io::ErrorKind::ConnectionReset))),
                ),
                502,
            ),
            (Box::new(ours(ErrorKind::Io)), 502),
            (Box::new(Refused::new(StatusCode::BAD_REQUEST, "dots")), 400),
            (
                Box::new(wrap(Refused::new(StatusCode::NOT_IMPLEMENTED, "connect"))),
                501,
            ),
            (Box::new(io::Error::other("???")), 502),
        ];
        for (err, want) in cases {
            let (status, reason) = error_status(&*err);
            assert_eq!(status.as_u16(), want, "{err:?}");
            assert!(!reason.is_empty() && !reason.contains('\n'));
        }
    }

    #[test]
    fn response_is_short_plain_text() {
        let res: Response<String> = error_response(&tower::timeout::error::Elapsed::new());
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(res.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(
            res.body(),
            "504 Gateway Timeout: the upstream server did not answer in time\n"
        );
    }
}
