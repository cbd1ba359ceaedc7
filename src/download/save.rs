//! [`save`]: a download into a file that survives the process: written to
//! `<name>.part`, its version kept in `<name>.part.meta`, resumed from
//! there by the next call, renamed into place once whole.

use std::fs::{self, OpenOptions};
use std::future::poll_fn;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use tower_service::Service;

use super::continuation::{continuation, first_answer, Extent, Verdict};
use super::part::{beside, finish, io, remove_if_there, write_body, write_meta, Meta};
use crate::error::{BoxError, Error, ErrorKind};
use crate::trace::trace_event;

/// What [`save`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Saved {
    /// Where the file is now (the `path` given to [`save`]).
    pub path: PathBuf,
    /// Its length.
    pub len: u64,
    /// Bytes this call wrote (`len - resumed_from` when it went through).
    pub written: u64,
    /// Where this call began: the length of the `.part` it resumed, or 0.
    pub resumed_from: u64,
}

/// Downloads the answer to `request` (a `GET`) into the file at `path`,
/// resuming what an earlier call left behind.
///
/// The bytes go to `<path>.part` beside it (`big.iso.part`), and the
/// answer's strong validator, complete length and URI to
/// `<path>.part.meta`. A call that finds both asks only for the rest
/// (`Range` and `If-Range`), and appends it when the server's `206`
/// continues the same representation; when the representation changed (a
/// `200`, another validator, another length) or the `.part` came from
/// another URI, the `.part` is truncated and the download starts over:
/// the file never holds bytes of two versions. An answer without a strong
/// validator and a length is saved too, but a later call cannot resume it.
///
/// Once every byte is there the `.part` is `fsync`ed and renamed to
/// `path` (replacing a file there), the `.meta` removed, and the
/// directory `fsync`ed: after success `path` is the only file left.
///
/// Within one call, give it a service with
/// [`ResumeDownloadLayer`](super::ResumeDownloadLayer) to survive a
/// dropped connection too: `save` resumes across calls (a killed
/// process, a reboot), the layer within the call.
///
/// The request's `Range` and `If-Range` are replaced; its other headers
/// (credentials included) go with every request of the download, all to
/// its own URI. Its body type is `Default` (a `GET` has none): when the
/// `.part` turns out to be of another version, the request is sent again,
/// built from its parts. The writes run on tokio's blocking pool, 4 MiB at
/// a time. One download at a time per `path`: two calls saving to the
/// same `path` at once write the same `.part`.
///
/// One connection: several connections on ranges of one file (aria2's
/// `-x`) are not done here.
///
/// # Errors
///
/// The service's error, the body's (a drop the service did not resume), a
/// status other than `200` or `206`
/// ([`ErrorKind::Protocol`]), a body shorter
/// or longer than announced, or a failed write, `fsync` or rename
/// ([`ErrorKind::Io`]: a full disk). Each keeps the
/// `.part` and `.meta` with every byte received so far, for the next call
/// to resume.
///
/// # What is left after a kill
///
/// A process killed at any point leaves `path` untouched or whole, never
/// partly written. Before the first byte: at most an empty `.part` and a
/// `.meta`; mid-body: the `.part` (a prefix of one version) and its
/// `.meta`, which the next call resumes; between the rename and removing
/// the `.meta`: the whole file and a stale `.meta`, which the next call
/// to `save` the same `path` removes. After a power loss (not a kill) the
/// end of a `.part` written since the last `fsync` may be missing or
/// zeros: delete the `.part` after a crash of the machine.
pub async fn save<S, ReqB, ResB>(
    mut service: S,
    request: Request<ReqB>,
    path: impl AsRef<Path>,
) -> Result<Saved, BoxError>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ReqB: Default,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let path = path.as_ref();
    let part = beside(path, ".part")?;
    let meta_path = beside(path, ".part.meta")?;
    let uri = request.uri().clone();

    let held = match fs::metadata(&part) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A .meta alone: the rename of an earlier call went through.
            remove_if_there(&meta_path)?;
            0
        }
        Err(e) => return Err(io(format!("stat {}", part.display()))(e)),
    };
    let meta = fs::read_to_string(&meta_path)
        .ok()
        .and_then(|t| Meta::parse(&t))
        .filter(|m| m.uri == uri.to_string() && held <= m.complete && m.complete > 0);

    let (parts, _) = request.into_parts();
    let build = |range: Option<(HeaderValue, HeaderValue)>| {
        let mut request = Request::from_parts(parts.clone(), ReqB::default());
        let headers = request.headers_mut();
        headers.remove(header::RANGE);
        headers.remove(header::IF_RANGE);
        if let Some((range, if_range)) = range {
            headers.insert(header::RANGE, range);
            headers.insert(header::IF_RANGE, if_range);
        }
        request
    };

    // A whole .part asks for its last byte again: the answer proves it is
    // still the current version (a 416 would not say which).
    let resume = meta.filter(|_| held > 0).map(|m| {
        let at = held.min(m.complete - 1);
        let extent = Extent {
            start: 0,
            end: m.complete,
            complete: m.complete,
        };
        (m, extent, at)
    });
    let mut response = match &resume {
        Some((meta, extent, at)) => {
            let ranged = build(Some((
                extent.range_from(*at),
                meta.validator.value().clone(),
            )));
            Some(send(&mut service, ranged).await?)
        }
        None => None,
    };
    let mut from = 0;
    if let (Some(res), Some((meta, extent, at))) = (&response, &resume) {
        match continuation(
            res.status(),
            res.headers(),
            extent,
            *at,
            &meta.validator,
            SystemTime::now(),
        ) {
            Verdict::Continue => from = *at,
            Verdict::Modified(_why) => {
                trace_event!(
                    target: "mmap_body::download",
                    tracing::Level::DEBUG,
                    uri = %uri,
                    part = %part.display(),
                    why = %_why,
                    "the .part is of another version: saving from the start"
                );
                if res.status() != StatusCode::OK {
                    response = None;
                }
            }
            Verdict::AskAgain(_) | Verdict::Protocol(_) => {
                // A 503, a redirect, a 404: not an answer about the
                // version; the .part stays for a later call.
                return Err(status_error(&uri, res.status()));
            }
        }
    }
    let response = match response {
        Some(res) => res,
        None => send(&mut service, build(None)).await?,
    };
    if from == 0 && response.status() != StatusCode::OK {
        return Err(status_error(&uri, response.status()));
    }

    let (head, body) = response.into_parts();
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&part)
        .map_err(io(format!("open {}", part.display())))?;
    let expected = if from == 0 {
        // Another version (or none recorded): start over, the .meta first
        // naming the version the bytes after it belong to.
        file.set_len(0)
            .map_err(io(format!("truncate {}", part.display())))?;
        let len = match first_answer(head.status, &head.headers) {
            Some((extent, validator)) => {
                let meta = Meta {
                    uri: uri.to_string(),
                    validator,
                    complete: extent.complete,
                };
                write_meta(&meta_path, &meta)?;
                Some(extent.complete)
            }
            None => {
                remove_if_there(&meta_path)?;
                None
            }
        };
        trace_event!(
            target: "mmap_body::download",
            tracing::Level::DEBUG,
            uri = %uri,
            part = %part.display(),
            resumable = len.is_some(),
            "saving download"
        );
        len
    } else {
        file.set_len(from)
            .map_err(io(format!("truncate {}", part.display())))?;
        trace_event!(
            target: "mmap_body::download",
            tracing::Level::DEBUG,
            uri = %uri,
            part = %part.display(),
            offset = from,
            "saving download from its .part"
        );
        resume.as_ref().map(|(m, _, _)| m.complete)
    };
    file.seek(SeekFrom::Start(from))
        .map_err(io(format!("seek {}", part.display())))?;

    let (file, written) = write_body(file, body, &part).await?;
    let len = from + written;
    if let Some(expected) = expected.filter(|&e| e != len) {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "the body of {uri} ended at byte {len} of {expected}: the .part keeps it, \
                 save again to resume"
            ),
        )
        .into());
    }
    if expected.is_none() {
        if let Some(announced) = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .filter(|&a| a != written)
        {
            return Err(Error::new(
                ErrorKind::Io,
                format!("the body of {uri} was {written} bytes, its Content-Length {announced}"),
            )
            .into());
        }
    }
    finish(file, &part, path, &meta_path).await?;
    Ok(Saved {
        path: path.to_owned(),
        len,
        written,
        resumed_from: from,
    })
}

async fn send<S, ReqB, ResB>(
    service: &mut S,
    request: Request<ReqB>,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    service.call(request).await.map_err(Into::into)
}

fn status_error(uri: &Uri, status: StatusCode) -> BoxError {
    Error::new(
        ErrorKind::Protocol,
        format!("{uri} answered {status}: nothing saved (a .part there is kept)"),
    )
    .into()
}
