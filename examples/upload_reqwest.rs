//! An upload as a reqwest user writes it: `client.post(url).query(..)
//! .bearer_auth(..).send_through(&stack, body)`, where the stack is
//! `UploadLayer` (idempotency keys, replay, retries, progress) over
//! `mmap_body::reqwest::ReqwestService`, and the answer a `reqwest::Response`
//! (`error_for_status()`, `text()`). The body is a temp file as an
//! `FileBody`; the server, a local hyper server that keeps
//! `Idempotency-Key`s, drops the first connection mid-body and answers 503
//! with `Retry-After: 1` to the second attempt. The POST is retried because
//! it carries a key (the same for every attempt). Prints each attempt as the
//! server sees it, the progress (which starts again with each attempt),
//! whether the server got the file (SHA-256), and the sender's peak RSS
//! growth (Linux), which stays far below the file size.
//!
//! Crates it uses, to copy it into your own: `mmap-body` (`reqwest`,
//! `retry`, `progress`), `reqwest` (`query`), `tokio`, `hyper` (`server`,
//! `http1`), `hyper-util` (`tokio`), `tower`, `http`, `http-body-util`,
//! `bytes`, `sha2`, `tempfile`.
//!
//! ```text
//! cargo run --release --example upload_reqwest --features reqwest [-- --size 512MiB]
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mmap_body::progress::Progress;
use mmap_body::reqwest::{RequestBuilderExt, ReqwestService};
use mmap_body::retry::RetryPolicy;
use mmap_body::{FileBody, UploadLayer};
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MIB: u64 = 1 << 20;

/// What the server does with a request: read this many bytes of its body,
/// then drop the connection, or answer 503 with `Retry-After: 1`. Past its
/// script it reads the whole body and answers with its SHA-256, which it
/// records under the request's `Idempotency-Key`: a request with a key it
/// completed gets that answer again, and is not processed again.
#[derive(Debug, Clone, Copy)]
enum Fault {
    HangUp(u64),
    Unavailable(u64),
}

#[derive(Default)]
struct Server {
    script: VecDeque<Fault>,
    requests: usize,
    done: HashMap<String, String>,
}

async fn flaky_server(script: Vec<Fault>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = Arc::new(Mutex::new(Server {
        script: script.into(),
        ..Server::default()
    }));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let server = server.clone();
            let service = hyper::service::service_fn(move |req| answer(server.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(conn);
        }
    });
    Ok(addr)
}

async fn answer(
    server: Arc<Mutex<Server>>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, BoxError> {
    let key = req.headers().get("idempotency-key").cloned();
    let key = key.map(|k| k.to_str().unwrap_or("").to_owned());
    let (n, fault, recorded) = {
        let mut server = server.lock().unwrap();
        server.requests += 1;
        let recorded = key.as_ref().and_then(|k| server.done.get(k)).cloned();
        let fault = recorded.is_none().then(|| server.script.pop_front());
        (server.requests, fault.flatten(), recorded)
    };
    println!(
        "server: request {n}: {} {} idempotency-key={}",
        req.method(),
        req.uri(),
        key.as_deref().unwrap_or("-"),
    );
    if let Some(text) = recorded {
        println!("server: request {n}: key already done, answering from the record");
        return Ok(http::Response::new(Full::from(text)));
    }
    let limit = match fault {
        Some(Fault::HangUp(n) | Fault::Unavailable(n)) => n,
        None => u64::MAX,
    };
    let (mut body, mut read, mut sha) = (req.into_body(), 0, Sha256::new());
    while read < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        if let Some(data) = frame?.data_ref() {
            read += data.len() as u64;
            sha.update(data);
        }
    }
    let said = |what: &str| println!("server: request {n}: read {} MiB, {what}", read / MIB);
    match fault {
        // An error from the service makes hyper close the connection.
        Some(Fault::HangUp(_)) => {
            said("dropping the connection");
            Err("dropped on purpose".into())
        }
        Some(Fault::Unavailable(_)) => {
            said("answering 503, Retry-After: 1");
            let res = http::Response::builder()
                .status(503)
                .header("connection", "close");
            Ok(res
                .header("retry-after", "1")
                .body(Full::from("try again"))?)
        }
        None => {
            let sha = format!("{:x}", sha.finalize());
            said(&format!("sha256 {}.., answering 200", &sha[..16]));
            let text = format!("received {read} bytes, sha256 {sha}");
            if let Some(key) = key {
                server.lock().unwrap().done.insert(key, text.clone());
            }
            Ok(http::Response::new(Full::from(text)))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let size = match std::env::args().skip_while(|a| a != "--size").nth(1) {
        Some(size) => parse_size(&size)?,
        None => 256 * MIB,
    };
    // The file to upload: pseudo-random bytes, and their SHA-256.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("upload.bin");
    let (mut file, mut sha) = (std::fs::File::create(&path)?, Sha256::new());
    let (mut block, mut x, mut left) = (vec![0u8; MIB as usize], 0x9e37_79b9_7f4a_7c15_u64, size);
    while left > 0 {
        let n = left.min(MIB) as usize;
        for word in block[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        sha.update(&block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    let sent = format!("{:x}", sha.finalize());

    // Attempt 1: read a quarter of the file, drop the connection. Attempt 2:
    // read a quarter, answer 503 with `Retry-After: 1`. Then: read everything.
    let addr = flaky_server(vec![Fault::HangUp(size / 4), Fault::Unavailable(size / 4)]).await?;

    // The client, and the stack every upload goes through: an
    // `Idempotency-Key` for each POST (this server honours them), the body
    // made replayable, retries with backoff and `Retry-After`, progress.
    let client = reqwest::Client::builder().no_proxy().build()?;
    let policy = RetryPolicy::default()
        .max_attempts(4)
        .backoff(Duration::from_millis(100), Duration::from_secs(1));
    let stack = ServiceBuilder::new()
        .layer(UploadLayer::new().idempotency_keys(true).retry(policy))
        .service(ReqwestService::new(client.clone()));

    let body = FileBody::open(&path)?;
    let progress = Progress::new();

    // Peak RSS from here on (Linux): the file is written, the server is up.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_kib("VmRSS:");
    let started = Instant::now();
    // The upload, as reqwest users write it: `send_through(&stack, body)`
    // where `.body(..).send()` would be.
    let upload = client
        .post(format!("http://{addr}/upload"))
        .query(&[("name", "upload.bin")])
        .bearer_auth("demo-token")
        .timeout(Duration::from_secs(60)) // each attempt
        .send_through(&stack, body)
        .extension(progress.clone()); // counted by UploadLayer, per attempt
    let upload = tokio::spawn(async move {
        let response = upload.await?.error_for_status()?;
        Ok::<_, BoxError>(response.text().await?)
    });
    let mut shown = (0, 0);
    while !upload.is_finished() {
        // Each quarter of each attempt.
        let now = (
            progress.attempt(),
            (progress.fraction().unwrap_or(0.0) * 4.0) as u32,
        );
        if now != shown && now.0 > 0 {
            println!(
                "client: progress: attempt {}: {}",
                now.0,
                sent_of_total(&progress)
            );
            shown = now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = upload.await??;
    let elapsed = started.elapsed().as_secs_f64();
    let grown = status_kib("VmHWM:").saturating_sub(rss_before) * 1024;
    println!(
        "client: 200 OK after {} attempts in {elapsed:.2} s: {text}",
        progress.attempt()
    );
    println!(
        "client: peak RSS growth {} MiB for a {} MiB file (server in the same process)",
        grown / MIB,
        size / MIB
    );
    if progress.sent() != size || !text.ends_with(&sent) {
        return Err("the server got other bytes".into());
    }
    println!("client: the server received the file whole (SHA-256 equal)");
    Ok(())
}

/// `41 MiB of 64 MiB (64%)`: how much of the body the current attempt has
/// handed to reqwest.
fn sent_of_total(progress: &Progress) -> String {
    let (sent, total) = (progress.sent(), progress.total().unwrap_or(0));
    let percent = progress.fraction().unwrap_or(0.0) * 100.0;
    format!("{} MiB of {} MiB ({percent:.0}%)", sent / MIB, total / MIB)
}

/// A `kB` field of `/proc/self/status` (Linux; 0 elsewhere).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// `64MiB`, `1GiB`, `512KiB` or a number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let shift = match &text[split..] {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(format!("bad size `{text}`; write e.g. 64MiB or 1GiB")),
    };
    let n: u64 = text[..split]
        .parse()
        .map_err(|_| format!("bad size `{text}`"))?;
    Ok(n << shift)
}
