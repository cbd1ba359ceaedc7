//! `serve::ServeDir` and `serve::ServeFile` against tower-http 0.7's, and
//! what they do beyond it (issue #32).
//!
//! `differential`: one directory tree served by both under pairs of
//! prefixes of one axum router on 127.0.0.1, the same requests to both,
//! statuses, headers and bodies compared; each difference is one the
//! module docs of `ServeDir` list, checked to be exactly that.
//! `changes`: files rewritten while served and the open-file cache.
//! `hostile`: what tower-http cannot be asked (a FIFO would hang it), the
//! stricter options, no runtime, and small answers on `axum::serve`'s
//! defaults.

#[cfg(target_os = "linux")]
mod changes;
mod differential;
mod hostile;
mod matrix;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};

/// The tree both servers serve, and a directory outside it.
pub(crate) struct Tree {
    _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
}

/// The bytes of `name` in the tree: made from the name, so that every file
/// differs.
pub(crate) fn content(name: &str, len: usize) -> Vec<u8> {
    name.bytes().cycle().take(len).collect()
}

pub(crate) fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    for d in [&root, &outside, &root.join("dir"), &root.join("noindex")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let files: &[(&str, usize)] = &[
        ("index.html", 120),
        ("a.txt", 3000),
        ("a.txt.gz", 700),
        ("a.txt.br", 500),
        ("style.css", 900),
        ("data.json", 64),
        ("script.js", 2000),
        ("image.png", 4096),
        ("noext", 33),
        ("empty.txt", 0),
        (".hidden", 10),
        ("big.bin", 300_000),
        ("only.txt.gz", 77),
        ("a b.txt", 12),
        ("about.html", 40),
        ("dir/index.html", 55),
        ("dir/sub.txt", 1000),
        ("noindex/x.txt", 5),
    ];
    for (name, len) in files {
        std::fs::write(root.join(name), content(name, *len)).unwrap();
    }
    std::fs::write(outside.join("secret.txt"), b"outside the root").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("link-out")).unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link-in")).unwrap();
    }
    Tree { _dir: dir, root }
}

/// An answer as compared: the status, the headers that matter, whether
/// there was an `ETag`, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) etag: bool,
    pub(crate) body: Bytes,
}

/// The headers compared (`ETag` only by presence: the formats differ).
pub(crate) const COMPARED: [&str; 9] = [
    "content-type",
    "content-encoding",
    "vary",
    "location",
    "content-length",
    "content-range",
    "accept-ranges",
    "allow",
    "last-modified",
];

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The same answer but for `name`'s value.
    pub(crate) fn without(&self, name: &str) -> Answer {
        let mut answer = self.clone();
        answer.headers.retain(|(n, _)| *n != name);
        answer
    }
}

pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Sends `method` `uri` with `headers`; the answer, with `prefix` in its
/// headers and body written `{prefix}`.
pub(crate) async fn ask(
    client: &HttpClient,
    method: &Method,
    uri: &str,
    headers: &HeaderMap,
    prefix: &str,
) -> Answer {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(Empty::new())
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    *request.headers_mut() = headers.clone();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {uri}: no answer in 20 s"))
        .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
    let status = response.status().as_u16();
    let etag = response.headers().contains_key(http::header::ETAG);
    let headers = COMPARED
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(*name)?;
            let value = String::from_utf8_lossy(value.as_bytes()).replace(prefix, "{prefix}");
            Some((*name, value))
        })
        .collect();
    let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect())
        .await
        .unwrap_or_else(|_| panic!("{method} {uri}: body not read in 20 s"))
        .unwrap_or_else(|e| panic!("{method} {uri}: body: {e}"))
        .to_bytes();
    let body = match std::str::from_utf8(&body) {
        Ok(text) if !prefix.is_empty() && text.contains(prefix) => {
            Bytes::from(text.replace(prefix, "{prefix}"))
        }
        _ => body,
    };
    Answer {
        status,
        headers,
        etag,
        body,
    }
}
