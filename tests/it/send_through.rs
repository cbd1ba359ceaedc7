//! `reqwest::RequestBuilderExt::send_through` (issue #35): requests built
//! with reqwest's own builder (`.query()`, `.bearer_auth()`, `.header()`,
//! `.timeout()`), sent through `UploadLayer` + `ReqwestService` to real
//! hyper servers on 127.0.0.1 over HTTP/1.1 and HTTP/2, answered as a
//! `reqwest::Response` (`.error_for_status()`, `.text()`, `.url()`), their
//! errors `?`-able into `anyhow`.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mmap_body::reqwest::{RequestBuilderExt, ReqwestService};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, Upload, UploadLayer};
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::{sha256, test_file};
use mmap_body_devkit::server::serve;
use tower::Layer;

const MIB: u64 = 1024 * 1024;
const LIMIT: Duration = Duration::from_secs(60);

fn reqwest_client(http2: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().no_proxy();
    if http2 {
        builder = builder.http2_prior_knowledge();
    }
    builder.build().unwrap()
}

fn stack(client: &reqwest::Client) -> Upload<ReqwestService> {
    let policy =
        RetryPolicy::default().backoff(Duration::from_millis(5), Duration::from_millis(20));
    UploadLayer::new()
        .retry(policy)
        .layer(ReqwestService::new(client.clone()))
}

/// Answers with what it got: method, path and query, `Authorization`,
/// `X-Tag`, `Content-Length`, and the body's length and SHA-256.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
    };
    let head = format!(
        "{} {} auth={} tag={} length={}",
        req.method(),
        req.uri().path_and_query().map_or("", |p| p.as_str()),
        header("authorization"),
        header("x-tag"),
        header("content-length"),
    );
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let text = format!("{head} read={} sha256={}", body.len(), sha256(&body));
    Ok(Response::new(Full::from(text)))
}

#[tokio::test]
async fn a_request_built_with_reqwest_s_builder_goes_through_the_stack() {
    let file = test_file(3 * MIB);
    let addr = serve(|req| async move { echo(req).await }).await;
    for http2 in [false, true] {
        let client = reqwest_client(http2);
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(&file.path) }.unwrap();
        let response = client
            .put(format!("http://{addr}/files/a"))
            .query(&[("name", "a b.bin"), ("v", "2")])
            .bearer_auth("t0k3n")
            .header("x-tag", "7")
            .timeout(LIMIT)
            .send_through(&stack(&client), body)
            .await
            .unwrap();
        let url = format!("http://{addr}/files/a?name=a+b.bin&v=2");
        assert_eq!(response.url().as_str(), url, "http2 {http2}");
        assert_eq!(
            response.version(),
            if http2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            }
        );
        let text = response.error_for_status().unwrap().text().await.unwrap();
        assert_eq!(
            text,
            format!(
                "PUT /files/a?name=a+b.bin&v=2 auth=Bearer t0k3n tag=7 length={} read={} sha256={}",
                3 * MIB,
                3 * MIB,
                file.sha256
            ),
            "http2 {http2}"
        );
    }
}

#[tokio::test]
async fn error_for_status_names_the_status_and_the_url() {
    let server = Faulty::start([Fault::EarlyStatus(404)]).await;
    let client = reqwest_client(false);
    let response = client
        .post(server.uri("/missing"))
        .query(&[("q", "1")])
        .send_through(&stack(&client), Full::new(Bytes::from_static(b"{}")))
        .await
        .unwrap();
    let err = response.error_for_status().unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::NOT_FOUND));
    assert_eq!(
        err.url().map(|u| u.as_str().to_owned()),
        Some(server.uri("/missing?q=1"))
    );
}

#[tokio::test]
async fn the_builder_s_timeout_ends_a_stalled_attempt() {
    for http2 in [false, true] {
        // The server reads 64 KiB, then neither reads nor answers.
        let server = Faulty::start([Fault::StallAfter(64 * 1024)]).await;
        let file = test_file(4 * MIB);
        let client = reqwest_client(http2);
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(&file.path) }.unwrap();
        let started = Instant::now();
        let sent = client
            .post(server.uri("/stall"))
            .timeout(Duration::from_millis(300))
            .send_through(&stack(&client), body);
        let err = tokio::time::timeout(LIMIT, sent)
            .await
            .expect("the builder's timeout fired")
            .expect_err("timed out");
        let took = started.elapsed();
        assert!(err.is_timeout(), "http2 {http2}: {err:?}");
        assert!(err.reqwest().is_some_and(reqwest::Error::is_timeout));
        assert!(took < Duration::from_secs(10), "{took:?}");
        // A POST without a key: the timed-out attempt is not sent again.
        assert_eq!(server.seen().len(), 1);
    }
}

#[tokio::test]
async fn errors_go_into_anyhow_with_a_question_mark() {
    async fn upload(url: &str) -> anyhow::Result<String> {
        let client = reqwest_client(false);
        let body = Full::new(Bytes::from_static(b"{}"));
        let response = client.post(url).send_through(&stack(&client), body).await?;
        Ok(response.error_for_status()?.text().await?)
    }
    // A closed port: the connect error comes back through `?`.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = upload(&format!("http://127.0.0.1:{port}/x"))
        .await
        .unwrap_err();
    let send = err
        .downcast_ref::<mmap_body::reqwest::SendError>()
        .expect("the SendError");
    assert!(send.is_connect(), "{err:?}");
    // A builder that already has a body: an error, not a panic.
    let client = reqwest_client(false);
    let err = client
        .post("http://127.0.0.1:1/x")
        .body("kept?")
        .send_through(&stack(&client), Full::new(Bytes::new()))
        .await
        .unwrap_err();
    assert!(err.is_builder(), "{err}");
    assert!(err.to_string().contains("already has a body"), "{err}");
}

#[tokio::test]
async fn the_response_names_the_url_it_came_from_after_a_redirect() {
    let addr = serve(|req: Request<Incoming>| async move {
        let res = if req.uri().path() == "/from" {
            let _ = req.into_body().collect().await;
            Response::builder()
                .status(303)
                .header("location", "/to")
                .body(Full::default())
        } else {
            Response::builder().body(Full::from("here"))
        };
        Ok::<_, Infallible>(res.unwrap())
    })
    .await;
    let client = reqwest_client(false);
    let response = client
        .post(format!("http://{addr}/from"))
        .send_through(&stack(&client), Full::new(Bytes::from_static(b"x")))
        .await
        .unwrap();
    assert_eq!(response.url().as_str(), format!("http://{addr}/to"));
    assert_eq!(response.text().await.unwrap(), "here");
}
