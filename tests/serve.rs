//! `serve::respond` behind a real axum server on 127.0.0.1, asked by real
//! reqwest and hyper-util clients: whole files, byte ranges, conditional
//! requests, HEAD, and the errors.
#![cfg(feature = "serve")]

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Empty};
use mmap_body::MmapBody;
use support::TestFile;

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
async fn file_server(path: PathBuf) -> String {
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
    let file = support::test_file(LEN);
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
    assert_eq!(support::sha256(&body), file.sha256);
}

#[tokio::test]
async fn byte_ranges_are_zero_copy_slices() {
    let file = support::test_file(LEN);
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
    let file = support::test_file(LEN);
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
        assert_eq!(support::sha256(&body), file.sha256, "{range}");
    }
}

#[tokio::test]
async fn conditional_requests() {
    let file = support::test_file(LEN);
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
    let file = support::test_file(LEN);
    let url = file_server(file.path.clone()).await;
    for http2 in [false, true] {
        let client = support::client::<Empty<Bytes>>(http2);
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
