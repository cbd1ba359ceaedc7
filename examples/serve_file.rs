//! An axum server on 127.0.0.1 that serves a temp file as a `FileBody`
//! with `mmap_body::serve::respond` (Range, If-Range, If-None-Match, HEAD),
//! asked by a reqwest client for the whole file (SHA-256 checked), a resumed
//! download and a revalidation. Prints what each request got.
//!
//! Crates it uses, to copy it into your own: `mmap-body` (`serve`, a
//! default), `axum`, `reqwest`, `tokio`, `sha2`, `tempfile`.
//!
//! ```text
//! cargo run --release --example serve_file [-- --size 256MiB]
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use axum::serve::{Listener, ListenerExt};
use mmap_body::FileBody;
use sha2::{Digest, Sha256};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn download(
    State(path): State<Arc<PathBuf>>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response<FileBody>, StatusCode> {
    let body = FileBody::open(&*path).map_err(|_| StatusCode::NOT_FOUND)?;
    let mut response = mmap_body::serve::respond(&method, &headers, body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let size = match std::env::args().skip_while(|a| a != "--size").nth(1) {
        Some(size) => parse_size(&size)?.max(1),
        None => 256 << 20,
    };
    // The file to serve: pseudo-random bytes, and their SHA-256.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("served.bin");
    let (mut file, mut sha) = (std::fs::File::create(&path)?, Sha256::new());
    let (mut block, mut x, mut left) = (vec![0u8; 1 << 20], 0x9e37_79b9_7f4a_7c15_u64, size);
    while left > 0 {
        let n = left.min(1 << 20) as usize;
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
    let file_sha = format!("{:x}", sha.finalize());

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
    let got_sha = format!("{:x}", Sha256::digest(&body));
    println!(
        "GET            -> {status}, content-length {length:?}, etag {etag:?}, {} received, \
         sha256 {}..",
        human(body.len() as u64),
        &got_sha[..16]
    );
    if status != StatusCode::OK || got_sha != file_sha {
        return Err("the whole file did not arrive".into());
    }
    println!("                  the client received the file whole (SHA-256 equal)");

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

/// `64.0 MiB`, `41.0 KiB`, `512 B`.
fn human(bytes: u64) -> String {
    match [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .iter()
        .find(|(s, _)| bytes >> s > 0)
    {
        Some((shift, unit)) => format!("{:.1} {unit}", bytes as f64 / (1u64 << shift) as f64),
        None => format!("{bytes} B"),
    }
}
