//! [`Uploads`]: the server side. Upload resources whose bytes go to files
//! in one directory, and what an axum or hyper handler answers for each
//! request of the draft: the creation (on the handler's own resource),
//! and the offset query, append and cancellation on the upload resource.
//!
//! By role: this file is the API ([`Uploads`], [`Handled`], [`Completed`]);
//! `handle.rs` answers each request; `append.rs` streams a request's
//! content into the store; `store.rs` keeps the uploads and their files;
//! `expiry.rs` forgets expired uploads; `dialect.rs` reads and writes the
//! draft's fields; `version.rs` is how each interop version (3 to 9) says
//! them, the one place a new interop version changes.

mod append;
mod dialect;
mod expiry;
mod handle;
mod store;
mod version;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;

use super::fields::{sf_int, Limits, PARTIAL_UPLOAD, UPLOAD_LIMIT, UPLOAD_OFFSET};
use dialect::answer;
use store::Store;
use version::Dialect;

/// How long an upload resource lives by default (`max-age`).
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The upload resources of one server: each upload's bytes are appended to
/// a file of its own in a directory, at the offset the client names and
/// nowhere else.
///
/// Cheap to clone (clones share the uploads). Its methods answer each
/// request of the draft with what the draft says; a handler routes to them:
///
/// - on the resource that takes uploads (say `POST /files`):
///   [`create`](Uploads::create) for a request that carries
///   `Upload-Complete` ([`is_creation`](Uploads::is_creation)), and
///   [`options`](Uploads::options) for `OPTIONS`, which tells clients the
///   resource takes resumable uploads;
/// - on the upload resources (`{prefix}{id}`, say `/uploads/…`):
///   [`handle`](Uploads::handle) (`HEAD` the offset, `PATCH` append,
///   `DELETE` cancel, `OPTIONS`).
///
/// Each gives a [`Handled`]: an answer to send, or a [`Completed`] upload,
/// whose file the application processes before it answers as the original
/// request would have been answered, through [`Completed::respond`].
///
/// # Hazards
///
/// - Upload resource URIs are the only key to an upload: they are made
///   from a counter and the process's random hasher keys, hard to guess,
///   but a handler should still check that whoever appends is whoever
///   created (authorization headers come with every request of the
///   client in this crate).
/// - Uploads are kept in this process's memory: a restart forgets them
///   (their clients then start again from byte 0) and leaves their files.
/// - Expired uploads are removed a few at each request, and all at once by
///   [`sweep_expired`](Uploads::sweep_expired), which a server that may go
///   quiet calls on a timer; a completed upload's file goes too, `max-age`
///   after the completion.
/// - `max_size` bounds one upload, not the directory: a server limits how
///   many uploads it accepts.
/// - Each append that runs holds a file descriptor, closed when it ends;
///   an upload between its requests holds none.
#[derive(Debug, Clone)]
pub struct Uploads {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    prefix: String,
    limits: Limits,
    store: Store,
    received: AtomicU64,
}

/// What to do with a request [`Uploads`] handled.
#[derive(Debug)]
pub enum Handled {
    /// Send this answer (an offset, an acknowledgement, or one of the
    /// draft's errors).
    Respond(Response<Full<Bytes>>),
    /// The upload is complete: process [`Completed::path`] and answer with
    /// [`Completed::respond`].
    Complete(Completed),
}

/// An upload whose every byte arrived.
#[derive(Debug, Clone)]
pub struct Completed {
    /// How the request that completed it speaks.
    dialect: Dialect,
    path: PathBuf,
    len: u64,
    location: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Completed {
    /// The file that holds the representation, in the store's directory
    /// until the upload expires (`max-age` after its completion), when the
    /// store removes it: move it elsewhere (a rename on the same file
    /// system) to keep it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The method of the request that created the upload: what the
    /// application is to do with the representation.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The target of the creating request.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The creating request's headers (`Content-Type`,
    /// `Content-Disposition`...).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The upload resource's path.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The application's answer to the upload, marked as the answer to a
    /// completed upload in the dialect of the request that completed it
    /// (`Upload-Complete: ?1`, which the draft requires; `Upload-Incomplete:
    /// ?0` for interop version 3), with its `Upload-Offset`.
    pub fn respond<B>(&self, mut res: Response<B>) -> Response<B> {
        let headers = res.headers_mut();
        self.dialect.mark(headers, true);
        headers.insert(UPLOAD_OFFSET, sf_int(self.len));
        res
    }
}

impl Uploads {
    /// Upload resources at `{prefix}{id}` (say `/uploads/`), their files in
    /// `dir` (which must exist). Limits: uploads live a day (`max-age`),
    /// no size limit.
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Uploads {
        Uploads {
            inner: Arc::new(Inner {
                prefix: prefix.into(),
                limits: Limits {
                    max_age: Some(DEFAULT_MAX_AGE),
                    ..Limits::default()
                },
                store: Store::new(dir.into()),
                received: AtomicU64::new(0),
            }),
        }
    }

    /// The limits announced and enforced (`max-size`, `max-append-size`,
    /// `max-age`; `min-*` are announced). Set before any upload.
    pub fn limits(mut self, limits: Limits) -> Uploads {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.limits = limits,
            // Already shared: a store of its own, with no uploads yet.
            None => {
                let dir = self.inner.store.dir().to_owned();
                let fresh = Uploads::new(dir, self.inner.prefix.clone());
                return fresh.limits(limits);
            }
        }
        self
    }

    /// Body bytes received by creations and appends so far, whether or not
    /// they were kept (what crossed the network).
    pub fn received(&self) -> u64 {
        self.inner.received.load(Ordering::Relaxed)
    }

    /// Whether `req` asks to create a resumable upload: it says whether its
    /// content completes the upload (`Upload-Complete`, or
    /// `Upload-Incomplete` in interop version 3), in an interop version
    /// answered here (3 to 9; none is the newest). Otherwise handle it as a
    /// plain upload, as the draft asks of a server that does not speak the
    /// client's version.
    pub fn is_creation<B>(req: &Request<B>) -> bool {
        let headers = req.headers();
        Dialect::of(headers).is_some_and(|dialect| dialect.is_creation(headers))
    }

    /// The answer to `OPTIONS` on a resource that takes resumable uploads
    /// (and on the upload resources): `Accept-Patch:
    /// application/partial-upload` and the limits.
    pub fn options(&self) -> Response<Full<Bytes>> {
        let mut res = answer(StatusCode::NO_CONTENT, Bytes::new());
        self.advertise(res.headers_mut());
        res
    }

    /// Adds `Accept-Patch` and `Upload-Limit` (`min-size=0` when there is
    /// no limit, as the newest draft asks) to an answer of the handler's
    /// own (an `OPTIONS` that says more).
    pub fn advertise(&self, headers: &mut HeaderMap) {
        self.advertise_to(headers, Dialect::NEWEST);
    }

    /// [`advertise`](Uploads::advertise) as `dialect` spells it.
    fn advertise_to(&self, headers: &mut HeaderMap, dialect: Dialect) {
        headers.insert(
            header::HeaderName::from_static("accept-patch"),
            HeaderValue::from_static(PARTIAL_UPLOAD),
        );
        if let Some(limits) = dialect.limits(self.inner.limits) {
            headers.insert(UPLOAD_LIMIT, limits);
        }
    }

    /// The id in the path of an upload resource, if `path` is one.
    pub fn id_in<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.inner.prefix.as_str())
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }
}
