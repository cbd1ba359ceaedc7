//! A download that carries on after its connection is cut: a 256 MiB file
//! served by a local server (`mmap_body::serve::respond`), fetched through
//! a relay that cuts the first three connections partway, by a
//! hyper-util client with `ResumeDownloadLayer`. Each cut makes the body
//! ask for the rest (`Range: bytes=N-`, `If-Range: <ETag>`); the progress
//! bar (indicatif) carries on from there instead of starting again at 0,
//! and the bytes received are hashed and compared with the file's.
//!
//! Crates it uses, to copy it into your own: `mmap-body` (`download`,
//! `serve`, `progress`), `axum`, `tokio`, `hyper-util` (`client-legacy`,
//! `tokio`), `tower` (`util`), `http`, `http-body-util`, `bytes`,
//! `indicatif`, `sha2`, `tempfile`.
//!
//! ```text
//! cargo run --release --example download --features download [-- --size 1GiB]
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use mmap_body::download::ResumeDownloadLayer;
use mmap_body::progress::Progress;
use mmap_body::MmapBody;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Forwards connections to `upstream`, cutting connection number `i` once
/// `cuts[i]` bytes of its answer went through (later ones pass whole).
/// Counts every byte it passes to the client in `wire`.
async fn cutting_relay(
    upstream: std::net::SocketAddr,
    cuts: Vec<u64>,
    wire: Arc<AtomicU64>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((client, _)) = listener.accept().await {
            let cut = cuts.get(n).copied().unwrap_or(u64::MAX);
            n += 1;
            let wire = wire.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut passed = 0u64;
                let mut buf = vec![0u8; 64 << 10];
                while passed < cut {
                    let want = buf
                        .len()
                        .min((cut - passed).try_into().unwrap_or(usize::MAX));
                    let Ok(n @ 1..) = server_read.read(&mut buf[..want]).await else {
                        break;
                    };
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    passed += n as u64;
                    wire.fetch_add(n as u64, Ordering::Relaxed);
                }
                // Dropping both halves closes the connection: the cut.
                up.abort();
            });
        }
    });
    addr
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let size: u64 = match std::env::args().skip_while(|a| a != "--size").nth(1) {
        Some(s) if s.ends_with("GiB") => s.trim_end_matches("GiB").parse::<u64>()? << 30,
        Some(s) if s.ends_with("MiB") => s.trim_end_matches("MiB").parse::<u64>()? << 20,
        Some(s) => s.parse()?,
        None => 256 << 20,
    };
    // The file: pseudo-random bytes, and their SHA-256.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("big.bin");
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
    drop(file);
    let expected = format!("{:x}", sha.finalize());

    // The server: the file with Range, If-Range and a strong ETag.
    let served = path.clone();
    let app = Router::new().route(
        "/big.bin",
        get(move |method: Method, headers: HeaderMap| async move {
            // SAFETY: the demo owns the file and never changes it.
            let body = unsafe { MmapBody::open(&served) }.map_err(|_| StatusCode::NOT_FOUND)?;
            Ok::<Response<MmapBody>, StatusCode>(mmap_body::serve::respond(&method, &headers, body))
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The network: three cuts, at 20%, 30% and 45% of each connection.
    let wire = Arc::new(AtomicU64::new(0));
    let cuts = vec![size / 5, size * 3 / 10, size * 45 / 100];
    let relay = cutting_relay(server, cuts, wire.clone()).await;

    // The client: hyper-util with the layer.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(
            ResumeDownloadLayer::new()
                .backoff(Duration::from_millis(20), Duration::from_millis(200)),
        )
        .service(client);
    let progress = Progress::new();
    let mut request = http::Request::get(format!("http://{relay}/big.bin")).body(Empty::new())?;
    request.extensions_mut().insert(progress.clone());

    let bar = ProgressBar::new(size);
    bar.set_style(ProgressStyle::with_template(
        "answer {msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
    )?);
    let started = Instant::now();
    let response = client.oneshot(request).await?;
    println!("{} {:?}", response.status(), response.headers().get("etag"));
    let mut body = response.into_body();
    let (mut sha, mut attempt) = (Sha256::new(), 0);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            sha.update(&data);
        }
        if progress.attempt() != attempt {
            attempt = progress.attempt();
            if attempt > 1 {
                let from = body.resumed_at().last().copied().unwrap_or(0);
                let line = format!("connection cut; answer {attempt} carries on from byte {from}");
                // Without a terminal the bar is hidden; say it anyway.
                if bar.is_hidden() {
                    println!("{line}");
                } else {
                    bar.println(line);
                }
            }
            bar.set_message(attempt.to_string());
        }
        bar.set_position(progress.sent());
    }
    bar.finish();
    let got = format!("{:x}", sha.finalize());
    println!(
        "{} MiB in {:.2} s, resumed at {:?}; {} MiB crossed the relay (a restart from zero \
         after each cut would need {} MiB)",
        size >> 20,
        started.elapsed().as_secs_f64(),
        body.resumed_at(),
        wire.load(Ordering::Relaxed) >> 20,
        (size + size / 5 + size * 3 / 10 + size * 45 / 100) >> 20,
    );
    if got != expected {
        return Err("the bytes received differ from the file's".into());
    }
    println!("whole and equal (SHA-256 {got})");
    Ok(())
}
