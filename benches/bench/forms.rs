//! `--forms` (with `--features multipart,reqwest`): a `multipart/form-data`
//! upload of the file (one text field and the file as a part) with reqwest
//! 0.13, three ways, and once more with a fault:
//!
//! - `FormBody`: `multipart::Form` with `Part::mmap`, through
//!   `ReplayLayer` + `RetryLayer(RetryPolicy)` + `ReqwestService`;
//! - reqwest `multipart::Form` with `Part::stream_with_length` over
//!   `reqwest::Body::from(tokio::fs::File)` (what reqwest offers for a
//!   file: 4 KiB reads), and over a `ReaderStream` of 64 KiB reads;
//! - `FormBody`, the server dropping the first attempt's connection once
//!   half of the form has arrived: the retry clones the form (nothing was
//!   recorded: the replay cap is 64 KiB) and sends it whole from the file.
//!
//! The server (hyper, HTTP/1.1 and h2c) runs in a process of its own (this
//! binary with `--child forms-server`), so the CPU time (`getrusage`) and
//! the heap peak (the counting allocator, every thread) measured here are
//! the client's alone. The cases run in rounds, in turn forwards and
//! backwards; the ratios are paired per round.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::multipart::{Form, Part};
use mmap_body::reqwest::{RequestBuilderExt, ReqwestService};
use mmap_body::retry::RetryPolicy;
use mmap_body::{MmapBody, ReplayLayer};
use mmap_body_devkit::alloc::{stop_tracking, track_all_threads};
use mmap_body_devkit::counting::framing;
use mmap_body_devkit::files::write_file;
use mmap_body_devkit::size::human;
use mmap_body_devkit::BoxError;
use tower::retry::RetryLayer;
use tower::ServiceBuilder;

use crate::measure::cpu_secs;
use crate::report::{gib_per_s, median};

/// The cases, in the order of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    ReqwestFile,
    Reqwest64K,
    OursDropped,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Ours,
        Kind::ReqwestFile,
        Kind::Reqwest64K,
        Kind::OursDropped,
    ];

    fn describe(self) -> &'static str {
        match self {
            Kind::Ours => "**`multipart::Form`** + `Part::mmap` via `ReqwestService` + layers",
            Kind::ReqwestFile => {
                "reqwest `multipart::Part::stream_with_length(Body::from(tokio::fs::File))`"
            }
            Kind::Reqwest64K => "reqwest `Part::stream_with_length` over a 64 KiB `ReaderStream`",
            Kind::OursDropped => "`multipart::Form`, dropped at 50%: resent whole by a clone",
        }
    }
}

/// One measurement.
#[derive(Debug, Clone)]
struct Sample {
    seconds: f64,
    cpu: f64,
    heap_peak: u64,
    /// What the server said of the last request: framing and bytes.
    seen: String,
}

/// The server's process: counts each body; a request to `/drop-half` has
/// its connection dropped once half its `Content-Length` arrived, every
/// other time (the first, third ...), and the others' answers say which
/// request they were. Prints `LISTENING <addr>`.
pub(crate) fn server_child() -> Result<(), BoxError> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("LISTENING {}", listener.local_addr()?);
        let requests = Arc::new(AtomicU64::new(0));
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let requests = requests.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| count(req, requests.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
        Ok(())
    })
}

async fn count(
    req: http::Request<Incoming>,
    requests: Arc<AtomicU64>,
) -> Result<http::Response<Full<Bytes>>, BoxError> {
    let framing = framing(req.version(), req.headers());
    let length: u64 = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(u64::MAX);
    let drop_half = req.uri().path() == "/drop-half";
    let n = if drop_half {
        requests.fetch_add(1, Ordering::SeqCst) + 1
    } else {
        0
    };
    let drop_at = (n % 2 == 1).then_some(length / 2);
    let mut body = req.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame?.data_ref().map_or(0, |d| d.len() as u64);
        if drop_at.is_some_and(|at| received >= at) {
            // An error from the service: hyper closes the connection.
            return Err("dropped at 50% on purpose".into());
        }
    }
    let attempt = if drop_half {
        format!(" request={n}")
    } else {
        String::new()
    };
    Ok(http::Response::new(Full::new(Bytes::from(format!(
        "{framing} received={received}{attempt}"
    )))))
}

/// Starts the server's process; it is killed when the handle drops.
struct Server {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Result<Server, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--child", "forms-server"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("the server printed {line:?}"))?
            .parse()?;
        Ok(Server { child, addr })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn once(kind: Kind, addr: SocketAddr, path: &Path, size: u64) -> Result<Sample, BoxError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()?;
    let route = if kind == Kind::OursDropped {
        "drop-half"
    } else {
        "form"
    };
    let url = format!("http://{addr}/{route}");
    track_all_threads();
    let (cpu, started) = (cpu_secs()?, Instant::now());
    let response = match kind {
        Kind::Ours | Kind::OursDropped => {
            // SAFETY: the bench owns the file and nothing changes it while
            // it is mapped.
            let file = unsafe { MmapBody::open(path)? };
            let form = Form::new()
                .text("key", "uploads/bench.bin")
                .part("file", Part::mmap(file).file_name("bench.bin"));
            let stack = ServiceBuilder::new()
                .layer(ReplayLayer::new(64 << 10))
                .layer(RetryLayer::new(
                    RetryPolicy::default()
                        .retry_non_idempotent(true)
                        .backoff(Duration::from_millis(1), Duration::from_millis(2)),
                ))
                .service(ReqwestService::new(client.clone()));
            client
                .post(&url)
                .header(CONTENT_TYPE, form.content_type())
                .send_through(&stack, form.into_body())
                .await?
        }
        Kind::ReqwestFile | Kind::Reqwest64K => {
            let file = tokio::fs::File::open(path).await?;
            let body = match kind {
                Kind::ReqwestFile => reqwest::Body::from(file),
                _ => reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                    file,
                    64 << 10,
                )),
            };
            let part = reqwest::multipart::Part::stream_with_length(body, size)
                .file_name("bench.bin")
                .mime_str("application/octet-stream")?;
            let form = reqwest::multipart::Form::new()
                .text("key", "uploads/bench.bin")
                .part("file", part);
            client.post(&url).multipart(form).send().await?
        }
    };
    let status = response.status();
    let seen = response.text().await?;
    let (seconds, cpu) = (started.elapsed().as_secs_f64(), cpu_secs()? - cpu);
    let heap = stop_tracking();
    if !status.is_success() {
        return Err(format!("{kind:?}: the server answered {status}: {seen}").into());
    }
    // The dropped case's answer is to a second attempt (an even request).
    if kind == Kind::OursDropped
        && seen
            .rsplit_once("request=")
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .is_none_or(|n| n % 2 == 1)
    {
        return Err(format!("{kind:?}: the first attempt was not dropped: {seen}").into());
    }
    Ok(Sample {
        seconds,
        cpu,
        heap_peak: heap.peak as u64,
        seen,
    })
}

/// Runs `runs` rounds of every case.
pub(crate) fn run(size: u64, runs: usize, record: Option<&Path>) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.bin");
    write_file(&path, size)?;
    let server = Server::start()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let header = format!(
        "{}\nforms: one {} file as a part of a `multipart/form-data` POST with reqwest 0.13 \
         over HTTP/1.1; {runs} round(s); the server in a process of its own, CPU and heap \
         the client's\n",
        crate::report::machine(),
        human(size)
    );
    println!("{header}");
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); Kind::ALL.len()];
    for round in 0..runs {
        let mut order: Vec<usize> = (0..Kind::ALL.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let kind = Kind::ALL[i];
            let sample = rt.block_on(once(kind, server.addr, &path, size))?;
            println!(
                "round {}/{runs}: {kind:?}: {:.2} s, {:.2} CPU s, heap peak {}: {}",
                round + 1,
                sample.seconds,
                sample.cpu,
                human(sample.heap_peak),
                sample.seen
            );
            samples[i].push(sample);
        }
    }
    let gib = size as f64 / f64::from(1 << 30);
    let mut tables = String::from(
        "| sender | framing seen | GiB/s (median; min–max) | CPU s/GiB (client) | heap peak (client) |\n\
         |---|---|---|---|---|\n",
    );
    for (kind, samples) in Kind::ALL.iter().zip(&samples) {
        let rates: Vec<f64> = samples.iter().map(|s| gib_per_s(size, s.seconds)).collect();
        let (min, max) = rates
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        let cpu = median(samples.iter().map(|s| s.cpu / gib).collect()).unwrap_or(0.0);
        let heap = median(samples.iter().map(|s| s.heap_peak as f64).collect()).unwrap_or(0.0);
        let seen = samples.last().map_or("", |s| s.seen.as_str());
        let framing = seen.split(' ').next().unwrap_or("");
        tables.push_str(&format!(
            "| {} | {framing} | {:.2} ({min:.2}–{max:.2}) | {cpu:.2} | {} |\n",
            kind.describe(),
            median(rates.clone()).unwrap_or(0.0),
            human(heap as u64)
        ));
    }
    let paired = |a: usize, b: usize, f: fn(&Sample, &Sample) -> f64| {
        let ratios: Vec<f64> = samples[a]
            .iter()
            .zip(&samples[b])
            .map(|(x, y)| f(x, y))
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        (median(ratios).unwrap_or(0.0), lo, hi)
    };
    tables.push('\n');
    for (other, name) in [(1, "Body::from(File)"), (2, "64 KiB ReaderStream")] {
        let (speed, lo, hi) = paired(0, other, |ours, theirs| theirs.seconds / ours.seconds);
        let (cpu, clo, chi) = paired(0, other, |ours, theirs| theirs.cpu / ours.cpu);
        let met = if speed >= 2.0 { "met" } else { "missed" };
        tables.push_str(&format!(
            "FormBody vs reqwest multipart over {name}, paired per round: {speed:.2}× the \
             throughput ({lo:.2}–{hi:.2}; goal ≥ 2×: {met}), {cpu:.2}× less CPU per GiB \
             ({clo:.2}–{chi:.2})\n"
        ));
    }
    let (slower, lo, hi) = paired(3, 0, |dropped, whole| dropped.seconds / whole.seconds);
    tables.push_str(&format!(
        "FormBody dropped at 50% and resent whole / sent once, paired: {slower:.2}× the time \
         ({lo:.2}–{hi:.2}; 1.5× is the bytes sent)\n"
    ));
    println!("{tables}");
    if let Some(file) = record {
        crate::record::append(file, &header, &tables)?;
    }
    Ok(())
}
