//! Hostile servers (issue #30): a server that sends the client elsewhere,
//! lies about completion, or loses the upload under an append, scripted
//! on 127.0.0.1 (other origins: other ports, and a host name never
//! connected to). Hostile clients are in `hostile_store`.
//! Each test failed before its fix.

use std::net::SocketAddr;

use http::header::HeaderMap;

use super::*;

/// A request a scripted server saw: method, headers, body bytes.
#[derive(Debug, Clone)]
struct Hit {
    method: Method,
    headers: HeaderMap,
    body: u64,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A server on `ip` (a loopback address) that reads each request's body to
/// its end, logs it, and answers what `script` says.
async fn scripted<F>(ip: &str, script: F) -> (SocketAddr, Hits)
where
    F: Fn(&Hit) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Hits::default();
    let log = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (script, log) = (script.clone(), log.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (script, log) = (script.clone(), log.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|c| c.to_bytes().len());
                    let hit = Hit {
                        method: parts.method,
                        headers: parts.headers,
                        body: body.unwrap_or(0) as u64,
                    };
                    let res = script(&hit);
                    log.lock().unwrap().push(hit);
                    Ok::<_, Infallible>(res)
                }
            });
            tokio::spawn(async move {
                let builder = auto_builder();
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// An answer with these headers.
fn reply(status: u16, headers: &[(&'static str, String)]) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in headers {
        res.headers_mut()
            .insert(*name, value.parse().expect("a header value"));
    }
    res
}

/// What a resumable server answers to `OPTIONS` and to the creation, the
/// creation's `Location` being `location`; `None` for other requests.
fn resumable(hit: &Hit, location: &str) -> Option<Response<Full<Bytes>>> {
    match hit.method {
        Method::OPTIONS => Some(reply(
            204,
            &[("accept-patch", "application/partial-upload".into())],
        )),
        Method::POST => Some(reply(
            201,
            &[
                ("location", location.to_owned()),
                ("upload-complete", "?0".into()),
                ("upload-offset", "0".into()),
            ],
        )),
        _ => None,
    }
}

/// Sends a 2 MiB POST with credentials to `addr`'s `/files` through
/// `UploadLayer` with `resume`: the status, or the error chain and kind.
async fn post_2_mib(
    addr: SocketAddr,
    resume: ResumeLayer,
) -> Result<StatusCode, (String, Option<ErrorKind>)> {
    let stack = ServiceBuilder::new()
        .layer(
            UploadLayer::new()
                .retry(
                    RetryPolicy::default()
                        .backoff(Duration::from_millis(5), Duration::from_millis(20)),
                )
                .resume(resume),
        )
        .service(client(false));
    let request = Request::post(format!("http://{addr}/files"))
        .header("authorization", "Bearer secret")
        .header("cookie", "session=secret")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-request-id", "7")
        .body(Full::new(Bytes::from(vec![7u8; 2 * MIB as usize])))
        .unwrap();
    match tokio::time::timeout(LIMIT, stack.oneshot(request))
        .await
        .expect("the upload ended in time")
    {
        Ok(res) => Ok(res.status()),
        Err(err) => Err((
            chain(&*err),
            mmap_body::Error::find_in(&*err).map(mmap_body::Error::kind),
        )),
    }
}

/// An upload resource that takes every append whole and says so.
async fn accepting(ip: &str) -> (SocketAddr, Hits) {
    scripted(ip, |hit| match hit.method {
        Method::HEAD => reply(
            204,
            &[
                ("upload-offset", "0".into()),
                ("upload-complete", "?0".into()),
            ],
        ),
        _ => reply(200, &[("upload-complete", "?1".into())]),
    })
    .await
}

/// Hostile 1: a creation answered with a `Location` on another host or
/// port: nothing reaches it, not the body, not the credentials.
#[tokio::test]
async fn a_location_on_another_origin_is_refused() {
    // Another port, and another host name (refused before any connection:
    // every test stays on 127.0.0.1).
    for ip in ["localhost", "127.0.0.1"] {
        let (elsewhere, stolen) = accepting("127.0.0.1").await;
        let location = format!("http://{ip}:{}/u/1", elsewhere.port());
        let (origin, seen) = scripted("127.0.0.1", move |hit| {
            resumable(hit, &location).unwrap_or_else(|| reply(500, &[]))
        })
        .await;
        let (err, kind) = post_2_mib(origin, ResumeLayer::new())
            .await
            .expect_err("a cross-origin upload resource is refused");
        assert_eq!(kind, Some(ErrorKind::Protocol), "{err}");
        assert!(err.contains("origin"), "{err}");
        assert!(
            stolen.lock().unwrap().is_empty(),
            "{ip}: {:?}",
            stolen.lock().unwrap()
        );
        let methods: Vec<Method> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.method.clone())
            .collect();
        assert_eq!(
            methods,
            [Method::OPTIONS, Method::POST],
            "{ip}: sent once, not retried"
        );
    }
}

/// Hostile 1, the option: `allow_cross_origin(true)` follows, without
/// `Authorization`, `Cookie` and `Proxy-Authorization`.
#[tokio::test]
async fn allow_cross_origin_follows_without_credentials() {
    // Another port of 127.0.0.1: another origin.
    let (elsewhere, hits) = accepting("127.0.0.1").await;
    let location = format!("http://{elsewhere}/u/1");
    let (origin, seen) = scripted("127.0.0.1", move |hit| {
        resumable(hit, &location).unwrap_or_else(|| reply(500, &[]))
    })
    .await;
    let status = post_2_mib(origin, ResumeLayer::new().allow_cross_origin(true))
        .await
        .expect("the upload completes elsewhere");
    assert_eq!(status, StatusCode::OK);
    let creation = seen.lock().unwrap()[1].clone();
    assert_eq!(
        creation.headers["authorization"], "Bearer secret",
        "same origin: kept"
    );
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let patch = &hits[0];
    assert_eq!((&patch.method, patch.body), (&Method::PATCH, 2 * MIB));
    for name in ["authorization", "cookie", "proxy-authorization"] {
        assert!(
            !patch.headers.contains_key(name),
            "{name} went to another origin"
        );
    }
    assert_eq!(patch.headers["x-request-id"], "7");
}

/// Hostile 2: `Upload-Complete: ?1` at 256 KiB of a 2 MiB body, in the
/// append's answer and in an offset query's, is an error, not a success.
#[tokio::test]
async fn a_completion_short_of_the_body_is_an_error() {
    let short = || {
        [
            ("upload-complete", "?1".to_owned()),
            ("upload-offset", "262144".into()),
        ]
    };
    let (liar, _) = scripted("127.0.0.1", move |hit| {
        resumable(hit, "/u/1").unwrap_or_else(|| reply(204, &short()))
    })
    .await;
    let (err, kind) = post_2_mib(liar, ResumeLayer::new())
        .await
        .expect_err("a short completion is not a success");
    assert_eq!(kind, Some(ErrorKind::Protocol), "{err}");
    assert!(err.contains("262144"), "{err}");
    // The append answered 503; the offset query then claims completion.
    let (liar, seen) = scripted("127.0.0.1", move |hit| {
        resumable(hit, "/u/1").unwrap_or_else(|| match hit.method {
            Method::PATCH => reply(503, &[]),
            _ => reply(204, &short()),
        })
    })
    .await;
    let (err, kind) = post_2_mib(liar, ResumeLayer::new())
        .await
        .expect_err("a short completion is not a success");
    assert_eq!(kind, Some(ErrorKind::Protocol), "{err}");
    assert_eq!(seen.lock().unwrap().last().unwrap().method, Method::HEAD);
}

/// Hostile 5, the client's side: an append answered 404 (its upload
/// cancelled or expired under it) is followed by one new upload, not
/// handed to the caller; a server that keeps answering 404 gets two.
#[tokio::test]
async fn an_append_answered_404_makes_one_new_upload() {
    for always in [false, true] {
        let created = Arc::new(AtomicUsize::new(0));
        let count = created.clone();
        let (addr, seen) = scripted("127.0.0.1", move |hit| {
            if hit.method == Method::POST {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                return resumable(hit, &format!("/u/{n}")).unwrap();
            }
            resumable(hit, "").unwrap_or_else(|| match count.load(Ordering::SeqCst) {
                n if n == 1 || always => reply(404, &[]),
                _ => reply(
                    200,
                    &[
                        ("upload-complete", "?1".into()),
                        ("upload-offset", (2 * MIB).to_string()),
                    ],
                ),
            })
        })
        .await;
        let status = post_2_mib(addr, ResumeLayer::new())
            .await
            .expect("an answer");
        let expected = if always {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected, "always 404: {always}");
        assert_eq!(created.load(Ordering::SeqCst), 2, "always 404: {always}");
        assert_eq!(seen.lock().unwrap().len(), 6, "OPTIONS, POST, PATCH twice");
    }
}
