//! [`Flaky`]: a scripted, misbehaving HTTP/1.1 upstream on 127.0.0.1 for the
//! retry examples. Attempt N (counted over all connections) follows step N
//! of its script; once the script is used up, attempts are accepted: the
//! whole body is read and answered `200` with `<framing> received=<bytes>`
//! (see [`framing`]), plus ` sha256=<hex>` if asked. It prints what each
//! attempt did, prefixed with its name (`server`, `upstream`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

use mmap_body_devkit::server::framing;
use mmap_body_devkit::size::human;

/// What the upstream does with one attempt.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Read `after` body bytes, then drop the connection without answering.
    Drop { after: u64 },
    /// Read `after` body bytes, then answer `status` (with `Retry-After:
    /// <seconds>` if given).
    Status {
        status: u16,
        after: u64,
        retry_after: Option<u32>,
    },
    /// Read `after` body bytes, then neither read nor answer: only the
    /// client giving up ends the attempt.
    Stall { after: u64 },
}

pub struct Flaky {
    name: &'static str,
    script: Vec<Step>,
    sha256: bool,
}

impl Flaky {
    /// An upstream that prints as `name` and follows `script`, then accepts.
    pub fn new(name: &'static str, script: impl Into<Vec<Step>>) -> Flaky {
        Flaky {
            name,
            script: script.into(),
            sha256: false,
        }
    }

    /// Adds the SHA-256 of the accepted body to the answer.
    pub fn with_sha256(self) -> Flaky {
        Flaky {
            sha256: true,
            ..self
        }
    }

    /// Listens on 127.0.0.1 (`TCP_NODELAY`), serving in the background.
    pub async fn start(self) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let flaky = Arc::new(self);
        let seen = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (flaky, seen) = (flaky.clone(), seen.clone());
                tokio::spawn(async move {
                    let kill = Arc::new(tokio::sync::Notify::new());
                    let killer = kill.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                        let (flaky, killer) = (flaky.clone(), killer.clone());
                        async move { flaky.attempt(n, req, &killer).await }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection future closes the socket.
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                    }
                });
            }
        });
        Ok(addr)
    }

    async fn attempt(
        &self,
        n: usize,
        req: http::Request<Incoming>,
        kill: &tokio::sync::Notify,
    ) -> Result<http::Response<Full<Bytes>>, Infallible> {
        let who = format!("{}: attempt {n}", self.name);
        let step = self.script.get(n - 1).copied();
        let framing = framing(req.version(), req.headers());
        // What a proxy adds, when there is one in front.
        let mut forwarded = String::new();
        for name in ["via", "x-forwarded-for"] {
            if let Some(value) = req.headers().get(name) {
                forwarded += &format!(" {name}={value:?}");
            }
        }
        println!("{who}: {} {} {framing}{forwarded}", req.method(), req.uri());

        let limit = match step {
            Some(Step::Drop { after } | Step::Status { after, .. } | Step::Stall { after }) => {
                after
            }
            None => u64::MAX,
        };
        let mut body = req.into_body();
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        while read < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        hasher.update(data);
                        read += data.len() as u64;
                    }
                }
                Some(Err(err)) => {
                    println!("{who}: the body failed after {}: {err}", human(read));
                    return Ok(reply(400, format!("body failed: {err}")));
                }
                None => break,
            }
        }
        let read_text = human(read);
        match step {
            Some(Step::Drop { .. }) => {
                println!("{who}: read {read_text}, dropping the connection");
                kill.notify_one();
                std::future::pending().await
            }
            Some(Step::Status {
                status,
                retry_after,
                ..
            }) => {
                let mut res = reply(status, "busy, try again".to_owned());
                match retry_after {
                    Some(secs) => {
                        println!(
                            "{who}: read {read_text}, answering {status}, Retry-After: {secs}"
                        );
                        res.headers_mut()
                            .insert(http::header::RETRY_AFTER, secs.into());
                    }
                    None => println!("{who}: read {read_text}, answering {status}"),
                }
                Ok(res)
            }
            Some(Step::Stall { .. }) => {
                println!("{who}: read {read_text}, stalling");
                std::future::pending().await
            }
            None if self.sha256 => {
                let sha: String = hasher
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                println!(
                    "{who}: read all {read_text}, sha256 {}, answering 200",
                    &sha[..16]
                );
                Ok(reply(
                    200,
                    format!("{framing} received={read} sha256={sha}"),
                ))
            }
            None => {
                println!("{who}: read all {read_text}, answering 200");
                Ok(reply(200, format!("{framing} received={read}")))
            }
        }
    }
}

/// An answer that closes the connection, so that each attempt has its own.
fn reply(status: u16, text: String) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONNECTION, "close")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}
