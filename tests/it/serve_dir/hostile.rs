//! What the differential test cannot ask tower-http (a FIFO would hang
//! it), the stricter options, a service called outside a runtime, and
//! small answers on `axum::serve`'s defaults (no `TCP_NODELAY`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use mmap_body::serve::ServeDir;
use mmap_body_devkit::server::{client, serve_axum};
use tower::Service;

use super::{ask, tree};

#[tokio::test]
async fn a_fifo_at_the_path_is_not_waited_on() {
    let tree = tree();
    let fifo = tree.root.join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        println!("skipped: no mkfifo");
        return;
    }
    let app = axum::Router::new().nest_service("/o", ServeDir::new(&tree.root));
    let addr = serve_axum(app).await;
    let client = client(false);
    for method in [Method::GET, Method::HEAD] {
        let started = Instant::now();
        let uri = format!("http://{addr}/o/pipe");
        let answer = ask(&client, &method, &uri, &HeaderMap::new(), "/o").await;
        assert_eq!(answer.status, 404, "{method}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[tokio::test]
async fn the_stricter_rules() {
    let tree = tree();
    let app = axum::Router::new()
        .nest_service("/default", ServeDir::new(&tree.root))
        .nest_service(
            "/strict",
            ServeDir::new(&tree.root)
                .follow_symlinks_out_of_root(false)
                .encoded_slash_as_separator(false),
        );
    let addr = serve_axum(app).await;
    let client = client(false);
    let cases: &[(&str, u16, u16)] = &[
        ("/link-out", 200, 404),
        ("/link-in", 200, 200),
        ("/a.txt", 200, 200),
        ("/dir%2Fsub.txt", 200, 404),
        ("/dir/sub.txt", 200, 200),
        ("/../outside/secret.txt", 404, 404),
    ];
    for (path, default, strict) in cases {
        for (prefix, want) in [("/default", default), ("/strict", strict)] {
            let uri = format!("http://{addr}{prefix}{path}");
            let answer = ask(&client, &Method::GET, &uri, &HeaderMap::new(), prefix).await;
            assert_eq!(answer.status, *want, "{prefix}{path}");
            if answer.status == 404 {
                assert!(answer.body.is_empty());
            }
        }
    }
}

#[test]
fn without_a_runtime_it_answers_at_once() {
    let tree = tree();
    let mut service = ServeDir::new(&tree.root);
    for (path, want) in [
        ("/a.txt", 200),
        ("/dir", 307),
        ("/missing", 404),
        ("/..", 404),
    ] {
        let request = Request::get(path).body(Empty::<Bytes>::new()).unwrap();
        let mut future = pin!(service.call(request));
        let Poll::Ready(Ok(response)) = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        else {
            panic!("{path}: not answered at once");
        };
        assert_eq!(response.status(), want, "{path}");
        if want == 200 {
            assert_eq!(response.body().size_hint().exact(), Some(3000));
        }
    }
}

/// The median time of 9 sequential requests on one connection, after one
/// to warm up.
async fn median(client: &super::HttpClient, uri: &str, len: usize) -> Duration {
    let mut times = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let request = Request::get(uri).body(Empty::new()).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .unwrap()
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), len);
        if i > 0 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    times[times.len() / 2]
}

/// `axum::serve` as a user starts it (no `TCP_NODELAY`), and a client
/// that leaves it off too: a small file takes no longer than the same
/// bytes from memory (a held-back last byte would wait 40 ms for the
/// peer's delayed ACK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_wait_for_no_delayed_ack_on_axum_defaults() {
    let tree = tree();
    let sizes = [1usize, 16 << 10, 64 << 10];
    for len in sizes {
        std::fs::write(tree.root.join(format!("f{len}")), vec![7u8; len]).unwrap();
    }
    let memory = |len: usize| {
        axum::routing::get(
            move || async move { Response::new(Full::new(Bytes::from(vec![7u8; len]))) },
        )
    };
    let mut app = axum::Router::new().nest_service("/o", ServeDir::new(&tree.root));
    for len in sizes {
        app = app.route(&format!("/m/f{len}"), memory(len));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut slow = Vec::new();
    for http2 in [false, true] {
        let client = client(http2);
        for len in sizes {
            let ours = median(&client, &format!("http://{addr}/o/f{len}"), len).await;
            let full = median(&client, &format!("http://{addr}/m/f{len}"), len).await;
            println!("{len} bytes (http2 {http2}): ServeDir {ours:?}, memory {full:?}");
            if ours > full + Duration::from_millis(25) {
                slow.push(format!(
                    "{len} bytes, http2 {http2}: {ours:?} against {full:?}"
                ));
            }
        }
    }
    assert!(slow.is_empty(), "delayed: {slow:?}");
}
