//! `Idempotency-Key` (issue #35): POST uploads through `UploadLayer` with
//! `.idempotency_keys(true)` against a real hyper server on 127.0.0.1 that
//! keeps keys as draft-ietf-httpapi-idempotency-key-header describes (a
//! completed key is answered from its record, not processed again; a key
//! in progress gets 409), over hyper-util and reqwest (`ReqwestService`,
//! through `send_through`), HTTP/1.1 and HTTP/2.
//!
//! Each POST with a key arrives whole exactly once (processed once, its
//! SHA-256 the file's) after a cut mid-body, a 503, or an answer lost
//! after it was processed, every attempt carrying the same key; without a
//! key the POST is not retried (the caller gets the 503 or the error).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mmap_body::retry::{RetryPolicy, IDEMPOTENCY_KEY};
use mmap_body::{MmapBody, UploadLayer};
use mmap_body_devkit::files::{hex, test_file, TestFile};
use mmap_body_devkit::server::{auto_builder, client};
use mmap_body_devkit::BoxError;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;
/// The uploads' size: 4 MiB, cut or answered after 1 MiB.
const LEN: u64 = 4 * MIB;
/// No request of this module takes longer, all attempts together.
const LIMIT: Duration = Duration::from_secs(60);

/// What the server does with the next request whose key it has not
/// completed (and with every request without a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Read this many body bytes, then close the connection.
    CutAfter(u64),
    /// Read this many body bytes, then answer 503.
    UnavailableAfter(u64),
    /// Read the whole body and process it, then close the connection
    /// without answering: the client never learns it was done.
    LoseAnswer,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Arrival {
    key: Option<String>,
    /// "processed", "cut", "503", "lost answer", "replayed", "409".
    what: &'static str,
}

#[derive(Debug, Default)]
struct Keys {
    script: VecDeque<Script>,
    /// A key's recorded answer, once processed.
    done: HashMap<String, (StatusCode, Bytes)>,
    in_flight: Vec<String>,
    /// The SHA-256 of each body processed, with its key.
    processed: Vec<(Option<String>, String)>,
    arrivals: Vec<Arrival>,
}

/// A hyper server (HTTP/1.1 and h2c) that keeps idempotency keys.
#[derive(Clone)]
struct KeyServer {
    url: String,
    keys: Arc<Mutex<Keys>>,
}

impl KeyServer {
    async fn start(script: impl IntoIterator<Item = Script>) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = KeyServer {
            url: format!("http://{}/charges", listener.local_addr().unwrap()),
            keys: Arc::new(Mutex::new(Keys {
                script: script.into_iter().collect(),
                ..Keys::default()
            })),
        };
        let keys = server.keys.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let keys = keys.clone();
                tokio::spawn(async move {
                    let cut = Arc::new(tokio::sync::Notify::new());
                    let cutter = cut.clone();
                    let service = hyper::service::service_fn(move |req| {
                        answer(keys.clone(), cutter.clone(), req)
                    });
                    let builder = auto_builder();
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection closes it, every stream on it.
                    tokio::select! {
                        _ = conn => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        server
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.keys.lock().unwrap().arrivals.clone()
    }

    fn processed(&self) -> Vec<(Option<String>, String)> {
        self.keys.lock().unwrap().processed.clone()
    }
}

async fn answer(
    keys: Arc<Mutex<Keys>>,
    cut: Arc<tokio::sync::Notify>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let key = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .map(|v| v.to_str().unwrap().to_owned());
    let arrive = |what| {
        keys.lock().unwrap().arrivals.push(Arrival {
            key: key.clone(),
            what,
        })
    };
    let script = {
        let mut state = keys.lock().unwrap();
        if let Some((status, body)) = key.as_ref().and_then(|k| state.done.get(k)).cloned() {
            drop(state);
            arrive("replayed");
            let res = Response::builder().status(status);
            return Ok(res.body(Full::new(body)).unwrap());
        }
        if key.as_ref().is_some_and(|k| state.in_flight.contains(k)) {
            drop(state);
            arrive("409");
            let res = Response::builder().status(StatusCode::CONFLICT);
            return Ok(res.body(Full::default()).unwrap());
        }
        if let Some(key) = &key {
            state.in_flight.push(key.clone());
        }
        state.script.pop_front()
    };
    let finish = |record: Option<(StatusCode, Bytes)>| {
        let mut state = keys.lock().unwrap();
        if let Some(key) = &key {
            state.in_flight.retain(|k| k != key);
            if let Some(record) = record {
                state.done.insert(key.clone(), record);
            }
        }
    };
    let close = req.version() < http::Version::HTTP_2;
    let mut body = req.into_body();
    let limit = match script {
        Some(Script::CutAfter(n) | Script::UnavailableAfter(n)) => n,
        Some(Script::LoseAnswer) | None => u64::MAX,
    };
    let (mut read, mut sha) = (0u64, Sha256::new());
    while read < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len() as u64;
                    sha.update(data);
                }
            }
            Some(Err(_)) => {
                finish(None);
                arrive("failed");
                cut.notify_one();
                return std::future::pending().await;
            }
            None => break,
        }
    }
    match script {
        Some(Script::CutAfter(_)) => {
            finish(None);
            arrive("cut");
            cut.notify_one();
            std::future::pending().await
        }
        Some(Script::UnavailableAfter(_)) => {
            finish(None);
            arrive("503");
            let mut res = Response::builder().status(StatusCode::SERVICE_UNAVAILABLE);
            if close {
                res = res.header(http::header::CONNECTION, "close");
            }
            Ok(res.body(Full::from("try again")).unwrap())
        }
        Some(Script::LoseAnswer) | None => {
            let sha = hex(&sha.finalize());
            let record = (StatusCode::CREATED, Bytes::from(format!("sha256={sha}")));
            keys.lock().unwrap().processed.push((key.clone(), sha));
            finish(Some(record.clone()));
            if script == Some(Script::LoseAnswer) {
                arrive("lost answer");
                cut.notify_one();
                return std::future::pending().await;
            }
            arrive("processed");
            let res = Response::builder().status(record.0);
            Ok(res.body(Full::new(record.1)).unwrap())
        }
    }
}

/// Which client sends.
#[derive(Debug, Clone, Copy)]
enum Via {
    Hyper { http2: bool },
    Reqwest { http2: bool },
}

const EVERY_CLIENT: [Via; 4] = [
    Via::Hyper { http2: false },
    Via::Hyper { http2: true },
    Via::Reqwest { http2: false },
    Via::Reqwest { http2: true },
];

/// A fast policy for tests: waits of 5 to 20 ms.
fn policy() -> RetryPolicy {
    RetryPolicy::default().backoff(Duration::from_millis(5), Duration::from_millis(20))
}

/// POSTs `file` to `url` through `UploadLayer` (`layer`) over `via`, with
/// `header` if given; the status and text of the answer.
async fn post(
    via: Via,
    layer: UploadLayer,
    url: &str,
    file: &TestFile,
    header: Option<&str>,
) -> Result<(StatusCode, String), BoxError> {
    // SAFETY: the temp file is private to this test.
    let body = unsafe { MmapBody::open(&file.path) }?;
    let sent = async {
        match via {
            Via::Hyper { http2 } => {
                let stack = ServiceBuilder::new().layer(layer).service(client(http2));
                let mut request = Request::post(url);
                if let Some(key) = header {
                    request = request.header(IDEMPOTENCY_KEY, key);
                }
                let res = stack.oneshot(request.body(body)?).await?;
                let status = res.status();
                let bytes = res.into_body().collect().await?.to_bytes();
                Ok::<_, BoxError>((status, String::from_utf8(bytes.to_vec())?))
            }
            Via::Reqwest { http2 } => {
                use mmap_body::reqwest::{RequestBuilderExt, ReqwestService};
                let mut builder = reqwest::Client::builder().no_proxy();
                if http2 {
                    builder = builder.http2_prior_knowledge();
                }
                let client = builder.build()?;
                let stack = ServiceBuilder::new()
                    .layer(layer)
                    .service(ReqwestService::new(client.clone()));
                let mut request = client.post(url);
                if let Some(key) = header {
                    request = request.header(IDEMPOTENCY_KEY, key);
                }
                let res = request.send_through(&stack, body).await?;
                Ok((res.status(), res.text().await?))
            }
        }
    };
    tokio::time::timeout(LIMIT, sent).await?
}

/// The POST with a key arrived whole exactly once, and every attempt (there
/// were `attempts`) carried the same quoted key.
fn arrived_once(server: &KeyServer, file: &TestFile, attempts: usize, label: &str) -> String {
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), attempts, "{label}: {arrivals:?}");
    let key = arrivals[0].key.clone().expect("a key");
    assert!(
        arrivals.iter().all(|a| a.key.as_deref() == Some(&key)),
        "{label}: one key for every attempt: {arrivals:?}"
    );
    assert!(key.len() > 2 && key.starts_with('"') && key.ends_with('"'));
    let processed = server.processed();
    assert_eq!(
        processed,
        [(Some(key.clone()), file.sha256.clone())],
        "{label}: processed once, whole"
    );
    key
}

#[tokio::test]
async fn a_keyed_post_cut_mid_body_arrives_whole_once() {
    let file = test_file(LEN);
    for via in EVERY_CLIENT {
        let label = format!("{via:?}");
        let server = KeyServer::start([Script::CutAfter(MIB)]).await;
        let layer = UploadLayer::new().idempotency_keys(true).retry(policy());
        let (status, text) = post(via, layer, &server.url, &file, None)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!(status, StatusCode::CREATED, "{label}");
        assert_eq!(text, format!("sha256={}", file.sha256), "{label}");
        arrived_once(&server, &file, 2, &label);
        let what: Vec<_> = server.arrivals().iter().map(|a| a.what).collect();
        assert_eq!(what, ["cut", "processed"], "{label}");
    }
}

#[tokio::test]
async fn a_keyed_post_answered_503_arrives_whole_once() {
    let file = test_file(LEN);
    for via in EVERY_CLIENT {
        let label = format!("{via:?}");
        let server = KeyServer::start([Script::UnavailableAfter(MIB)]).await;
        let layer = UploadLayer::new().idempotency_keys(true).retry(policy());
        let (status, _) = post(via, layer, &server.url, &file, None)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!(status, StatusCode::CREATED, "{label}");
        arrived_once(&server, &file, 2, &label);
        let what: Vec<_> = server.arrivals().iter().map(|a| a.what).collect();
        assert_eq!(what, ["503", "processed"], "{label}");
    }
}

#[tokio::test]
async fn a_keyed_post_whose_answer_was_lost_is_answered_from_the_record() {
    // The first attempt was processed, its answer lost with the connection:
    // the retry, with the same key, gets the recorded answer, and the
    // server does not process the upload again.
    let file = test_file(LEN);
    for via in EVERY_CLIENT {
        let label = format!("{via:?}");
        let server = KeyServer::start([Script::LoseAnswer]).await;
        let layer = UploadLayer::new().idempotency_keys(true).retry(policy());
        let (status, text) = post(via, layer, &server.url, &file, None)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!(
            (status, text),
            (StatusCode::CREATED, format!("sha256={}", file.sha256)),
            "{label}"
        );
        arrived_once(&server, &file, 2, &label);
        let what: Vec<_> = server.arrivals().iter().map(|a| a.what).collect();
        assert_eq!(what, ["lost answer", "replayed"], "{label}");
    }
}

#[tokio::test]
async fn without_a_key_a_post_is_not_retried() {
    let file = test_file(LEN);
    for via in EVERY_CLIENT {
        for script in [
            Script::CutAfter(MIB),
            Script::UnavailableAfter(MIB),
            Script::LoseAnswer,
        ] {
            let label = format!("{via:?} {script:?}");
            let server = KeyServer::start([script]).await;
            // Keys off (UploadLayer's default).
            let layer = UploadLayer::new().retry(policy());
            let result = post(via, layer, &server.url, &file, None).await;
            match script {
                Script::UnavailableAfter(_) => {
                    let (status, _) = result.unwrap_or_else(|e| panic!("{label}: {e:?}"));
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{label}");
                }
                _ => assert!(result.is_err(), "{label}: {result:?}"),
            }
            let arrivals = server.arrivals();
            assert_eq!(arrivals.len(), 1, "{label}: sent once: {arrivals:?}");
            assert_eq!(arrivals[0].key, None, "{label}");
        }
    }
}

#[tokio::test]
async fn a_key_of_the_caller_s_own_is_kept_and_retried_unless_switched_off() {
    let file = test_file(LEN);
    for via in [Via::Hyper { http2: false }, Via::Reqwest { http2: true }] {
        let label = format!("{via:?}");
        // The layer adds no key; the caller's is sent on both attempts.
        let server = KeyServer::start([Script::UnavailableAfter(MIB)]).await;
        let layer = UploadLayer::new().retry(policy());
        let (status, _) = post(via, layer, &server.url, &file, Some("\"order-17\""))
            .await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!(status, StatusCode::CREATED, "{label}");
        let key = arrived_once(&server, &file, 2, &label);
        assert_eq!(key, "\"order-17\"", "{label}");

        // `retry_idempotency_key(false)`: the key is sent, the 503 returned.
        let server = KeyServer::start([Script::UnavailableAfter(MIB)]).await;
        let layer = UploadLayer::new()
            .idempotency_keys(true)
            .retry(policy().retry_idempotency_key(false));
        let (status, _) = post(via, layer, &server.url, &file, Some("\"order-18\""))
            .await
            .unwrap_or_else(|e| panic!("{label}: {e:?}"));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{label}");
        let arrivals = server.arrivals();
        assert_eq!(arrivals.len(), 1, "{label}: {arrivals:?}");
        assert_eq!(arrivals[0].key.as_deref(), Some("\"order-18\""), "{label}");
    }
}
