//! Uploads a temp file with `MmapBody` through a hyper-util client to a hyper
//! server on 127.0.0.1, and prints what the server saw and what it cost.
//!
//! ```text
//! cargo run --release --example quickstart [-- --size 512MiB --chunk-size 1MiB --keep-pages]
//! ```

#[path = "../tests/support/alloc.rs"]
mod alloc;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::MmapBody;

#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let mut size: u64 = 512 << 20;
    let mut chunk = mmap_body::DEFAULT_CHUNK_SIZE;
    let mut release = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--keep-pages" {
            release = false;
            continue;
        }
        let value = args.next().ok_or("missing value after an option")?;
        match arg.as_str() {
            "--size" => size = parse_size(&value)?,
            "--chunk-size" => chunk = parse_size(&value)? as usize,
            _ => {
                let usage = "options: --size 1GiB, --chunk-size 1MiB, --keep-pages";
                return Err(format!("unknown option {arg}; {usage}").into());
            }
        }
    }

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("quickstart.bin");
    write_file(&path, size)?;
    println!("temp file : {} ({})", path.display(), human(size));

    // The server runs on its own runtime threads, so the allocator below
    // counts only the client.
    let server = tokio::runtime::Runtime::new()?;
    let addr = server.block_on(start_server())?;
    println!("server    : hyper on http://{addr}");

    let (outcome, heap) = alloc::track_heap(async {
        // SAFETY: the file is ours, in a temp dir, and nothing changes it
        // while it is mapped.
        let body = unsafe { MmapBody::open(&path)? }
            .chunk_size(chunk)
            .release_sent_pages(release);
        let client = Client::builder(TokioExecutor::new()).build_http();
        let request = http::Request::put(format!("http://{addr}/upload")).body(body)?;
        reset_peak_rss();
        let rss_before = status_kib("VmRSS:");
        let started = Instant::now();
        let response = client.request(request).await?;
        let elapsed = started.elapsed();
        let rss_growth = status_kib("VmHWM:").saturating_sub(rss_before);
        let text = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((text, elapsed, rss_growth))
    });
    let (text, elapsed, rss_growth_kib) = outcome?;

    let gib_per_s = size as f64 / elapsed.as_secs_f64() / (1u64 << 30) as f64;
    println!("server saw: {}", String::from_utf8_lossy(&text));
    println!(
        "upload    : {} in {:.3} s = {gib_per_s:.2} GiB/s, {} frames",
        human(size),
        elapsed.as_secs_f64(),
        size.div_ceil(chunk as u64)
    );
    println!(
        "client    : peak heap {} in {} allocations; peak RSS growth {}",
        human(heap.peak as u64),
        heap.allocations,
        human(rss_growth_kib * 1024)
    );
    let expected = format!("content-length={size} transfer-encoding=none received={size}");
    if !String::from_utf8_lossy(&text).starts_with(&expected) {
        return Err(format!("the server did not see `{expected}`").into());
    }
    Ok(())
}

/// Accepts connections on 127.0.0.1 and answers each request with the
/// framing headers it came with and the number of body bytes received.
async fn start_server() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(count_body);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn count_body(
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .unwrap_or("none")
            .to_owned()
    };
    let framing = format!(
        "content-length={} transfer-encoding={}",
        header(http::header::CONTENT_LENGTH),
        header(http::header::TRANSFER_ENCODING)
    );
    let mut body = req.into_body();
    let mut received = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        received += frame.data_ref().map_or(0, |d| d.len() as u64);
    }
    let text = format!("{framing} received={received}");
    Ok(http::Response::new(Full::new(Bytes::from(text))))
}

fn write_file(path: &std::path::Path, size: u64) -> std::io::Result<()> {
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

fn parse_size(text: &str) -> Result<u64, BoxError> {
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
    Ok(n * scale)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak-RSS counter to the current RSS (Linux); elsewhere the
/// figure printed is the process's peak since it started.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
