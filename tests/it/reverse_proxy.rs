//! `proxy::ReverseProxy` mounted in axum in one line (issue #20, part 1):
//! `Router::new().nest_service("/api", ReverseProxy…)` on 127.0.0.1 in
//! front of real hyper upstreams, over hyper-util (the default client) and
//! over `ReqwestService` (an axum body through `ReplayLayer` into reqwest,
//! which needs `Sync`: `ReplayBody` gives it). A dropped attempt is
//! retried whole (SHA-256 at the upstream), the prefix is mapped, an
//! upgrade is refused, and a dead upstream is a 502.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mmap_body::proxy::{Forwarding, ReverseProxy, Upstream};
use mmap_body::retry::RetryPolicy;
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::sha256;
use mmap_body_devkit::server::{client, serve, serve_axum};

const MIB: usize = 1024 * 1024;

fn fast() -> RetryPolicy {
    RetryPolicy::default().backoff(Duration::from_millis(5), Duration::from_millis(20))
}

fn random(len: usize) -> Bytes {
    let mut bytes = vec![0u8; len];
    mmap_body_devkit::files::pattern(7, &mut bytes);
    Bytes::from(bytes)
}

/// PUTs `body` to `url` with hyper-util over HTTP/1.1; status and answer.
async fn put(url: String, body: Bytes) -> (StatusCode, String) {
    let req = Request::put(url).body(Full::new(body)).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), client(false).request(req))
        .await
        .expect("in time")
        .expect("an answer");
    let status = res.status();
    let text = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&text).into_owned())
}

async fn a_dropped_upload_is_retried_whole(reqwest: bool) {
    let upstream = Faulty::start([Fault::DropAfter(2 * MIB as u64)]).await;
    let target: Upstream = format!("http://{}/v1", upstream.addr).parse().unwrap();
    let builder = ReverseProxy::builder(target).unwrap().retry(fast());
    // One line each.
    let app = if reqwest {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        axum::Router::new().nest_service(
            "/api",
            builder.build_with(mmap_body::reqwest::ReqwestService::new(client)),
        )
    } else {
        axum::Router::new().nest_service("/api", builder.build())
    };
    let proxy = serve_axum(app).await;
    let body = random(8 * MIB);
    let (status, text) = put(format!("http://{proxy}/api/store/a.bin"), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].sha256.as_deref(), Some(sha256(&body).as_str()));
    assert_eq!(seen[1].content_length.as_deref(), Some("8388608"));
}

#[tokio::test]
async fn one_line_over_hyper_util_retries_a_dropped_upload_whole() {
    a_dropped_upload_is_retried_whole(false).await;
}

#[tokio::test]
async fn one_line_over_reqwest_retries_a_dropped_upload_whole() {
    a_dropped_upload_is_retried_whole(true).await;
}

#[tokio::test]
async fn the_prefix_is_mapped_upgrades_refused_dead_upstreams_502() {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let log = paths.clone();
    let upstream = serve(move |req: Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((
                req.uri().to_string(),
                req.headers()
                    .get("via")
                    .map(|v| v.to_str().unwrap().to_owned()),
            ));
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("up"))))
        }
    })
    .await;
    let target: Upstream = format!("http://{upstream}/v1").parse().unwrap();
    let proxy = ReverseProxy::builder(target)
        .unwrap()
        .forwarding(Forwarding::new().via("edge"))
        .build();
    let app = axum::Router::new().nest_service("/api", proxy);
    let addr = serve_axum(app).await;
    let http = client::<Full<Bytes>>(false);

    let req = Request::get(format!("http://{addr}/api/files/x?q=1"))
        .body(Full::default())
        .unwrap();
    let res = http.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["via"], "1.1 edge");
    assert_eq!(
        paths.lock().unwrap().last().cloned(),
        Some(("/v1/files/x?q=1".to_owned(), Some("1.1 edge".to_owned())))
    );

    let upgrade = Request::get(format!("http://{addr}/api/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(Full::default())
        .unwrap();
    let res = http.request(upgrade).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(paths.lock().unwrap().len(), 1, "the upgrade never left");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = ReverseProxy::builder(format!("http://{closed}"))
        .unwrap()
        .retry(fast())
        .build();
    let addr = serve_axum(axum::Router::new().fallback_service(dead)).await;
    let req = Request::get(format!("http://{addr}/x"))
        .body(Full::default())
        .unwrap();
    let res = http.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
}
