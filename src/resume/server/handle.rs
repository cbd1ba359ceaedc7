//! Each request of the draft, answered: the creation, and the offset
//! query, append and cancellation on an upload resource.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;

use super::super::fields::{integer, sf_int, Problem, UPLOAD_LENGTH, UPLOAD_OFFSET};
use super::append::Stopped;
use super::dialect::{
    answer, bad_request, content_length, declared_length, is_append, location_value,
    problem_answer, respond, server_error,
};
use super::store::Upload;
use super::version::{Dialect, VERSIONS};
use super::{Handled, Uploads};
use crate::error::BoxError;
use crate::sync::lock;

impl Uploads {
    /// Creates an upload resource for `req` (which carries
    /// `Upload-Complete`) and appends its content. The answer is
    /// `201 Created` with its `Location` when the content was not all of it
    /// (`Upload-Complete: ?0`), or the [`Completed`](super::Completed) upload.
    pub async fn create<B>(&self, req: Request<B>) -> Handled
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        self.sweep_some().await;
        let Some(dialect) = Dialect::of(req.headers()) else {
            return respond(unknown_version());
        };
        let Some(complete) = dialect.completes(req.headers(), false) else {
            return respond(bad_request(
                "Upload-Complete must be ?0 or ?1 (Upload-Incomplete in interop version 3)",
            ));
        };
        let content = content_length(req.headers()).or(req.body().size_hint().exact());
        let length = match declared_length(req.headers(), 0, complete, content) {
            Ok(length) => length,
            Err(problem) => return respond(problem_answer(StatusCode::BAD_REQUEST, problem)),
        };
        if self.too_large(length.or(content), content) {
            return respond(self.too_large_answer());
        }
        let upload =
            match self
                .inner
                .store
                .create(&self.inner.prefix, &req, self.inner.limits.max_age)
            {
                Ok(upload) => upload,
                Err(err) => return respond(server_error(&err)),
            };
        let generation = {
            let mut state = lock(&upload.state);
            state.length = length;
            state.generation
        };
        let location = upload.location.clone();
        if let Err(stopped) = self.append(&upload, generation, req.into_body()).await {
            // The client was not told where the upload is: no one can
            // resume it.
            let res = self.stopped(stopped, &upload);
            self.inner.store.forget(&upload.id, &upload);
            return respond(res);
        }
        if complete {
            return self.finish(&upload, generation, dialect);
        }
        let mut res = answer(dialect.incomplete_status(true), Bytes::new());
        let headers = res.headers_mut();
        headers.insert(header::LOCATION, location_value(&location));
        dialect.mark(headers, false);
        headers.insert(UPLOAD_OFFSET, sf_int(lock(&upload.state).offset));
        self.advertise_to(headers, dialect);
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
        self.sweep_some().await;
        let Some(dialect) = Dialect::of(req.headers()) else {
            return respond(unknown_version());
        };
        let Some(upload) = self.find(id) else {
            return respond(answer(StatusCode::NOT_FOUND, Bytes::from("no such upload")));
        };
        match *req.method() {
            Method::HEAD => respond(self.offset(&upload, dialect)),
            Method::PATCH => self.patch(&upload, req, dialect).await,
            Method::DELETE => {
                self.inner.store.forget(id, &upload);
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

    fn offset(&self, upload: &Upload, dialect: Dialect) -> Response<Full<Bytes>> {
        let mut state = lock(&upload.state);
        // An append still running for an earlier attempt stops here, so the
        // offset below is the one the next append must name.
        state.generation += 1;
        let mut res = answer(StatusCode::NO_CONTENT, Bytes::new());
        let headers = res.headers_mut();
        headers.insert(UPLOAD_OFFSET, sf_int(state.offset));
        dialect.mark(headers, state.complete);
        if let Some(length) = state.length {
            headers.insert(UPLOAD_LENGTH, sf_int(length));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        drop(state);
        self.advertise_to(res.headers_mut(), dialect);
        res
    }

    async fn patch<B>(&self, upload: &Arc<Upload>, req: Request<B>, dialect: Dialect) -> Handled
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let headers = req.headers();
        if dialect.needs_media_type() && !is_append(headers) {
            let mut res = answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Bytes::from("an append is a PATCH of application/partial-upload"),
            );
            self.advertise(res.headers_mut());
            return respond(res);
        }
        let (Some(at), Some(complete)) = (
            integer(headers, &UPLOAD_OFFSET),
            dialect.completes(headers, true),
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
                dialect.mark(res.headers_mut(), false);
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
            return self.finish(upload, generation, dialect);
        }
        let mut res = answer(dialect.incomplete_status(false), Bytes::new());
        dialect.mark(res.headers_mut(), false);
        res.headers_mut()
            .insert(UPLOAD_OFFSET, sf_int(lock(&upload.state).offset));
        respond(res)
    }

    /// Marks the upload complete if every byte of its length is there and
    /// the append of `generation` is still the upload's: one that a newer
    /// request took over, or a cancellation, never completes it, even
    /// when its body ended with nothing left to write (the draft's §4.6).
    fn finish(&self, upload: &Upload, generation: u64, dialect: Dialect) -> Handled {
        let mut state = lock(&upload.state);
        let stopped = if state.gone {
            Some(Stopped::Gone)
        } else if state.generation != generation {
            Some(Stopped::Superseded)
        } else {
            None
        };
        if let Some(stopped) = stopped {
            drop(state);
            return respond(self.stopped(stopped, upload));
        }
        if state.length.is_some_and(|length| length != state.offset) {
            drop(state);
            return respond(problem_answer(
                StatusCode::BAD_REQUEST,
                Problem::InconsistentLength,
            ));
        }
        state.complete = true;
        state.length = Some(state.offset);
        // The application has `max-age` from now to move the file away.
        let max_age = self.inner.limits.max_age;
        state.deadline = max_age.and_then(|age| Instant::now().checked_add(age));
        Handled::Complete(upload.completed(state.offset, dialect))
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
            Stopped::Gone => answer(
                StatusCode::NOT_FOUND,
                Bytes::from("the upload was cancelled or expired"),
            ),
            Stopped::TooLong => {
                // Past its length: the upload cannot be completed.
                let mut state = lock(&upload.state);
                state.generation += 1;
                drop(state);
                problem_answer(StatusCode::BAD_REQUEST, Problem::InconsistentLength)
            }
            Stopped::TooLarge => self.too_large_answer(),
            Stopped::Io(err) => server_error(&err),
        }
    }
}

/// `400` to a request in an interop version this server does not speak.
fn unknown_version() -> Response<Full<Bytes>> {
    let versions: Vec<String> = VERSIONS.iter().map(u64::to_string).collect();
    answer(
        StatusCode::BAD_REQUEST,
        Bytes::from(format!(
            "Upload-Draft-Interop-Version names a version this server does not speak; it \
             speaks {}",
            versions.join(", ")
        )),
    )
}
