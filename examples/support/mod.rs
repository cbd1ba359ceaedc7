//! Pieces the examples share: a temp file of incompressible bytes, a hyper
//! server on 127.0.0.1 that counts what it receives and reports the framing
//! it saw, a scripted misbehaving upstream ([`flaky`]), the `--size`
//! argument, a line printed per attempt of a retried upload, and size
//! parsing and printing.
#![allow(dead_code)] // each example uses a different part of this module (and of `flaky`)

pub mod flaky;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Writes `size` pseudo-random (incompressible) bytes to `path`.
pub fn write_file(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut left = size;
    while left > 0 {
        for word in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()
}

/// Accepts HTTP/1.1 and HTTP/2 (prior knowledge) connections on 127.0.0.1,
/// with `TCP_NODELAY`, and answers each request with [`count_body`].
pub async fn start_counting_server() -> std::io::Result<SocketAddr> {
    start_counting_server_with(false).await
}

/// The HTTP/2 settings that let a receiver of large bodies keep up (see the
/// README's "HTTP/2" section): `DATA` frames of up to 1 MiB instead of
/// 16 KiB, and 8 MiB stream / 16 MiB connection windows.
pub const H2_LARGE_FRAME: u32 = 1 << 20;
pub const H2_STREAM_WINDOW: u32 = 8 << 20;
pub const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// [`start_counting_server`], with the HTTP/2 settings for large bodies
/// when `large_h2` is set.
pub async fn start_counting_server_with(large_h2: bool) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // As HTTP/2 servers do: without it, Nagle's algorithm holds back
            // the small WINDOW_UPDATE frames and h2 uploads stall.
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(count_body);
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if large_h2 {
                    builder
                        .http2()
                        .max_frame_size(H2_LARGE_FRAME)
                        .initial_stream_window_size(H2_STREAM_WINDOW)
                        .initial_connection_window_size(H2_CONNECTION_WINDOW);
                }
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Requests to this path are answered `503` after their whole body was
/// read, every other time (the first, third ... of them): a fault that
/// makes a proxy send the body again.
pub const FAIL_ONCE_PATH: &str = "/fail-once";

/// Reads the whole request body and answers `<framing> received=<bytes>`,
/// where framing is what the request's headers promised (see [`framing`]);
/// see [`FAIL_ONCE_PATH`] for the one exception.
pub async fn count_body(
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    static FAIL_ONCE_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let fail = req.uri().path() == FAIL_ONCE_PATH
        && FAIL_ONCE_SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) & 1 == 0;
    let framing = framing(req.version(), req.headers());
    let mut body = req.into_body();
    let mut received = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        received += frame.data_ref().map_or(0, |d| d.len() as u64);
    }
    let text = format!("{framing} received={received}");
    let mut response = http::Response::new(Full::new(Bytes::from(text)));
    if fail {
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    }
    Ok(response)
}

/// How a message's length was announced: `content-length=N`, `chunked`
/// (HTTP/1.1 chunked encoding), or `no-length` (an HTTP/2 stream without a
/// `content-length` header, whose end only its last DATA frame tells).
pub fn framing(version: http::Version, headers: &http::HeaderMap) -> String {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    match (
        header(http::header::CONTENT_LENGTH),
        header(http::header::TRANSFER_ENCODING),
    ) {
        (Some(n), None) => format!("content-length={n}"),
        (None, Some(te)) if te.eq_ignore_ascii_case("chunked") => "chunked".to_owned(),
        (None, None) if version == http::Version::HTTP_2 => "no-length".to_owned(),
        (cl, te) => format!("content-length={cl:?} transfer-encoding={te:?}"),
    }
}

/// The examples' one option, `--size 256MiB`; `default` without it.
pub fn size_arg(default: u64) -> Result<u64, BoxError> {
    let mut size = default;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--size", Some(value)) => size = parse_size(&value)?,
            _ => return Err(format!("unknown option `{arg}`; use --size 256MiB").into()),
        }
    }
    Ok(size)
}

/// For `ServiceBuilder::map_request` in a client stack, inside the retries:
/// counts each attempt in `attempts` and prints it as it leaves (method,
/// URI, `Content-Length`), after how much of the previous attempt `progress`
/// saw handed to `client`.
#[cfg(feature = "progress")]
pub fn log_attempt<B>(
    attempts: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
    progress: &mmap_body::progress::Progress,
    client: &'static str,
) -> impl Fn(http::Request<B>) -> http::Request<B> + Clone {
    let (attempts, progress) = (attempts.clone(), progress.clone());
    move |req| {
        let n = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n > 1 {
            println!(
                "client: progress: attempt {} had handed {} to {client}",
                progress.attempt(),
                sent_of_total(&progress)
            );
        }
        println!(
            "client: attempt {n}: {} {} content-length={:?}",
            req.method(),
            req.uri(),
            req.headers().get(http::header::CONTENT_LENGTH)
        );
        req
    }
}

/// `41.0 MiB of 64.0 MiB (64%)`: how much of the body the current attempt
/// has handed to the client.
#[cfg(feature = "progress")]
pub fn sent_of_total(progress: &mmap_body::progress::Progress) -> String {
    format!(
        "{} of {} ({:.0}%)",
        human(progress.sent()),
        human(progress.total().unwrap_or(0)),
        progress.fraction().unwrap_or(0.0) * 100.0
    )
}

/// Parses `64MiB`, `1GiB`, `512K`, `4096`...
pub fn parse_size(text: &str) -> Result<u64, BoxError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("bad size `{text}`"))?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("bad size unit in `{text}`; use KiB, MiB or GiB").into()),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size `{text}` is too large").into())
}

/// `1.00 GiB`, `41.0 KiB`, `512 B`.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// A field of `/proc/self/status` in KiB (`VmRSS:`, `VmHWM:`), 0 if absent.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
