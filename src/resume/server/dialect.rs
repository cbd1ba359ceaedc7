//! The draft's fields as the server reads and writes them (revision 12,
//! interop version 8): what a request declares, and the answers' forms.
//! Another interop version would change this file and the callers' choice
//! of it, not the store or the appends.

use std::io;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

use super::super::fields::{integer, Problem, PARTIAL_UPLOAD, UPLOAD_LENGTH};
use super::Handled;

/// The representation's length a request declares, from `Upload-Length`
/// and, for a request that completes the upload, its `Content-Length` past
/// `at`; the two must agree (draft §4.1.3).
pub(super) fn declared_length(
    headers: &HeaderMap,
    at: u64,
    complete: bool,
    content: Option<u64>,
) -> Result<Option<u64>, Problem> {
    let upload_length = integer(headers, &UPLOAD_LENGTH);
    let by_content = content.filter(|_| complete).map(|c| at + c);
    match (upload_length, by_content) {
        (Some(a), Some(b)) if a != b => Err(Problem::InconsistentLength),
        (a, b) => Ok(a.or(b)),
    }
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether a `PATCH` is an append: its media type is the draft's.
pub(super) fn is_append(headers: &HeaderMap) -> bool {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    media.is_some_and(|m| m.eq_ignore_ascii_case(PARTIAL_UPLOAD))
}

pub(super) fn respond(res: Response<Full<Bytes>>) -> Handled {
    Handled::Respond(res)
}

pub(super) fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res
}

pub(super) fn bad_request(why: &'static str) -> Response<Full<Bytes>> {
    answer(StatusCode::BAD_REQUEST, Bytes::from_static(why.as_bytes()))
}

pub(super) fn server_error(err: &io::Error) -> Response<Full<Bytes>> {
    answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        Bytes::from(format!("the upload could not be stored: {err}")),
    )
}

pub(super) fn problem_answer(status: StatusCode, problem: Problem) -> Response<Full<Bytes>> {
    let mut res = answer(status, problem.body());
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

pub(super) fn location_value(location: &str) -> HeaderValue {
    HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"))
}
