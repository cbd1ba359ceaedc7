//! Uploads a temp file with `MmapBody` through a hyper-util client to a hyper
//! server on 127.0.0.1, and prints what the server saw and what it cost: the
//! throughput, the client's peak heap (a counting allocator, below) and its
//! peak RSS growth (Linux).
//!
//! Crates it uses, to copy it into your own: `mmap-body`, `tokio`, `hyper`
//! (`server`, `http1`), `hyper-util` (`client-legacy`, `http1`, `tokio`),
//! `http`, `http-body-util`, `bytes`, `tempfile`.
//!
//! ```text
//! cargo run --release --example quickstart [-- --size 512MiB --chunk-size 1MiB --keep-pages]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::MmapBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Counts the heap of the threads that set `COUNTED` (the client's), not
/// that of the server running beside it in this process.
struct CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

thread_local!(static COUNTED: Cell<bool> = const { Cell::new(false) });
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call goes to `System` with the caller's arguments; the
// counters beside it allocate nothing.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promise to `alloc`, passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && counted() {
            ALLOCATIONS.fetch_add(1, Relaxed);
            PEAK.fetch_max(
                LIVE.fetch_add(layout.size(), Relaxed) + layout.size(),
                Relaxed,
            );
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        if counted() {
            // (Memory allocated before counting began may be freed.)
            let _ = LIVE.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(layout.size())));
        }
    }
}

/// The receiving end: reads every body to its end and answers how its
/// length was announced and how many bytes arrived. It hashes nothing, so
/// that it never slows the measurement down.
async fn count_body(req: http::Request<Incoming>) -> Result<http::Response<Full<Bytes>>, BoxError> {
    let headers = req.headers();
    let framing = match (
        headers.get("content-length"),
        headers.get("transfer-encoding"),
    ) {
        (Some(n), None) => format!("content-length={}", n.to_str()?),
        (cl, te) => format!("content-length={cl:?} transfer-encoding={te:?}"),
    };
    let (mut body, mut received) = (req.into_body(), 0);
    while let Some(frame) = body.frame().await {
        received += frame?.data_ref().map_or(0, |d| d.len() as u64);
    }
    Ok(http::Response::new(Full::from(format!(
        "{framing} received={received}"
    ))))
}

fn main() -> Result<(), BoxError> {
    let (mut size, mut chunk, mut release) = (512 << 20, mmap_body::DEFAULT_CHUNK_SIZE, true);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or("missing value after an option");
        match arg.as_str() {
            "--size" => size = parse_size(&value()?)?,
            "--chunk-size" => chunk = parse_size(&value()?)? as usize,
            "--keep-pages" => release = false,
            _ => return Err("options: --size 1GiB, --chunk-size 1MiB, --keep-pages".into()),
        }
    }

    // A temp file of pseudo-random bytes, written back to the disk so that
    // no writeback runs while the upload reads it.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("quickstart.bin");
    let mut file = std::fs::File::create(&path)?;
    let (mut block, mut x, mut left) = (vec![0u8; 1 << 20], 0x9e37_79b9_7f4a_7c15_u64, size);
    while left > 0 {
        let n = left.min(1 << 20) as usize;
        for word in block[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    println!("temp file : {} ({})", path.display(), human(size));

    // The server runs on its own runtime's threads, so the allocator counts
    // only the client, which runs on this one.
    let server = tokio::runtime::Runtime::new()?;
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    server.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(count_body);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::spawn(conn);
        }
    });
    println!("server    : hyper on http://{addr}");

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    COUNTED.set(true);
    let outcome = client_rt.block_on(async {
        // SAFETY: the file is ours, in a temp dir, and nothing changes it
        // while it is mapped.
        let body = unsafe { MmapBody::open(&path)? }
            .chunk_size(chunk)
            .release_sent_pages(release);
        let client = Client::builder(TokioExecutor::new()).build_http();
        let request = http::Request::put(format!("http://{addr}/upload")).body(body)?;
        // Linux: reset the peak RSS (VmHWM) to the current RSS.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let rss_before = status_kib("VmRSS:");
        let started = Instant::now();
        let response = client.request(request).await?;
        let elapsed = started.elapsed();
        let rss_growth = status_kib("VmHWM:").saturating_sub(rss_before);
        let text = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((text, elapsed, rss_growth))
    });
    COUNTED.set(false);
    let (text, elapsed, rss_growth_kib) = outcome?;

    let gib_per_s = size as f64 / elapsed.as_secs_f64() / (1u64 << 30) as f64;
    println!("server saw: {}", String::from_utf8_lossy(&text));
    println!(
        "upload    : {} in {:.3} s = {gib_per_s:.2} GiB/s, {} frames of the mapping \
         and the last byte on its own",
        human(size),
        elapsed.as_secs_f64(),
        size.saturating_sub(1).div_ceil(chunk as u64)
    );
    println!(
        "client    : peak heap {} in {} allocations; peak RSS growth {}",
        human(PEAK.load(Relaxed) as u64),
        ALLOCATIONS.load(Relaxed),
        human(rss_growth_kib * 1024)
    );
    let expected = format!("content-length={size} received={size}");
    if !String::from_utf8_lossy(&text).starts_with(&expected) {
        return Err(format!("the server did not see `{expected}`").into());
    }
    Ok(())
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
