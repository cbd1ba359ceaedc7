//! [`ServeDir`] and [`ServeFile`]: tower-http 0.7's services of the same
//! names on this crate's file bodies; their behaviour, the differences
//! from tower-http and the hazards are on [`ServeDir`].

mod answer;
mod builder;
mod cache;
mod encoding;
mod fallback;
mod file;
mod future;
mod lookup;
mod path;
mod service;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

pub use fallback::{DefaultServeDirFallback, SetStatus, SetStatusFuture};
pub use file::ServeFile;
pub use future::ResponseFuture;

use cache::{OpenFiles, DEFAULT_OPEN_FILES};
use encoding::Variants;
use path::Rules;

/// Serves the files of a directory and its subdirectories: a drop-in for
/// tower-http 0.7's `ServeDir`: what it answers, the few deliberate
/// differences and the hazards are below.
///
/// A tower [`Service`](tower_service::Service) of `Request<B>` for any
/// `B`, whose error is [`Infallible`](std::convert::Infallible) and whose
/// answers have a [`ServeBody`](crate::serve::ServeBody). Clones share the
/// open files.
///
/// ```no_run
/// use axum::Router;
/// use mmap_body::serve::{ServeDir, ServeFile};
///
/// let app: Router = Router::new().nest_service(
///     "/assets",
///     ServeDir::new("assets").not_found_service(ServeFile::new("assets/404.html")),
/// );
/// ```
///
/// Changing the `use` line is the whole migration:
///
/// ```no_run
/// use axum::Router;
/// use mmap_body::serve::{ServeDir, ServeFile}; // was: tower_http::services::{...}
///
/// let app: Router = Router::new()
///     .nest_service("/assets", ServeDir::new("assets").precompressed_gzip())
///     .route_service("/favicon.ico", ServeFile::new("assets/favicon.ico"));
/// ```
///
/// # What it answers, as tower-http does
///
/// - The request's path, percent-decoded, under the root: `..`, a root or
///   a drive prefix in it (however encoded), or bytes that are not UTF-8,
///   answer `404` (or call the fallback). `%2F` separates components as
///   `/` does, and symbolic links are followed wherever they lead; both
///   can be refused ([`encoded_slash_as_separator`],
///   [`follow_symlinks_out_of_root`]).
/// - A directory: `307 Temporary Redirect` to its path with a `/` (the
///   request's URI with [`redirect_path_prefix`] before it, the query
///   kept); with the `/`, its `index.html`.
///   [`append_index_html_on_directories`]`(false)` answers `404` instead,
///   [`redirect_to_trailing_slash`]`(false)` sends the index without the
///   redirect, [`html_as_default_extension`] tries `name.html` for a
///   missing `name`. A path ending in `/` that is no directory: `404`.
/// - `Content-Type` guessed from the extension by `mime_guess`
///   (`application/octet-stream` when unknown); `Accept-Ranges`, `ETag`,
///   `Last-Modified` and an exact `Content-Length`.
/// - Precompressed variants ([`precompressed_gzip`] and the others): the
///   `.gz`, `.br`, `.zst` or `.zz` file next to the one asked for, the one
///   the client prefers by `Accept-Encoding` (by `q`, then `zstd`, `br`,
///   `gzip`, `deflate`) among those that exist, with `Content-Encoding` and
///   the plain file's `Content-Type`; every answer from a file then
///   carries `Vary: accept-encoding`.
/// - `If-Match`, `If-Unmodified-Since` (`412`), `If-None-Match`,
///   `If-Modified-Since` (`304`), one `Range` (`206`, or `416` with
///   `Content-Range: bytes */len`).
/// - Other methods than `GET` and `HEAD`: `405` with `Allow: GET,HEAD`, or
///   the fallback with [`call_fallback_on_method_not_allowed`].
/// - No file (not found, permission denied, a file where a directory was
///   expected): the [`fallback`] (its status kept) or the
///   [`not_found_service`] (status `404`), else an empty `404`. Other I/O
///   errors: an empty `500`.
///
/// # Deliberate differences
///
/// Each is a case where tower-http's answer breaks RFC 9110, refuses what
/// it allows (several ranges), or breaks this crate's rule that hostile
/// input gets a `4xx`; the `ETag`'s format is this crate's own. The
/// repository's `tests/it/serve_dir/differential.rs` asks both the same
/// 1252 requests and checks that these are the only differences.
///
/// | Request | tower-http 0.7 | here | why |
/// |---|---|---|---|
/// | several ranges (`bytes=0-1,5-6`) | `416` | `206 multipart/byteranges` ([`max_ranges`], 16; more, or more bytes than the file: `200`) | RFC 9110 §14.6; tower-http #725 |
/// | several ranges of a precompressed variant | `416` | `200`, the whole variant | a multipart body is not the variant's coding |
/// | a `Range` that is not `bytes=`, or malformed (`bytes=abc`, `bytes=500-100`) | `416` | `200`, the whole file | RFC 9110 §14.2: a server MUST ignore a range unit it does not understand, and may ignore a `Range` |
/// | `Range` on a `HEAD` | `206` with the range's headers | `200` with the whole file's | RFC 9110 §14.2: range handling is defined for `GET` only |
/// | `If-Range` that no longer matches | `206` (ignored) | `200`, the whole file | RFC 9110 §13.1.5: else a resumed download mixes two versions |
/// | `bytes=0-` or `bytes=0-0` of an empty file | `206`, `Content-Range: bytes 0-0/0` | `416`, `Content-Range: bytes */0` | the file has no byte 0 (RFC 9110 §14.1.1) |
/// | `bytes=-5` of an empty file | `416` | `200`, the empty file | RFC 9110 §14.1.1: a suffix range is satisfiable; no byte to put in a `206` |
/// | `304 Not Modified` | no `Vary` | `Vary: accept-encoding` (with precompressed variants) | RFC 9110 §15.4.5: a `304` carries the `Vary` a `200` would |
/// | `ETag` | `"<mtime>-<size>"` | `"<size>-<mtime>"` | this crate's format (`serve::respond`'s); opaque to clients either way |
/// | `HEAD` of a path with a NUL byte (`%00`) | `500` | `404` (or the fallback) | hostile input gets a `4xx` |
/// | a path longer than 4096 bytes, or a name longer than 255 | `500` (`ENAMETOOLONG`) | `404` (or the fallback) | hostile input gets a `4xx` |
/// | a FIFO, socket or device at the path | a `GET` waits for a writer forever | `404` (or the fallback) | never blocks on a file |
///
/// # Migrating from tower-http
///
/// The `use` line, and only where a type is named:
/// `ServeFileSystemResponseBody` is [`ServeBody`](crate::serve::ServeBody)
/// (its error [`mmap_body::Error`](crate::Error), not `io::Error`),
/// `ServeFileSystemResponseFuture` is [`ResponseFuture`], and
/// `tower_http::set_status::SetStatus` is [`SetStatus`]. Not provided:
/// tower-http's `Backend` (`with_backend`: files from elsewhere than the
/// file system) and `try_call`.
///
/// # Beyond tower-http
///
/// - **Bodies** are [`FileBody`](crate::FileBody)s: zero-copy slices of a
///   mapping of the file under a read lease where the kernel gives one
///   (Linux, files this process owns), `pread` in 1 MiB reads elsewhere.
///   A file rewritten while it is sent never yields a mixed body: the
///   body ends with an error (the client sees the response cut short)
///   rather than send bytes of two versions.
/// - **Open files are kept** ([`open_file_cache`], 256 by default) as
///   nginx's `open_file_cache` keeps them: a request for a file already
///   open costs one `stat` of its path (to see a change: inode, size,
///   modification and change times) and no `open`, `fstat` or `mmap`.
/// - **Off the workers**: files are opened, checked and mapped on tokio's
///   blocking pool, once per file while it is kept, where tower-http makes
///   four or more round trips to it per request (a `stat`, an `open`, an
///   `fstat`, then one per 64 KiB read).
///
/// # Hazards
///
/// - **The `stat` on the worker.** A request whose file is kept open is
///   answered on the runtime's worker, at the cost of one `stat` of each
///   path it looks at (the directory check, each precompressed variant
///   tried): microseconds on a local file system, as nginx does on its
///   event loop. On a network file system, where a `stat` may wait on the
///   server, [`check_on_worker`]`(false)` moves every request to the
///   blocking pool.
/// - **Descriptors.** Each kept file holds a descriptor (and its mapping,
///   which costs address space, not memory): count
///   [`open_file_cache`] against `ulimit -n`.
/// - **Writers wait for the lease.** A program that opens a kept file for
///   writing waits until this process let go of its lease: milliseconds
///   (see [`FileBody`](crate::FileBody)'s hazards for a stopped process).
///   The next request sees the change and opens the file again.
/// - **HTTP/2 on `axum::serve`'s defaults** (no `TCP_NODELAY`): an answer
///   of about 64 KiB waits for the client's delayed ACK (40 ms) after its
///   last `DATA` frame, as any hyper HTTP/2 answer of that size does
///   (axum's from memory too; the repository's bench, `--serve-dir`,
///   shows it). Set `TCP_NODELAY` on accepted sockets
///   (`ListenerExt::tap_io`). Over HTTP/1.1, bodies up to 64 KiB go out
///   in one write and wait for nothing.
/// - **The redirect under a prefix.** axum's `nest_service` takes its
///   prefix off the path the service sees, so a directory's redirect
///   points to `/dir/`, not `/assets/dir/`, as tower-http's does: give
///   the prefix to [`redirect_path_prefix`].
/// - **Files this process does not own** get no lease: they are read
///   with `pread` on the blocking pool, one read per MiB (still never a
///   mixed body: a change is seen by the reads' checks).
///
/// [`encoded_slash_as_separator`]: ServeDir::encoded_slash_as_separator
/// [`follow_symlinks_out_of_root`]: ServeDir::follow_symlinks_out_of_root
/// [`redirect_path_prefix`]: ServeDir::redirect_path_prefix
/// [`append_index_html_on_directories`]: ServeDir::append_index_html_on_directories
/// [`redirect_to_trailing_slash`]: ServeDir::redirect_to_trailing_slash
/// [`html_as_default_extension`]: ServeDir::html_as_default_extension
/// [`precompressed_gzip`]: ServeDir::precompressed_gzip
/// [`call_fallback_on_method_not_allowed`]: ServeDir::call_fallback_on_method_not_allowed
/// [`fallback`]: ServeDir::fallback
/// [`not_found_service`]: ServeDir::not_found_service
/// [`max_ranges`]: ServeDir::max_ranges
/// [`open_file_cache`]: ServeDir::open_file_cache
/// [`check_on_worker`]: ServeDir::check_on_worker
#[derive(Debug, Clone)]
pub struct ServeDir<F = DefaultServeDirFallback> {
    config: Arc<Config>,
    cache: Arc<OpenFiles>,
    fallback: Option<F>,
    call_fallback_on_method_not_allowed: bool,
}

/// What a [`ServeDir`] (or [`ServeFile`]) was built with; one for all its
/// clones.
#[derive(Debug, Clone)]
pub(super) struct Config {
    /// The directory, or the one file.
    root: PathBuf,
    kind: Kind,
    redirect_prefix: String,
    /// Frame size of the bodies; `None`: `FileBody`'s.
    chunk: Option<usize>,
    max_ranges: usize,
    variants: Variants,
    rules: Rules,
    follow_symlinks_out: bool,
    check_on_worker: bool,
    /// The root with every link resolved, for the rule against links out
    /// of it (`None` if it cannot be resolved: nothing is served then).
    real_root: OnceLock<Option<PathBuf>>,
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    Dir {
        append_index: bool,
        redirect_slash: bool,
        html_default: bool,
    },
    File {
        mime: HeaderValue,
    },
}

impl Config {
    fn new(root: PathBuf, kind: Kind) -> Config {
        Config {
            root,
            kind,
            redirect_prefix: String::new(),
            chunk: None,
            max_ranges: 16,
            variants: Variants::default(),
            rules: Rules {
                encoded_slash: true,
            },
            follow_symlinks_out: true,
            check_on_worker: true,
            real_root: OnceLock::new(),
        }
    }

    /// The file a request's URI path names, or `None` if refused.
    fn path_of(&self, request: &str) -> Option<PathBuf> {
        match self.kind {
            Kind::Dir { .. } => path::under_root(&self.root, request, self.rules),
            Kind::File { .. } => Some(self.root.clone()),
        }
    }

    /// Whether `path`, every link resolved, is inside the root (resolved
    /// too). Blocking: on the blocking pool.
    fn inside_root(&self, path: &Path) -> io::Result<bool> {
        let root = self.real_root.get_or_init(|| {
            let root = match self.kind {
                Kind::Dir { .. } => self.root.as_path(),
                Kind::File { .. } => self.root.parent().unwrap_or(Path::new(".")),
            };
            std::fs::canonicalize(root).ok()
        });
        let Some(root) = root else {
            return Ok(false);
        };
        Ok(std::fs::canonicalize(path)?.starts_with(root))
    }
}

impl ServeDir<DefaultServeDirFallback> {
    /// Serves the directory at `path` (relative to the working directory
    /// unless absolute), with `index.html` for directories, the redirect
    /// to a directory's `/`, and no precompressed variants.
    pub fn new(path: impl AsRef<Path>) -> ServeDir {
        let mut root = PathBuf::from(".");
        root.push(path.as_ref());
        ServeDir::with_config(Config::new(
            root,
            Kind::Dir {
                append_index: true,
                redirect_slash: true,
                html_default: false,
            },
        ))
    }

    fn with_config(config: Config) -> ServeDir {
        ServeDir {
            config: Arc::new(config),
            cache: Arc::new(OpenFiles::new(DEFAULT_OPEN_FILES)),
            fallback: None,
            call_fallback_on_method_not_allowed: false,
        }
    }
}
