//! The draft's requests as the client builds them (revision 12, interop
//! version 8): which of the original request's headers go with them.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Uri};

use super::super::fields::{INTEROP_VERSION, UPLOAD_DRAFT_INTEROP_VERSION, UPLOAD_LENGTH};
use crate::error::{BoxError, Error, ErrorKind};
use crate::ReplayBody;

/// Headers of the original request that describe its content, not the
/// request: a control request or an append does not repeat them.
pub(super) fn content_header(name: &header::HeaderName) -> bool {
    [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::CONTENT_LANGUAGE,
        header::CONTENT_LOCATION,
        header::CONTENT_RANGE,
        header::TRANSFER_ENCODING,
        header::EXPECT,
        header::HeaderName::from_static("content-disposition"),
        header::HeaderName::from_static("content-digest"),
        header::HeaderName::from_static("repr-digest"),
        UPLOAD_LENGTH,
        UPLOAD_DRAFT_INTEROP_VERSION,
    ]
    .contains(name)
}

/// A request on the body's behalf: `method` to `uri`, with the original's
/// other headers (authorization, cookies...) and the interop version.
pub(super) fn control<B>(
    original: &Request<ReplayBody<B>>,
    method: Method,
    uri: Uri,
) -> Request<ReplayBody<B>> {
    let mut req = Request::new(original.body().empty_sibling());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = original.version();
    *req.headers_mut() = forwarded(original.headers());
    req.headers_mut().insert(
        UPLOAD_DRAFT_INTEROP_VERSION,
        HeaderValue::from_static(INTEROP_VERSION),
    );
    req
}

fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if !content_header(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

pub(super) fn protocol_error(what: impl Into<String>) -> BoxError {
    Box::new(Error::new(ErrorKind::Protocol, what))
}
