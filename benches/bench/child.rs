//! The child process: one measured sender (an upload, or a server for a
//! download), reporting its time, CPU, heap and peak RSS on stdout.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use mmap_body::{MmapBody, ReplayLayer};
use mmap_body_devkit::executor::{Observed, ObservedExecutor};
use tokio_util::io::ReaderStream;
use tower::{Layer, ServiceExt};

use crate::cases::*;
use crate::measure::*;
use crate::neighbour::*;
use crate::sendfile::*;
use mmap_body_devkit::alloc;
use mmap_body_devkit::BoxError;

/// `--child SENDER PROTO FILE SIZE [ADDR]`: one measurement, reported on
/// stdout as `report key=value...`.
pub(crate) fn child(args: &[String]) -> Result<(), BoxError> {
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
    // The floor's buffer is read in, and so resident, before measuring.
    let resident = if sender == Sender::WriteFloor {
        std::fs::read(&path)?
    } else {
        Vec::new()
    };
    let ticker = Ticker::start(&rt);
    let faults_before = thread_major_faults();
    let cpu_before = cpu_secs()?;
    alloc::track_all_threads();
    let started = Instant::now();
    let mut attempts = None;
    let seen = if sender == Sender::Sendfile {
        sendfile_upload(addr, &path, size)
    } else if sender == Sender::WriteFloor {
        write_upload(addr, &resident)
    } else if sender.is_many() {
        rt.block_on(async {
            tokio::time::timeout(
                time_limit(size * 32),
                upload_many(sender, proto, addr, &path),
            )
            .await
            .map_err(|_| BoxError::from("the uploads took too long"))?
        })
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
    let faults = thread_major_faults() - faults_before;
    let neighbour = ticker.stop(faults);
    // The raw senders run outside the runtime: no ticker ran beside them.
    let neighbour = if sender.is_raw() {
        String::new()
    } else {
        format!(" {}", neighbour.fields())
    };
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
        "report secs={secs} cpu={cpu} heap={} allocations={} rss_kib={}{neighbour} framing={}{attempts}",
        heap.peak,
        heap.allocations,
        peak_rss_kib()?,
        framing.replace(' ', "+")
    )?;
    Ok(())
}

/// The reqwest cases: see `reqwest.rs`.
#[cfg(feature = "reqwest")]
pub(crate) async fn via_reqwest(
    sender: Sender,
    proto: Proto,
    addr: SocketAddr,
    path: &Path,
) -> Result<String, BoxError> {
    let mode = match sender {
        Sender::ReqwestFile => crate::reqwest::Mode::File,
        Sender::ReqwestBytes => crate::reqwest::Mode::Bytes,
        _ => crate::reqwest::Mode::Stack,
    };
    crate::reqwest::upload(mode, proto == Proto::H2, addr, path).await
}

#[cfg(not(feature = "reqwest"))]
pub(crate) async fn via_reqwest(
    sender: Sender,
    _proto: Proto,
    _addr: SocketAddr,
    _path: &Path,
) -> Result<String, BoxError> {
    Err(format!("{} needs --features reqwest", sender.name()).into())
}

/// The proxy cases: see `proxy.rs`.
#[cfg(feature = "spill")]
pub(crate) async fn via_proxy(
    sender: Sender,
    addr: SocketAddr,
    path: &Path,
    size: u64,
) -> Result<(String, Option<(f64, f64)>), BoxError> {
    let mode = match sender {
        Sender::ProxyPlain => crate::proxy::Mode::Plain,
        Sender::ProxySpill => crate::proxy::Mode::Spill,
        _ => crate::proxy::Mode::Replay,
    };
    let outcome = crate::proxy::upload(mode, addr, path, size).await?;
    Ok((outcome.answer, outcome.attempts))
}

#[cfg(not(feature = "spill"))]
pub(crate) async fn via_proxy(
    sender: Sender,
    _addr: SocketAddr,
    _path: &Path,
    _size: u64,
) -> Result<(String, Option<(f64, f64)>), BoxError> {
    Err(format!("{} needs --features spill", sender.name()).into())
}

pub(crate) fn client<B>(
    proto: Proto,
) -> Client<hyper_util::client::legacy::connect::HttpConnector, B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    // Its connection tasks' polls are timed (the report's poll_* fields).
    let mut builder = Client::builder(ObservedExecutor(TimePolls));
    builder.http2_only(proto == Proto::H2);
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    builder.build(connector)
}

pub(crate) async fn upload(
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
        Sender::MmapNoHint => {
            let body = mmap(mmap_body::DEFAULT_CHUNK_SIZE)?.access_hints(false);
            send(proto, &uri, body).await?
        }
        Sender::MmapNoGuard => {
            // Before the first mapping: the SIGBUS handler is never
            // installed, and no frame is tracked (the body as it was
            // before the handler was on by default).
            if !mmap_body::guard::opt_out() {
                return Err("mmap-noguard: the guard was installed already".into());
            }
            send(proto, &uri, mmap(mmap_body::DEFAULT_CHUNK_SIZE)?).await?
        }
        Sender::MmapKeep => {
            let body = mmap(mmap_body::DEFAULT_CHUNK_SIZE)?.release_sent_pages(false);
            send(proto, &uri, body).await?
        }
        Sender::FileLeased => {
            let body = mmap_body::FileBody::open(path)?;
            if !body.is_mapped() {
                return Err("file-leased: the kernel gave no lease".into());
            }
            send(proto, &uri, body).await?
        }
        Sender::FilePread => {
            mmap_body::FileBody::disable_leases();
            send(proto, &uri, mmap_body::FileBody::open(path)?).await?
        }
        Sender::MmapReplay => {
            let service = ReplayLayer::new(64 << 10).layer(client(proto));
            let request = http::Request::put(&uri).body(mmap(mmap_body::DEFAULT_CHUNK_SIZE)?)?;
            service.oneshot(request).await?
        }
        Sender::Sendfile
        | Sender::WriteFloor
        | Sender::ServeMmap
        | Sender::ServeFile
        | Sender::ManyServeMmap
        | Sender::ManyServeFile
        | Sender::ServeFileBody
        | Sender::ServeFilePread
        | Sender::ReqwestFile
        | Sender::ReqwestBytes
        | Sender::ReqwestStack
        | Sender::ProxyPlain
        | Sender::ProxySpill
        | Sender::ProxyReplay
        | Sender::ManyMmap
        | Sender::ManyReader64K => {
            return Err(format!("{} is not a client body", sender.name()).into())
        }
    };
    answer(response).await
}

pub(crate) async fn send<B>(
    proto: Proto,
    uri: &str,
    body: B,
) -> Result<http::Response<Incoming>, BoxError>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let request = http::Request::put(uri).body(body)?;
    Ok(client(proto).request(request).await?)
}

/// Serves `GET /file` (HTTP/1.1 and HTTP/2) until stdin closes, then reports
/// what serving cost this process.
pub(crate) fn serve(
    rt: &tokio::runtime::Runtime,
    sender: Sender,
    path: PathBuf,
) -> Result<(), BoxError> {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    writeln!(std::io::stdout(), "listening {}", listener.local_addr()?)?;
    std::io::stdout().flush()?;

    let path = Arc::new(path);
    if sender == Sender::ServeFilePread {
        mmap_body::FileBody::disable_leases();
    }
    // The runtime runs on this thread (`current_thread`, in `block_on`).
    let ticker = Ticker::start(rt);
    let faults_before = thread_major_faults();
    let cpu_before = cpu_secs()?;
    alloc::track_all_threads();
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let path = path.clone();
            // The connection's task and its HTTP/2 streams' are timed.
            let executor = ObservedExecutor(TimePolls);
            tokio::spawn(Observed::new(TimePolls, async move {
                let builder = hyper_util::server::conn::auto::Builder::new(executor);
                let io = TokioIo::new(stream);
                let _ = match sender {
                    Sender::ServeMmap | Sender::ManyServeMmap => {
                        let service =
                            hyper::service::service_fn(move |req: http::Request<Incoming>| {
                                // SAFETY: the bench owns the file in its temp dir
                                // and nothing changes it while it is mapped.
                                let body = unsafe { MmapBody::open(&*path) };
                                let response = body.map(|body| {
                                    mmap_body::serve::respond(req.method(), req.headers(), body)
                                });
                                async move { response }
                            });
                        builder.serve_connection(io, service).await
                    }
                    Sender::ServeFileBody | Sender::ServeFilePread => {
                        let service =
                            hyper::service::service_fn(move |req: http::Request<Incoming>| {
                                let body = mmap_body::FileBody::open(&*path);
                                let response = body.map(|body| {
                                    mmap_body::serve::respond(req.method(), req.headers(), body)
                                });
                                async move { response }
                            });
                        builder.serve_connection(io, service).await
                    }
                    _ => {
                        let service = tower_http::services::ServeFile::new(&*path);
                        let service = hyper_util::service::TowerToHyperService::new(service);
                        builder.serve_connection(io, service).await
                    }
                };
            }));
        }
    });
    rt.block_on(closed_rx)?;
    let heap = alloc::stop_tracking();
    let cpu = cpu_secs()? - cpu_before;
    let faults = thread_major_faults() - faults_before;
    let neighbour = ticker.stop(faults);
    writeln!(
        std::io::stdout(),
        "report cpu={cpu} heap={} allocations={} rss_kib={} {}",
        heap.peak,
        heap.allocations,
        peak_rss_kib()?,
        neighbour.fields()
    )?;
    Ok(())
}

/// The `many-*` cases: every file in `dir` uploaded at once through one
/// client (over HTTP/1.1 one connection each, over HTTP/2 one connection
/// for all). Returns the first answer; all must say the same.
async fn upload_many(
    sender: Sender,
    proto: Proto,
    addr: SocketAddr,
    dir: &Path,
) -> Result<String, BoxError> {
    let uri = format!("http://{addr}/upload");
    let mut uploads = tokio::task::JoinSet::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    for file in files {
        let uri = uri.clone();
        match sender {
            Sender::ManyMmap => {
                // SAFETY: the bench owns the files in its temp dir and
                // nothing changes them while they are mapped.
                let body = unsafe { MmapBody::open(&file)? };
                uploads.spawn(async move { answer(send(proto, &uri, body).await?).await });
            }
            _ => {
                let reader = tokio::fs::File::open(&file).await?;
                let stream = ReaderStream::with_capacity(reader, 64 << 10).map_ok(Frame::data);
                uploads.spawn(async move {
                    answer(send(proto, &uri, StreamBody::new(stream)).await?).await
                });
            }
        }
    }
    let mut first: Option<String> = None;
    while let Some(done) = uploads.join_next().await {
        let text = done??;
        match &first {
            Some(first) if *first != text => {
                return Err(format!("uploads disagree: `{first}` and `{text}`").into())
            }
            Some(_) => {}
            None => first = Some(text),
        }
    }
    first.ok_or_else(|| "no file to upload".into())
}

/// The body of a successful answer.
async fn answer(response: http::Response<Incoming>) -> Result<String, BoxError> {
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&text).into_owned();
    if !status.is_success() {
        return Err(format!("the server answered {status}: {text}").into());
    }
    Ok(text)
}
