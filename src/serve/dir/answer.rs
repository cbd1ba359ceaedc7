//! The response to what [`find`](super::lookup::find) found, with
//! tower-http `ServeDir`'s headers: the file's answer is
//! [`Serve::respond`](crate::serve::Serve::respond)'s (ranges, conditional
//! requests, `HEAD`), with the plain file's `Content-Type`, the variant's
//! `Content-Encoding` and `Vary: accept-encoding` where precompressed
//! variants are looked for.

use std::io;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use super::lookup::Found;
use super::Config;
use crate::serve::conditional::Validators;
use crate::serve::{Serve, ServeBody};

/// A request's answer, or "no file here", which the fallback answers when
/// there is one (else `404`).
#[derive(Debug)]
// One a request, moved once: boxing the answer would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Outcome {
    Answer(Response<ServeBody>),
    NotFound,
}

/// The answer to `method` with `headers` from what was found, or the
/// error met looking.
pub(super) fn answer(
    found: io::Result<Found>,
    method: &Method,
    headers: &HeaderMap,
    config: &Config,
) -> Outcome {
    let found = match found {
        Ok(found) => found,
        Err(e) if not_found(&e) => return Outcome::NotFound,
        Err(_e) => {
            crate::trace::trace_event!(
                target: "mmap_body::serve",
                tracing::Level::ERROR,
                error = %_e,
                "could not open the file a request asked for"
            );
            return Outcome::Answer(status(StatusCode::INTERNAL_SERVER_ERROR));
        }
    };
    match found {
        Found::File {
            body,
            encoding,
            mime,
        } => {
            let body = match config.chunk {
                Some(bytes) => body.chunk_size(bytes),
                None => body,
            };
            // Several ranges of a compressed variant are sent whole: a
            // `Content-Encoding` would name the multipart body's coding.
            let max_ranges = if encoding.is_some() {
                1
            } else {
                config.max_ranges
            };
            let serve = Serve::new().content_type(mime).max_ranges(max_ranges);
            let kept = body.clone();
            let mut response = serve.respond(method, headers, body);
            let status = response.status();
            let headers = response.headers_mut();
            if let Some(encoding) = encoding {
                if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
                    headers.insert(header::CONTENT_ENCODING, encoding.header_value());
                }
            }
            if status == StatusCode::RANGE_NOT_SATISFIABLE {
                // tower-http's 416 carries what its 200 does, but for the
                // media type and coding.
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                Validators::of(&kept).insert(headers);
            }
            if config.variants.any() && status != StatusCode::PRECONDITION_FAILED {
                headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            }
            Outcome::Answer(response)
        }
        Found::Redirect(location) => {
            let mut response = status(StatusCode::TEMPORARY_REDIRECT);
            response.headers_mut().insert(header::LOCATION, location);
            Outcome::Answer(response)
        }
        Found::Nothing => Outcome::NotFound,
        Found::BadRedirect => Outcome::Answer(status(StatusCode::INTERNAL_SERVER_ERROR)),
    }
}

/// An empty answer with `status`.
pub(super) fn status(status: StatusCode) -> Response<ServeBody> {
    let mut response = Response::new(ServeBody::empty());
    *response.status_mut() = status;
    response
}

/// `405 Method Not Allowed`, with tower-http's `Allow: GET,HEAD`.
pub(super) fn method_not_allowed() -> Response<ServeBody> {
    let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
    response
}

/// The errors answered `404` (or by the fallback): tower-http's (not
/// found, permission denied, a file where a directory was expected, and a
/// name `open` refuses), and beyond it a name too long for the system,
/// which tower-http answers `500`.
pub(super) fn not_found(e: &io::Error) -> bool {
    #[cfg(unix)]
    let refused_name = matches!(
        e.raw_os_error(),
        Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG)
    );
    #[cfg(not(unix))]
    let refused_name = false;
    refused_name
        || matches!(
            e.kind(),
            io::ErrorKind::NotFound
                | io::ErrorKind::PermissionDenied
                | io::ErrorKind::NotADirectory
                | io::ErrorKind::InvalidInput
        )
}
