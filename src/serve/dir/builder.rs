//! [`ServeDir`]'s builder methods: tower-http's, then this crate's own
//! (`max_ranges`, the stricter path rules, the open-file cache).

use std::sync::Arc;

use http::StatusCode;

use super::cache::OpenFiles;
use super::{Config, Kind, ServeDir, SetStatus};

impl<F> ServeDir<F> {
    fn change(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(Arc::make_mut(&mut self.config));
        // Files kept under the old rules are not answers under the new.
        self.cache = Arc::new(OpenFiles::new(self.cache.max()));
        self
    }

    fn change_dir(self, change: impl FnOnce(&mut bool, &mut bool, &mut bool)) -> Self {
        self.change(|config| {
            if let Kind::Dir {
                append_index,
                redirect_slash,
                html_default,
            } = &mut config.kind
            {
                change(append_index, redirect_slash, html_default);
            }
        })
    }

    /// Whether a directory's path (with its `/`) answers with its
    /// `index.html`; `false` answers `404`. Default `true`.
    pub fn append_index_html_on_directories(self, append: bool) -> Self {
        self.change_dir(|append_index, _, _| *append_index = append)
    }

    /// Whether a directory's path without its `/` is redirected to it
    /// (`307`); `false` answers with the index at once. Default `true`.
    pub fn redirect_to_trailing_slash(self, redirect: bool) -> Self {
        self.change_dir(|_, redirect_slash, _| *redirect_slash = redirect)
    }

    /// Whether a missing path without an extension is tried with `.html`
    /// (`/about` answers with `about.html`). Default `false`.
    pub fn html_as_default_extension(self, append: bool) -> Self {
        self.change_dir(|_, _, html_default| *html_default = append)
    }

    /// What the directory redirect puts before the request's path: the
    /// prefix this service is mounted under, where the router strips it
    /// (axum's `nest_service` does). Default empty.
    pub fn redirect_path_prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.change(|config| config.redirect_prefix = prefix)
    }

    /// The size of each frame of a body, in bytes (values below 1 count
    /// as 1). Default: [`DEFAULT_CHUNK_SIZE`](crate::DEFAULT_CHUNK_SIZE),
    /// 1 MiB, where tower-http reads 64 KiB at a time.
    pub fn with_buf_chunk_size(self, chunk_size: usize) -> Self {
        self.change(|config| config.chunk = Some(chunk_size.max(1)))
    }

    /// Whether requests of several ranges get the whole file (`200`)
    /// instead of a `206 multipart/byteranges`. Default `false` (tower-http
    /// answers them `416` then).
    pub fn ignore_multi_range_requests(self, ignore: bool) -> Self {
        self.change(|config| config.max_ranges = if ignore { 1 } else { 16 })
    }

    /// The most ranges one request may ask for; more get the whole file.
    /// Default 16. Beyond tower-http.
    pub fn max_ranges(self, ranges: usize) -> Self {
        self.change(|config| config.max_ranges = ranges.max(1))
    }

    /// Looks for a `.gz` file next to the one asked for, sent to clients
    /// that accept `gzip` with `Content-Encoding: gzip` (the plain file
    /// when there is none).
    pub fn precompressed_gzip(self) -> Self {
        self.change(|config| config.variants.gzip = true)
    }

    /// Looks for a `.br` file next to the one asked for, sent to clients
    /// that accept `br`.
    pub fn precompressed_br(self) -> Self {
        self.change(|config| config.variants.br = true)
    }

    /// Looks for a `.zz` file next to the one asked for, sent to clients
    /// that accept `deflate`.
    pub fn precompressed_deflate(self) -> Self {
        self.change(|config| config.variants.deflate = true)
    }

    /// Looks for a `.zst` file next to the one asked for, sent to clients
    /// that accept `zstd`.
    pub fn precompressed_zstd(self) -> Self {
        self.change(|config| config.variants.zstd = true)
    }

    /// Whether a symbolic link may lead out of the root. Default `true`,
    /// as tower-http follows every link; `false` answers `404` for a file
    /// whose path, every link resolved, is not under the root's. Beyond
    /// tower-http.
    pub fn follow_symlinks_out_of_root(self, follow: bool) -> Self {
        self.change(|config| config.follow_symlinks_out = follow)
    }

    /// Whether `%2F` in a path separates components, as `/` does. Default
    /// `true`, as tower-http takes it; `false` answers `404` for a path
    /// with one. Beyond tower-http.
    pub fn encoded_slash_as_separator(self, separator: bool) -> Self {
        self.change(|config| config.rules.encoded_slash = separator)
    }

    /// The most files kept open across requests (`0`: none; each is
    /// opened, checked and mapped again for every request). Default 256.
    /// Beyond tower-http.
    pub fn open_file_cache(mut self, max_files: usize) -> Self {
        self.cache = Arc::new(OpenFiles::new(max_files));
        self
    }

    /// Whether a request whose file is kept open is answered on the
    /// runtime's worker, with one `stat` of each path it looks at (default
    /// `true`); `false` sends every request to the blocking pool, for a
    /// root on a file system where a `stat` may wait (NFS, FUSE). Beyond
    /// tower-http.
    pub fn check_on_worker(self, on_worker: bool) -> Self {
        self.change(|config| config.check_on_worker = on_worker)
    }

    /// Answers requests for which there is no file with `fallback`, whose
    /// status is kept: an `index.html` for a single-page app, a handler.
    pub fn fallback<F2>(self, fallback: F2) -> ServeDir<F2> {
        ServeDir {
            config: self.config,
            cache: self.cache,
            fallback: Some(fallback),
            call_fallback_on_method_not_allowed: self.call_fallback_on_method_not_allowed,
        }
    }

    /// Answers requests for which there is no file with `fallback`, with
    /// status `404 Not Found` whatever it answers.
    pub fn not_found_service<F2>(self, fallback: F2) -> ServeDir<SetStatus<F2>> {
        self.fallback(SetStatus::new(fallback, StatusCode::NOT_FOUND))
    }

    /// Whether methods other than `GET` and `HEAD` go to the fallback
    /// (when there is one) instead of a `405`. Default `false`.
    pub fn call_fallback_on_method_not_allowed(mut self, call_fallback: bool) -> Self {
        self.call_fallback_on_method_not_allowed = call_fallback;
        self
    }
}
