//! From the path a request names to what answers it: a file (perhaps a
//! precompressed variant of it), a redirect to the directory's `/`, or
//! nothing. The steps, and the system calls they make, are tower-http
//! `ServeDir`'s: a `stat` of the path (is it a directory?), then the
//! variants the client accepts, most preferred first, then the file. Files
//! come out of the [`OpenFiles`] cache while their path still shows them.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use http::header::{HeaderMap, HeaderValue};
use http::Uri;

use super::cache::OpenFiles;
use super::encoding::Encoding;
use super::{Config, Kind};
use crate::FileBody;

/// What answers a request.
#[derive(Debug)]
pub(super) enum Found {
    /// The file (or its variant in `encoding`), with the plain file's
    /// media type.
    File {
        body: FileBody,
        encoding: Option<Encoding>,
        mime: HeaderValue,
    },
    /// `307` to the directory's path with a `/`.
    Redirect(HeaderValue),
    /// No file: `404`, or the fallback.
    Nothing,
    /// The redirect's URI could not be built (a bad
    /// `redirect_path_prefix`): `500`, as tower-http answers.
    BadRedirect,
}

/// What the request's path leads to, or `None` where a file would have to
/// be opened and `may_open` is `false` (the caller asks again where it may
/// block).
pub(super) fn find(
    config: &Config,
    cache: &OpenFiles,
    mut path: PathBuf,
    uri: &Uri,
    headers: &HeaderMap,
    may_open: bool,
) -> Option<io::Result<Found>> {
    // The plain file's metadata, when the directory check already has it.
    let mut plain = None;
    let mime = match &config.kind {
        Kind::Dir {
            append_index,
            redirect_slash,
            html_default,
        } => {
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => Some(meta),
                Err(e) if absent(&e) => None,
                Err(e) => return Some(Err(e)),
            };
            let is_dir = meta.as_ref().map(Metadata::is_dir);
            let uri_path = uri.path();
            if uri_path.ends_with('/') && uri_path != "/" && is_dir != Some(true) {
                return Some(Ok(Found::Nothing));
            }
            if *html_default && is_dir.is_none() && path.extension().is_none() {
                path.set_extension("html");
            } else if is_dir == Some(true) {
                if !append_index {
                    return Some(Ok(Found::Nothing));
                }
                if uri_path.ends_with('/') || !redirect_slash {
                    path.push("index.html");
                } else {
                    return Some(Ok(redirect(uri, &config.redirect_prefix)));
                }
            } else {
                plain = meta;
            }
            media_type(&path)
        }
        Kind::File { mime } => mime.clone(),
    };
    for encoding in config.variants.preferred(headers) {
        match open(config, cache, &encoding.variant_of(&path), None, may_open)? {
            Ok(body) => {
                return Some(Ok(Found::File {
                    body,
                    encoding: Some(encoding),
                    mime,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Some(Err(e)),
        }
    }
    Some(
        open(config, cache, &path, plain, may_open)?.map(|body| Found::File {
            body,
            encoding: None,
            mime,
        }),
    )
}

/// The file at `path` (`meta`: its `stat`, if taken already), from the
/// cache while it still is the file kept, else opened if `may_open`.
fn open(
    config: &Config,
    cache: &OpenFiles,
    path: &Path,
    meta: Option<Metadata>,
    may_open: bool,
) -> Option<io::Result<FileBody>> {
    let meta = match meta {
        Some(meta) => meta,
        None => match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => return Some(Err(e)),
        },
    };
    if let Some(body) = cache.get(path, &meta) {
        return Some(Ok(body));
    }
    if !may_open {
        return None;
    }
    Some(open_new(config, cache, path))
}

fn open_new(config: &Config, cache: &OpenFiles, path: &Path) -> io::Result<FileBody> {
    let (body, meta) = FileBody::open_with_metadata(path)?;
    if !config.follow_symlinks_out && !config.inside_root(path)? {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "`{}` leads out of the served directory through a symbolic link",
                path.display()
            ),
        ));
    }
    cache.put(path, &meta, &body);
    Ok(body)
}

/// An error that means "no file there" to the directory check, as
/// tower-http reads it: not found, or a name the system refuses.
fn absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
    )
}

/// The file's media type, from its extension, as tower-http guesses it
/// (`mime_guess`), `application/octet-stream` when unknown.
pub(super) fn media_type(path: &Path) -> HeaderValue {
    mime_guess::from_path(path)
        .first_raw()
        .map(HeaderValue::from_static)
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"))
}

/// tower-http's directory redirect: the request's URI (scheme and
/// authority kept, as HTTP/2 requests carry them) with `prefix` before its
/// path and a `/` after it, the query kept.
fn redirect(uri: &Uri, prefix: &str) -> Found {
    let parts = uri.clone().into_parts();
    let mut builder = Uri::builder();
    if let Some(scheme) = parts.scheme {
        builder = builder.scheme(scheme);
    }
    if let Some(authority) = parts.authority {
        builder = builder.authority(authority);
    }
    let path_and_query = match &parts.path_and_query {
        Some(pq) => match pq.query() {
            Some(query) => format!("{prefix}{}/?{query}", pq.path()),
            None => format!("{prefix}{}/", pq.path()),
        },
        None => format!("{prefix}/"),
    };
    match builder.path_and_query(path_and_query).build() {
        Ok(uri) => match HeaderValue::try_from(uri.to_string()) {
            Ok(location) => Found::Redirect(location),
            Err(_) => Found::BadRedirect,
        },
        Err(_) => Found::BadRedirect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_as_tower_http_does() {
        let cases: &[(&str, &str, &str)] = &[
            ("/dir", "", "/dir/"),
            ("/dir?a=1&b", "", "/dir/?a=1&b"),
            ("/dir", "/static", "/static/dir/"),
            ("http://h:1/dir?q", "", "http://h:1/dir/?q"),
        ];
        for (uri, prefix, want) in cases {
            match redirect(&uri.parse().unwrap(), prefix) {
                Found::Redirect(location) => assert_eq!(location, *want, "{uri}"),
                other => panic!("{uri}: {other:?}"),
            }
        }
        assert!(matches!(
            redirect(&"/dir".parse().unwrap(), "bad prefix"),
            Found::BadRedirect
        ));
    }

    #[test]
    fn media_types_from_mime_guess() {
        for (name, want) in [
            ("a.html", "text/html"),
            ("a.css", "text/css"),
            ("a.txt", "text/plain"),
            ("a.json", "application/json"),
            ("a.unknownext", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(media_type(Path::new(name)), want, "{name}");
        }
    }
}
