//! [`ServeFile`]: one file, as a [`ServeDir`] serves each of its files.

use std::convert::Infallible;
use std::path::Path;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use mime_guess::mime::Mime;
use tower_service::Service;

use super::{lookup, Config, DefaultServeDirFallback, Kind, ResponseFuture, ServeDir};
use crate::serve::ServeBody;

/// Serves one file, whatever the request's path: a drop-in for
/// tower-http 0.7's `ServeFile` (the answers of a [`ServeDir`]: ranges,
/// conditional requests, precompressed variants, the file kept open).
///
/// ```no_run
/// use axum::Router;
/// use mmap_body::serve::ServeFile;
///
/// let app: Router = Router::new().route_service("/", ServeFile::new("site/index.html"));
/// ```
#[derive(Debug, Clone)]
pub struct ServeFile(ServeDir);

impl ServeFile {
    /// Serves the file at `path`, with the `Content-Type` `mime_guess`
    /// guesses from its extension (`application/octet-stream` when
    /// unknown).
    pub fn new(path: impl AsRef<Path>) -> ServeFile {
        let path = path.as_ref();
        ServeFile::with_mime(path, lookup::media_type(path))
    }

    /// Serves the file at `path` with `Content-Type: mime` (a media type
    /// that is no valid header value, which `Mime` never is, would be
    /// sent as `application/octet-stream`; tower-http panics).
    pub fn new_with_mime(path: impl AsRef<Path>, mime: &Mime) -> ServeFile {
        let mime = HeaderValue::from_str(mime.as_ref())
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
        ServeFile::with_mime(path.as_ref(), mime)
    }

    fn with_mime(path: &Path, mime: HeaderValue) -> ServeFile {
        ServeFile(ServeDir::with_config(Config::new(
            path.to_path_buf(),
            Kind::File { mime },
        )))
    }

    /// As [`ServeDir::precompressed_gzip`]: `path.gz` for clients that
    /// accept `gzip`.
    pub fn precompressed_gzip(self) -> ServeFile {
        ServeFile(self.0.precompressed_gzip())
    }

    /// As [`ServeDir::precompressed_br`].
    pub fn precompressed_br(self) -> ServeFile {
        ServeFile(self.0.precompressed_br())
    }

    /// As [`ServeDir::precompressed_deflate`].
    pub fn precompressed_deflate(self) -> ServeFile {
        ServeFile(self.0.precompressed_deflate())
    }

    /// As [`ServeDir::precompressed_zstd`].
    pub fn precompressed_zstd(self) -> ServeFile {
        ServeFile(self.0.precompressed_zstd())
    }

    /// As [`ServeDir::with_buf_chunk_size`].
    pub fn with_buf_chunk_size(self, chunk_size: usize) -> ServeFile {
        ServeFile(self.0.with_buf_chunk_size(chunk_size))
    }

    /// As [`ServeDir::ignore_multi_range_requests`].
    pub fn ignore_multi_range_requests(self, ignore: bool) -> ServeFile {
        ServeFile(self.0.ignore_multi_range_requests(ignore))
    }

    /// As [`ServeDir::max_ranges`].
    pub fn max_ranges(self, ranges: usize) -> ServeFile {
        ServeFile(self.0.max_ranges(ranges))
    }

    /// As [`ServeDir::follow_symlinks_out_of_root`], the file's directory
    /// taken as the root.
    pub fn follow_symlinks_out_of_root(self, follow: bool) -> ServeFile {
        ServeFile(self.0.follow_symlinks_out_of_root(follow))
    }

    /// As [`ServeDir::open_file_cache`] (the file and its variants).
    pub fn open_file_cache(self, max_files: usize) -> ServeFile {
        ServeFile(self.0.open_file_cache(max_files))
    }

    /// As [`ServeDir::check_on_worker`].
    pub fn check_on_worker(self, on_worker: bool) -> ServeFile {
        ServeFile(self.0.check_on_worker(on_worker))
    }
}

impl<ReqBody> Service<Request<ReqBody>> for ServeFile {
    type Response = Response<ServeBody>;
    type Error = Infallible;
    type Future = ResponseFuture<ReqBody, DefaultServeDirFallback>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        self.0.call(request)
    }
}
