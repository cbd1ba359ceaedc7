//! `--resume`: an upload dropped at 70%, resumed against resent. One
//! process: a hyper server storing uploads with `resume::Uploads` (to files
//! in a temp dir) that drops every connection once 70% of the file has
//! arrived, and a client uploading the file with `MmapBody` through
//! `ReplayLayer` + `RetryLayer(RetryPolicy)` and either
//!
//! - `resumed`: `ResumeLayer` (the retry asks the offset and sends the
//!   rest), or
//! - `resent`: no `ResumeLayer`, the request itself asking for an upload
//!   (`Upload-Complete: ?1`, the draft's optimistic creation) so that the
//!   server stores it the same way; the retry sends it all again.
//!
//! Reported: the time to the final answer, the bytes the server received,
//! the bytes the client wrote (`Progress::sent_in_all`), the process's CPU.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::progress::Progress;
use mmap_body::resume::{Handled, ResumeLayer, Uploads};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayLayer, UploadLayer};
use mmap_body_devkit::files::write_file;
use mmap_body_devkit::size::human;
use mmap_body_devkit::BoxError;
use tokio::sync::Notify;
use tower::{ServiceBuilder, ServiceExt};

use crate::measure::cpu_secs;
use crate::report::median;

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    received: u64,
    written: u64,
    cpu: f64,
}

/// A server that drops every connection once `at` bytes have arrived.
async fn server(dir: &Path, at: u64) -> Result<(SocketAddr, Uploads), BoxError> {
    let uploads = Uploads::new(dir, "/uploads/");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cut = Arc::new(Notify::new());
    let (watch, trip) = (uploads.clone(), cut.clone());
    tokio::spawn(async move {
        while watch.received() < at {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        trip.notify_waiters();
    });
    let store = uploads.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (uploads, cut) = (store.clone(), cut.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(uploads.clone(), req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                tokio::select! {
                    _ = builder.serve_connection(TokioIo::new(stream), service) => {}
                    _ = cut.notified() => {}
                }
            });
        }
    });
    Ok((addr, uploads))
}

async fn handle(
    uploads: Uploads,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let handled = match uploads.id_in(&path).map(str::to_owned) {
        Some(id) => uploads.handle(&id, req).await,
        None if req.method() == Method::OPTIONS => Handled::Respond(uploads.options()),
        None => uploads.create(req).await,
    };
    Ok(match handled {
        Handled::Respond(res) => res,
        Handled::Complete(done) => {
            let _ = std::fs::remove_file(done.path());
            done.respond(Response::new(Full::new(Bytes::new())))
        }
    })
}

async fn once(path: &Path, size: u64, resume: bool) -> Result<Sample, BoxError> {
    let dir = tempfile::tempdir()?;
    let (addr, uploads) = server(dir.path(), size * 7 / 10).await?;
    let client = crate::child::client::<
        mmap_body::progress::ProgressBody<mmap_body::resume::ResumeBody<MmapBody>>,
    >(crate::cases::Proto::H1);
    let policy = RetryPolicy::default().backoff(Duration::from_millis(1), Duration::from_millis(2));
    // SAFETY: the bench owns the file and nothing changes it while mapped.
    let body = unsafe { MmapBody::open(path)? };
    let mut request = Request::put(format!("http://{addr}/files")).body(body)?;
    if !resume {
        request
            .headers_mut()
            .insert("upload-complete", "?1".parse()?);
    }
    let progress = Progress::new();
    request.extensions_mut().insert(progress.clone());
    let (cpu, start) = (cpu_secs()?, Instant::now());
    // The same stack both ways; without `resume` it sends every attempt
    // whole (its request asks the server for an upload of it all).
    let mut stack = UploadLayer::new()
        .replay(ReplayLayer::new(64 << 10))
        .retry(policy);
    if resume {
        stack = stack.resume(ResumeLayer::new());
    }
    let response = ServiceBuilder::new()
        .layer(stack)
        .service(client)
        .oneshot(request)
        .await?;
    let status = response.status();
    response.into_body().collect().await?;
    let seconds = start.elapsed().as_secs_f64();
    if !status.is_success() {
        return Err(format!("the upload failed: {status}").into());
    }
    Ok(Sample {
        seconds,
        received: uploads.received(),
        written: progress.sent_in_all(),
        cpu: cpu_secs()? - cpu,
    })
}

/// Runs `runs` rounds of both cases, alternating which goes first.
pub(crate) fn run(size: u64, runs: usize, record: Option<&Path>) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("resume.bin");
    write_file(&path, size)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let header = format!(
        "{}\nresume: one {} PUT over HTTP/1.1, every connection dropped once 70% has \
         arrived; {runs} round(s), one process (client and server)\n",
        crate::report::machine(),
        human(size)
    );
    println!("{header}");
    let (mut resumed, mut resent) = (Vec::new(), Vec::new());
    for round in 0..runs {
        for resume in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let sample = rt.block_on(once(&path, size, resume))?;
            println!(
                "round {}/{runs}: {:<8} {:.2} s, server received {}, client wrote {}",
                round + 1,
                if resume { "resumed" } else { "resent" },
                sample.seconds,
                human(sample.received),
                human(sample.written)
            );
            if resume { &mut resumed } else { &mut resent }.push(sample);
        }
    }
    let row = |name: &str, samples: &[Sample]| {
        let pick = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect()).unwrap_or(0.0);
        format!(
            "| {name} | {:.2} | {} | {} | {:.2} |\n",
            pick(|s| s.seconds),
            human(pick(|s| s.received as f64) as u64),
            human(pick(|s| s.written as f64) as u64),
            pick(|s| s.cpu),
        )
    };
    let mut tables = String::from(
        "| case | seconds to the answer (median) | bytes the server received | bytes the client wrote | CPU s (client + server) |\n|---|---|---|---|---|\n",
    );
    tables.push_str(&row("`ResumeLayer`: the retry sends the rest", &resumed));
    tables.push_str(&row("no `ResumeLayer`: the retry sends it all", &resent));
    let ratios: Vec<f64> = resumed
        .iter()
        .zip(&resent)
        .map(|(r, s)| r.seconds / s.seconds)
        .collect();
    let bytes: Vec<f64> = resumed
        .iter()
        .zip(&resent)
        .map(|(r, s)| r.received as f64 / s.received as f64)
        .collect();
    tables.push_str(&format!(
        "\nresumed / resent, paired per round: time {:.2}x, bytes received {:.2}x\n",
        median(ratios).unwrap_or(0.0),
        median(bytes).unwrap_or(0.0)
    ));
    println!("{tables}");
    if let Some(file) = record {
        crate::record::append(file, &header, &tables)?;
    }
    Ok(())
}
