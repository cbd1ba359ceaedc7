//! The reqwest cases (feature `reqwest`): the same upload sent by a
//! `reqwest::Client` (reqwest 0.13, no TLS) three ways.
//!
//! - `reqwest-file`: `reqwest::Body::from(tokio::fs::File)`, what reqwest
//!   offers for a file (a `ReaderStream` of 4 KiB reads, no length);
//! - `reqwest-bytes`: `reqwest::Body::from(Bytes::from(mmap_body))`, one
//!   zero-copy `Bytes` of the whole mapping (every page stays resident);
//! - `reqwest-stack`: `MmapBody` through `ReplayLayer` + `RetryLayer` +
//!   `ReqwestService`: zero-copy, exact length, pages released, retries.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use mmap_body::reqwest::ReqwestService;
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayLayer};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

use mmap_body_devkit::BoxError;

/// How reqwest gets the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    File,
    Bytes,
    Stack,
}

/// Uploads the file at `path` to `addr` and returns the server's answer.
pub(crate) async fn upload(
    mode: Mode,
    http2: bool,
    addr: SocketAddr,
    path: &Path,
) -> Result<String, BoxError> {
    let mut builder = reqwest::Client::builder().no_proxy().tcp_nodelay(true);
    if http2 {
        builder = builder.http2_prior_knowledge();
    }
    let client = builder.build()?;
    let uri = format!("http://{addr}/upload");
    let mmap = || -> Result<MmapBody, BoxError> {
        // SAFETY: the bench owns the file in its temp dir and nothing
        // changes it while it is mapped.
        Ok(unsafe { MmapBody::open(path)? })
    };
    let (status, text) = match mode {
        Mode::File => {
            let file = tokio::fs::File::open(path).await?;
            let response = client.put(&uri).body(file).send().await?;
            (response.status(), response.text().await?)
        }
        Mode::Bytes => {
            let body = Bytes::from(mmap()?);
            let response = client.put(&uri).body(body).send().await?;
            (response.status(), response.text().await?)
        }
        Mode::Stack => {
            let service = ServiceBuilder::new()
                .layer(ReplayLayer::new(64 << 10))
                .layer(RetryLayer::new(RetryPolicy::default()))
                .service(ReqwestService::new(client));
            let request = http::Request::put(&uri).body(mmap()?)?;
            let response = service.oneshot(request).await?;
            let status = response.status();
            let body = http_body_util::BodyExt::collect(response.into_body()).await?;
            (
                status,
                String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            )
        }
    };
    if !status.is_success() {
        return Err(format!("the server answered {status}: {text}").into());
    }
    Ok(text)
}
