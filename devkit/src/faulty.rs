//! [`Faulty`]: a server on 127.0.0.1 that speaks HTTP/1.1 and HTTP/2
//! (prior knowledge) and misbehaves on purpose, following a script.
//!
//! Faults: the connection dropped mid-body, a status after part of the
//! body (with `Retry-After` if asked), an early answer that reads none of
//! the body, and a stall that reads part of it and then neither reads nor
//! answers. Every request is logged: method, version, framing headers,
//! bytes read and, for a body read whole, its SHA-256. A narrated one
//! ([`Faulty::narrated`]) also prints what it does with
//! each request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::counting::framing;
use crate::server::{auto_builder, hash_request};
use crate::size::human;

/// What the faulty server does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Read the whole body, hash it, answer 200 (as [`hash_request`]).
    Succeed,
    /// Read this many body bytes (or all, if fewer), then close the whole
    /// connection (over HTTP/2: every stream on it).
    DropAfter(u64),
    /// Read this many body bytes (or all, if fewer), then answer this status
    /// and, if given, `Retry-After` (over HTTP/1.1 with `Connection: close`).
    StatusAfter(u16, u64, Option<&'static str>),
    /// Answer this status at once, without reading any of the body.
    EarlyStatus(u16),
    /// Read this many body bytes (or all, if fewer), then stop reading and
    /// never answer: only the client giving up ends the request.
    StallAfter(u64),
}

/// One request the faulty server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request's method.
    pub method: String,
    /// The request's HTTP version.
    pub version: Version,
    /// Its `Content-Length` header, as sent.
    pub content_length: Option<String>,
    /// Its `Transfer-Encoding` header, as sent.
    pub transfer_encoding: Option<String>,
    /// What the server did with it.
    pub fault: Fault,
    /// Body bytes the server read (so far, for a stalled request).
    pub read: u64,
    /// For [`Fault::Succeed`]: the SHA-256 of the whole body it read.
    pub sha256: Option<String>,
    /// Every request header, as received.
    pub headers: http::HeaderMap,
}

/// A hyper server on 127.0.0.1 (HTTP/1.1 and HTTP/2 prior knowledge, with
/// `TCP_NODELAY` and the big HTTP/2 windows of
/// [`auto_builder`](crate::server::auto_builder))
/// that follows a script of faults, one per request, then succeeds; it
/// logs every request it sees.
#[derive(Debug, Clone)]
pub struct Faulty {
    /// Where it listens.
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<Fault>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    hang_up: Arc<tokio::sync::Notify>,
    /// Set for a narrated server: the prefix of what it prints.
    name: Option<&'static str>,
    /// Headers added to every answer ([`Faulty::answer_with`]).
    extra: Arc<Mutex<http::HeaderMap>>,
}

impl Faulty {
    /// Starts a server that follows `script`, one fault per request, then
    /// succeeds.
    pub async fn start(script: impl IntoIterator<Item = Fault>) -> Faulty {
        Faulty::launch(None, script).await
    }

    /// [`start`](Faulty::start), and the server prints each request and
    /// what it does with it, after `name` and the request's number:
    /// `upstream: request 2: read 32.0 MiB, answering 503`.
    pub async fn narrated(name: &'static str, script: impl IntoIterator<Item = Fault>) -> Faulty {
        Faulty::launch(Some(name), script).await
    }

    async fn launch(name: Option<&'static str>, script: impl IntoIterator<Item = Fault>) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let faulty = Faulty {
            addr: listener.local_addr().expect("addr"),
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            seen: Default::default(),
            hang_up: Default::default(),
            name,
            extra: Default::default(),
        };
        let server = faulty.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                let hang_up = server.hang_up.clone();
                tokio::spawn(async move {
                    let kill = Arc::new(tokio::sync::Notify::new());
                    let killer = kill.clone();
                    let service = hyper::service::service_fn(move |req| {
                        server.clone().handle(req, killer.clone())
                    });
                    let builder = auto_builder();
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection future closes the socket.
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                        _ = hang_up.notified() => {}
                    }
                });
            }
        });
        faulty
    }

    /// Adds `headers` to every answer from now on (a proxy test's
    /// hop-by-hop headers, say).
    pub fn answer_with(self, headers: http::HeaderMap) -> Faulty {
        *self.extra.lock().unwrap() = headers;
        self
    }

    /// `http://<addr><path>`.
    pub fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Closes every connection open now, whatever its requests are doing.
    pub fn hang_up(&self) {
        self.hang_up.notify_waiters();
    }

    /// Every request seen so far, in the order they arrived.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap()[index]);
    }

    /// Prints `what` for request `index`, if narrated.
    fn say(&self, index: usize, what: impl FnOnce() -> String) {
        if let Some(name) = self.name {
            println!("{name}: request {}: {}", index + 1, what());
        }
    }

    async fn handle(
        self,
        req: Request<Incoming>,
        kill: Arc<tokio::sync::Notify>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let extra = self.extra.lock().unwrap().clone();
        let mut res = self.answer(req, kill).await?;
        for (name, value) in &extra {
            res.headers_mut().append(name, value.clone());
        }
        Ok(res)
    }

    async fn answer(
        self,
        req: Request<Incoming>,
        kill: Arc<tokio::sync::Notify>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let fault = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Fault::Succeed);
        let header = |name: http::header::HeaderName| {
            req.headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or("<not text>").to_owned())
        };
        let index = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(Seen {
                method: req.method().to_string(),
                version: req.version(),
                content_length: header(http::header::CONTENT_LENGTH),
                transfer_encoding: header(http::header::TRANSFER_ENCODING),
                fault: fault.clone(),
                read: 0,
                sha256: None,
                headers: req.headers().clone(),
            });
            seen.len() - 1
        };
        self.say(index, || {
            // What a proxy adds, when there is one in front.
            let mut forwarded = String::new();
            for name in ["via", "x-forwarded-for"] {
                if let Some(value) = req.headers().get(name) {
                    forwarded += &format!(" {name}={value:?}");
                }
            }
            let framing = framing(req.version(), req.headers());
            format!("{} {} {framing}{forwarded}", req.method(), req.uri())
        });
        let close = req.version() < Version::HTTP_2;
        match fault {
            Fault::Succeed => {
                let res = hash_request(req).await;
                let get = |name: &str| {
                    res.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let (len, sha) = (get("x-len"), get("x-sha256"));
                let read = len.and_then(|l| l.parse().ok()).unwrap_or(0);
                self.say(index, || match &sha {
                    Some(sha) => format!(
                        "read all {}, sha256 {}.., answering 200",
                        human(read),
                        &sha[..16]
                    ),
                    None => format!("the body failed, answering {}", res.status()),
                });
                self.update(index, |s| {
                    s.read = read;
                    s.sha256 = sha;
                });
                Ok(res)
            }
            Fault::DropAfter(limit) => {
                let mut body = req.into_body();
                let read = self.read_some(index, limit, &mut body).await;
                self.say(index, || {
                    format!("read {}, dropping the connection", human(read))
                });
                kill.notify_one();
                std::future::pending().await
            }
            Fault::StatusAfter(status, limit, retry_after) => {
                let mut body = req.into_body();
                let read = self.read_some(index, limit, &mut body).await;
                self.say(index, || match retry_after {
                    Some(after) => format!(
                        "read {}, answering {status}, Retry-After: {after}",
                        human(read)
                    ),
                    None => format!("read {}, answering {status}", human(read)),
                });
                let mut res = Response::builder().status(status);
                if close {
                    res = res.header(http::header::CONNECTION, "close");
                }
                if let Some(after) = retry_after {
                    res = res.header(http::header::RETRY_AFTER, after);
                }
                Ok(res
                    .body(Full::new(Bytes::from_static(b"try again")))
                    .unwrap())
            }
            Fault::EarlyStatus(status) => {
                self.say(index, || {
                    format!("answering {status} before reading the body")
                });
                let mut res = Response::builder().status(status);
                if close {
                    res = res.header(http::header::CONNECTION, "close");
                }
                Ok(res
                    .body(Full::new(Bytes::from_static(b"refused unread")))
                    .unwrap())
            }
            Fault::StallAfter(limit) => {
                let mut body = req.into_body();
                let read = self.read_some(index, limit, &mut body).await;
                self.say(index, || format!("read {}, stalling", human(read)));
                // Keep the body (and so the stream) open, read nothing more.
                std::future::pending::<()>().await;
                drop(body);
                unreachable!()
            }
        }
    }

    /// Reads body frames until at least `limit` bytes came (or the body
    /// ended or failed), logging the count as it goes; returns the count.
    async fn read_some(&self, index: usize, limit: u64, body: &mut Incoming) -> u64 {
        let mut read = 0u64;
        while read < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    self.update(index, |s| s.read = read);
                }
                _ => break,
            }
        }
        read
    }
}
