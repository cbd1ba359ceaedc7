//! `--proxies`: this crate's one-line proxy against `axum-reverse-proxy`
//! (with its `RetryLayer`) and against plain forwarding, for one upload of
//! the file through each, (a) with no fault and (b) with the upstream
//! dropping the connection once the first attempt has sent 50%.
//!
//! The proxy runs in a process of its own (this binary with
//! `--child proxy <kind> <upstream>`), so that its CPU, heap peak (every
//! thread, the counting allocator) and peak RSS (`VmHWM`) are its own.
//! Here: the upstream (hyper, HTTP/1.1; it hashes every body and says
//! whether one arrived whole) and the client (an `MmapBody` PUT with
//! hyper-util).
//!
//! - `plain`: an axum handler forwarding the incoming body with a
//!   hyper-util client: no replay, no retry;
//! - `mmap-body`: `Router::new().fallback_service(ReverseProxy…)`, replay
//!   64 KiB in memory, the rest spilled to disk, `RetryPolicy` (1 ms waits);
//! - `mmap-body-no-spill`: the same with its defaults (8 MiB kept in
//!   memory, no spill): what the stack costs when it keeps no copy, and
//!   what it does with a body it cannot replay;
//! - `axum-reverse-proxy`: `ReverseProxy::new("/", upstream)` with
//!   `RetryLayer::new(3)`, its defaults otherwise.
//!
//! And (c), the case a real proxy is in: an upstream slower than the
//! proxy, paced by a token bucket (256 KiB deep) at 10 Gbit/s and at
//! 2 Gbit/s, through `plain` and `mmap-body` (spill): does the spill still
//! cost throughput when the upstream, not the proxy, sets the pace? Their
//! ratio is paired per round.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::MmapBody;
use mmap_body_devkit::files::write_file;
use mmap_body_devkit::size::human;
use mmap_body_devkit::BoxError;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::report::median;

const KINDS: [&str; 4] = [
    "plain",
    "mmap-body",
    "mmap-body-no-spill",
    "axum-reverse-proxy",
];

/// What the upstream saw of one upload.
#[derive(Debug, Default, Clone)]
struct Seen {
    requests: usize,
    received: u64,
    whole: bool,
}

/// How deep the paced upstream's token bucket is: what it may read ahead
/// of its rate.
const BURST: u64 = 256 << 10;

/// The paced cases: a name and bytes per second.
const RATES: [(&str, f64); 2] = [("10 Gbit/s", 10e9 / 8.0), ("2 Gbit/s", 2e9 / 8.0)];

/// What one measurement does to the upstream.
#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    /// Drops the first attempt's connection at 50%.
    DropAtHalf,
    /// Reads no faster than this many bytes per second.
    Paced(&'static str, f64),
}

/// The upstream: hashes each body; with `drop_at`, drops the connection of
/// the first request once it has read that many bytes; with `rate`, reads
/// no faster than that many bytes per second (after a [`BURST`]).
async fn upstream(
    sha: String,
    drop_at: Option<u64>,
    rate: Option<f64>,
) -> Result<(SocketAddr, Arc<Mutex<Seen>>), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let log = seen.clone();
    let dropped = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (log, sha, dropped) = (log.clone(), sha.clone(), dropped.clone());
            let kill = Arc::new(Notify::new());
            let killer = kill.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (log, sha, dropped, killer) =
                        (log.clone(), sha.clone(), dropped.clone(), killer.clone());
                    async move {
                        log.lock().unwrap().requests += 1;
                        let first = !dropped.load(Ordering::SeqCst);
                        let mut body = req.into_body();
                        let (mut hasher, mut read) = (Sha256::new(), 0u64);
                        let started = tokio::time::Instant::now();
                        while let Some(frame) = body.frame().await {
                            let Ok(frame) = frame else { break };
                            if let Some(data) = frame.data_ref() {
                                hasher.update(data);
                                read += data.len() as u64;
                                log.lock().unwrap().received += data.len() as u64;
                            }
                            if let Some(rate) = rate {
                                let ahead = read.saturating_sub(BURST) as f64 / rate;
                                let due = started + Duration::from_secs_f64(ahead);
                                tokio::time::sleep_until(due).await;
                            }
                            if first && drop_at.is_some_and(|at| read >= at) {
                                dropped.store(true, Ordering::SeqCst);
                                killer.notify_one();
                                std::future::pending::<()>().await;
                            }
                        }
                        let got = format!("{:x}", hasher.finalize());
                        if got == sha {
                            log.lock().unwrap().whole = true;
                        }
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            got,
                        ))))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                tokio::select! {
                    _ = builder.serve_connection(TokioIo::new(stream), service) => {}
                    _ = kill.notified() => {}
                }
            });
        }
    });
    Ok((addr, seen))
}

/// One upload through one proxy process.
#[derive(Debug, Clone)]
struct Sample {
    seconds: f64,
    status: String,
    seen: Seen,
    cpu: f64,
    heap: u64,
    rss_kib: u64,
}

async fn once(
    kind: &str,
    path: &Path,
    size: u64,
    sha: &str,
    fault: Fault,
) -> Result<Sample, BoxError> {
    let (drop_at, rate) = match fault {
        Fault::None => (None, None),
        Fault::DropAtHalf => (Some(size / 2), None),
        Fault::Paced(_, rate) => (None, Some(rate)),
    };
    let (up, seen) = upstream(sha.to_owned(), drop_at, rate).await?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", "proxy", kind, &up.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let addr = lines.next().ok_or("the proxy said nothing")??;
    let addr = addr.strip_prefix("addr ").ok_or("no address")?.to_owned();
    // SAFETY: the bench owns the file and nothing changes it while mapped.
    let body = unsafe { MmapBody::open(path)? };
    let client = crate::child::client::<MmapBody>(crate::cases::Proto::H1);
    let request = Request::put(format!("http://{addr}/up")).body(body)?;
    let start = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(600), client.request(request)).await;
    let status = match outcome {
        Ok(Ok(res)) => {
            let status = res.status();
            let _ = res.into_body().collect().await;
            status.as_u16().to_string()
        }
        Ok(Err(err)) => format!("error: {err}"),
        Err(_) => "timed out".to_owned(),
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    writeln!(stdin, "stats")?;
    let stats = lines.next().ok_or("no stats")??;
    let _ = child.kill();
    let _ = child.wait();
    let field = |name: &str| -> f64 {
        stats
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0.0)
    };
    let seen = seen.lock().unwrap().clone();
    Ok(Sample {
        seconds,
        status,
        seen,
        cpu: field("cpu"),
        heap: field("heap") as u64,
        rss_kib: field("rss") as u64,
    })
}

/// `--proxies`: `runs` rounds of every proxy, without and with the fault.
pub(crate) fn run(size: u64, runs: usize, record: Option<&Path>) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("proxied.bin");
    write_file(&path, size)?;
    let sha = format!("{:x}", Sha256::digest(std::fs::read(&path)?));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let header = format!(
        "{}\nproxies: one {} PUT over HTTP/1.1 through each proxy (its own process), (a) no \
         fault, (b) the upstream drops the first attempt at 50%, (c) the upstream paced at \
         10 and at 2 Gbit/s; {runs} round(s)\n",
        crate::report::machine(),
        human(size)
    );
    println!("{header}");
    let mut tables = String::from(
        "| case | proxy | GiB/s (median) | answer | requests upstream | arrived whole (SHA-256) | bytes the upstream read | proxy process CPU s/GiB | proxy heap peak | proxy peak RSS |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut cases: Vec<(Fault, &[&str])> =
        vec![(Fault::None, &KINDS[..]), (Fault::DropAtHalf, &KINDS[..])];
    for (name, rate) in RATES {
        cases.push((Fault::Paced(name, rate), &["plain", "mmap-body"][..]));
    }
    let mut ratios = String::new();
    for (fault, kinds) in cases {
        let label = match fault {
            Fault::None => "(a) no fault".to_owned(),
            Fault::DropAtHalf => "(b) drop at 50%".to_owned(),
            Fault::Paced(name, _) => format!("(c) upstream paced at {name}"),
        };
        let mut seconds: Vec<Vec<f64>> = Vec::new();
        for &kind in kinds {
            let mut samples = Vec::new();
            for round in 0..runs {
                let sample = rt.block_on(once(kind, &path, size, &sha, fault))?;
                println!(
                    "round {}/{runs}: {label} {kind}: {:.2} s, {}, upstream {} request(s), whole {}",
                    round + 1,
                    sample.seconds,
                    sample.status,
                    sample.seen.requests,
                    sample.seen.whole
                );
                samples.push(sample);
            }
            seconds.push(samples.iter().map(|s| s.seconds).collect());
            let pick =
                |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect()).unwrap_or(0.0);
            let gib = size as f64 / (1u64 << 30) as f64;
            let last = &samples[samples.len() - 1];
            tables.push_str(&format!(
                "| {label} | {kind} | {:.2} | {} | {} | {} of {} | {} | {:.2} | {} | {} |\n",
                gib / pick(|s| s.seconds),
                last.status,
                last.seen.requests,
                samples.iter().filter(|s| s.seen.whole).count(),
                samples.len(),
                human(pick(|s| s.seen.received as f64) as u64),
                pick(|s| s.cpu) / gib,
                human(pick(|s| s.heap as f64) as u64),
                human(pick(|s| s.rss_kib as f64) as u64 * 1024),
            ));
        }
        if let (Fault::Paced(name, _), [plain, spill]) = (fault, seconds.as_slice()) {
            // Throughput of the spill over plain forwarding, round by round.
            let paired = plain.iter().zip(spill).map(|(p, s)| p / s).collect();
            ratios.push_str(&format!(
                "(c) at {name}: mmap-body (spill) / plain = {:.2}× paired (goal ≥ 0.95)\n",
                median(paired).unwrap_or(0.0)
            ));
        }
    }
    tables.push('\n');
    tables.push_str(&ratios);
    println!("{tables}");
    if let Some(file) = record {
        crate::record::append(file, &header, &tables)?;
    }
    Ok(())
}

/// The proxy process: serves `kind` to `upstream` on 127.0.0.1, prints
/// `addr <addr>`, and on a `stats` line from its parent prints its CPU
/// seconds, heap peak (every thread) and `VmHWM`, then exits.
pub(crate) fn child(args: &[String]) -> Result<(), BoxError> {
    let [kind, upstream] = args else {
        return Err("usage: --child proxy <kind> <upstream>".into());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let target = format!("http://{upstream}");
    let app: axum::Router = match kind.as_str() {
        "plain" => {
            let client = crate::child::client::<axum::body::Body>(crate::cases::Proto::H1);
            axum::Router::new().fallback(move |req: axum::extract::Request| {
                let client = client.clone();
                let target = target.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    parts.uri = format!("{target}{}", parts.uri.path()).parse().unwrap();
                    parts.headers.remove(http::header::HOST);
                    match client.request(Request::from_parts(parts, body)).await {
                        Ok(res) => res.map(axum::body::Body::new),
                        Err(err) => Response::builder()
                            .status(502)
                            .body(axum::body::Body::from(err.to_string()))
                            .unwrap(),
                    }
                }
            })
        }
        "mmap-body" => {
            let proxy = mmap_body::proxy::ReverseProxy::builder(&target)?
                .max_replay_bytes(64 << 10)
                .spill_to_disk(4 << 30)
                .retry(
                    mmap_body::retry::RetryPolicy::default()
                        .backoff(Duration::from_millis(1), Duration::from_millis(2)),
                )
                .build();
            axum::Router::new().fallback_service(proxy)
        }
        "mmap-body-no-spill" => {
            let proxy = mmap_body::proxy::ReverseProxy::builder(&target)?
                .retry(
                    mmap_body::retry::RetryPolicy::default()
                        .backoff(Duration::from_millis(1), Duration::from_millis(2)),
                )
                .build();
            axum::Router::new().fallback_service(proxy)
        }
        "axum-reverse-proxy" => {
            let proxy = axum_reverse_proxy::ReverseProxy::new("/", &target);
            let app: axum::Router = proxy.into();
            app.layer(axum_reverse_proxy::RetryLayer::new(3))
        }
        other => return Err(format!("no proxy kind {other}").into()),
    };
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("addr {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        mmap_body_devkit::alloc::track_all_threads();
        tokio::spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        // Wait for the parent's `stats` line, off the runtime.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await?;
        let heap = mmap_body_devkit::alloc::stop_tracking();
        let cpu = crate::measure::cpu_secs()?;
        let rss = mmap_body_devkit::rss::status_kib("VmHWM").unwrap_or(0);
        println!("stats cpu={cpu} heap={} rss={rss}", heap.peak);
        std::io::stdout().flush()?;
        Ok::<_, BoxError>(())
    })
}
