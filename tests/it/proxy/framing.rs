//! Framing and status an upstream or client gets wrong (issue #29): a
//! `Content-Length` list of one value goes on as that value, both ways;
//! an upstream's unsolicited `101` is a `502`.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use super::raw::{label, lines_of, raw_answer, raw_upstream, status_of};
use super::{call_with, start_proxy, Options, Outcome, Recorder, Seen};

// ---------------------------------------------------------------- Content-Length

/// `Content-Length` lines of one value go upstream as one `5`; hyper's
/// HTTP/1.1 server itself refuses `5, 5` in one line (`400`, as RFC 9110
/// §8.6 allows), and differing values never reach the upstream. (Over
/// HTTP/2, the h2 crate resets a stream with two `content-length` fields.)
#[tokio::test]
async fn a_repeated_content_length_goes_upstream_as_one_value() {
    let upstream = Recorder::start().await;
    let proxy = start_proxy(&format!("http://{}", upstream.addr), Options::default()).await;
    let lengths = |seen: &Seen| -> Vec<String> {
        seen.headers
            .get_all("content-length")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    // (HTTP/1.1 framing lines, status)
    let cases = [
        ("content-length: 5\r\ncontent-length: 5\r\n", 200),
        ("content-length: 5, 5\r\n", 400),
        ("content-length: 5\r\ncontent-length: 6\r\n", 400),
    ];
    for (framing, want) in cases {
        let before = upstream.seen().len();
        let request =
            format!("PUT /cl HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n{framing}\r\nhello");
        let answer = raw_answer(proxy, &request).await;
        assert_eq!(status_of(&answer), want, "{framing:?}: {answer}");
        let log = upstream.seen();
        if want == 200 {
            let seen = log.last().unwrap();
            assert_eq!(lengths(seen), ["5"], "{framing:?}");
            assert!(
                matches!(seen.outcome, Outcome::Complete { .. }) && seen.read == 5,
                "{framing:?}: {seen:#?}"
            );
        } else {
            assert_eq!(log.len(), before, "{framing:?} reached the upstream");
        }
    }
}

/// An upstream's `Content-Length: 2, 2` reaches the client as `2`.
#[tokio::test]
async fn a_repeated_content_length_comes_back_as_one_value() {
    let (upstream, _) =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\nconnection: close\r\n\r\nok")
            .await;
    let proxy = start_proxy(&format!("http://{upstream}"), Options::default()).await;
    let answer = raw_answer(
        proxy,
        "GET /cl HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(lines_of(&head, "content-length"), ["2"], "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
}

// ---------------------------------------------------------------- 101

/// The proxy forwards no upgrade, so an upstream's `101` to a request that
/// asked for none is a broken upstream: `502`, over either client protocol.
async fn unsolicited_101_is_502(http2: bool) {
    let label = label(http2);
    let (upstream, _) = raw_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    )
    .await;
    let proxy = start_proxy(&format!("http://{upstream}"), Options::default()).await;
    let req = Request::get(format!("http://{proxy}/ws"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (res, text, _) = call_with(http2, req).await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "{label}: {text:?}");
    assert!(
        String::from_utf8_lossy(&text).contains("101"),
        "{label}: {text:?}"
    );
}

#[tokio::test]
async fn an_unsolicited_101_is_502_h1() {
    unsolicited_101_is_502(false).await;
}

#[tokio::test]
async fn an_unsolicited_101_is_502_h2() {
    unsolicited_101_is_502(true).await;
}
