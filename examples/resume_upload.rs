//! A resumable upload you can watch: a 512 MiB file POSTed through
//! `UploadLayer` with `ResumeLayer` (replay, retries, resumed appends and
//! progress) to a local axum server that stores uploads with
//! `resume::Uploads`. The network "fails" once: the server drops every
//! connection when 60% has arrived. The retry asks the server how much it
//! holds and sends only the rest; the progress bar (indicatif) carries on
//! from there instead of starting again at 0.
//!
//! Crates it uses, to copy it into your own: `mmap-body` (`resume`,
//! `progress`), `axum`, `tokio`, `hyper` (`server`), `hyper-util`
//! (`client-legacy`, `server-auto`, `tokio`), `tower` (`util`),
//! `http`, `http-body-util`, `indicatif`, `sha2`, `tempfile`.
//!
//! ```text
//! cargo run --release --example resume_upload [-- --size 2GiB]
//! ```

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use indicatif::{ProgressBar, ProgressStyle};
use mmap_body::progress::Progress;
use mmap_body::resume::{Handled, ResumeLayer, Resumed, Uploads};
use mmap_body::{FileBody, UploadLayer};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tower::{ServiceBuilder, ServiceExt};

/// The server's side: the routes an application adds.
fn app(uploads: Uploads) -> Router {
    Router::new()
        .route("/files", post(create).options(options))
        .route("/uploads/{id}", any(upload))
        .with_state(uploads)
}

async fn options(State(uploads): State<Uploads>) -> Response {
    uploads.options().into_response()
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn create(State(uploads): State<Uploads>, req: Request) -> Response {
    if !Uploads::is_creation(&req) {
        return (
            http::StatusCode::BAD_REQUEST,
            "plain uploads are not taken here",
        )
            .into_response();
    }
    finish(uploads.create(req).await).await
}

async fn upload(State(uploads): State<Uploads>, Path(id): Path<String>, req: Request) -> Response {
    finish(uploads.handle(&id, req).await).await
}

/// A complete upload is the application's to process; here it is hashed.
async fn finish(handled: Handled) -> Response {
    match handled {
        Handled::Respond(res) => res.into_response(),
        Handled::Complete(done) => {
            let path = done.path().to_owned();
            let sha = tokio::task::spawn_blocking(move || sha256_file(&path)).await;
            let sha = match sha {
                Ok(Ok(sha)) => sha,
                _ => {
                    return (http::StatusCode::INTERNAL_SERVER_ERROR, "unreadable").into_response()
                }
            };
            let text = format!("stored {} bytes, sha256 {sha}", done.len());
            done.respond(text.into_response())
        }
    }
}

/// The SHA-256 of the file at `path`, read 1 MiB at a time.
fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let (mut file, mut sha, mut buf) =
        (std::fs::File::open(path)?, Sha256::new(), vec![0; 1 << 20]);
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(format!("{:x}", sha.finalize())),
            n => sha.update(&buf[..n]),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let size = match std::env::args().skip_while(|a| a != "--size").nth(1) {
        Some(size) => parse_size(&size)?,
        None => 512 << 20,
    };
    // The file to upload: pseudo-random bytes, and their SHA-256.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("upload.bin");
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
    let sent = format!("{:x}", sha.finalize());
    let store = tempfile::tempdir_in(dir.path())?;
    let uploads = Uploads::new(store.path(), "/uploads/");

    // The server, with a way to drop every connection it has open: the
    // "network failure" of this demo, once 60% of the upload has arrived.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cut = Arc::new(Notify::new());
    let (watch, trip) = (uploads.clone(), cut.clone());
    let tripped = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while watch.received() < size * 6 / 10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tripped.store(true, Ordering::SeqCst);
        trip.notify_waiters();
    });
    let router = app(uploads.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (router, cut) = (router.clone(), cut.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    router.clone().oneshot(req.map(axum::body::Body::new))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                tokio::select! {
                    _ = builder.serve_connection(TokioIo::new(stream), service) => {}
                    _ = cut.notified() => {}
                }
            });
        }
    });

    // The client's side.
    // Replay, retries, resumed appends and progress, in the order they
    // work in.
    let service = ServiceBuilder::new()
        .layer(UploadLayer::new().resume(ResumeLayer::new()))
        .service(Client::builder(TokioExecutor::new()).build_http());
    let body = FileBody::open(&path)?;
    let mut request = http::Request::post(format!("http://{addr}/files")).body(body)?;
    let progress = Progress::new();
    request.extensions_mut().insert(progress.clone());

    let bar = ProgressBar::new(size);
    bar.set_style(ProgressStyle::with_template(
        "attempt {msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
    )?);
    let started = Instant::now();
    let upload = tokio::spawn(service.oneshot(request));
    let mut attempt = 0;
    while !upload.is_finished() {
        if progress.attempt() != attempt {
            attempt = progress.attempt();
            if attempt > 1 {
                let line = format!(
                    "connection dropped; attempt {attempt} carries on from what the server holds"
                );
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.set_position(progress.sent());
    bar.finish();
    let response = upload.await??;
    let status = response.status();
    let resumed = response.extensions().get::<Resumed>().cloned();
    let text = response.into_body().collect().await?.to_bytes();
    println!("server: {status} {}", String::from_utf8_lossy(&text).trim());
    if let Some(resumed) = resumed {
        let offsets: Vec<String> = resumed.appends.iter().map(|&o| human(o)).collect();
        println!("appends started at: {}", offsets.join(", "));
    }
    println!(
        "{} in {:.2} s; {} crossed the wire in all ({} received by the server), not {} as a resend would",
        human(size),
        started.elapsed().as_secs_f64(),
        human(progress.sent_in_all()),
        human(uploads.received()),
        human(size + size * 6 / 10),
    );
    if !status.is_success() || !text.ends_with(sent.as_bytes()) {
        return Err(format!("the upload failed ({status}) or the server got other bytes").into());
    }
    println!("the server stored the file whole (SHA-256 equal)");
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
