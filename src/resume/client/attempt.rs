//! One attempt of a request: the upload resource created on the first,
//! its offset asked on a retry, and the rest of the body appended.

use std::future::poll_fn;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use tower_service::Service;

use super::super::fields::{
    accepts_partial_upload, boolean, integer, sf_bool, sf_int, Limits, INTEROP_VERSION,
    PARTIAL_UPLOAD, UPLOAD_COMPLETE, UPLOAD_DRAFT_INTEROP_VERSION, UPLOAD_LENGTH, UPLOAD_LIMIT,
    UPLOAD_OFFSET,
};
use super::super::session::{Session, Stage};
use super::super::ResumeBody;
use super::dialect::{content_header, control, protocol_error};
use super::origin::{strip_credentials, upload_resource};
use super::{ResumeLayer, Resumed};
use crate::error::{BoxError, Error, ErrorKind};
use crate::ReplayBody;

/// Sends `req` on `inner`, waiting for it to be ready.
async fn send<S, B, ResB>(
    inner: &mut S,
    req: Request<ReplayBody<B>>,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<ResumeBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    poll_fn(|cx| inner.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    inner
        .call(req.map(ResumeBody::new))
        .await
        .map_err(Into::into)
}

/// Reads a control answer's body to its end (it is small), so that the
/// connection can carry the next request.
async fn drain<ResB: Body>(res: Response<ResB>) -> (http::response::Parts, ()) {
    let (parts, body) = res.into_parts();
    let mut body = std::pin::pin!(body);
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if frame.is_err() {
            break;
        }
    }
    (parts, ())
}

/// Whether this request is one to send resumably.
fn eligible<B>(req: &Request<ReplayBody<B>>, len: Option<u64>, min_size: u64) -> bool {
    let has_content = [Method::POST, Method::PUT, Method::PATCH].contains(req.method());
    has_content
        && len.is_some_and(|len| len >= min_size)
        // A request that speaks the protocol itself is left alone.
        && !req.headers().contains_key(UPLOAD_COMPLETE)
        && !req.headers().contains_key(UPLOAD_OFFSET)
}

pub(super) async fn attempt<S, B, ResB>(
    mut inner: S,
    req: Request<ReplayBody<B>>,
    settings: ResumeLayer,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<ResumeBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<BoxError>,
    ResB: Body,
{
    let len = req.body().size_hint().exact();
    if !eligible(&req, len, settings.min_size) {
        return send(&mut inner, req).await;
    }
    let len = len.unwrap_or_default();
    let session: Arc<Session> = req.body().resume_session();
    // A 409 (the server's offset moved) is followed once by a new query.
    let mut conflicts = 0;
    // An append answered 404 or 410 (the upload was cancelled or expired
    // under it) is followed once by a new upload.
    let mut lost = 0;
    loop {
        let (location, offset) = match session.stage() {
            Stage::Plain => return send(&mut inner, req).await,
            Stage::New | Stage::Done => match create(&mut inner, &req, len, settings).await? {
                Created::Location(location) => {
                    session.set(Stage::Created(location.clone()));
                    (location, 0)
                }
                Created::Refused(res) => return Ok(res),
                Created::Unsupported => {
                    crate::trace::trace_event!(
                        target: "mmap_body::resume",
                        tracing::Level::DEBUG,
                        uri = %req.uri(),
                        "the target does not take resumable uploads: a plain upload"
                    );
                    session.set(Stage::Plain);
                    return send(&mut inner, req).await;
                }
            },
            Stage::Created(location) => {
                let head = to_upload(&req, Method::HEAD, &location);
                let res = send(&mut inner, head).await?;
                match res.status() {
                    status if status.is_success() => {}
                    // The server lost the upload: start a new one.
                    StatusCode::NOT_FOUND | StatusCode::GONE => {
                        drain(res).await;
                        session.set(Stage::New);
                        continue;
                    }
                    // Anything else is for the retry policy (a 503...).
                    _ => return Ok(res),
                }
                if boolean(res.headers(), &UPLOAD_COMPLETE) == Some(true) {
                    // Complete, but its answer was lost: this is all there
                    // is, if all of the body is there.
                    check_complete(res.headers(), len, "offset query")?;
                    session.set(Stage::Done);
                    return Ok(res);
                }
                let (parts, ()) = drain(res).await;
                let offset = integer(&parts.headers, &UPLOAD_OFFSET).ok_or_else(|| {
                    protocol_error("the upload resource answered without a valid Upload-Offset")
                })?;
                if offset > len {
                    return Err(Box::new(Error::new(
                        ErrorKind::OutOfRange,
                        format!(
                            "the server reports holding {offset} bytes of a {len}-byte upload; \
                             refusing to append to it"
                        ),
                    )));
                }
                (location, offset)
            }
        };
        // Append the rest: the whole body on the first attempt.
        crate::trace::trace_event!(
            target: "mmap_body::resume",
            tracing::Level::DEBUG,
            method = %req.method(),
            uri = %req.uri(),
            location = %location,
            offset,
            len,
            "appending to the upload resource"
        );
        let body = req.body().resume_from(offset)?;
        let mut patch = to_upload(&req, Method::PATCH, &location);
        *patch.extensions_mut() = req.extensions().clone();
        let headers = patch.headers_mut();
        headers.insert(UPLOAD_OFFSET, sf_int(offset));
        headers.insert(UPLOAD_COMPLETE, sf_bool(true));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PARTIAL_UPLOAD),
        );
        headers.insert(header::CONTENT_LENGTH, sf_int(len - offset));
        *patch.body_mut() = body;
        session.appending_from(offset);
        let mut res = send(&mut inner, patch).await?;
        if res.status() == StatusCode::CONFLICT && conflicts == 0 {
            conflicts += 1;
            drain(res).await;
            continue;
        }
        if [StatusCode::NOT_FOUND, StatusCode::GONE].contains(&res.status()) && lost == 0 {
            lost += 1;
            drain(res).await;
            session.set(Stage::New);
            continue;
        }
        if boolean(res.headers(), &UPLOAD_COMPLETE) == Some(true) {
            if res.headers().contains_key(UPLOAD_OFFSET) {
                check_complete(res.headers(), len, "append")?;
            }
            session.set(Stage::Done);
            res.extensions_mut().insert(Resumed {
                location,
                appends: session.appends(),
                interop_version: INTEROP_VERSION.parse().unwrap_or(0),
            });
        }
        return Ok(res);
    }
}

/// A request to the upload resource: the original's headers, without its
/// credentials when the resource is on another origin (which only
/// [`ResumeLayer::allow_cross_origin`] lets it be).
fn to_upload<B>(
    req: &Request<ReplayBody<B>>,
    method: Method,
    location: &Uri,
) -> Request<ReplayBody<B>> {
    let mut to = control(req, method, location.clone());
    strip_credentials(req.uri(), location, to.headers_mut());
    to
}

/// An answer that says the upload is complete must say so of all of the
/// body: `Upload-Offset` equal to its length. A server that stored less
/// and says it is done (a 2 MiB body "complete" at 256 KiB) is an error,
/// never the caller's success.
fn check_complete(headers: &http::HeaderMap, len: u64, what: &str) -> Result<(), BoxError> {
    match integer(headers, &UPLOAD_OFFSET) {
        Some(offset) if offset == len => Ok(()),
        Some(offset) => Err(protocol_error(format!(
            "the server's answer to the {what} says the upload is complete at {offset} bytes              of a {len}-byte body: not all of it was stored"
        ))),
        None => Err(protocol_error(format!(
            "the server's answer to the {what} says the upload is complete without a valid              Upload-Offset: whether all of the body was stored is unknown"
        ))),
    }
}

/// What creating the upload resource gave.
enum Created<ResB> {
    Location(Uri),
    /// The target refused it: its answer is the caller's.
    Refused(Response<ResB>),
    /// The target does not take resumable uploads.
    Unsupported,
}

/// Asks the target whether it takes resumable uploads (`OPTIONS`: its
/// answer carries `Upload-Limit`, as the newest draft asks, or an
/// `Accept-Patch` naming `application/partial-upload`, as -10 and -11
/// did), then creates
/// the upload resource with an empty request (the draft's "careful upload
/// creation": no interim response is needed to learn its URI, which hyper
/// and axum servers cannot send).
async fn create<S, B, ResB>(
    inner: &mut S,
    req: &Request<ReplayBody<B>>,
    len: u64,
    settings: ResumeLayer,
) -> Result<Created<ResB>, BoxError>
where
    S: Service<Request<ResumeBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<BoxError>,
    ResB: Body,
{
    let options = control(req, Method::OPTIONS, req.uri().clone());
    let (parts, ()) = drain(send(inner, options).await?).await;
    // The newest draft's sign is `Upload-Limit` (its `-10` and `-11` asked
    // for `Accept-Patch` instead): either will do.
    let announced =
        accepts_partial_upload(&parts.headers) || parts.headers.contains_key(UPLOAD_LIMIT);
    if !parts.status.is_success() || !announced {
        return Ok(Created::Unsupported);
    }
    if Limits::from_headers(&parts.headers)
        .max_size
        .is_some_and(|max| len > max)
    {
        // Past the announced limit: the server's own answer to a plain
        // upload says so best.
        return Ok(Created::Unsupported);
    }
    let mut creation = control(req, req.method().clone(), req.uri().clone());
    for (name, value) in req.headers() {
        // The representation's metadata goes with the creation request.
        if content_header(name) && *name != header::CONTENT_LENGTH && *name != header::EXPECT {
            creation.headers_mut().append(name.clone(), value.clone());
        }
    }
    let headers = creation.headers_mut();
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(UPLOAD_COMPLETE, sf_bool(false));
    headers.insert(UPLOAD_LENGTH, sf_int(len));
    headers.insert(header::CONTENT_LENGTH, sf_int(0));
    headers.insert(
        UPLOAD_DRAFT_INTEROP_VERSION,
        HeaderValue::from_static(INTEROP_VERSION),
    );
    let res = send(inner, creation).await?;
    if !res.status().is_success() {
        return Ok(Created::Refused(res));
    }
    let location = match res.headers().get(header::LOCATION) {
        Some(location) => upload_resource(req.uri(), location, settings.cross_origin)?,
        None => return Err(protocol_error("the upload was created without a Location")),
    };
    drain(res).await;
    Ok(Created::Location(location))
}
