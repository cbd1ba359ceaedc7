//! Uploads a temp file with `MmapBody` through a hyper-util client to a hyper
//! server on 127.0.0.1, and prints what the server saw and what it cost.
//!
//! ```text
//! cargo run --release --example quickstart [-- --size 512MiB --chunk-size 1MiB --keep-pages]
//! ```

use std::time::Instant;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mmap_body::MmapBody;
use mmap_body_devkit::alloc::{track_heap, CountingAlloc};
use mmap_body_devkit::counting::start_counting_server;
use mmap_body_devkit::files::temp_file;
use mmap_body_devkit::rss::{reset_peak_rss, status_kib};
use mmap_body_devkit::size::{human, parse_size};
use mmap_body_devkit::BoxError;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

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

    let (_dir, path) = temp_file("quickstart.bin", size)?;
    println!("temp file : {} ({})", path.display(), human(size));

    // The server runs on its own runtime threads, so the allocator below
    // counts only the client.
    let server = tokio::runtime::Runtime::new()?;
    let addr = server.block_on(start_counting_server())?;
    println!("server    : hyper on http://{addr}");

    let (outcome, heap) = track_heap(async {
        // SAFETY: the file is ours, in a temp dir, and nothing changes it
        // while it is mapped.
        let body = unsafe { MmapBody::open(&path)? }
            .chunk_size(chunk)
            .release_sent_pages(release);
        let client = Client::builder(TokioExecutor::new()).build_http();
        let request = http::Request::put(format!("http://{addr}/upload")).body(body)?;
        // Linux; elsewhere the figure printed is the process's peak since
        // it started.
        let _ = reset_peak_rss();
        let rss_before = status_kib("VmRSS:").unwrap_or(0);
        let started = Instant::now();
        let response = client.request(request).await?;
        let elapsed = started.elapsed();
        let rss_growth = status_kib("VmHWM:").unwrap_or(0).saturating_sub(rss_before);
        let text = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((text, elapsed, rss_growth))
    });
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
        human(heap.peak as u64),
        heap.allocations,
        human(rss_growth_kib * 1024)
    );
    let expected = format!("content-length={size} received={size}");
    if !String::from_utf8_lossy(&text).starts_with(&expected) {
        return Err(format!("the server did not see `{expected}`").into());
    }
    Ok(())
}
