//! An axum server on 127.0.0.1 that serves a temp file as an `MmapBody`
//! with `mmap_body::serve::respond` (Range, If-Range, If-None-Match, HEAD),
//! asked by a reqwest client for the whole file, a resumed download and a
//! revalidation. Prints what each request got. (`cargo bench --bench
//! bench -- --small` measures serving speed against tower-http `ServeFile`.)
//!
//! ```text
//! cargo run --release --example serve_file [-- --size 256MiB]
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use axum::serve::{Listener, ListenerExt};
use mmap_body::MmapBody;
use mmap_body_devkit::files::temp_file;
use mmap_body_devkit::size::human;
use mmap_body_devkit::size::size_arg;
use mmap_body_devkit::BoxError;

async fn download(
    State(path): State<Arc<PathBuf>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response<MmapBody>, StatusCode> {
    // SAFETY: the example owns the file in its temp dir and never changes it
    // while it is mapped.
    let body = unsafe { MmapBody::open(&*path) }.map_err(|_| StatusCode::NOT_FOUND)?;
    let mut response = mmap_body::serve::respond(&method, &headers, body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let size = size_arg(256 << 20)?.max(1);
    let (_dir, path) = temp_file("served.bin", size)?;

    let app = axum::Router::new()
        .route("/served.bin", axum::routing::get(download))
        .with_state(Arc::new(path.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let url = format!("http://{}/served.bin", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving {} ({}) at {url}", path.display(), human(size));

    let client = reqwest::Client::builder().no_proxy().build()?;
    let whole = client.get(&url).send().await?;
    let status = whole.status();
    let etag = whole.headers().get(header::ETAG).cloned();
    let length = whole.content_length();
    let body = whole.bytes().await?;
    println!(
        "GET            -> {status}, content-length {length:?}, etag {etag:?}, {} received",
        human(body.len() as u64)
    );
    if status != StatusCode::OK || body.len() as u64 != size {
        return Err("the whole file did not arrive".into());
    }

    // Resume a download that stopped halfway, as curl -C - does.
    let half = size / 2;
    let mut resume = client
        .get(&url)
        .header(header::RANGE, format!("bytes={half}-"));
    if let Some(etag) = &etag {
        resume = resume.header(header::IF_RANGE, etag);
    }
    let rest = resume.send().await?;
    let status = rest.status();
    let range = rest.headers().get(header::CONTENT_RANGE).cloned();
    let tail = rest.bytes().await?;
    println!(
        "GET resume     -> {status}, content-range {range:?}, {}",
        human(tail.len() as u64)
    );
    if status != StatusCode::PARTIAL_CONTENT || tail[..] != body[half as usize..] {
        return Err("the resumed part does not match the file".into());
    }

    let past = client
        .get(&url)
        .header(header::RANGE, format!("bytes={size}-"))
        .send()
        .await?;
    println!(
        "GET past end   -> {}, content-range {:?}",
        past.status(),
        past.headers().get(header::CONTENT_RANGE)
    );

    if let Some(etag) = etag {
        let again = client
            .get(&url)
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await?;
        println!("GET if current -> {}, no body", again.status());
        if again.status() != StatusCode::NOT_MODIFIED {
            return Err("revalidation did not answer 304".into());
        }
    }
    let head = client.head(&url).send().await?;
    println!(
        "HEAD           -> {}, content-length {:?}",
        head.status(),
        head.headers().get(header::CONTENT_LENGTH)
    );
    Ok(())
}
