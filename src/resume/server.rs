//! [`Uploads`]: the server side. Upload resources whose bytes go to files
//! in one directory, and what an axum or hyper handler answers for each
//! request of the draft: the creation (on the handler's own resource),
//! and the offset query, append and cancellation on the upload resource.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full};

use super::fields::{
    boolean, integer, sf_bool, sf_int, Limits, Problem, PARTIAL_UPLOAD, UPLOAD_COMPLETE,
    UPLOAD_LENGTH, UPLOAD_LIMIT, UPLOAD_OFFSET,
};
use crate::error::BoxError;
use crate::sync::lock;

/// Bytes gathered from the request before one write to the file.
const WRITE_BATCH: usize = 256 * 1024;

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
/// - `max_size` bounds one upload, not the directory: a server limits how
///   many uploads it accepts.
#[derive(Debug, Clone)]
pub struct Uploads {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    prefix: String,
    limits: Limits,
    uploads: Mutex<HashMap<String, Arc<Upload>>>,
    next: AtomicU64,
    received: AtomicU64,
    keys: std::collections::hash_map::RandomState,
}

#[derive(Debug)]
struct Upload {
    path: PathBuf,
    location: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    created: Instant,
    state: Mutex<UploadState>,
}

#[derive(Debug)]
struct UploadState {
    file: File,
    offset: u64,
    length: Option<u64>,
    complete: bool,
    /// Bumped by every request to the upload: an append that is no longer
    /// the newest stops (the draft's §4.6, "terminate the previous request").
    generation: u64,
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
    path: PathBuf,
    len: u64,
    location: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Completed {
    /// The file that holds the representation (in the store's directory;
    /// move it elsewhere to keep it).
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
    /// completed upload (`Upload-Complete: ?1`, which the draft requires).
    pub fn respond<B>(&self, mut res: Response<B>) -> Response<B> {
        res.headers_mut().insert(UPLOAD_COMPLETE, sf_bool(true));
        res
    }
}

/// Why an append stopped.
enum Stopped {
    /// The request's body failed (the client went away).
    Interrupted,
    /// A newer request to the same upload took over.
    Superseded,
    /// Past the upload's length or the size limit.
    TooLong,
    /// Writing the file failed.
    Io(io::Error),
}

impl Uploads {
    /// Upload resources at `{prefix}{id}` (say `/uploads/`), their files in
    /// `dir` (which must exist). Limits: uploads live a day (`max-age`),
    /// no size limit.
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>) -> Uploads {
        Uploads {
            inner: Arc::new(Inner {
                dir: dir.into(),
                prefix: prefix.into(),
                limits: Limits {
                    max_age: Some(DEFAULT_MAX_AGE),
                    ..Limits::default()
                },
                uploads: Mutex::default(),
                next: AtomicU64::new(1),
                received: AtomicU64::new(0),
                keys: Default::default(),
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
                let fresh = Uploads::new(self.inner.dir.clone(), self.inner.prefix.clone());
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

    /// Whether `req` asks to create a resumable upload (it carries
    /// `Upload-Complete`); otherwise handle it as a plain upload.
    pub fn is_creation<B>(req: &Request<B>) -> bool {
        req.headers().contains_key(UPLOAD_COMPLETE)
    }

    /// The answer to `OPTIONS` on a resource that takes resumable uploads
    /// (and on the upload resources): `Accept-Patch:
    /// application/partial-upload` and the limits.
    pub fn options(&self) -> Response<Full<Bytes>> {
        let mut res = answer(StatusCode::NO_CONTENT, Bytes::new());
        self.advertise(res.headers_mut());
        res
    }

    /// Adds `Accept-Patch` and `Upload-Limit` to an answer of the
    /// handler's own (an `OPTIONS` that says more).
    pub fn advertise(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::HeaderName::from_static("accept-patch"),
            HeaderValue::from_static(PARTIAL_UPLOAD),
        );
        if let Some(limits) = self.inner.limits.to_header() {
            headers.insert(UPLOAD_LIMIT, limits);
        }
    }

    /// The id in the path of an upload resource, if `path` is one.
    pub fn id_in<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.inner.prefix.as_str())
            .filter(|id| !id.is_empty() && !id.contains('/'))
    }

    /// Creates an upload resource for `req` (which carries
    /// `Upload-Complete`) and appends its content. The answer is
    /// `201 Created` with its `Location` when the content was not all of it
    /// (`Upload-Complete: ?0`), or the [`Completed`] upload.
    pub async fn create<B>(&self, req: Request<B>) -> Handled
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let Some(complete) = boolean(req.headers(), &UPLOAD_COMPLETE) else {
            return respond(bad_request("Upload-Complete must be ?0 or ?1"));
        };
        let content = content_length(req.headers()).or(req.body().size_hint().exact());
        let length = match declared_length(req.headers(), 0, complete, content) {
            Ok(length) => length,
            Err(problem) => return respond(problem_answer(StatusCode::BAD_REQUEST, problem)),
        };
        if self.too_large(length.or(content), content) {
            return respond(self.too_large_answer());
        }
        let upload = match self.new_upload(&req) {
            Ok(upload) => upload,
            Err(err) => return respond(server_error(&err)),
        };
        let generation = {
            let mut state = lock(&upload.state);
            state.length = length;
            state.generation
        };
        let location = upload.location.clone();
        match self.append(&upload, generation, req.into_body()).await {
            Ok(()) => {}
            Err(stopped) => return respond(self.stopped(stopped, &upload)),
        }
        if complete {
            return self.finish(&upload);
        }
        let mut res = answer(StatusCode::CREATED, Bytes::new());
        let headers = res.headers_mut();
        headers.insert(header::LOCATION, location_value(&location));
        headers.insert(UPLOAD_COMPLETE, sf_bool(false));
        headers.insert(UPLOAD_OFFSET, sf_int(lock(&upload.state).offset));
        self.advertise(headers);
        respond(res)
    }

    /// Answers a request to the upload resource `id` ([`id_in`](Uploads::id_in)
    /// of its path): `HEAD` reports the offset, `PATCH` appends at the
    /// offset it names (and nowhere else: a wrong offset is `409` with the
    /// right one), `DELETE` cancels, `OPTIONS` advertises.
    pub async fn handle<B>(&self, id: &str, req: Request<B>) -> Handled
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if req.method() == Method::OPTIONS {
            return respond(self.options());
        }
        let Some(upload) = self.find(id) else {
            return respond(answer(StatusCode::NOT_FOUND, Bytes::from("no such upload")));
        };
        match *req.method() {
            Method::HEAD => respond(self.offset(&upload)),
            Method::PATCH => self.patch(&upload, req).await,
            Method::DELETE => {
                self.forget(id, &upload);
                respond(answer(StatusCode::NO_CONTENT, Bytes::new()))
            }
            _ => {
                let mut res = answer(StatusCode::METHOD_NOT_ALLOWED, Bytes::new());
                res.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("HEAD, PATCH, DELETE, OPTIONS"),
                );
                respond(res)
            }
        }
    }

    fn new_upload<B>(&self, req: &Request<B>) -> io::Result<Arc<Upload>> {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let mut hasher = self.inner.keys.build_hasher();
        hasher.write_u64(n);
        let id = format!("{:016x}{n:x}", hasher.finish());
        let path = self.inner.dir.join(format!("{id}.part"));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let upload = Arc::new(Upload {
            path,
            location: format!("{}{id}", self.inner.prefix),
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            created: Instant::now(),
            state: Mutex::new(UploadState {
                file,
                offset: 0,
                length: None,
                complete: false,
                generation: 0,
            }),
        });
        lock(&self.inner.uploads).insert(id, Arc::clone(&upload));
        Ok(upload)
    }

    /// The upload `id`, unless it expired (then it is forgotten).
    fn find(&self, id: &str) -> Option<Arc<Upload>> {
        let upload = lock(&self.inner.uploads).get(id).cloned()?;
        let expired = self
            .inner
            .limits
            .max_age
            .is_some_and(|age| upload.created.elapsed() > age);
        if expired {
            self.forget(id, &upload);
            return None;
        }
        Some(upload)
    }

    fn forget(&self, id: &str, upload: &Upload) {
        lock(&self.inner.uploads).remove(id);
        let mut state = lock(&upload.state);
        state.generation += 1;
        if !state.complete {
            let _ = std::fs::remove_file(&upload.path);
        }
    }

    fn offset(&self, upload: &Upload) -> Response<Full<Bytes>> {
        let mut state = lock(&upload.state);
        // An append still running for an earlier attempt stops here, so the
        // offset below is the one the next append must name.
        state.generation += 1;
        let mut res = answer(StatusCode::NO_CONTENT, Bytes::new());
        let headers = res.headers_mut();
        headers.insert(UPLOAD_OFFSET, sf_int(state.offset));
        headers.insert(UPLOAD_COMPLETE, sf_bool(state.complete));
        if let Some(length) = state.length {
            headers.insert(UPLOAD_LENGTH, sf_int(length));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        drop(state);
        self.advertise(res.headers_mut());
        res
    }

    async fn patch<B>(&self, upload: &Arc<Upload>, req: Request<B>) -> Handled
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let headers = req.headers();
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media.is_some_and(|m| m.eq_ignore_ascii_case(PARTIAL_UPLOAD)) {
            let mut res = answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Bytes::from("an append is a PATCH of application/partial-upload"),
            );
            self.advertise(res.headers_mut());
            return respond(res);
        }
        let (Some(at), Some(complete)) = (
            integer(headers, &UPLOAD_OFFSET),
            boolean(headers, &UPLOAD_COMPLETE),
        ) else {
            return respond(bad_request(
                "an append needs Upload-Offset (an integer) and Upload-Complete (?0 or ?1)",
            ));
        };
        let content = content_length(headers).or(req.body().size_hint().exact());
        let generation = {
            let mut state = lock(&upload.state);
            state.generation += 1;
            if state.complete {
                let problem = if content == Some(0) {
                    Problem::CompletedUpload
                } else {
                    Problem::InconsistentLength
                };
                return respond(problem_answer(StatusCode::BAD_REQUEST, problem));
            }
            if at != state.offset {
                let mut res = problem_answer(
                    StatusCode::CONFLICT,
                    Problem::MismatchingOffset {
                        expected: state.offset,
                        provided: at,
                    },
                );
                res.headers_mut()
                    .insert(UPLOAD_OFFSET, sf_int(state.offset));
                return respond(res);
            }
            match declared_length(headers, at, complete, content) {
                Ok(Some(length)) if state.length.is_some_and(|known| known != length) => {
                    return respond(problem_answer(
                        StatusCode::BAD_REQUEST,
                        Problem::InconsistentLength,
                    ))
                }
                Ok(Some(length)) => state.length = Some(length),
                Ok(None) => {}
                Err(problem) => return respond(problem_answer(StatusCode::BAD_REQUEST, problem)),
            }
            state.generation
        };
        if self.too_large(None, content) {
            return respond(self.too_large_answer());
        }
        if let Err(stopped) = self.append(upload, generation, req.into_body()).await {
            return respond(self.stopped(stopped, upload));
        }
        if complete {
            return self.finish(upload);
        }
        let mut res = answer(StatusCode::NO_CONTENT, Bytes::new());
        res.headers_mut().insert(UPLOAD_COMPLETE, sf_bool(false));
        res.headers_mut()
            .insert(UPLOAD_OFFSET, sf_int(lock(&upload.state).offset));
        respond(res)
    }

    /// Marks the upload complete if every byte of its length is there.
    fn finish(&self, upload: &Upload) -> Handled {
        let mut state = lock(&upload.state);
        if state.length.is_some_and(|length| length != state.offset) {
            drop(state);
            return respond(problem_answer(
                StatusCode::BAD_REQUEST,
                Problem::InconsistentLength,
            ));
        }
        state.complete = true;
        state.length = Some(state.offset);
        Handled::Complete(Completed {
            path: upload.path.clone(),
            len: state.offset,
            location: upload.location.clone(),
            method: upload.method.clone(),
            uri: upload.uri.clone(),
            headers: upload.headers.clone(),
        })
    }

    /// Whether a representation of `length` or a request with `content`
    /// bytes is past a limit.
    fn too_large(&self, length: Option<u64>, content: Option<u64>) -> bool {
        let limits = self.inner.limits;
        length.zip(limits.max_size).is_some_and(|(l, max)| l > max)
            || content
                .zip(limits.max_append_size)
                .is_some_and(|(c, max)| c > max)
    }

    /// `413`, with the limits.
    fn too_large_answer(&self) -> Response<Full<Bytes>> {
        let mut res = answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            Bytes::from("the upload is larger than this server takes"),
        );
        self.advertise(res.headers_mut());
        res
    }

    /// Appends the body at the upload's offset as it arrives, in batches
    /// written on the blocking pool (the runtime's worker never waits for
    /// the disk). Each write happens only while this request is still the
    /// upload's newest and within its length and size limit, under the
    /// upload's lock, so the offset an answer reports is what is on disk.
    async fn append<B>(&self, upload: &Arc<Upload>, generation: u64, body: B) -> Result<(), Stopped>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut body = std::pin::pin!(body);
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batched = 0;
        loop {
            let frame = body.frame().await;
            let ended = match frame {
                None => true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.inner
                            .received
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                        batched += data.len();
                        batch.push(data);
                    }
                    false
                }
                Some(Err(_)) => {
                    // Keep what arrived, then stop.
                    self.write(upload, generation, std::mem::take(&mut batch))
                        .await?;
                    return Err(Stopped::Interrupted);
                }
            };
            if batched >= WRITE_BATCH || (ended && !batch.is_empty()) {
                self.write(upload, generation, std::mem::take(&mut batch))
                    .await?;
                batched = 0;
            }
            if ended {
                return Ok(());
            }
        }
    }

    async fn write(
        &self,
        upload: &Arc<Upload>,
        generation: u64,
        batch: Vec<Bytes>,
    ) -> Result<(), Stopped> {
        if batch.is_empty() {
            return Ok(());
        }
        let upload = Arc::clone(upload);
        let max_size = self.inner.limits.max_size;
        let write = move || {
            let mut state = lock(&upload.state);
            if state.generation != generation {
                return Err(Stopped::Superseded);
            }
            let len: u64 = batch.iter().map(|b| b.len() as u64).sum();
            let end = state.offset + len;
            if state.length.is_some_and(|l| end > l) || max_size.is_some_and(|m| end > m) {
                return Err(Stopped::TooLong);
            }
            let at = state.offset;
            let file = &mut state.file;
            file.seek(SeekFrom::Start(at)).map_err(Stopped::Io)?;
            for data in &batch {
                file.write_all(data).map_err(Stopped::Io)?;
            }
            state.offset = end;
            Ok(())
        };
        // Off the runtime's workers when there is a runtime to ask.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(write)
                .await
                .unwrap_or_else(|err| Err(Stopped::Io(io::Error::other(err)))),
            Err(_) => write(),
        }
    }

    fn stopped(&self, stopped: Stopped, upload: &Upload) -> Response<Full<Bytes>> {
        match stopped {
            Stopped::Interrupted => answer(
                StatusCode::BAD_REQUEST,
                Bytes::from("the upload was interrupted; ask its offset and resume"),
            ),
            Stopped::Superseded => answer(
                StatusCode::CONFLICT,
                Bytes::from("a newer request to this upload took over"),
            ),
            Stopped::TooLong => {
                // Past its length: the upload cannot be completed.
                let mut state = lock(&upload.state);
                state.generation += 1;
                drop(state);
                problem_answer(StatusCode::BAD_REQUEST, Problem::InconsistentLength)
            }
            Stopped::Io(err) => server_error(&err),
        }
    }
}

/// The representation's length a request declares, from `Upload-Length`
/// and, for a request that completes the upload, its `Content-Length` past
/// `at`; the two must agree (draft §4.1.3).
fn declared_length(
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

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn respond(res: Response<Full<Bytes>>) -> Handled {
    Handled::Respond(res)
}

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res
}

fn bad_request(why: &'static str) -> Response<Full<Bytes>> {
    answer(StatusCode::BAD_REQUEST, Bytes::from_static(why.as_bytes()))
}

fn server_error(err: &io::Error) -> Response<Full<Bytes>> {
    answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        Bytes::from(format!("the upload could not be stored: {err}")),
    )
}

fn problem_answer(status: StatusCode, problem: Problem) -> Response<Full<Bytes>> {
    let mut res = answer(status, problem.body());
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

fn location_value(location: &str) -> HeaderValue {
    HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/"))
}
