//! The safe-by-default matrix of mmap-body's `tests/safe_by_default.rs`
//! for reqwest over TLS: a file truncated under an `MmapBody` while
//! `ReplayLayer` + `RetryLayer(RetryPolicy)` + `ReqwestService` uploads it
//! over rustls (ring), ALPN `h2` and `http/1.1`, in a process that never
//! heard of `mmap_body::guard`, one that installed it explicitly, and one
//! that opted out.
//!
//! The SIGBUS disposition is process-wide, so each (transport, setup) case
//! runs in a child process: this binary started again for one test, with
//! the case in `MMAP_BODY_CASE`. The child prints what it saw on one line;
//! the parent checks it, or the signal that ended the child.
//!
//! The provider: no process-wide one, in the parent or the children; the
//! client is `reqwest_tls_client`, handed the ring `ClientConfig` of
//! `TestCert::client_config` (see the crate docs).
#![cfg(target_os = "linux")]

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use http::Request;
use mmap_body::reqwest::ReqwestService;
use mmap_body::retry::RetryPolicy;
use mmap_body::{Error, ErrorKind, MmapBody, ReplayLayer};
use mmap_body_devkit::files::{test_file, truncate};
use mmap_body_devkit::tls::pausing_server_tls;
use mmap_body_devkit::BoxError;
use mmap_body_interop_reqwest_tls::{process_provider_installed, reqwest_tls_client};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;

// ------------------------------------------------------------ the matrix

/// How an upload travels: always the stack over `ReqwestService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// reqwest over rustls, ALPN `http/1.1` (`http1_only`).
    TlsH1,
    /// reqwest over rustls, ALPN `h2`.
    TlsH2,
}

const TRANSPORTS: [Transport; 2] = [Transport::TlsH1, Transport::TlsH2];

impl Transport {
    fn parse(name: &str) -> Transport {
        *TRANSPORTS
            .iter()
            .find(|t| format!("{t:?}") == name)
            .expect("a transport")
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
    /// The kind of mmap-body's error in the caller's error chain, if any.
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

/// Uploads a file of [`LEN`] bytes through the stack over `transport`,
/// truncates it to 1 MiB once the server has read 2 MiB, and returns what
/// was seen.
async fn upload_and_truncate(transport: Transport) -> Seen {
    let file = test_file(LEN);
    let (server, cert) = pausing_server_tls(PAUSE_AT).await;
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(stack_policy()))
        .service(ReqwestService::new(reqwest_tls_client(
            transport == Transport::TlsH2,
            &cert,
        )));
    let uri = format!("https://localhost:{}/upload", server.addr.port());
    // SAFETY: the temp file is private to this test; its truncation while
    // mapped is the point of the test.
    let body = unsafe { MmapBody::open(&file.path) }
        .unwrap()
        .chunk_size(FRAME);
    let req = Request::put(uri).body(body).unwrap();
    let upload = tokio::spawn(async move {
        let status: Result<u16, BoxError> = service.oneshot(req).await.map(|r| r.status().as_u16());
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
    // fails only its own request; the main crate's `file_body.rs`).
    mmap_body::FileBody::disable_leases();
    match setup {
        Setup::None => {}
        Setup::Install => mmap_body::guard::install().unwrap(),
        Setup::OptOut => assert!(mmap_body::guard::opt_out()),
    }
    let seen = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(upload_and_truncate(transport));
    assert!(!process_provider_installed());
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

/// truncation × {reqwest stack over TLS h1, over TLS h2} × {no setup call,
/// explicit install, opt-out}. With the handler (no setup or install): the
/// child lives, the upload fails, the caller's chain holds `Truncated`, the
/// server saw one upload (never retried) and never got it whole. After an
/// opt-out: the child dies by SIGBUS (a user-space copy of a truncated
/// page), or, accepted as in `safe_by_default.rs`, the upload fails as with
/// the handler (the frame was copied before the truncation and the next
/// frame's check saw it), never complete, never retried.
#[test]
fn truncation_matrix() {
    if std::env::var("MMAP_BODY_CASE").is_ok() {
        return;
    }
    // The table, a row as each child ends (so a failed case still shows
    // the rows before it).
    eprintln!("| transport | setup | outcome | time |\n|---|---|---|---|");
    let mut sigbus = 0;
    for transport in TRANSPORTS {
        for setup in SETUPS {
            let case = format!("{transport:?}/{setup:?}");
            let started = Instant::now();
            let (status, stdout) = run_child("child_upload_and_truncate", &case);
            let seen = Seen::parse(&stdout);
            eprintln!(
                "| {transport:?} | {setup:?} | {} | {:.1} s |",
                match (&seen, status.signal()) {
                    (_, Some(sig)) => format!("killed by signal {sig}"),
                    (Some(seen), None) => format!("alive, {}", seen.line()),
                    (None, None) => format!("{status:?}, no report"),
                },
                started.elapsed().as_secs_f64()
            );
            if setup == Setup::OptOut && status.signal().is_some() {
                // Without the handler: what any mmap does.
                assert_eq!(status.signal(), Some(libc::SIGBUS), "{case}: {stdout}");
                sigbus += 1;
                continue;
            }
            assert!(status.success(), "{case}: {status:?} {stdout}");
            let seen = seen.unwrap_or_else(|| panic!("{case}: no report: {stdout}"));
            assert!(seen.failed, "{case}: the upload must fail: {seen:?}");
            assert!(!seen.complete, "{case}: the server got it all: {seen:?}");
            assert_eq!(seen.requests, 1, "{case}: retried: {seen:?}");
            if setup != Setup::OptOut {
                assert_eq!(seen.kind, Some(ErrorKind::Truncated), "{case}: {seen:?}");
            }
        }
    }
    // The opt-out is real: over HTTP/2, h2 copies every frame in user space
    // (so does rustls, on both protocols), and nothing catches the fault.
    assert!(sigbus >= 1, "no child died of SIGBUS after opting out");
    assert!(!process_provider_installed());
}
