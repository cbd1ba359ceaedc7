//! The counting server: a hyper server on 127.0.0.1 that reads every
//! request body to its end and answers with how many bytes arrived and how
//! the request announced its length. The receiving end of the benchmark; it hashes nothing, so that it never slows a
//! measurement down (the tests' [`hashing_server`](crate::server) does).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Accepts HTTP/1.1 and HTTP/2 (prior knowledge) connections on 127.0.0.1,
/// with `TCP_NODELAY`, and answers each request with [`count_body`].
pub async fn start_counting_server() -> std::io::Result<SocketAddr> {
    start_counting_server_with(false).await
}

/// The HTTP/2 settings that let a receiver of large bodies keep up (see the
/// README's "HTTP/2" section): `DATA` frames of up to 1 MiB instead of
/// 16 KiB, and 8 MiB stream / 16 MiB connection windows.
pub const H2_LARGE_FRAME: u32 = 1 << 20;
/// See [`H2_LARGE_FRAME`].
pub const H2_STREAM_WINDOW: u32 = 8 << 20;
/// See [`H2_LARGE_FRAME`].
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
