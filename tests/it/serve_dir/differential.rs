//! tower-http 0.7's `ServeDir` / `ServeFile` and this crate's, mounted
//! side by side (`/t-<name>` and `/o-<name>`, the same options) in one
//! axum router on 127.0.0.1, asked the same requests over HTTP/1.1 (and a
//! few over HTTP/2). An answer must be the same (status, the `COMPARED`
//! headers, `ETag` present or not, body) unless the case names one of the
//! differences the module docs of `serve::ServeDir` list, and then it
//! must be exactly that difference.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};

use super::matrix::{get, main_matrix, other_matrix, Case};
use super::{ask, tree, Answer, HttpClient};
use mmap_body_devkit::server::{client, serve_axum};

/// A difference the docs list: tower-http's answer, then ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Diff {
    /// Several ranges: `416` there, `206 multipart/byteranges` here.
    SeveralRanges,
    /// Several ranges of a precompressed variant: `416` there, `200` with
    /// the whole variant here.
    SeveralRangesOfVariant,
    /// A `Range` of another unit, or malformed: `416` there, `200` here.
    IgnoredRange,
    /// `Range` on `HEAD`: `206` there, `200` here.
    HeadRange,
    /// An `If-Range` that no longer matches: `206` there, `200` here.
    StaleIfRange,
    /// `304` without `Vary` there, with it here (precompressed variants
    /// only; elsewhere the same).
    VaryOn304,
    /// Hostile input: `500` there, `404` (or the fallback's answer) here;
    /// where the path is not looked at (`ServeFile`), the same.
    Refused,
    /// A range of an empty file: `bytes=0-` and `bytes=0-0` are `206`
    /// with `Content-Range: bytes 0-0/0` (a byte the file does not have)
    /// there, `416` here; `bytes=-5` is `416` there, `200` (the empty
    /// file) here.
    EmptyFileRange,
}

impl Diff {
    fn holds(self, t: &Answer, o: &Answer, precompressed: bool) -> bool {
        let range = |a: &Answer| a.header("content-range").map(str::to_owned);
        let whole = |a: &Answer| {
            a.status == 200
                && range(a).is_none()
                && a.header("content-length") == Some(&a.body.len().to_string())
        };
        match self {
            Diff::SeveralRanges => {
                t.status == 416
                    && range(t).is_some_and(|r| r.starts_with("bytes */"))
                    && o.status == 206
                    && o.header("content-type")
                        .is_some_and(|c| c.starts_with("multipart/byteranges; boundary="))
            }
            Diff::SeveralRangesOfVariant if !precompressed => {
                Diff::SeveralRanges.holds(t, o, precompressed)
            }
            Diff::SeveralRangesOfVariant => {
                t.status == 416 && whole(o) && o.header("content-encoding").is_some()
            }
            Diff::IgnoredRange => t.status == 416 && whole(o),
            Diff::HeadRange => {
                t.status == 206
                    && range(t).is_some()
                    && o.status == 200
                    && range(o).is_none()
                    && o.body.is_empty()
            }
            Diff::StaleIfRange => t.status == 206 && whole(o),
            Diff::VaryOn304 if !precompressed => t == o,
            Diff::VaryOn304 => {
                t.status == 304
                    && o.status == 304
                    && t.header("vary").is_none()
                    && o.header("vary") == Some("accept-encoding")
                    && t.without("vary") == o.without("vary")
            }
            Diff::Refused if t.status != 500 => t == o,
            // 418: the `fb` pair's fallback.
            Diff::Refused => t.status == 500 && (o.status == 404 || o.status == 418),
            Diff::EmptyFileRange => {
                let first = t.status == 206
                    && range(t).as_deref() == Some("bytes 0-0/0")
                    && o.status == 416
                    && range(o).as_deref() == Some("bytes */0");
                let suffix = t.status == 416 && whole(o) && o.body.is_empty();
                first || suffix
            }
        }
    }
}

/// The two services of each pair, with the same options.
fn router(root: &Path) -> Router {
    use mmap_body::serve as ours;
    use tower_http::services as theirs;
    let index = root.join("index.html");
    let teapot = tower::service_fn(|req: Request<axum::body::Body>| async move {
        let body = format!("fallback {} {}", req.method(), req.uri());
        Ok::<_, Infallible>(Response::builder().status(418).body(body).unwrap())
    });
    Router::new()
        .nest_service(
            "/t-pre",
            theirs::ServeDir::new(root)
                .precompressed_gzip()
                .precompressed_br(),
        )
        .nest_service(
            "/o-pre",
            ours::ServeDir::new(root)
                .precompressed_gzip()
                .precompressed_br(),
        )
        .nest_service("/t-plain", theirs::ServeDir::new(root))
        .nest_service("/o-plain", ours::ServeDir::new(root))
        .nest_service(
            "/t-fb",
            theirs::ServeDir::new(root)
                .fallback(teapot)
                .call_fallback_on_method_not_allowed(true),
        )
        .nest_service(
            "/o-fb",
            ours::ServeDir::new(root)
                .fallback(teapot)
                .call_fallback_on_method_not_allowed(true),
        )
        .nest_service(
            "/t-nf",
            theirs::ServeDir::new(root).not_found_service(theirs::ServeFile::new(&index)),
        )
        .nest_service(
            "/o-nf",
            ours::ServeDir::new(root).not_found_service(ours::ServeFile::new(&index)),
        )
        .nest_service(
            "/t-noidx",
            theirs::ServeDir::new(root).append_index_html_on_directories(false),
        )
        .nest_service(
            "/o-noidx",
            ours::ServeDir::new(root).append_index_html_on_directories(false),
        )
        .nest_service(
            "/t-opts",
            theirs::ServeDir::new(root)
                .redirect_to_trailing_slash(false)
                .html_as_default_extension(true),
        )
        .nest_service(
            "/o-opts",
            ours::ServeDir::new(root)
                .redirect_to_trailing_slash(false)
                .html_as_default_extension(true),
        )
        .nest_service(
            "/t-prefix",
            theirs::ServeDir::new(root).redirect_path_prefix("/t-prefix"),
        )
        .nest_service(
            "/o-prefix",
            ours::ServeDir::new(root).redirect_path_prefix("/o-prefix"),
        )
        .nest_service(
            "/t-file",
            theirs::ServeFile::new(root.join("a.txt")).precompressed_gzip(),
        )
        .nest_service(
            "/o-file",
            ours::ServeFile::new(root.join("a.txt")).precompressed_gzip(),
        )
}

/// The validators of `path` as `server` answers a GET with `headers`'
/// `Accept-Encoding`.
async fn validators(client: &HttpClient, uri: &str, headers: &HeaderMap) -> (String, String) {
    let mut only = HeaderMap::new();
    if let Some(ae) = headers.get("accept-encoding") {
        only.insert("accept-encoding", ae.clone());
    }
    let mut request = Request::get(uri).body(Default::default()).unwrap();
    *request.headers_mut() = only;
    let response = client.request(request).await.unwrap();
    let get = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (get("etag"), get("last-modified"))
}

/// One case against one pair: its failure, if any, and its difference.
async fn run(
    client: &HttpClient,
    base: &str,
    pair: &str,
    precompressed: bool,
    case: &Case,
) -> (Option<String>, Option<Diff>) {
    let mut answers = Vec::new();
    for side in ["t", "o"] {
        let prefix = format!("/{side}-{pair}");
        let uri = format!("{base}{prefix}{}", case.path);
        let mut headers = HeaderMap::new();
        for (name, value) in &case.headers {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let needs = case.headers.iter().any(|(_, v)| v.contains('{'));
        if needs {
            let base_uri = format!("{base}{prefix}{}", case.path);
            let (etag, lm) = validators(client, &base_uri, &headers).await;
            let mut filled = HeaderMap::new();
            for (name, value) in &case.headers {
                let value = value.replace("{etag}", &etag).replace("{lm}", &lm);
                filled.append(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&value).unwrap(),
                );
            }
            headers = filled;
        }
        answers.push(ask(client, &case.method, &uri, &headers, &prefix).await);
    }
    let (t, o) = (&answers[0], &answers[1]);
    let what = format!("{pair}: {} {} {:?}", case.method, case.path, case.headers);
    match case.diff {
        None if t == o => (None, None),
        None => (
            Some(format!("{what}\n  tower-http: {t:?}\n  ours:       {o:?}")),
            None,
        ),
        Some(diff) if diff.holds(t, o, precompressed) => (None, Some(diff)),
        Some(diff) => (
            Some(format!(
                "{what}: not the documented {diff:?}\n  tower-http: {t:?}\n  ours:       {o:?}"
            )),
            None,
        ),
    }
}

#[tokio::test]
async fn the_same_answers_as_tower_http() {
    let tree = tree();
    // Dates a second or more in the past: `If-Range` with a date holds.
    let past = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for entry in walk(&tree.root) {
        let file = std::fs::File::options().write(true).open(&entry).unwrap();
        file.set_modified(past).unwrap();
    }
    let addr = serve_axum(router(&tree.root)).await;
    let base = format!("http://{addr}");
    let h1 = client(false);
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut asked = 0;
    let pairs: &[(&str, bool, Vec<Case>)] = &[
        ("pre", true, main_matrix()),
        ("plain", false, main_matrix()),
        ("fb", false, other_matrix()),
        ("nf", false, other_matrix()),
        ("noidx", false, other_matrix()),
        ("opts", false, other_matrix()),
        ("prefix", false, other_matrix()),
        ("file", true, other_matrix()),
    ];
    for (pair, precompressed, cases) in pairs {
        for case in cases {
            asked += 1;
            let (failure, diff) = run(&h1, &base, pair, *precompressed, case).await;
            failures.extend(failure);
            if let Some(diff) = diff {
                *seen.entry(format!("{diff:?}")).or_default() += 1;
            }
        }
    }
    // HTTP/2: the URI carries the scheme and authority, which the
    // directory redirect keeps.
    let h2 = client(true);
    for path in ["/dir", "/dir?x=1", "/a.txt", "/missing", "/../x", "/"] {
        for pair in ["pre", "fb", "prefix"] {
            let (failure, _) = run(&h2, &base, pair, true, &get(path)).await;
            failures.extend(failure);
        }
    }
    let mut report = format!("{asked} cases; documented differences seen: {seen:?}\n");
    for failure in &failures {
        let _ = writeln!(report, "{failure}");
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{report}",
        failures.len()
    );
    // Every documented difference was met at least once.
    for diff in [
        "SeveralRanges",
        "SeveralRangesOfVariant",
        "IgnoredRange",
        "HeadRange",
        "StaleIfRange",
        "VaryOn304",
        "Refused",
        "EmptyFileRange",
    ] {
        assert!(seen.contains_key(diff), "{diff} never seen: {seen:?}");
    }
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            files.extend(walk(&path));
        } else if meta.is_file() {
            files.push(path);
        }
    }
    files
}
