//! `serve::respond` behind a real axum server on 127.0.0.1, asked by real
//! reqwest and hyper-util clients: whole files, byte ranges, conditional
//! requests, HEAD, and the errors.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Empty};
use mmap_body::MmapBody;
use mmap_body_devkit::files::{sha256, test_file, TestFile};
use mmap_body_devkit::server::client;

const LEN: u64 = 3 * 1024 * 1024 + 123;

async fn download(
    State(path): State<Arc<PathBuf>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response<MmapBody>, StatusCode> {
    // SAFETY: the test owns the file and leaves it unchanged while mapped.
    let body = unsafe { MmapBody::open(&*path) }.map_err(|_| StatusCode::NOT_FOUND)?;
    let mut response = mmap_body::serve::respond(&method, &headers, body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// An axum app serving the file at `/file` (any method, so that the
/// handler's answer to the others is tested) on 127.0.0.1.
pub(crate) async fn file_server(path: PathBuf) -> String {
    let app = axum::Router::new()
        .route("/file", axum::routing::any(download))
        .with_state(Arc::new(path));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/file")
}

fn file_bytes(file: &TestFile) -> Vec<u8> {
    std::fs::read(&file.path).unwrap()
}

fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_range(url: &str, range: &str) -> reqwest::Response {
    reqwest_client()
        .get(url)
        .header(header::RANGE, range)
        .send()
        .await
        .unwrap()
}

fn header_str(response: &reqwest::Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn whole_file_with_length_and_validators() {
    let file = test_file(LEN);
    let url = file_server(file.path.clone()).await;
    let response = reqwest_client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_str(&response, header::CONTENT_LENGTH),
        LEN.to_string()
    );
    assert!(response.headers().get(header::TRANSFER_ENCODING).is_none());
    assert_eq!(header_str(&response, header::ACCEPT_RANGES), "bytes");
    assert!(header_str(&response, header::ETAG).starts_with('"'));
    let modified = header_str(&response, header::LAST_MODIFIED);
    assert!(httpdate::parse_http_date(modified).is_ok(), "{modified}");
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256(&body), file.sha256);
}

#[tokio::test]
async fn byte_ranges_are_zero_copy_slices() {
    let file = test_file(LEN);
    let bytes = file_bytes(&file);
    let url = file_server(file.path.clone()).await;
    let cases: [(String, u64, u64); 5] = [
        ("bytes=0-0".into(), 0, 0),
        ("bytes=1048570-2097160".into(), 1048570, 2097160),
        (format!("bytes={}-", LEN - 7), LEN - 7, LEN - 1),
        ("bytes=-1000".into(), LEN - 1000, LEN - 1),
        // Past the end: cut to the end.
        (format!("bytes=5-{}", LEN * 2), 5, LEN - 1),
    ];
    for (range, first, last) in cases {
        let response = get_range(&url, &range).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header_str(&response, header::CONTENT_RANGE),
            format!("bytes {first}-{last}/{LEN}"),
            "{range}"
        );
        let expected = &bytes[first as usize..=last as usize];
        assert_eq!(
            header_str(&response, header::CONTENT_LENGTH),
            expected.len().to_string()
        );
        let body = response.bytes().await.unwrap();
        assert!(body[..] == expected[..], "{range}: wrong bytes");
    }
}

#[tokio::test]
async fn unsatisfiable_and_ignored_ranges() {
    let file = test_file(LEN);
    let url = file_server(file.path.clone()).await;

    let response = get_range(&url, &format!("bytes={LEN}-")).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header_str(&response, header::CONTENT_RANGE),
        format!("bytes */{LEN}")
    );
    assert!(response.bytes().await.unwrap().is_empty());

    // Several ranges, another unit, nonsense: the whole file, 200.
    for range in ["bytes=0-1,5-6", "items=0-5", "bytes=9-2", "bytes=x-"] {
        let response = get_range(&url, range).await;
        assert_eq!(response.status(), StatusCode::OK, "{range}");
        assert!(response.headers().get(header::CONTENT_RANGE).is_none());
        let body = response.bytes().await.unwrap();
        assert_eq!(sha256(&body), file.sha256, "{range}");
    }
}

#[tokio::test]
async fn conditional_requests() {
    let file = test_file(LEN);
    // An hour old: `Last-Modified` is then a strong validator (RFC 9110
    // §8.8.2.2), which a date in `If-Range` needs.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&file.path)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let url = file_server(file.path.clone()).await;
    let first = reqwest_client().get(&url).send().await.unwrap();
    let etag = header_str(&first, header::ETAG).to_owned();
    let modified = header_str(&first, header::LAST_MODIFIED).to_owned();
    drop(first);
    let client = reqwest_client();
    let send = |headers: Vec<(header::HeaderName, String)>| {
        let mut request = client.get(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };

    // The client's copy is current: 304, no body.
    for condition in [
        (header::IF_NONE_MATCH, etag.clone()),
        (header::IF_NONE_MATCH, format!("\"other\", W/{etag}")),
        (header::IF_NONE_MATCH, "*".to_owned()),
        (header::IF_MODIFIED_SINCE, modified.clone()),
    ] {
        let response = send(vec![condition.clone()]).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{condition:?}");
        assert_eq!(header_str(&response, header::ETAG), etag);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    // A stale copy: the whole file.
    let response = send(vec![(header::IF_NONE_MATCH, "\"stale\"".into())])
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let old = httpdate::fmt_http_date(std::time::UNIX_EPOCH);
    let response = send(vec![(header::IF_MODIFIED_SINCE, old)]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // If-Range: the range only while the validator still matches.
    let range = (header::RANGE, "bytes=0-9".to_owned());
    for (validator, status) in [
        (etag.clone(), StatusCode::PARTIAL_CONTENT),
        (modified.clone(), StatusCode::PARTIAL_CONTENT),
        ("\"stale\"".to_owned(), StatusCode::OK),
        (format!("W/{etag}"), StatusCode::OK),
        (
            httpdate::fmt_http_date(std::time::UNIX_EPOCH),
            StatusCode::OK,
        ),
    ] {
        let if_range = (header::IF_RANGE, validator.clone());
        let response = send(vec![range.clone(), if_range]).await.unwrap();
        assert_eq!(response.status(), status, "If-Range: {validator}");
        let want = if status == StatusCode::OK { LEN } else { 10 };
        assert_eq!(response.bytes().await.unwrap().len() as u64, want);
    }
}

/// HEAD gets GET's headers and no body; over HTTP/2 too; other methods 405.
#[tokio::test]
async fn head_and_other_methods_over_http1_and_http2() {
    let file = test_file(LEN);
    let url = file_server(file.path.clone()).await;
    for http2 in [false, true] {
        let client = client::<Empty<Bytes>>(http2);
        let head = http::Request::head(&url).body(Empty::new()).unwrap();
        let response = client.request(head).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let length = response.headers().get(header::CONTENT_LENGTH).unwrap();
        assert_eq!(length.to_str().unwrap(), LEN.to_string(), "http2={http2}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty());

        let get = http::Request::get(&url)
            .header(header::RANGE, "bytes=100-199")
            .body(Empty::new())
            .unwrap();
        let response = client.request(get).await.unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 100, "http2={http2}");

        let post = http::Request::post(&url).body(Empty::new()).unwrap();
        let response = client.request(post).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
    }
}

/// RFC 9110 §13.1.1 and §13.1.4: a client that names a version the file no
/// longer is gets `412`, before any `304` or range.
#[tokio::test]
async fn preconditions_fail_with_412() {
    let file = test_file(LEN);
    let url = file_server(file.path.clone()).await;
    let client = reqwest_client();
    let first = client.get(&url).send().await.unwrap();
    let etag = header_str(&first, header::ETAG).to_owned();
    drop(first);
    let old = httpdate::fmt_http_date(std::time::UNIX_EPOCH);
    for (name, value, status) in [
        (header::IF_MATCH, etag.clone(), StatusCode::OK),
        (header::IF_MATCH, "*".to_owned(), StatusCode::OK),
        (
            header::IF_MATCH,
            "\"stale\"".to_owned(),
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            header::IF_MATCH,
            format!("W/{etag}"),
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            header::IF_UNMODIFIED_SINCE,
            old,
            StatusCode::PRECONDITION_FAILED,
        ),
    ] {
        let response = client
            .get(&url)
            .header(name.clone(), value.clone())
            .header(header::RANGE, "bytes=0-9")
            .send()
            .await
            .unwrap();
        let want = if status == StatusCode::OK {
            StatusCode::PARTIAL_CONTENT
        } else {
            status
        };
        assert_eq!(response.status(), want, "{name}: {value}");
        let body = response.bytes().await.unwrap();
        if want == StatusCode::PRECONDITION_FAILED {
            assert!(body.is_empty());
        }
    }
}

/// Lists sent on several field lines are one list (RFC 9110 §5.3), and a
/// tag with a blank inside its quotes (not an entity tag) matches nothing
/// and harms nothing, over HTTP/1.1 and HTTP/2.
#[tokio::test]
async fn tag_lists_on_several_lines_and_malformed_tags() {
    let file = test_file(LEN);
    let url = file_server(file.path.clone()).await;
    for http2 in [false, true] {
        let client = client::<Empty<Bytes>>(http2);
        let whole = client
            .request(http::Request::get(&url).body(Empty::new()).unwrap())
            .await
            .unwrap();
        let etag = whole.headers()[header::ETAG].clone();
        drop(whole);
        let cases: [(&[(header::HeaderName, header::HeaderValue)], StatusCode); 4] = [
            (
                &[
                    (
                        header::IF_MATCH,
                        header::HeaderValue::from_static("\"stale\""),
                    ),
                    (header::IF_MATCH, etag.clone()),
                ],
                StatusCode::PARTIAL_CONTENT,
            ),
            (
                &[
                    (
                        header::IF_NONE_MATCH,
                        header::HeaderValue::from_static("\"x\""),
                    ),
                    (header::IF_NONE_MATCH, etag.clone()),
                ],
                StatusCode::NOT_MODIFIED,
            ),
            (
                &[(
                    header::IF_MATCH,
                    header::HeaderValue::from_static("\"a b\""),
                )],
                StatusCode::PRECONDITION_FAILED,
            ),
            (
                &[(
                    header::IF_NONE_MATCH,
                    header::HeaderValue::from_static("W/\"a\tb\""),
                )],
                StatusCode::PARTIAL_CONTENT,
            ),
        ];
        for (lines, want) in cases {
            let mut request = http::Request::get(&url).header(header::RANGE, "bytes=0-9");
            for (name, value) in lines {
                request = request.header(name, value);
            }
            let response = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                client.request(request.body(Empty::new()).unwrap()),
            )
            .await
            .expect("in time")
            .unwrap_or_else(|err| panic!("http2={http2} {lines:?}: {err}"));
            assert_eq!(response.status(), want, "http2={http2} {lines:?}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let len = if want == StatusCode::PARTIAL_CONTENT {
                10
            } else {
                0
            };
            assert_eq!(body.len(), len, "http2={http2} {lines:?}");
        }
    }
}

/// A file modified before 1970 (an HTTP date cannot say so) is served
/// whole, without `Last-Modified`; the server does not panic.
#[tokio::test]
async fn file_modified_before_1970_is_served() {
    let file = test_file(LEN);
    let before_epoch = std::time::UNIX_EPOCH - std::time::Duration::from_secs(86_400 * 365 * 5);
    std::fs::File::options()
        .write(true)
        .open(&file.path)
        .unwrap()
        .set_modified(before_epoch)
        .unwrap();
    let url = file_server(file.path.clone()).await;
    let epoch = httpdate::fmt_http_date(std::time::UNIX_EPOCH);
    for condition in [
        None,
        Some(header::IF_MODIFIED_SINCE),
        Some(header::IF_UNMODIFIED_SINCE),
    ] {
        let mut request = reqwest_client().get(&url);
        if let Some(name) = &condition {
            request = request.header(name, &epoch);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{condition:?}");
        assert!(response.headers().get(header::LAST_MODIFIED).is_none());
        assert!(header_str(&response, header::ETAG).starts_with('"'));
        let body = response.bytes().await.unwrap();
        assert_eq!(sha256(&body), file.sha256);
    }
}

mod untrusted_headers {
    //! `respond` against arbitrary header values: never a panic, and every
    //! answer is one the RFC allows for what was asked.
    use super::*;
    use proptest::prelude::*;

    const SIZE: u64 = 10_000;

    fn file() -> &'static (tempfile::TempDir, MmapBody) {
        static FILE: std::sync::OnceLock<(tempfile::TempDir, MmapBody)> =
            std::sync::OnceLock::new();
        FILE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            std::fs::write(&path, vec![7u8; SIZE as usize]).unwrap();
            // SAFETY: the temp file is private to this test and never changed.
            let body = unsafe { MmapBody::open(&path) }.unwrap();
            (dir, body)
        })
    }

    /// Values a client might send, valid or not, for any of the headers.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,40}",
            "bytes=[0-9]{0,6}-[0-9]{0,6}",
            "bytes=-[0-9]{0,6}",
            "bytes=[0-9]{1,25}-",
            "(W/)?\"[a-z0-9.+-]{0,12}\"( ?, ?(W/)?\"[a-z0-9]{0,4}\")?",
            // Not entity tags (RFC 9110 §8.8.3 allows no space or tab
            // inside the quotes), but header values all the same.
            "(W/)?\"[ \t!#-~]{0,12}\"( ?, ?(W/)?\"[ \ta-z]{0,4}\")?",
            Just("*".to_owned()),
            (0u64..4_000_000_000).prop_map(|s| httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)
            )),
        ]
    }

    const NAMES: [header::HeaderName; 7] = [
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::CONTENT_LENGTH,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn answers_are_consistent(
            head in any::<bool>(),
            values in proptest::collection::vec(proptest::option::of(value()), 7),
        ) {
            let (_, body) = file();
            let mut headers = HeaderMap::new();
            for (name, value) in NAMES.iter().zip(&values) {
                if let Some(value) = value.as_ref().and_then(|v| header::HeaderValue::from_str(v).ok()) {
                    headers.insert(name.clone(), value);
                }
            }
            let method = if head { Method::HEAD } else { Method::GET };
            let response = mmap_body::serve::respond(&method, &headers, body.clone());
            let status = response.status();
            let sent = response.body().len();
            let range = response.headers().get(header::CONTENT_RANGE).map(|v| v.to_str().unwrap().to_owned());
            match status {
                StatusCode::OK => {
                    prop_assert!(range.is_none());
                    prop_assert_eq!(sent, if head { 0 } else { SIZE });
                }
                StatusCode::PARTIAL_CONTENT => {
                    prop_assert!(!head && headers.contains_key(header::RANGE));
                    let range = range.unwrap();
                    let spec = range.strip_prefix("bytes ").unwrap();
                    let (span, total) = spec.split_once('/').unwrap();
                    prop_assert_eq!(total, SIZE.to_string());
                    let (first, last) = span.split_once('-').unwrap();
                    let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
                    prop_assert!(first <= last && last < SIZE);
                    prop_assert_eq!(sent, last - first + 1);
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    prop_assert_eq!(range, Some(format!("bytes */{SIZE}")));
                    prop_assert_eq!(sent, 0);
                }
                StatusCode::NOT_MODIFIED => {
                    prop_assert!(headers.contains_key(header::IF_NONE_MATCH)
                        || headers.contains_key(header::IF_MODIFIED_SINCE));
                    prop_assert_eq!(sent, 0);
                }
                StatusCode::PRECONDITION_FAILED => {
                    prop_assert!(headers.contains_key(header::IF_MATCH)
                        || headers.contains_key(header::IF_UNMODIFIED_SINCE));
                    prop_assert_eq!(sent, 0);
                }
                other => prop_assert!(false, "unexpected status {other}"),
            }
            // `*` and our own tag always pass If-Match.
            let etag = mmap_body::serve::respond(&Method::GET, &HeaderMap::new(), body.clone())
                .headers()[header::ETAG].clone();
            if let Some(value) = headers.get(header::IF_MATCH) {
                let ours = value == "*" || value.to_str().is_ok_and(|v| {
                    v.split(',').any(|t| t.trim() == etag.to_str().unwrap())
                });
                prop_assert_eq!(status == StatusCode::PRECONDITION_FAILED, !ours);
            }
        }
    }
}

/// `FileBody` answers as `MmapBody` does, on either path: mapped under a
/// lease, and read with `pread` while another handle has the file open for
/// writing (no lease then). No `unsafe` in the handler.
#[tokio::test]
async fn a_file_body_is_served_the_same_on_both_paths() {
    use mmap_body::serve::{Serve, ServeBody};
    use mmap_body::FileBody;

    async fn handler(
        State(path): State<Arc<PathBuf>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response<ServeBody>, StatusCode> {
        let body = FileBody::open(&*path).map_err(|_| StatusCode::NOT_FOUND)?;
        let mapped = if body.is_mapped() { "mapped" } else { "pread" };
        let mut response = Serve::new().respond(&method, &headers, body);
        response
            .headers_mut()
            .insert("x-path", header::HeaderValue::from_static(mapped));
        Ok(response)
    }

    let file = test_file(LEN);
    let bytes = file_bytes(&file);
    let app = axum::Router::new()
        .route("/file", axum::routing::get(handler))
        .with_state(Arc::new(file.path.clone()));
    let addr = mmap_body_devkit::server::serve_axum(app).await;
    let url = format!("http://{addr}/file");
    for path in ["mapped", "pread"] {
        // A handle open for writing makes the kernel refuse the lease.
        let _writer = (path == "pread").then(|| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file.path)
                .unwrap()
        });
        let whole = reqwest_client().get(&url).send().await.unwrap();
        assert_eq!(whole.status(), StatusCode::OK);
        if cfg!(target_os = "linux") {
            assert_eq!(header_str(&whole, "x-path".parse().unwrap()), path);
        }
        assert_eq!(header_str(&whole, header::CONTENT_LENGTH), LEN.to_string());
        assert_eq!(sha256(&whole.bytes().await.unwrap()), file.sha256);

        let range = get_range(&url, "bytes=1000-1048575").await;
        assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
        assert!(range.bytes().await.unwrap()[..] == bytes[1000..1_048_576]);

        let two = get_range(&url, "bytes=0-9,2000000-2000009").await;
        assert_eq!(two.status(), StatusCode::PARTIAL_CONTENT);
        let text = two.bytes().await.unwrap();
        let find = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
        assert!(
            find(&bytes[..10]) && find(&bytes[2_000_000..2_000_010]),
            "{path}"
        );
    }
}
