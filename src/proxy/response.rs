//! [`downstream_response`]: the response a proxy passes back for the
//! upstream's, and [`check_response`], what it refuses to pass on.

use http::header::TRANSFER_ENCODING;
use http::{Response, StatusCode};

#[cfg(doc)]
use super::error_response;
use super::framing::{collapse_content_length, declared_length, unforwardable_codings};
use super::headers::remove_hop_by_hop;
use super::{Forwarding, Refused};

/// Whether the upstream's response `res` can be passed on: `Err` (a `502`
/// for the client, through [`error_response`]) when
///
/// - its status is `101 Switching Protocols` (or another `1xx`): this
///   proxy forwards no upgrade and asked for none, so an upstream that
///   switches protocols anyway is broken, and the client would be left on
///   a connection speaking something else;
/// - its transfer codings are anything but one final `chunked`, whose
///   other codings hyper would leave applied to the body it hands over;
/// - its `Content-Length` values differ or are not numbers (RFC 9110
///   §8.6; hyper's client already refuses most of these).
///
/// [`downstream_response`] makes this check itself; call this one to
/// decide before taking the response apart.
pub fn check_response<B>(res: &Response<B>) -> Result<(), Refused> {
    let refuse = |reason| Err(Refused::new(StatusCode::BAD_GATEWAY, reason));
    if res.status().is_informational() {
        return refuse(
            "the upstream switched protocols (101) or answered 1xx as its final \
             answer; this proxy forwards no upgrade",
        );
    }
    if unforwardable_codings(res.headers()).is_some() {
        return refuse(
            "the upstream answered with transfer codings other than one final `chunked`",
        );
    }
    if !res.headers().contains_key(TRANSFER_ENCODING) && declared_length(res.headers()).is_err() {
        return refuse("the upstream answered with a Content-Length that is not one number");
    }
    Ok(())
}

/// The response to pass back to the client for `res`, the upstream's:
/// hop-by-hop headers removed ([`remove_hop_by_hop`]), `Via` naming this
/// proxy added, status, other headers, body and trailers unchanged.
///
/// Refuses what [`check_response`] refuses, a response this proxy cannot
/// pass on faithfully: answer the client with [`error_response`] (a
/// `502`). A handler built from these parts cannot forward such a response
/// by forgetting a check.
///
/// The upstream's `Content-Length` is kept, so the client sees the same
/// framing (a list of one value, `5, 5`, as that value); with axum, turn
/// the body into `axum::body::Body` with `.map(axum::body::Body::new)`.
pub fn downstream_response<B>(
    res: Response<B>,
    forwarding: &Forwarding,
) -> Result<Response<B>, Refused> {
    check_response(&res)?;
    let (mut parts, body) = res.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    // Checked above: only a list of one value is left to collapse.
    collapse_content_length(&mut parts.headers)
        .map_err(|reason| Refused::new(StatusCode::BAD_GATEWAY, reason))?;
    forwarding.mark_response(&mut parts.headers, parts.version);
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Version;

    fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn refused_responses() {
        let fwd = Forwarding::new();
        for codings in [
            "gzip, chunked",
            "chunked, chunked",
            "chunked;x=1, gzip",
            "identity",
        ] {
            let res = Response::builder()
                .header("transfer-encoding", codings)
                .body(())
                .unwrap();
            assert_eq!(
                check_response(&res).unwrap_err().status(),
                StatusCode::BAD_GATEWAY
            );
            let refused = downstream_response(res, &fwd).expect_err(codings);
            assert_eq!(refused.status(), StatusCode::BAD_GATEWAY, "{codings}");
        }
        for lengths in [&["5", "6"][..], &["5, 6"], &["five"]] {
            let mut res = Response::new(());
            for length in lengths {
                res.headers_mut()
                    .append("content-length", length.parse().unwrap());
            }
            let err = downstream_response(res, &fwd).expect_err("not one length");
            assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{lengths:?}");
        }
        // An upstream that switches protocols unasked.
        let switched = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        let err = downstream_response(switched, &fwd).expect_err("101");
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(err.to_string().contains("101"), "{err}");
    }

    #[test]
    fn downstream_responses() {
        let fwd = Forwarding::new().via("edge");
        let res = Response::builder()
            .version(Version::HTTP_2)
            .header("content-length", "3")
            .header("connection", "x-up")
            .header("x-up", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("via", "1.1 cache")
            .header("etag", "\"a\"")
            .body("abc")
            .unwrap();
        let out = downstream_response(res, &fwd).unwrap();
        let h = out.headers();
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-length", "etag", "via"]);
        assert_eq!(header(h, "via"), ["1.1 cache, 2 edge"]);
        assert_eq!(*out.body(), "abc");

        // A list of one length goes on as that length.
        let res = Response::builder()
            .header("content-length", "3, 3")
            .header("content-length", "3")
            .body("abc")
            .unwrap();
        let out = downstream_response(res, &fwd).unwrap();
        assert_eq!(header(out.headers(), "content-length"), ["3"]);
    }
}
