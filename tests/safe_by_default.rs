//! Safe with no setup call: a file truncated under an `MmapBody` while it
//! is uploaded, over every transport and stack the crate is used with, in
//! a process that never heard of `mmap_body::guard`, one that installed it
//! explicitly, and one that opted out; and consumers that keep every frame,
//! which must never wait forever.
//!
//! The SIGBUS disposition is process-wide, so each (transport, setup) case
//! runs in a child process: this binary started again for one test, with
//! the case in `MMAP_BODY_CASE`. The child prints what it saw on one line;
//! the parent checks it, or the signal that ended the child.
#![cfg(all(
    target_os = "linux",
    feature = "retry",
    feature = "reqwest",
    feature = "spill"
))]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::pin::Pin;
use std::process::ExitStatus;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use mmap_body::reqwest::ReqwestService;
use mmap_body::retry::RetryPolicy;
use mmap_body::{Error, ErrorKind, MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::bodies::poll_now;
use mmap_body_devkit::files::{sha256, test_file, truncate};
use mmap_body_devkit::server::{client, hashing_server, pausing_server, received, Pausing};
use mmap_body_devkit::tls::{pausing_server_tls, tls_client};
use mmap_body_devkit::BoxError;
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;

// ------------------------------------------------------------ the matrix

/// How an upload travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// hyper-util, HTTP/1.1 over TCP: the kernel reads the frames.
    H1,
    /// hyper-util, HTTP/2 prior knowledge: h2 copies frames in user space.
    H2,
    /// hyper-util over rustls, ALPN http/1.1: rustls copies every frame.
    TlsH1,
    /// hyper-util over rustls, ALPN h2.
    TlsH2,
    /// `ReplayLayer` + `RetryLayer(RetryPolicy)` over hyper-util, HTTP/2.
    Stack,
    /// The same stack over `ReqwestService`, HTTP/2 prior knowledge.
    Reqwest,
}

const TRANSPORTS: [Transport; 6] = [
    Transport::H1,
    Transport::H2,
    Transport::TlsH1,
    Transport::TlsH2,
    Transport::Stack,
    Transport::Reqwest,
];

impl Transport {
    fn parse(name: &str) -> Transport {
        *TRANSPORTS
            .iter()
            .find(|t| format!("{t:?}") == name)
            .expect("a transport")
    }

    /// Whether a user-space copy reads the frames (so that, without the
    /// guard, a truncated page raises SIGBUS instead of EFAULT).
    fn copies(self) -> bool {
        self != Transport::H1
    }
}

/// What the program did about the guard before its first mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// Nothing: the crate installs its handler when the file is mapped.
    None,
    /// `mmap_body::guard::install()` first.
    Install,
    /// `mmap_body::guard::opt_out()` first.
    OptOut,
}

const SETUPS: [Setup; 3] = [Setup::None, Setup::Install, Setup::OptOut];

impl Setup {
    fn parse(name: &str) -> Setup {
        *SETUPS
            .iter()
            .find(|s| format!("{s:?}") == name)
            .expect("a setup")
    }
}

/// The upload: 33 MiB in 8 MiB frames; the server stops reading after
/// 2 MiB (its HTTP/2 stream window is 8 MiB), so the sender holds most of
/// the second frame, still to be copied, when the file is truncated.
const LEN: u64 = 33 * MIB;
const FRAME: usize = 8 * MIB as usize;
const PAUSE_AT: u64 = 2 * MIB;

/// What a child saw, on one line of its stdout.
#[derive(Debug)]
struct Seen {
    /// The kind of this crate's error in the caller's error chain, if any.
    kind: Option<ErrorKind>,
    /// The upload failed.
    failed: bool,
    /// Requests the server saw, and whether one of them was complete.
    requests: usize,
    complete: bool,
}

impl Seen {
    fn line(&self) -> String {
        format!(
            "SEEN kind={:?} failed={} requests={} complete={}",
            self.kind, self.failed, self.requests, self.complete
        )
    }

    fn parse(stdout: &str) -> Option<Seen> {
        // libtest's "test ... " may stand before it on the line.
        let line = stdout
            .lines()
            .find_map(|l| l.find("SEEN ").map(|at| &l[at..]))?;
        let field = |name: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        let kind = match field("kind")?.as_str() {
            "None" => None,
            "Some(Truncated)" => Some(ErrorKind::Truncated),
            "Some(Modified)" => Some(ErrorKind::Modified),
            _ => Some(ErrorKind::Io),
        };
        Some(Seen {
            kind,
            failed: field("failed")? == "true",
            requests: field("requests")?.parse().ok()?,
            complete: field("complete")? == "true",
        })
    }
}

fn stack_policy() -> RetryPolicy {
    RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40))
}

/// Uploads a file of [`LEN`] bytes over `transport`, truncates it to 1 MiB
/// once the server has read 2 MiB, and returns what was seen.
async fn upload_and_truncate(transport: Transport) -> Seen {
    let file = test_file(LEN);
    let tls = matches!(transport, Transport::TlsH1 | Transport::TlsH2);
    let (server, cert): (Pausing, _) = if tls {
        let (server, cert) = pausing_server_tls(PAUSE_AT).await;
        (server, Some(cert))
    } else {
        (pausing_server(PAUSE_AT).await, None)
    };
    let scheme = if tls { "https" } else { "http" };
    let uri = format!("{scheme}://localhost:{}/upload", server.addr.port());
    let uri = if tls {
        uri
    } else {
        uri.replace("localhost", "127.0.0.1")
    };
    // SAFETY: the temp file is private to this test; its truncation while
    // mapped is the point of the test.
    let body = unsafe { MmapBody::open(&file.path) }
        .unwrap()
        .chunk_size(FRAME);
    let req = Request::put(uri).body(body).unwrap();
    let upload = tokio::spawn(async move {
        let status: Result<u16, BoxError> = match transport {
            Transport::H1 | Transport::H2 => client::<MmapBody>(transport == Transport::H2)
                .request(req)
                .await
                .map(|r| r.status().as_u16())
                .map_err(Into::into),
            Transport::TlsH1 | Transport::TlsH2 => {
                tls_client::<MmapBody>(transport == Transport::TlsH2, cert.as_ref().unwrap())
                    .request(req)
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(Into::into)
            }
            Transport::Stack => ServiceBuilder::new()
                .layer(ReplayLayer::new(64 * 1024))
                .layer(RetryLayer::new(stack_policy()))
                .service(client::<ReplayBody<MmapBody>>(true))
                .oneshot(req)
                .await
                .map(|r| r.status().as_u16()),
            Transport::Reqwest => {
                let reqwest = reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .build()
                    .unwrap();
                ServiceBuilder::new()
                    .layer(ReplayLayer::new(64 * 1024))
                    .layer(RetryLayer::new(stack_policy()))
                    .service(ReqwestService::new(reqwest))
                    .oneshot(req)
                    .await
                    .map(|r| r.status().as_u16())
            }
        };
        status
    });
    let log = server
        .change_while_paused(|| truncate(&file.path, MIB))
        .await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), upload)
        .await
        .expect("the upload ended in time")
        .unwrap();
    // Give the server's handler time to record how its body ended.
    for _ in 0..100 {
        if log.lock().unwrap().iter().all(|u| u.ended) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let uploads = log.lock().unwrap().clone();
    Seen {
        kind: outcome
            .as_ref()
            .err()
            .and_then(|e| Error::find_in(&**e))
            .map(Error::kind),
        failed: outcome.is_err(),
        requests: uploads.len(),
        complete: uploads.iter().any(|u| u.complete && u.read >= LEN),
    }
}

/// The child's side of one case of the matrix.
#[test]
fn child_upload_and_truncate() {
    let Ok(case) = std::env::var("MMAP_BODY_CASE") else {
        return;
    };
    let (transport, setup) = case.split_once('/').expect("transport/setup");
    let (transport, setup) = (Transport::parse(transport), Setup::parse(setup));
    assert!(
        !mmap_body::guard::is_installed(),
        "nothing installed it yet"
    );
    // The guard's matrix: no read lease, as where the kernel gives none
    // (under a lease a truncation waits for the held frames' copy and
    // fails only its own request: `file_body.rs`).
    mmap_body::FileBody::disable_leases();
    match setup {
        Setup::None => {}
        Setup::Install => mmap_body::guard::install().unwrap(),
        Setup::OptOut => assert!(mmap_body::guard::opt_out()),
    }
    let seen = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(upload_and_truncate(transport));
    println!("{}", seen.line());
}

/// Runs `test` of this binary in a child with `MMAP_BODY_CASE=case`, for at
/// most 90 s; returns how it ended and its stdout.
fn run_child(test: &str, case: &str) -> (ExitStatus, String) {
    let ended = mmap_body_devkit::harness::run_child(
        module_path!(),
        test,
        "MMAP_BODY_CASE",
        case,
        Duration::from_secs(90),
    );
    (ended.status, ended.stdout)
}

/// truncation × {h1, h2, TLS h1, TLS h2, ReplayLayer stack, reqwest stack}
/// × {no setup call, explicit install, opt-out}. With the handler (no setup
/// or install): the process lives, the upload fails, the server never gets
/// a complete body and the stacks never retry it; the stacks' callers get
/// `Truncated`. After an opt-out, every transport that copies frames in
/// user space ends the process with SIGBUS; HTTP/1.1 over TCP still fails
/// cleanly (the kernel reads).
#[test]
fn truncation_matrix() {
    if std::env::var("MMAP_BODY_CASE").is_ok() {
        return;
    }
    let mut table = Vec::new();
    let mut sigbus = 0;
    for transport in TRANSPORTS {
        for setup in SETUPS {
            let case = format!("{transport:?}/{setup:?}");
            let (status, stdout) = run_child("child_upload_and_truncate", &case);
            let seen = Seen::parse(&stdout);
            table.push(format!(
                "| {transport:?} | {setup:?} | {} |",
                match (&seen, status.signal()) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(seen), None) => format!("alive, {}", seen.line()),
                    (None, None) => format!("{status:?}, no report"),
                }
            ));
            if setup == Setup::OptOut && transport.copies() && status.signal().is_some() {
                // Without the handler: what any mmap does. (hyper over a TLS
                // stream without vectored writes copies each frame as it
                // takes it, before the truncation: then the next frame's
                // check sees it, and the upload fails as with the handler.)
                assert_eq!(status.signal(), Some(libc::SIGBUS), "{case}: {stdout}");
                sigbus += 1;
                continue;
            }
            assert!(status.success(), "{case}: {status:?} {stdout}");
            let seen = seen.unwrap_or_else(|| panic!("{case}: no report: {stdout}"));
            assert!(seen.failed, "{case}: the upload must fail: {seen:?}");
            assert!(!seen.complete, "{case}: the server got it all: {seen:?}");
            if matches!(transport, Transport::Stack | Transport::Reqwest) {
                assert_eq!(seen.requests, 1, "{case}: retried: {seen:?}");
                assert_eq!(seen.kind, Some(ErrorKind::Truncated), "{case}: {seen:?}");
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    // The opt-out is real: h2's framing copies frames in user space.
    assert!(sigbus >= 2, "no child died of SIGBUS after opting out");
}

/// reqwest over HTTP/2 through the stack, twelve rounds: the connection
/// often breaks ("broken pipe") before the body's own check sees the
/// truncation; the policy must still not replay the changed file
/// (`is_replayable()` looks at the file), and the caller learns why.
#[tokio::test]
async fn reqwest_over_http2_never_retries_a_truncated_file() {
    if std::env::var("MMAP_BODY_CASE").is_ok() {
        return;
    }
    for round in 0..12 {
        let seen = upload_and_truncate(Transport::Reqwest).await;
        assert_eq!(seen.requests, 1, "round {round}: retried: {seen:?}");
        assert!(seen.failed && !seen.complete, "round {round}: {seen:?}");
        assert_eq!(
            seen.kind,
            Some(ErrorKind::Truncated),
            "round {round}: {seen:?}"
        );
    }
}

// ------------------------------------------------------------- consumers

/// An `MmapBody` that truncates its file to `to` bytes after its first
/// frame was taken: a change in the middle of any consumer.
struct TruncateAfterFirst {
    body: MmapBody,
    path: Option<std::path::PathBuf>,
    to: u64,
}

impl Body for TruncateAfterFirst {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if frame.is_ready() {
            if let Some(path) = self.path.take() {
                truncate(&path, self.to);
            }
        }
        frame
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn mapped(path: &Path) -> MmapBody {
    // SAFETY: the temp files are private to these tests; their truncation
    // while mapped is the point of some of them.
    unsafe { MmapBody::open(path) }
        .unwrap()
        .chunk_size(MIB as usize)
}

/// The body to consume: the file intact, or truncated to 4 KiB after the
/// first frame.
fn subject(path: &Path, truncated: bool) -> BoxBody<Bytes, Error> {
    TruncateAfterFirst {
        body: mapped(path),
        path: truncated.then(|| path.to_owned()),
        to: 4096,
    }
    .boxed()
}

/// Consumes with `consume` (bounded by 20 s: a hang is a failure) and checks
/// the outcome: the whole file intact, a `Truncated` error otherwise.
async fn check<F, Fut>(name: &str, len: u64, truncated: bool, consume: F)
where
    F: FnOnce(BoxBody<Bytes, Error>) -> Fut,
    Fut: std::future::Future<Output = Result<Bytes, BoxError>>,
{
    let file = test_file(len);
    let want = std::fs::read(&file.path).unwrap();
    let case = format!("{name}, truncated={truncated}");
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        consume(subject(&file.path, truncated)),
    )
    .await
    .unwrap_or_else(|_| panic!("{case}: the consumer waited forever"));
    match (truncated, got) {
        (false, Ok(bytes)) => assert!(bytes == want, "{case}: not the file's bytes"),
        (true, Err(err)) => {
            let ours = Error::find_in(&*err).unwrap_or_else(|| panic!("{case}: {err:?}"));
            assert_eq!(ours.kind(), ErrorKind::Truncated, "{case}: {err}");
        }
        (_, got) => panic!("{case}: {:?}", got.map(|b| b.len())),
    }
}

/// Uploads `body` through `ReplayLayer` (64 KiB in memory, and with a
/// spill) + `RetryLayer` to a hashing server; the bytes it received.
async fn through_replay_layer<B>(body: B, http2: bool, spill: bool) -> Result<Bytes, BoxError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let addr = hashing_server().await;
    let mut layer = ReplayLayer::new(256 * 1024);
    if spill {
        layer = layer.spill_to_disk(1 << 30);
    }
    let mut service = ServiceBuilder::new()
        .layer(layer)
        .layer(RetryLayer::new(stack_policy()))
        .service(client::<ReplayBody<B>>(http2));
    let req = Request::put(format!("http://{addr}/")).body(body).unwrap();
    let res = service.ready().await?.call(req).await?;
    let got = received(&res);
    // The hashing server answers with what it read; the test compares the
    // hash, so hand back something with the same hash only when it matches.
    Ok(Bytes::from(format!("{}:{}", got.len, got.sha256)))
}

/// The consumers that keep every frame until the end, each over an intact
/// and a truncated file: none waits forever, each gets the whole body or
/// `Truncated`.
async fn consumers(label: &str) {
    let len = 3 * MIB + 123;
    check(&format!("{label} collect()"), len, false, |b| async move {
        Ok(b.collect().await?.to_bytes())
    })
    .await;
    check(&format!("{label} collect()"), len, true, |b| async move {
        Ok(b.collect().await?.to_bytes())
    })
    .await;
    for truncated in [false, true] {
        check(&format!("{label} axum::body::to_bytes"), len, truncated, |b| async move {
            Ok(axum::body::to_bytes(axum::body::Body::new(b), usize::MAX).await?)
        })
        .await;
        // A channel that keeps every frame it was sent until the sender is
        // done, and only then reads them.
        check(
            &format!("{label} a channel"),
            len,
            truncated,
            |mut b| async move {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let sender = tokio::spawn(async move {
                    while let Some(frame) = b.frame().await {
                        tx.send(frame?.into_data().unwrap()).unwrap();
                    }
                    Ok::<_, Error>(())
                });
                sender.await.unwrap()?;
                let mut all = Vec::new();
                while let Some(frame) = rx.recv().await {
                    all.extend_from_slice(&frame);
                }
                Ok(Bytes::from(all))
            },
        )
        .await;
    }
    // Wrapped bodies reach `ReplayLayer` as bodies to record: the recording
    // keeps their frames. A body under the cap is the case that hung (40 KiB
    // under 64 KiB then; past 64 KiB now, where a body is no longer copied
    // whole and keeps its last byte apart).
    for (len, spill) in [(160 * 1024, false), (160 * 1024, true), (3 * MIB + 5, true)] {
        for http2 in [false, true] {
            let file = test_file(len);
            let want = std::fs::read(&file.path).unwrap();
            let want = format!("{}:{}", want.len(), sha256(&want));
            let case = format!("{label} ReplayLayer, {len} bytes, spill={spill}, http2={http2}");
            let boxed = mapped(&file.path).boxed();
            let got = tokio::time::timeout(
                Duration::from_secs(20),
                through_replay_layer(boxed, http2, spill),
            )
            .await
            .unwrap_or_else(|_| panic!("{case}: waited forever"))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(got, want, "{case}");
            // The same inside an axum `Body`, the way a proxy gets it.
            let wrapped = axum::body::Body::new(mapped(&file.path));
            let got = tokio::time::timeout(
                Duration::from_secs(20),
                through_replay_layer(wrapped, http2, spill),
            )
            .await
            .unwrap_or_else(|_| panic!("{case} (axum Body): waited forever"))
            .unwrap_or_else(|e| panic!("{case} (axum Body): {e}"));
            assert_eq!(got, want, "{case} (axum Body)");
        }
    }
    // Truncated on its way through the layer: an error, never a hang, and
    // never a complete body upstream (HTTP/1.1 only after an opt-out: over
    // HTTP/2 h2 would copy the truncated frame, the opt-out's hazard).
    for http2 in [false, true] {
        if http2 && !mmap_body::guard::is_installed() {
            continue;
        }
        let file = test_file(160 * 1024);
        let body = TruncateAfterFirst {
            body: mapped(&file.path),
            path: Some(file.path.clone()),
            to: 4096,
        }
        .boxed();
        let case = format!("{label} ReplayLayer truncated, http2={http2}");
        let got = tokio::time::timeout(
            Duration::from_secs(20),
            through_replay_layer(body, http2, false),
        )
        .await
        .unwrap_or_else(|_| panic!("{case}: waited forever"));
        assert!(got.is_err(), "{case}: accepted upstream: {got:?}");
    }
}

/// With the guard (installed by the first mapping), the consumers that keep
/// frames get the whole body or an error, in bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_that_keep_frames_never_wait_with_the_guard() {
    if std::env::var("MMAP_BODY_CASE").is_ok() {
        return;
    }
    consumers("guard").await;
    assert!(mmap_body::guard::is_installed());
}

/// The child's side: the same consumers after an opt-out.
#[test]
fn child_consumers_without_the_guard() {
    if std::env::var("MMAP_BODY_CASE").as_deref() != Ok("consumers") {
        return;
    }
    assert!(mmap_body::guard::opt_out());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(consumers("no guard"));
    assert!(!mmap_body::guard::is_installed());
    println!("SEEN kind=None failed=false requests=0 complete=true");
}

/// Without the guard, the same consumers, in a child that opted out.
#[test]
fn consumers_that_keep_frames_never_wait_without_the_guard() {
    if std::env::var("MMAP_BODY_CASE").is_ok() {
        return;
    }
    let (status, stdout) = run_child("child_consumers_without_the_guard", "consumers");
    assert!(status.success(), "{status:?}: {stdout}");
    assert!(stdout.contains("SEEN "), "{stdout}");
}

// ------------------------------------------------------ kept frames detach

/// A consumer keeps every frame and gets the last byte without dropping
/// any: the frames it keeps are detached from the file, so a truncation
/// afterwards changes none of their bytes (no zeros, no signal), and
/// dropping some of them (which would give pages back) leaves the others
/// whole.
#[test]
fn kept_frames_keep_their_bytes_after_the_body_ended() {
    if std::env::var("MMAP_BODY_CASE").is_ok() {
        return;
    }
    let file = test_file(4 * MIB + 77);
    let original = std::fs::read(&file.path).unwrap();
    let mut body = mapped(&file.path);
    let mut frames = Vec::new();
    let mut polls = 0;
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    loop {
        polls += 1;
        assert!(polls < 100, "the body kept asking to wait");
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => frames.push(frame.unwrap().into_data().unwrap()),
            Poll::Ready(None) => break,
            Poll::Pending => {}
        }
    }
    assert!(mmap_body::guard::is_installed(), "installed by the mapping");
    assert_eq!(frames.iter().map(Bytes::len).sum::<usize>(), original.len());
    truncate(&file.path, 0);
    drop(frames.remove(1));
    let kept: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    let mut want = original.clone();
    want.drain(MIB as usize..2 * MIB as usize);
    assert!(kept == want, "a kept frame changed after the truncation");
    // The body's own file is gone: a retry of it refuses to start.
    let mut retry = body.clone();
    let err = poll_now(&mut retry).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated);
}

// ------------------------------------------- a connection broken by a change

/// The connection breaks because of a truncation before the body itself
/// looks at the file again (one big frame, already handed to hyper; the
/// upstream reads 2 MiB, truncates the file and resets the connection): the
/// retry policy must still see that the file changed (`is_replayable()`
/// asks the file) and not send it again; the caller gets `Truncated`.
#[tokio::test]
async fn a_connection_broken_on_a_changed_file_is_not_retried() {
    if std::env::var("MMAP_BODY_CASE").is_ok() {
        return;
    }
    use tokio::io::AsyncReadExt;
    let file = test_file(16 * MIB);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen, path) = (connections.clone(), file.path.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0;
            while read < 2 * MIB as usize {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
            truncate(&path, MIB);
            // A reset, not a clean close: SO_LINGER 0.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    // One frame of everything but the last byte: hyper has it before the
    // truncation and never polls the body again once the write fails.
    let body = mapped(&file.path).chunk_size(64 * MIB as usize);
    let req = Request::put(format!("http://{addr}/")).body(body).unwrap();
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(stack_policy()))
        .service(client::<ReplayBody<MmapBody>>(false));
    let err = tokio::time::timeout(Duration::from_secs(20), service.oneshot(req))
        .await
        .expect("ended in time")
        .expect_err("the upstream reset the connection");
    let ours = Error::find_in(&*err).unwrap_or_else(|| panic!("no crate error: {err:?}"));
    assert_eq!(ours.kind(), ErrorKind::Truncated, "{err}");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a changed file was sent again"
    );
}

/// A consumer keeps every frame and the file is truncated before it asks
/// for the last byte (to a length that is not a page multiple): the body
/// ends with `Truncated`, the kept frames are never copied (nothing reads
/// past the new end: the process lives), and nothing hangs.
#[test]
fn a_keeper_whose_file_was_truncated_gets_an_error_and_lives() {
    if std::env::var("MMAP_BODY_CASE").is_ok() {
        return;
    }
    for cut in [0, 4096 + 77, 2 * MIB + 5] {
        let file = test_file(4 * MIB + 77);
        let mut body = mapped(&file.path);
        let mut frames = Vec::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while body.size_hint().exact() != Some(1) {
            if let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
                frames.push(frame.unwrap().into_data().unwrap());
            }
        }
        truncate(&file.path, cut);
        let mut end = None;
        for _ in 0..10 {
            if let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(&mut cx) {
                end = Some(frame);
                break;
            }
        }
        let err = end
            .expect("the body ended within a few polls")
            .expect("an error, not the end")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated, "cut at {cut}: {err}");
        drop(frames);
    }
}
