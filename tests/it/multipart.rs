//! `serve::Serve` answering several ranges with `206 multipart/byteranges`
//! (issue #20, part 3): behind a real axum server on 127.0.0.1, parsed by a
//! multipart parser (multer, axum's), asked by reqwest (HTTP/1.1), hyper-util
//! (HTTP/2) and the real curl (`curl -r 0-9,20-29`, HTTP/1.1 and
//! `--http2-prior-knowledge`); and a proptest over range sets against the
//! answer's rules, without a network.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http_body_util::{BodyExt, Empty};
use mmap_body::serve::{Serve, ServeBody};
use mmap_body::MmapBody;
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::server::{client, serve_axum};

const LEN: u64 = 1024 * 1024 + 77;
const MEDIA: &str = "application/x-test";

async fn download(
    State(path): State<Arc<PathBuf>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response<ServeBody>, StatusCode> {
    // SAFETY: the test owns the file and leaves it unchanged while mapped.
    let body = unsafe { MmapBody::open(&*path) }.map_err(|_| StatusCode::NOT_FOUND)?;
    let serve = Serve::new().content_type(HeaderValue::from_static(MEDIA));
    Ok(serve.respond(&method, &headers, body))
}

/// `http://<addr>/file`, served by [`download`] over HTTP/1.1 and h2c.
async fn server(path: PathBuf) -> String {
    let app = axum::Router::new()
        .route("/file", axum::routing::get(download))
        .with_state(Arc::new(path));
    format!("http://{}/file", serve_axum(app).await)
}

/// The parts of a multipart answer, parsed by multer: each part's
/// `Content-Type`, `Content-Range` and bytes.
async fn parts(content_type: &str, body: Bytes) -> Vec<(String, String, Bytes)> {
    // multer's own `parse_boundary` takes only multipart/form-data.
    let (media, params) = content_type.split_once(';').expect("parameters");
    assert_eq!(media.trim(), "multipart/byteranges");
    let boundary = params
        .trim()
        .strip_prefix("boundary=")
        .expect("a boundary")
        .trim_matches('"')
        .to_owned();
    let stream = futures_util::stream::iter([Ok::<_, Infallible>(body)]);
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = multipart.next_field().await.expect("a well-formed part") {
        let get = |name: header::HeaderName| {
            field
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (media, range) = (get(header::CONTENT_TYPE), get(header::CONTENT_RANGE));
        out.push((media, range, field.bytes().await.expect("the part's bytes")));
    }
    out
}

/// Checks a multipart answer against the file: every part is the slice its
/// `Content-Range` names, in order; returns the ranges.
fn check_parts(parts: &[(String, String, Bytes)], file: &[u8]) -> Vec<(u64, u64)> {
    parts
        .iter()
        .map(|(media, range, bytes)| {
            assert_eq!(media, MEDIA);
            let spec = range.strip_prefix("bytes ").expect(range);
            let (span, total) = spec.split_once('/').expect(range);
            assert_eq!(total, file.len().to_string());
            let (first, last) = span.split_once('-').expect(range);
            let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
            assert!(*bytes == file[first as usize..=last as usize], "{range}");
            (first, last)
        })
        .collect()
}

#[tokio::test]
async fn several_ranges_are_one_multipart_answer_over_http1_and_http2() {
    let file = test_file(LEN);
    let bytes = std::fs::read(&file.path).unwrap();
    let url = server(file.path.clone()).await;
    let range = "bytes=0-99,1000-1099,-10,500000-";
    for http2 in [false, true] {
        let client = client::<Empty<Bytes>>(http2);
        let req = http::Request::get(&url)
            .header(header::RANGE, range)
            .body(Empty::new())
            .unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "http2={http2}");
        let content_type = res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("multipart/byteranges; boundary="));
        let length: u64 = res.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len() as u64, length, "an exact Content-Length");
        let got = check_parts(&parts(&content_type, body).await, &bytes);
        // `-10` lies inside `500000-`: coalesced into it.
        assert_eq!(got, [(0, 99), (1000, 1099), (500_000, LEN - 1)]);

        // HEAD, as for one range: Range is for GET only (RFC 9110 §14.2),
        // so the headers of a whole GET, and no body.
        let head = http::Request::head(&url)
            .header(header::RANGE, range)
            .body(Empty::new())
            .unwrap();
        let res = client.request(head).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_LENGTH],
            LEN.to_string().as_str()
        );
        assert_eq!(res.headers()[header::CONTENT_TYPE], MEDIA);
        assert!(res
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());
    }
}

#[tokio::test]
async fn limits_coalescing_and_if_range() {
    let file = test_file(LEN);
    let url = server(file.path.clone()).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |range: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let res = http.get(&url).header("range", range).send().await.unwrap();
            let status = res.status();
            let ctype = res
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, ctype, res.bytes().await.unwrap().len() as u64)
        }
    };
    // Adjacent ranges: one 206, not a multipart of two.
    let (status, ctype, len) = get("bytes=0-9,10-19".into()).await;
    assert_eq!(
        (status, ctype.as_deref(), len),
        (StatusCode::PARTIAL_CONTENT, Some(MEDIA), 20)
    );
    // More than 16 ranges: the whole file.
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 100, i * 100))
        .collect();
    let (status, _, len) = get(format!("bytes={}", many.join(","))).await;
    assert_eq!((status, len), (StatusCode::OK, LEN));
    // The same bytes asked twice over: the whole file (amplification).
    let (status, _, len) = get(format!("bytes=0-{0},0-{0}", LEN - 1)).await;
    assert_eq!((status, len), (StatusCode::OK, LEN));
    // None satisfiable: 416.
    let (status, _, _) = get(format!("bytes={LEN}-,{}-", LEN + 5)).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    // A stale If-Range: the whole file.
    let res = http
        .get(&url)
        .header("range", "bytes=0-9,20-29")
        .header("if-range", "\"not-this-version\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// The real curl, `-r 0-9,20-29`, over HTTP/1.1 and h2c: its stored answer
/// parses into the two parts.
#[tokio::test]
async fn curl_gets_two_parts() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is not installed; .ci/run installs it (apt-get install curl)");
    }
    let file = test_file(LEN);
    let bytes = std::fs::read(&file.path).unwrap();
    let url = server(file.path.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    for protocol in ["--http1.1", "--http2-prior-knowledge"] {
        let (out, head) = (dir.path().join("body"), dir.path().join("head"));
        let curl = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", protocol, "-r", "0-9,20-29", "-o"])
            .arg(&out)
            .arg("-D")
            .arg(&head)
            .arg(&url)
            .status()
            .await
            .unwrap();
        assert!(curl.success(), "{protocol}: curl failed");
        let head = std::fs::read_to_string(&head).unwrap();
        let status_line = head.lines().next().unwrap();
        assert!(status_line.contains(" 206"), "{protocol}: {status_line}");
        let content_type = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            })
            .expect("a Content-Type");
        let body = Bytes::from(std::fs::read(&out).unwrap());
        let got = check_parts(&parts(&content_type, body).await, &bytes);
        assert_eq!(got, [(0, 9), (20, 29)], "{protocol}");
    }
}

mod range_sets {
    //! `Serve::respond` for any set of ranges: never a panic, and the answer
    //! is one of 200 (the whole file), 206 (one slice), 206 multipart (the
    //! satisfiable ranges coalesced, in the order asked) or 416 (none satisfiable),
    //! whichever the ranges call for.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum R {
        From(u64),
        Last(u64),
        Span(u64, u64),
    }

    fn range() -> impl Strategy<Value = R> {
        prop_oneof![
            (0u64..1200).prop_map(R::From),
            (0u64..1200).prop_map(R::Last),
            (0u64..1200, 0u64..300).prop_map(|(a, n)| R::Span(a, a + n)),
        ]
    }

    /// What the ranges call for, worked out apart from the crate's code.
    fn expected(len: u64, ranges: &[R]) -> Option<Vec<(u64, u64)>> {
        let kept: Vec<(u64, u64)> = ranges
            .iter()
            .filter_map(|r| match *r {
                R::From(a) if a < len => Some((a, len - 1)),
                R::Last(n) if n > 0 && len > 0 => Some((len.saturating_sub(n), len - 1)),
                R::Span(a, b) if a < len => Some((a, b.min(len - 1))),
                _ => None,
            })
            .collect();
        let asked: u64 = kept.iter().map(|(a, b)| b - a + 1).sum();
        if kept.is_empty() || asked > len {
            return if kept.is_empty() { Some(vec![]) } else { None };
        }
        // In the order asked (RFC 9110 §15.3.7.2): any two that overlap or
        // touch become one, in the place of the earlier, until none do.
        let mut merged = kept;
        'again: loop {
            for i in 0..merged.len() {
                for j in i + 1..merged.len() {
                    let ((a, b), (c, d)) = (merged[i], merged[j]);
                    if c <= b + 1 && a <= d + 1 {
                        merged[i] = (a.min(c), b.max(d));
                        merged.remove(j);
                        continue 'again;
                    }
                }
            }
            break Some(merged);
        }
    }

    fn text(r: &R) -> String {
        match r {
            R::From(a) => format!("{a}-"),
            R::Last(n) => format!("-{n}"),
            R::Span(a, b) => format!("{a}-{b}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn every_answer_is_the_one_the_ranges_call_for(
            len in 1u64..1000,
            ranges in proptest::collection::vec(range(), 2..7),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let file: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&path, &file).unwrap();
            // SAFETY: the temp file is private to this case and never changed.
            let body = unsafe { MmapBody::open(&path) }.unwrap();
            let value = format!("bytes={}", ranges.iter().map(text).collect::<Vec<_>>().join(","));
            let mut headers = HeaderMap::new();
            headers.insert(header::RANGE, HeaderValue::from_str(&value).unwrap());
            let res = Serve::new()
                .content_type(HeaderValue::from_static(MEDIA))
                .respond(&Method::GET, &headers, body);
            let status = res.status();
            let hdrs = res.headers().clone();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let bytes = rt.block_on(res.into_body().collect()).unwrap().to_bytes();
            match expected(len, &ranges) {
                None => {
                    prop_assert_eq!(status, StatusCode::OK, "{}", value);
                    prop_assert!(bytes == file);
                }
                Some(want) if want.is_empty() => {
                    prop_assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{}", value);
                    prop_assert_eq!(hdrs[header::CONTENT_RANGE].to_str().unwrap(), format!("bytes */{len}"));
                }
                Some(want) if want.len() == 1 => {
                    let (a, b) = want[0];
                    prop_assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{}", value);
                    prop_assert_eq!(hdrs[header::CONTENT_RANGE].to_str().unwrap(), format!("bytes {a}-{b}/{len}"));
                    prop_assert!(bytes == file[a as usize..=b as usize]);
                }
                Some(want) => {
                    prop_assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{}", value);
                    let ctype = hdrs[header::CONTENT_TYPE].to_str().unwrap().to_owned();
                    let got = rt.block_on(parts(&ctype, bytes));
                    prop_assert_eq!(check_parts(&got, &file), want);
                }
            }
        }
    }
}
