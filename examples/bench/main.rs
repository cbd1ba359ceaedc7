//! Side-by-side benchmark: uploads (and downloads) the same temp file over
//! loopback with `MmapBody` and with what a user would otherwise reach for,
//! in one run, and prints a Markdown table and the ratios between them.
//!
//! ```text
//! cargo run --release --example bench [-- --size 1GiB --runs 5 --only mmap,sendfile --quick]
//! ```
//!
//! Upload (a hyper-util client, or a raw socket for `sendfile`, sending to
//! one hyper server in this process), over HTTP/1.1 and HTTP/2:
//!
//! - `full-copy`: `tokio::fs::read` into a `Full<Bytes>`, the naive copy;
//! - `reader-4k`: `tokio_util::io::ReaderStream` with its default 4 KiB
//!   buffer, which is what reqwest's `Body::from(tokio::fs::File)` does;
//! - `reader-64k`: the same with 64 KiB, tower-http `ServeFile`'s buffer;
//! - `mmap`, `mmap-64k`, `mmap-4m`: `MmapBody` at its default frame size
//!   and at 64 KiB and 4 MiB;
//! - `mmap-keep`: `MmapBody` with `release_sent_pages(false)`, which is how
//!   a plain mapping behaves: every page sent stays resident;
//! - `mmap+replay`: `MmapBody` behind `ReplayLayer`;
//! - `sendfile` (HTTP/1.1 only): a hand-written request head, then
//!   `sendfile(2)` of the file into the socket, the physical limit.
//!
//! With reqwest 0.13 (with `--features reqwest`; see `reqwest.rs`):
//! `reqwest-file` (`Body::from(File)`), `reqwest-bytes`
//! (`Body::from(Bytes::from(mmap_body))`) and `reqwest-stack` (`MmapBody`
//! through `ReplayLayer` + `RetryLayer` + `ReqwestService`).
//!
//! Through a proxy (HTTP/1.1 only; with `--features spill`): the sender
//! process runs a client uploading with `MmapBody` and a hyper proxy
//! forwarding to the same server; see `proxy.rs`: `proxy-plain`,
//! `proxy-spill` (`ReplayLayer` + spill to disk + `RetryLayer`) and
//! `proxy-replay` (the server fails the first attempt after reading it
//! all; the second is sent from the spill, and each attempt is timed).
//!
//! Download (a server in its own process sends the file to a hyper-util
//! client here): `serve-mmap` (a hyper server answering with `MmapBody`) and
//! `serve-file` (tower-http `ServeFile`).
//!
//! Each measurement runs the sending side in a fresh process (this binary
//! run again with `--child`), so its peak RSS is its own; its heap is
//! counted by a counting global allocator over all its threads, and its CPU
//! time comes from `getrusage`. The cases run in rounds, forwards then
//! backwards (A B C, C B A, A B C ...), so drift of the machine hits all of
//! them alike; the ratios are medians of the per-round ratios, printed with
//! their range. Throughput is the median over rounds. Nothing here asserts a speed: the
//! goals are printed as met or missed.
//!
//! Both ends set `TCP_NODELAY`, as HTTP/2 servers and clients commonly do:
//! without it Nagle's algorithm holds back h2's small `WINDOW_UPDATE`
//! frames, and h2 uploads stall for tens of milliseconds at a time whatever
//! the body.

#[path = "../../tests/support/alloc.rs"]
mod alloc;
#[cfg(feature = "spill")]
mod proxy;
#[cfg(feature = "reqwest")]
mod reqwest;
#[path = "../support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mmap_body::{MmapBody, ReplayLayer};
use support::{human, parse_size, BoxError};
use tokio_util::io::ReaderStream;
use tower::{Layer, ServiceExt};

#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc;

const USAGE: &str = "usage: bench [--size 1GiB] [--runs 3] [--quick] [--only NAME,NAME...]
  --size   the file size (default 1GiB)
  --runs   rounds of measurements; throughput is the median (default 5)
  --quick  64MiB and one round, to check the bench still runs
  --only   run only these senders: full-copy, reader-4k, reader-64k, mmap,
           mmap-64k, mmap-4m, mmap-keep, mmap+replay, sendfile, serve-mmap,
           serve-file, reqwest-file, reqwest-bytes, reqwest-stack,
           proxy-plain, proxy-spill, proxy-replay (the reqwest cases need
           --features reqwest, the proxy ones --features spill)";

/// What sends the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    FullCopy,
    Reader4K,
    Reader64K,
    Mmap,
    Mmap64K,
    Mmap4M,
    MmapKeep,
    MmapReplay,
    Sendfile,
    ServeMmap,
    ServeFile,
    ReqwestFile,
    ReqwestBytes,
    ReqwestStack,
    ProxyPlain,
    ProxySpill,
    ProxyReplay,
}

impl Sender {
    const ALL: [Sender; 17] = [
        Sender::FullCopy,
        Sender::Reader4K,
        Sender::Reader64K,
        Sender::Mmap,
        Sender::Mmap64K,
        Sender::Mmap4M,
        Sender::MmapKeep,
        Sender::MmapReplay,
        Sender::Sendfile,
        Sender::ServeMmap,
        Sender::ServeFile,
        Sender::ReqwestFile,
        Sender::ReqwestBytes,
        Sender::ReqwestStack,
        Sender::ProxyPlain,
        Sender::ProxySpill,
        Sender::ProxyReplay,
    ];

    fn name(self) -> &'static str {
        match self {
            Sender::FullCopy => "full-copy",
            Sender::Reader4K => "reader-4k",
            Sender::Reader64K => "reader-64k",
            Sender::Mmap => "mmap",
            Sender::Mmap64K => "mmap-64k",
            Sender::Mmap4M => "mmap-4m",
            Sender::MmapKeep => "mmap-keep",
            Sender::MmapReplay => "mmap+replay",
            Sender::Sendfile => "sendfile",
            Sender::ServeMmap => "serve-mmap",
            Sender::ServeFile => "serve-file",
            Sender::ReqwestFile => "reqwest-file",
            Sender::ReqwestBytes => "reqwest-bytes",
            Sender::ReqwestStack => "reqwest-stack",
            Sender::ProxyPlain => "proxy-plain",
            Sender::ProxySpill => "proxy-spill",
            Sender::ProxyReplay => "proxy-replay",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Sender::FullCopy => "`tokio::fs::read` + `Full<Bytes>`",
            Sender::Reader4K => "`ReaderStream` 4 KiB (reqwest `Body::from(File)`)",
            Sender::Reader64K => "`ReaderStream` 64 KiB",
            Sender::Mmap => "**`MmapBody`** (1 MiB frames, default)",
            Sender::Mmap64K => "`MmapBody` 64 KiB frames",
            Sender::Mmap4M => "`MmapBody` 4 MiB frames",
            Sender::MmapKeep => "`MmapBody`, sent pages kept mapped",
            Sender::MmapReplay => "`MmapBody` behind `ReplayLayer`",
            Sender::Sendfile => "`sendfile(2)`, hand-written head",
            Sender::ServeMmap => "**`MmapBody`** from a hyper server",
            Sender::ServeFile => "tower-http `ServeFile`",
            Sender::ReqwestFile => "reqwest `Body::from(File)`",
            Sender::ReqwestBytes => "reqwest `Body::from(Bytes::from(MmapBody))`",
            Sender::ReqwestStack => "**`MmapBody`** via `ReqwestService` + layers",
            Sender::ProxyPlain => "`MmapBody` → hyper proxy, plain forwarding",
            Sender::ProxySpill => "`MmapBody` → proxy with `ReplayLayer` + spill",
            Sender::ProxyReplay => "proxy + spill, 2 attempts (503 after all)",
        }
    }

    fn from_name(name: &str) -> Option<Sender> {
        Sender::ALL.into_iter().find(|s| s.name() == name)
    }

    fn is_download(self) -> bool {
        matches!(self, Sender::ServeMmap | Sender::ServeFile)
    }

    fn is_proxy(self) -> bool {
        matches!(
            self,
            Sender::ProxyPlain | Sender::ProxySpill | Sender::ProxyReplay
        )
    }

    fn is_reqwest(self) -> bool {
        matches!(
            self,
            Sender::ReqwestFile | Sender::ReqwestBytes | Sender::ReqwestStack
        )
    }

    /// Runs over HTTP/1.1 only: a hand-written head, or the proxy's.
    fn h1_only(self) -> bool {
        self == Sender::Sendfile || self.is_proxy()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H2 => "h2",
        }
    }

    fn from_name(name: &str) -> Option<Proto> {
        [Proto::H1, Proto::H2]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Case {
    sender: Sender,
    proto: Proto,
}

/// One measurement of one case.
#[derive(Debug, Clone)]
struct Sample {
    secs: f64,
    cpu_secs: f64,
    heap_peak: u64,
    allocations: u64,
    peak_rss_kib: u64,
    framing: String,
    /// `proxy-replay`: the seconds of its first and second attempt.
    attempts: Option<(f64, f64)>,
}

fn main() -> Result<(), BoxError> {
    if !cfg!(target_os = "linux") {
        println!("the bench runs on Linux only: it reads /proc and uses sendfile(2)");
        return Ok(());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    parent(&args)
}

// ------------------------------------------------------------------ parent

struct Options {
    size: u64,
    runs: usize,
    quick: bool,
    only: Option<Vec<Sender>>,
}

fn parse_options(args: &[String]) -> Result<Options, BoxError> {
    let mut options = Options {
        size: 1 << 30,
        runs: 5,
        quick: false,
        only: None,
    };
    let mut size = None;
    let mut runs = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("missing value after {arg}\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--size" => size = Some(parse_size(value()?)?),
            "--runs" => runs = Some(value()?.parse::<usize>()?.max(1)),
            "--only" => {
                let names = value()?.split(',').map(|name| {
                    Sender::from_name(name.trim())
                        .ok_or_else(|| format!("unknown sender `{name}`\n{USAGE}"))
                });
                options.only = Some(names.collect::<Result<_, _>>()?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown option `{arg}`\n{USAGE}").into()),
        }
    }
    if options.quick {
        options.size = 64 << 20;
        options.runs = 1;
    }
    options.size = size.unwrap_or(options.size);
    options.runs = runs.unwrap_or(options.runs);
    if options.size == 0 {
        return Err("--size must be at least one byte".into());
    }
    Ok(options)
}

fn parent(args: &[String]) -> Result<(), BoxError> {
    let options = parse_options(args)?;
    let size = options.size;
    let mut cases = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        for sender in Sender::ALL {
            let wanted = options.only.as_ref().is_none_or(|o| o.contains(&sender));
            let built = (!sender.is_proxy() || cfg!(feature = "spill"))
                && (!sender.is_reqwest() || cfg!(feature = "reqwest"));
            if wanted && built && !(sender.h1_only() && proto == Proto::H2) {
                cases.push(Case { sender, proto });
            }
        }
    }

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.bin");
    support::write_file(&path, size)?;
    // Written back now, so no writeback runs during the measurements.
    std::fs::File::open(&path)?.sync_all()?;
    println!("{}", machine());
    println!(
        "file: {} in {}; {} round(s) of {} cases; each sender in a fresh process\n",
        human(size),
        dir.path().display(),
        options.runs,
        cases.len()
    );

    // The upload server: one worker thread, so the sender has the other core.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let upload_addr = server_rt.block_on(support::start_counting_server())?;
    // The download client runs on this thread.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut results: Vec<(Case, Vec<Option<Sample>>)> =
        cases.iter().map(|c| (*c, Vec::new())).collect();
    for round in 0..options.runs {
        for i in 0..cases.len() {
            // A B C ... C B A ...: each case is run early and late alike,
            // and next to different neighbours.
            let index = if round % 2 == 0 {
                i
            } else {
                cases.len() - 1 - i
            };
            let case = cases[index];
            let sample = if case.sender.is_download() {
                run_download(&client_rt, case, &path, size)
            } else {
                run_upload(case, upload_addr, &path, size)
            }
            .and_then(|sample| check_framing(case.sender, size, sample));
            match sample {
                Ok(sample) => {
                    eprintln!(
                        "round {}/{}: {:<8} {} {:<12} {:>6.2} GiB/s  cpu {:.2} s  heap {}  rss {}",
                        round + 1,
                        options.runs,
                        if case.sender.is_download() {
                            "download"
                        } else {
                            "upload"
                        },
                        case.proto.name(),
                        case.sender.name(),
                        gib_per_s(size, sample.secs),
                        sample.cpu_secs,
                        human(sample.heap_peak),
                        human(sample.peak_rss_kib * 1024),
                    );
                    results[index].1.push(Some(sample));
                }
                Err(err) => {
                    eprintln!(
                        "round {}: {} {} failed: {err}",
                        round + 1,
                        case.proto.name(),
                        case.sender.name()
                    );
                    results[index].1.push(None);
                }
            }
        }
    }

    print_table(&results, size);
    let failed = results
        .iter()
        .filter(|(_, samples)| samples.iter().any(Option::is_none))
        .count();
    print_ratios(&results, size, options.quick);
    if failed > 0 {
        return Err(format!("{failed} case(s) failed; see above").into());
    }
    Ok(())
}

fn child_command(case: Case, path: &Path, size: u64) -> Result<Command, BoxError> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--child")
        .arg(case.sender.name())
        .arg(case.proto.name())
        .arg(path)
        .arg(size.to_string());
    Ok(command)
}

/// Every sender but the `ReaderStream`s knows the exact length, and the
/// receiver must have seen it as a `content-length`.
fn check_framing(sender: Sender, size: u64, sample: Sample) -> Result<Sample, BoxError> {
    let exact = !matches!(
        sender,
        Sender::Reader4K | Sender::Reader64K | Sender::ReqwestFile
    );
    let expected = format!("content-length={size}");
    if exact && sample.framing != expected {
        return Err(format!("the receiver saw `{}`, not `{expected}`", sample.framing).into());
    }
    Ok(sample)
}

/// Runs the sender in a child process, which uploads to `addr` and reports.
fn run_upload(case: Case, addr: SocketAddr, path: &Path, size: u64) -> Result<Sample, BoxError> {
    let output = child_command(case, path, size)?
        .arg(addr.to_string())
        .stderr(Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("child exited with {}: {stdout}", output.status).into());
    }
    parse_report(&stdout)
}

/// Starts the sending server in a child process, downloads the file from it
/// here, then tells it to report by closing its stdin.
fn run_download(
    rt: &tokio::runtime::Runtime,
    case: Case,
    path: &Path,
    size: u64,
) -> Result<Sample, BoxError> {
    let mut child = child_command(case, path, size)?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let downloaded = match line.trim().strip_prefix("listening ") {
        Some(addr) => {
            let addr: SocketAddr = addr.parse()?;
            rt.block_on(async {
                tokio::time::timeout(time_limit(size), download(case.proto, addr, size))
                    .await
                    .map_err(|_| BoxError::from("the download took too long"))?
            })
        }
        None => Err(format!("child said `{}` instead of its address", line.trim()).into()),
    };
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest)?;
    let status = child.wait()?;
    let (secs, framing) = downloaded?;
    if !status.success() {
        return Err(format!("server child exited with {status}: {rest}").into());
    }
    let mut sample = parse_report(&rest)?;
    sample.secs = secs;
    sample.framing = framing;
    Ok(sample)
}

/// GETs the file, counting its bytes; returns the seconds from request to
/// last byte and the framing of the response.
async fn download(proto: Proto, addr: SocketAddr, size: u64) -> Result<(f64, String), BoxError> {
    let client = client::<Empty<Bytes>>(proto);
    let uri = format!("http://{addr}/file").parse()?;
    let started = Instant::now();
    let response = client.get(uri).await?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()).into());
    }
    let framing = support::framing(response.version(), response.headers());
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame?.data_ref().map_or(0, |d| d.len() as u64);
    }
    let secs = started.elapsed().as_secs_f64();
    if received != size {
        return Err(format!("downloaded {received} bytes of {size}").into());
    }
    Ok((secs, framing))
}

fn parse_report(text: &str) -> Result<Sample, BoxError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("report "))
        .ok_or_else(|| format!("no report in the child's output: {text}"))?;
    let mut sample = Sample {
        secs: 0.0,
        cpu_secs: 0.0,
        heap_peak: 0,
        allocations: 0,
        peak_rss_kib: 0,
        framing: String::new(),
        attempts: None,
    };
    for field in line.split_whitespace() {
        let (key, value) = field.split_once('=').ok_or("malformed report")?;
        match key {
            "secs" => sample.secs = value.parse()?,
            "cpu" => sample.cpu_secs = value.parse()?,
            "heap" => sample.heap_peak = value.parse()?,
            "allocations" => sample.allocations = value.parse()?,
            "rss_kib" => sample.peak_rss_kib = value.parse()?,
            "framing" => sample.framing = value.to_owned(),
            "attempts" => {
                let (first, second) = value.split_once(',').ok_or("malformed attempts")?;
                sample.attempts = Some((first.parse()?, second.parse()?));
            }
            _ => return Err(format!("unknown field `{key}` in a report").into()),
        }
    }
    Ok(sample)
}

// ------------------------------------------------------------------ child

/// `--child SENDER PROTO FILE SIZE [ADDR]`: one measurement, reported on
/// stdout as `report key=value...`.
fn child(args: &[String]) -> Result<(), BoxError> {
    let [sender, proto, path, size, rest @ ..] = args else {
        return Err("--child SENDER PROTO FILE SIZE [ADDR]".into());
    };
    let sender = Sender::from_name(sender).ok_or("unknown sender")?;
    let proto = Proto::from_name(proto).ok_or("unknown protocol")?;
    let path = PathBuf::from(path);
    let size: u64 = size.parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    if sender.is_download() {
        return serve(&rt, sender, path);
    }
    let addr: SocketAddr = rest.first().ok_or("no server address")?.parse()?;
    let cpu_before = cpu_secs()?;
    alloc::track_all_threads();
    let started = Instant::now();
    let mut attempts = None;
    let seen = if sender == Sender::Sendfile {
        sendfile_upload(addr, &path, size)
    } else if sender.is_reqwest() {
        rt.block_on(async {
            tokio::time::timeout(time_limit(size), via_reqwest(sender, proto, addr, &path))
                .await
                .map_err(|_| BoxError::from("the upload took too long"))?
        })
    } else if sender.is_proxy() {
        rt.block_on(async {
            tokio::time::timeout(time_limit(size), via_proxy(sender, addr, &path, size))
                .await
                .map_err(|_| BoxError::from("the upload took too long"))?
        })
        .map(|(answer, timed)| {
            attempts = timed;
            answer
        })
    } else {
        rt.block_on(async {
            tokio::time::timeout(time_limit(size), upload(sender, proto, addr, &path))
                .await
                .map_err(|_| BoxError::from("the upload took too long"))?
        })
    };
    let secs = started.elapsed().as_secs_f64();
    let heap = alloc::stop_tracking();
    let cpu = cpu_secs()? - cpu_before;
    let seen = seen?;
    let (framing, received) = seen
        .rsplit_once(" received=")
        .ok_or_else(|| format!("unexpected answer from the server: {seen}"))?;
    if received != size.to_string() {
        return Err(format!("the server received {received} bytes of {size}").into());
    }
    let attempts = attempts.map_or_else(String::new, |(a, b)| format!(" attempts={a},{b}"));
    writeln!(
        std::io::stdout(),
        "report secs={secs} cpu={cpu} heap={} allocations={} rss_kib={} framing={}{attempts}",
        heap.peak,
        heap.allocations,
        peak_rss_kib()?,
        framing.replace(' ', "+")
    )?;
    Ok(())
}

/// The reqwest cases: see `reqwest.rs`.
#[cfg(feature = "reqwest")]
async fn via_reqwest(
    sender: Sender,
    proto: Proto,
    addr: SocketAddr,
    path: &Path,
) -> Result<String, BoxError> {
    let mode = match sender {
        Sender::ReqwestFile => reqwest::Mode::File,
        Sender::ReqwestBytes => reqwest::Mode::Bytes,
        _ => reqwest::Mode::Stack,
    };
    reqwest::upload(mode, proto == Proto::H2, addr, path).await
}

#[cfg(not(feature = "reqwest"))]
async fn via_reqwest(
    sender: Sender,
    _proto: Proto,
    _addr: SocketAddr,
    _path: &Path,
) -> Result<String, BoxError> {
    Err(format!("{} needs --features reqwest", sender.name()).into())
}

/// The proxy cases: see `proxy.rs`.
#[cfg(feature = "spill")]
async fn via_proxy(
    sender: Sender,
    addr: SocketAddr,
    path: &Path,
    size: u64,
) -> Result<(String, Option<(f64, f64)>), BoxError> {
    let mode = match sender {
        Sender::ProxyPlain => proxy::Mode::Plain,
        Sender::ProxySpill => proxy::Mode::Spill,
        _ => proxy::Mode::Replay,
    };
    let outcome = proxy::upload(mode, addr, path, size).await?;
    Ok((outcome.answer, outcome.attempts))
}

#[cfg(not(feature = "spill"))]
async fn via_proxy(
    sender: Sender,
    _addr: SocketAddr,
    _path: &Path,
    _size: u64,
) -> Result<(String, Option<(f64, f64)>), BoxError> {
    Err(format!("{} needs --features spill", sender.name()).into())
}

fn client<B>(proto: Proto) -> Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(proto == Proto::H2);
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    builder.build(connector)
}

async fn upload(
    sender: Sender,
    proto: Proto,
    addr: SocketAddr,
    path: &Path,
) -> Result<String, BoxError> {
    let uri = format!("http://{addr}/upload");
    let mmap = |chunk: usize| -> Result<MmapBody, BoxError> {
        // SAFETY: the bench owns the file in its temp dir and nothing
        // changes it while it is mapped.
        Ok(unsafe { MmapBody::open(path)? }.chunk_size(chunk))
    };
    let response = match sender {
        Sender::FullCopy => {
            let body = Full::new(Bytes::from(tokio::fs::read(path).await?));
            send(proto, &uri, body).await?
        }
        Sender::Reader4K | Sender::Reader64K => {
            let file = tokio::fs::File::open(path).await?;
            let capacity = if sender == Sender::Reader4K {
                4 << 10
            } else {
                64 << 10
            };
            let stream = ReaderStream::with_capacity(file, capacity).map_ok(Frame::data);
            send(proto, &uri, StreamBody::new(stream)).await?
        }
        Sender::Mmap => send(proto, &uri, mmap(mmap_body::DEFAULT_CHUNK_SIZE)?).await?,
        Sender::Mmap64K => send(proto, &uri, mmap(64 << 10)?).await?,
        Sender::Mmap4M => send(proto, &uri, mmap(4 << 20)?).await?,
        Sender::MmapKeep => {
            let body = mmap(mmap_body::DEFAULT_CHUNK_SIZE)?.release_sent_pages(false);
            send(proto, &uri, body).await?
        }
        Sender::MmapReplay => {
            let service = ReplayLayer::new(64 << 10).layer(client(proto));
            let request = http::Request::put(&uri).body(mmap(mmap_body::DEFAULT_CHUNK_SIZE)?)?;
            service.oneshot(request).await?
        }
        Sender::Sendfile
        | Sender::ServeMmap
        | Sender::ServeFile
        | Sender::ReqwestFile
        | Sender::ReqwestBytes
        | Sender::ReqwestStack
        | Sender::ProxyPlain
        | Sender::ProxySpill
        | Sender::ProxyReplay => {
            return Err(format!("{} is not a client body", sender.name()).into())
        }
    };
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&text).into_owned();
    if !status.is_success() {
        return Err(format!("the server answered {status}: {text}").into());
    }
    Ok(text)
}

async fn send<B>(proto: Proto, uri: &str, body: B) -> Result<http::Response<Incoming>, BoxError>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let request = http::Request::put(uri).body(body)?;
    Ok(client(proto).request(request).await?)
}

/// The physical limit: a request head written by hand, then the kernel
/// copies the file into the socket with `sendfile(2)`; no user-space
/// buffer, no page mapped into this process.
#[cfg(target_os = "linux")]
fn sendfile_upload(addr: SocketAddr, path: &Path, size: u64) -> Result<String, BoxError> {
    use std::os::fd::AsRawFd;

    let file = std::fs::File::open(path)?;
    let mut socket = std::net::TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(time_limit(size)))?;
    socket.set_write_timeout(Some(time_limit(size)))?;
    write!(
        socket,
        "PUT /upload HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {size}\r\n\r\n"
    )?;
    let mut offset: libc::off_t = 0;
    while (offset as u64) < size {
        // Linux sends at most 0x7ffff000 bytes per call.
        let count = (size - offset as u64).min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the whole call (`socket` and
        // `file` live to the end of this function) and `offset` points to an
        // `off_t` that the kernel may update.
        let sent =
            unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
        if sent < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err.into());
        }
        if sent == 0 {
            return Err("sendfile sent nothing: the file shrank".into());
        }
    }
    read_response(&mut socket)
}

#[cfg(not(target_os = "linux"))]
fn sendfile_upload(_addr: SocketAddr, _path: &Path, _size: u64) -> Result<String, BoxError> {
    Err("sendfile(2) is Linux only".into())
}

/// Reads one HTTP/1.1 response with a `content-length` and returns its body.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn read_response(socket: &mut std::net::TcpStream) -> Result<String, BoxError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk)?;
        if n == 0 {
            return Err("the server closed the connection before answering".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("the server answered: {head}").into());
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or("the response has no content-length")?;
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk)?;
        if n == 0 {
            return Err("the server closed the connection mid-answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned())
}

/// Serves `GET /file` (HTTP/1.1 and HTTP/2) until stdin closes, then reports
/// what serving cost this process.
fn serve(rt: &tokio::runtime::Runtime, sender: Sender, path: PathBuf) -> Result<(), BoxError> {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    writeln!(std::io::stdout(), "listening {}", listener.local_addr()?)?;
    std::io::stdout().flush()?;

    let path = Arc::new(path);
    let cpu_before = cpu_secs()?;
    alloc::track_all_threads();
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let path = path.clone();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let io = TokioIo::new(stream);
                let _ = match sender {
                    Sender::ServeMmap => {
                        let service = hyper::service::service_fn(move |_req| {
                            // SAFETY: the bench owns the file in its temp dir
                            // and nothing changes it while it is mapped.
                            let body = unsafe { MmapBody::open(&*path) };
                            async move { body.map(http::Response::new) }
                        });
                        builder.serve_connection(io, service).await
                    }
                    _ => {
                        let service = tower_http::services::ServeFile::new(&*path);
                        let service = hyper_util::service::TowerToHyperService::new(service);
                        builder.serve_connection(io, service).await
                    }
                };
            });
        }
    });
    rt.block_on(closed_rx)?;
    let heap = alloc::stop_tracking();
    let cpu = cpu_secs()? - cpu_before;
    writeln!(
        std::io::stdout(),
        "report cpu={cpu} heap={} allocations={} rss_kib={}",
        heap.peak,
        heap.allocations,
        peak_rss_kib()?
    )?;
    Ok(())
}

#[cfg(unix)]
fn rusage() -> std::io::Result<libc::rusage> {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a valid
    // value, and `getrusage` writes a whole one through the pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `usage` outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usage)
}

/// User plus system CPU time of this process (all its threads) so far.
#[cfg(not(unix))]
fn cpu_secs() -> std::io::Result<f64> {
    Err(std::io::Error::other("getrusage(2) is Unix only"))
}

/// User plus system CPU time of this process (all its threads) so far.
#[cfg(unix)]
fn cpu_secs() -> std::io::Result<f64> {
    let usage = rusage()?;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// The peak resident set size of this process since it started, in KiB:
/// `VmHWM`, the high-water mark of this program's own address space. (Not
/// `getrusage`'s `ru_maxrss`: Linux carries that over `execve` from the
/// process that spawned us, so every child would report at least the
/// parent's size.)
fn peak_rss_kib() -> std::io::Result<u64> {
    match support::status_kib("VmHWM:") {
        0 => Err(std::io::Error::other("no VmHWM in /proc/self/status")),
        kib => Ok(kib),
    }
}

/// Generous: one minute plus 10 MiB/s.
fn time_limit(size: u64) -> Duration {
    Duration::from_secs(60 + size / (10 << 20))
}

// ------------------------------------------------------------------ report

fn gib_per_s(size: u64, secs: f64) -> f64 {
    size as f64 / secs / (1u64 << 30) as f64
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn ok_samples(samples: &[Option<Sample>]) -> Vec<&Sample> {
    samples.iter().flatten().collect()
}

fn print_table(results: &[(Case, Vec<Option<Sample>>)], size: u64) {
    println!(
        "\n| direction | proto | sender | framing seen | GiB/s (median; min–max) \
         | sender CPU s | CPU s/GiB | heap peak (allocations) | sender peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (case, samples) in results {
        let ok = ok_samples(samples);
        let speeds: Vec<f64> = ok.iter().map(|s| gib_per_s(size, s.secs)).collect();
        let Some(speed) = median(speeds.clone()) else {
            println!(
                "| {} | {} | {} | failed | | | | | |",
                direction(case.sender),
                case.proto.name(),
                case.sender.describe()
            );
            continue;
        };
        let min = speeds.iter().copied().fold(f64::INFINITY, f64::min);
        let max = speeds.iter().copied().fold(0.0, f64::max);
        let cpu = median(ok.iter().map(|s| s.cpu_secs).collect()).unwrap_or(0.0);
        let heap = ok.iter().map(|s| s.heap_peak).max().unwrap_or(0);
        let allocations = median(ok.iter().map(|s| s.allocations as f64).collect()).unwrap_or(0.0);
        let rss = ok.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
        let mut framings: Vec<&str> = ok.iter().map(|s| s.framing.as_str()).collect();
        framings.dedup();
        let framing = framings.join(" / ").replace("content-length=", "length ");
        let cpu_per_gib = cpu / (size as f64 / (1u64 << 30) as f64);
        println!(
            "| {} | {} | {} | {framing} | {speed:.2} ({min:.2}–{max:.2}) | {cpu:.2} | {cpu_per_gib:.2} | {} ({allocations:.0}) | {} |",
            direction(case.sender),
            case.proto.name(),
            case.sender.describe(),
            human(heap),
            human(rss * 1024)
        );
    }
}

fn direction(sender: Sender) -> &'static str {
    if sender.is_download() {
        "download"
    } else {
        "upload"
    }
}

/// Per-round ratios of one case against another: the median and the spread.
struct Ratio {
    median: f64,
    min: f64,
    max: f64,
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2}x (rounds {:.2}–{:.2})",
            self.median, self.min, self.max
        )
    }
}

/// `measure(other) / measure(ours)` for each round in which both ran, so
/// for times it says how many times faster ours is.
fn paired_ratio(
    results: &[(Case, Vec<Option<Sample>>)],
    ours: Case,
    other: Case,
    measure: fn(&Sample) -> f64,
) -> Option<Ratio> {
    let find = |case: Case| results.iter().find(|(c, _)| *c == case).map(|(_, s)| s);
    let (ours, other) = (find(ours)?, find(other)?);
    let ratios: Vec<f64> = ours
        .iter()
        .zip(other)
        .filter_map(|(a, b)| Some(measure(b.as_ref()?) / measure(a.as_ref()?)))
        .collect();
    Some(Ratio {
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max: ratios.iter().copied().fold(0.0, f64::max),
        median: median(ratios)?,
    })
}

fn print_ratios(results: &[(Case, Vec<Option<Sample>>)], size: u64, quick: bool) {
    let case = |sender, proto| Case { sender, proto };
    let time = |s: &Sample| s.secs;
    let cpu = |s: &Sample| s.cpu_secs;
    println!("\nRatios of throughput (median of the per-round ratios, and their range):");
    let mut goals = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let p = proto.name();
        let mmap = case(Sender::Mmap, proto);
        let pairs = [
            (Sender::Reader64K, "MmapBody / ReaderStream-64K"),
            (Sender::Reader4K, "MmapBody / ReaderStream-4K"),
            (Sender::FullCopy, "MmapBody / full copy"),
            (Sender::Sendfile, "MmapBody / sendfile"),
        ];
        for (other, label) in pairs {
            if let Some(r) = paired_ratio(results, mmap, case(other, proto), time) {
                println!("  {p} upload   {label:<28} {r}");
                if proto == Proto::H1 && other == Sender::Reader64K {
                    goals.push((
                        format!("MmapBody >= 2x ReaderStream-64K: {r}"),
                        r.median >= 2.0,
                    ));
                }
                if proto == Proto::H1 && other == Sender::Sendfile {
                    goals.push((format!("MmapBody >= 0.95x sendfile: {r}"), r.median >= 0.95));
                }
            }
        }
        let stack = case(Sender::ReqwestStack, proto);
        for (other, label) in [
            (Sender::Mmap, "reqwest stack / hyper-util"),
            (Sender::ReqwestFile, "reqwest stack / Body(File)"),
            (Sender::ReqwestBytes, "reqwest stack / Body(Bytes)"),
        ] {
            if let Some(r) = paired_ratio(results, stack, case(other, proto), time) {
                println!("  {p} upload   {label:<28} {r}");
                if other == Sender::Mmap && proto == Proto::H1 {
                    goals.push((
                        format!("reqwest stack >= 0.9x hyper-util MmapBody: {r}"),
                        r.median >= 0.9,
                    ));
                }
            }
        }
        let replay = case(Sender::MmapReplay, proto);
        if let Some(r) = paired_ratio(results, replay, mmap, time) {
            let overhead = (1.0 - r.median) * 100.0;
            println!(
                "  {p} upload   {:<28} {r}: overhead {overhead:.1}%",
                "replay / plain"
            );
            if let Some(c) = paired_ratio(results, mmap, replay, cpu) {
                let cpu_overhead = (c.median - 1.0) * 100.0;
                println!(
                    "  {p} upload   {:<28} {c}: overhead {cpu_overhead:.1}%",
                    "replay / plain, sender CPU"
                );
            }
            if proto == Proto::H1 {
                let line = format!(
                    "replay overhead <= 5%: {overhead:.1}% (rounds {:.1}% to {:.1}%)",
                    (1.0 - r.max) * 100.0,
                    (1.0 - r.min) * 100.0
                );
                goals.push((line, overhead <= 5.0));
            }
        }
        let serve = case(Sender::ServeMmap, proto);
        if let Some(r) = paired_ratio(results, serve, case(Sender::ServeFile, proto), time) {
            println!("  {p} download {:<28} {r}", "MmapBody / ServeFile");
        }
    }
    let plain = case(Sender::ProxyPlain, Proto::H1);
    let spill = case(Sender::ProxySpill, Proto::H1);
    if let Some(r) = paired_ratio(results, spill, plain, time) {
        let overhead = (1.0 - r.median) * 100.0;
        println!(
            "  h1 proxy    {:<28} {r}: overhead {overhead:.1}%",
            "replay+spill / plain"
        );
        if let Some(c) = paired_ratio(results, plain, spill, cpu) {
            println!(
                "  h1 proxy    {:<28} {c}: overhead {:.1}%",
                "replay+spill / plain, CPU",
                (c.median - 1.0) * 100.0
            );
        }
        goals.push((
            format!("proxy: replay+spill overhead <= 15%: {overhead:.1}%"),
            overhead <= 15.0,
        ));
    }
    if let Some((_, samples)) = results
        .iter()
        .find(|(c, _)| *c == case(Sender::ProxyReplay, Proto::H1))
    {
        let ratios: Vec<f64> = ok_samples(samples)
            .iter()
            .filter_map(|s| s.attempts)
            .map(|(first, second)| first / second)
            .collect();
        let (min, max) = (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
        if let Some(r) = median(ratios) {
            println!(
                "  h1 proxy    {:<28} {r:.2}x (rounds {min:.2}–{max:.2})",
                "replay from spill / 1st try"
            );
            goals.push((
                format!("proxy: a replay from the spill is as fast as the first attempt: {r:.2}x"),
                r >= 1.0,
            ));
        }
    }
    if let Some((_, samples)) = results
        .iter()
        .find(|(c, _)| *c == case(Sender::Mmap, Proto::H1))
    {
        let ok = ok_samples(samples);
        if let Some(heap) = ok.iter().map(|s| s.heap_peak).max() {
            goals.push((
                format!("heap peak < 64 KiB: {}", human(heap)),
                heap < 64 << 10,
            ));
        }
        if let Some(rss) = ok.iter().map(|s| s.peak_rss_kib).max() {
            let line = format!("sender peak RSS < 64 MiB: {}", human(rss * 1024));
            goals.push((line, rss < 64 << 10));
        }
    }
    if goals.is_empty() {
        return;
    }
    println!("\nGoals (HTTP/1.1 upload, {}):", human(size));
    if quick || size < 1 << 30 {
        println!(
            "  (the goals are set for --size 1GiB; a smaller file only checks the bench runs)"
        );
    }
    for (line, met) in goals {
        println!("  [{}] {line}", if met { "met" } else { "MISSED" });
    }
}

/// The machine, for the record: CPU model, cores, kernel.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".to_owned());
    format!("machine: {cpu}, {cores} cores, Linux {kernel}")
}
