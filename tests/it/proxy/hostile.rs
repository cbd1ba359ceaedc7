//! Issue #29, "no silent traps": the request headers the proxy refuses,
//! rewrites or drops, each over the real stack (raw sockets or hyper
//! clients over HTTP/1.1 and HTTP/2 to the axum proxy of the parent
//! module, a hyper or raw upstream behind it).
//!
//! - `Host`: missing, repeated or invalid over HTTP/1.1, or disagreeing
//!   with `:authority` over HTTP/2 → `400`, never forwarded;
//! - a malformed `Forwarded` is replaced, not appended into;
//! - client-sent `Forwarded` / `X-Forwarded-*` kept by default, stripped
//!   with `Forwarding::strip_client_forwarding`;
//! - HTTP/2 `cookie` fields reach the upstream as one `Cookie`;
//! - `TE: trailers` goes upstream with `Connection: TE` (over HTTP/1.1).
//!
//! Framing and status: `framing.rs`.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use mmap_body::proxy::Forwarding;
use mmap_body_devkit::server::serve_axum;

use super::raw::{label, lines_of, raw_answer, raw_upstream, status_of};
use super::{call_with, get, start_proxy, Options, Recorder};

// ---------------------------------------------------------------- Host

#[tokio::test]
async fn http1_requests_without_one_valid_host_are_400() {
    let upstream = Recorder::start().await;
    let proxy = start_proxy(&format!("http://{}", upstream.addr), Options::default()).await;
    // (request head, status); a 400 never reaches the upstream.
    let cases: &[(&str, u16)] = &[
        ("GET /a HTTP/1.1\r\n", 400),
        (
            "GET /a HTTP/1.1\r\nhost: a.example\r\nhost: a.example\r\n",
            400,
        ),
        (
            "GET /a HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\n",
            400,
        ),
        ("GET /a HTTP/1.1\r\nhost: \r\n", 400),
        ("GET /a HTTP/1.1\r\nhost: user@a.example\r\n", 400),
        ("GET /a HTTP/1.1\r\nhost: a.example:80:80\r\n", 400),
        ("GET /a HTTP/1.1\r\nhost: a.example, b.example\r\n", 400),
        ("GET /a HTTP/1.1\r\nhost: [::1\r\n", 400),
        ("GET /a HTTP/1.1\r\nhost: a.example:http\r\n", 400),
        // HTTP/1.0 needs no Host, but one it sends must be valid.
        ("GET /a HTTP/1.0\r\n", 200),
        ("GET /a HTTP/1.0\r\nhost: a b\r\n", 400),
        ("GET /a HTTP/1.1\r\nhost: a.example:8080\r\n", 200),
        ("GET /a HTTP/1.1\r\nhost: [::1]:8080\r\n", 200),
        ("GET /a HTTP/1.1\r\nhost: 127.0.0.1\r\n", 200),
        // Absolute form: the target's authority is the host (RFC 9112
        // §3.2.2), with a Host line or without.
        (
            "GET http://a.example/a HTTP/1.1\r\nhost: other.example\r\n",
            200,
        ),
        ("GET http://a.example/a HTTP/1.1\r\n", 200),
    ];
    for (head, want) in cases {
        let before = upstream.seen().len();
        let request = format!("{head}connection: close\r\n\r\n");
        let answer = raw_answer(proxy, &request).await;
        let first = head.lines().collect::<Vec<_>>().join(" | ");
        assert_eq!(status_of(&answer), *want, "{first}: {answer}");
        let log = upstream.seen();
        if *want == 400 {
            assert_eq!(log.len(), before, "{first} reached the upstream: {log:#?}");
            assert!(
                answer.contains("Host"),
                "{first}: the reason names Host: {answer}"
            );
        } else {
            assert_eq!(log.len(), before + 1, "{first}");
        }
    }
    // The absolute form's authority is the host the upstream is told of.
    let log = upstream.seen();
    assert_eq!(
        get(&log.last().unwrap().headers, "forwarded"),
        Some("for=127.0.0.1;host=\"a.example\"")
    );
}

/// Over HTTP/2 the host is `:authority`; a `Host` field must agree with it
/// (RFC 9113 §8.3.1) and come once.
#[tokio::test]
async fn http2_host_disagreeing_with_authority_is_400() {
    let upstream = Recorder::start().await;
    let proxy = start_proxy(&format!("http://{}", upstream.addr), Options::default()).await;
    let authority = proxy.to_string();
    let localhost = format!("LocalHost:{}", proxy.port());
    // (Host fields, status)
    let cases: Vec<(Vec<&str>, u16)> = vec![
        (vec![], 200),
        (vec![authority.as_str()], 200),
        (vec!["evil.example"], 400),
        (vec![authority.as_str(), authority.as_str()], 400),
        (vec!["user@127.0.0.1"], 400),
    ];
    for (hosts, want) in cases {
        let before = upstream.seen().len();
        let mut req = Request::get(format!("http://{proxy}/h2"));
        for host in &hosts {
            req = req.header("host", *host);
        }
        let (res, text, _) = call_with(true, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(res.status(), want, "{hosts:?}: {text:?}");
        let reached = upstream.seen().len() - before;
        assert_eq!(reached, usize::from(want == 200), "{hosts:?}");
    }
    // A name compared as a name: case does not matter.
    let local = format!("http://localhost:{}/h2", proxy.port());
    let req = Request::get(local).header("host", localhost.as_str());
    let (res, text, _) = call_with(true, req.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(res.status(), 200, "{text:?}");
}

// ---------------------------------------------------------------- Forwarded

/// A client's `Forwarded` with an unbalanced quote would swallow the
/// proxy's own element into its quoted string: it is replaced. A valid one
/// is appended to.
async fn malformed_forwarded_is_replaced(http2: bool) {
    let label = label(http2);
    let upstream = Recorder::start().await;
    let proxy = start_proxy(&format!("http://{}", upstream.addr), Options::default()).await;
    let ours = format!("for=127.0.0.1;host=\"{proxy}\"");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["for=6.6.6.6;x=\""], ours.clone()),
        (vec!["for=\"6.6.6.6"], ours.clone()),
        (vec!["for=6.6.6.6;by"], ours.clone()),
        (vec!["for=1.2.3.4, ", "x=\""], ours.clone()),
        (
            vec!["for=1.2.3.4", "for=\"[::1]\""],
            format!("for=1.2.3.4, for=\"[::1]\", {ours}"),
        ),
        (
            vec!["for=6.6.6.6;proto=http"],
            format!("for=6.6.6.6;proto=http, {ours}"),
        ),
    ];
    for (sent, want) in cases {
        let mut req = Request::get(format!("http://{proxy}/fwd"));
        if !http2 {
            req = req.header("host", proxy.to_string());
        }
        for value in &sent {
            req = req.header("forwarded", *value);
        }
        let (res, text, _) = call_with(http2, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(res.status(), 200, "{label} {sent:?}: {text:?}");
        let seen = upstream.seen().pop().unwrap();
        let got: Vec<&str> = seen
            .headers
            .get_all("forwarded")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(got, [want.as_str()], "{label} {sent:?}");
    }
}

#[tokio::test]
async fn malformed_forwarded_is_replaced_h1() {
    malformed_forwarded_is_replaced(false).await;
}

#[tokio::test]
async fn malformed_forwarded_is_replaced_h2() {
    malformed_forwarded_is_replaced(true).await;
}

/// What a client says of where it came from reaches the upstream unless
/// the proxy strips it (`Forwarding::strip_client_forwarding`): kept by
/// default, as the `Forwarding` docs warn.
async fn client_forwarding_headers(http2: bool) {
    let label = label(http2);
    let upstream = Recorder::start().await;
    let sent = [
        ("forwarded", "for=6.6.6.6"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-real-ip", "6.6.6.6"),
    ];
    let ours = |proxy: SocketAddr| format!("for=127.0.0.1;host=\"{proxy}\"");
    // (forwarding, Forwarded, X-Forwarded-For, the others kept)
    let cases = [
        (
            Forwarding::new(),
            Some("for=6.6.6.6".to_owned()),
            Some("6.6.6.6"),
            true,
        ),
        (
            Forwarding::new().strip_client_forwarding(true),
            None,
            None,
            false,
        ),
        (
            Forwarding::new()
                .strip_client_forwarding(true)
                .forwarded_for(true),
            Some(String::new()),
            Some("127.0.0.1"),
            false,
        ),
    ];
    for (forwarding, forwarded, xff, kept) in cases {
        let what = format!("{label} {forwarding:?}");
        let proxy = start_proxy(
            &format!("http://{}", upstream.addr),
            Options {
                forwarding,
                ..Options::default()
            },
        )
        .await;
        let mut req = Request::get(format!("http://{proxy}/who"));
        for (name, value) in sent {
            req = req.header(name, value);
        }
        let (res, text, _) = call_with(http2, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(res.status(), 200, "{what}: {text:?}");
        let seen = upstream.seen().pop().unwrap();
        let forwarded = forwarded.map(|f| if f.is_empty() { ours(proxy) } else { f });
        assert_eq!(
            get(&seen.headers, "forwarded"),
            forwarded.as_deref(),
            "{what}"
        );
        assert_eq!(get(&seen.headers, "x-forwarded-for"), xff, "{what}");
        for (name, value) in &sent[2..] {
            let want = kept.then_some(*value);
            assert_eq!(get(&seen.headers, name), want, "{what}: {name}");
        }
    }
}

#[tokio::test]
async fn client_forwarding_headers_are_kept_or_stripped_h1() {
    client_forwarding_headers(false).await;
}

#[tokio::test]
async fn client_forwarding_headers_are_kept_or_stripped_h2() {
    client_forwarding_headers(true).await;
}

// ---------------------------------------------------------------- Cookie

/// HTTP/2 lets a client split `cookie` into several fields (RFC 9113
/// §8.2.3); an HTTP/1.1 upstream must get one `Cookie` line, the crumbs
/// joined with `; `. Over an HTTP/2 upstream too, and from HTTP/1.1
/// clients that sent several lines.
async fn cookies_are_joined(client_h2: bool, upstream_h2: bool) {
    let label = format!("{} h2 upstream: {upstream_h2}", label(client_h2));
    let upstream = Recorder::start().await;
    let proxy = start_proxy(
        &format!("http://{}", upstream.addr),
        Options {
            http2: upstream_h2,
            ..Options::default()
        },
    )
    .await;
    let req = Request::get(format!("http://{proxy}/c"))
        .header("cookie", "a=1")
        .header("cookie", "b=2; c=3")
        .header("cookie", "d=4")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (res, text, _) = call_with(client_h2, req).await;
    assert_eq!(res.status(), 200, "{label}: {text:?}");
    let seen = upstream.seen().pop().unwrap();
    let got: Vec<&str> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(got, ["a=1; b=2; c=3; d=4"], "{label}");
}

#[tokio::test]
async fn cookie_fields_are_joined_h2_client_h1_upstream() {
    cookies_are_joined(true, false).await;
}

#[tokio::test]
async fn cookie_fields_are_joined_h2_client_h2_upstream() {
    cookies_are_joined(true, true).await;
}

#[tokio::test]
async fn cookie_fields_are_joined_h1_client_h1_upstream() {
    cookies_are_joined(false, false).await;
}

/// What a raw HTTP/1.1 upstream reads: one `cookie` line.
#[tokio::test]
async fn raw_upstream_gets_one_cookie_line() {
    let (upstream, heads) =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
    let proxy = start_proxy(&format!("http://{upstream}"), Options::default()).await;
    let req = Request::get(format!("http://{proxy}/c"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (res, text, _) = call_with(true, req).await;
    assert_eq!(res.status(), 200, "{text:?}");
    let head = heads.lock().unwrap().pop().unwrap();
    assert_eq!(lines_of(&head, "cookie"), ["a=1; b=2"], "{head}");
}

// ---------------------------------------------------------------- TE

/// `TE` is hop-by-hop (RFC 9110 §10.1.4): the `TE: trailers` the proxy
/// sends upstream is named in `Connection`, so the next hop drops it too.
#[tokio::test]
async fn te_trailers_goes_upstream_with_connection_te() {
    let (upstream, heads) =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
    let proxy = start_proxy(&format!("http://{upstream}"), Options::default()).await;
    for http2 in [false, true] {
        let req = Request::get(format!("http://{proxy}/te"))
            .header("te", "trailers")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (res, text, _) = call_with(http2, req).await;
        assert_eq!(res.status(), 200, "{}: {text:?}", label(http2));
        let head = heads.lock().unwrap().pop().unwrap();
        assert_eq!(lines_of(&head, "te"), ["trailers"], "{head}");
        assert_eq!(lines_of(&head, "connection"), ["te"], "{head}");
    }
}

/// Over HTTP/2 there is no `Connection`: hyper's client drops it and the
/// `TE` it names. `ReverseProxy` built with `http2(true)` leaves it out, so
/// an HTTP/2 upstream gets `te: trailers`; a handler of one's own that
/// forwards `upstream_request` as it is over HTTP/2 loses it, as its docs
/// say.
#[tokio::test]
async fn te_trailers_reaches_an_http2_upstream_through_reverse_proxy() {
    let upstream = Recorder::start().await;
    let target: mmap_body::proxy::Upstream = format!("http://{}", upstream.addr).parse().unwrap();
    let reverse = mmap_body::proxy::ReverseProxy::builder(target)
        .unwrap()
        .http2(true)
        .build();
    let reverse = serve_axum(axum::Router::new().fallback_service(reverse)).await;
    let handler = start_proxy(
        &format!("http://{}", upstream.addr),
        Options {
            http2: true,
            ..Options::default()
        },
    )
    .await;
    for (proxy, te) in [(reverse, Some("trailers")), (handler, None)] {
        let req = Request::put(format!("http://{proxy}/te"))
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"x")))
            .unwrap();
        let (res, text, trailers) = call_with(false, req).await;
        assert_eq!(res.status(), 200, "{text:?}");
        let seen = upstream.seen().pop().unwrap();
        assert_eq!(seen.version, http::Version::HTTP_2);
        assert_eq!(get(&seen.headers, "te"), te, "{:#?}", seen.headers);
        assert_eq!(get(&seen.headers, "connection"), None);
        let trailers = trailers.expect("HTTP/2 upstreams send trailers regardless");
        assert_eq!(get(&trailers, "x-upstream-sum"), Some("42"));
    }
}
