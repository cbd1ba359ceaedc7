//! Replay past the in-memory cap: `ReplayLayer::spill_to_disk`. Streamed
//! bodies many times the cap are retried through `RetryLayer` against a
//! real faulty server over HTTP/1.1 and HTTP/2; the spill's faults (limit
//! passed, no such directory, a write that fails) leave the attempt in
//! flight whole and make the replay fail clearly; no file is left behind.

use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use mmap_body::retry::RetryPolicy;
use mmap_body::{Error, ErrorKind, ReplayBody, ReplayLayer};
use mmap_body_devkit::bodies::Streamed;
use mmap_body_devkit::faulty::{Fault, Faulty};
use mmap_body_devkit::files::sha256;
use mmap_body_devkit::server::{client, received};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn policy() -> RetryPolicy {
    RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40))
}

/// A streamed body of `len` bytes in 64 KiB frames, recorded with a 64 KiB
/// cap and spilled to `dir`, retried after the server drops it (then 503s
/// it): the last attempt has every byte.
async fn retried_from_disk(http2: bool, faults: Vec<Fault>, len: usize, dir: &Path) {
    let (body, hash) = Streamed::random(len, 64 * KIB);
    let server = Faulty::start(faults.clone()).await;
    let service = ServiceBuilder::new()
        .layer(
            ReplayLayer::new(64 * KIB)
                .spill_to_disk(2 * len as u64)
                .spill_dir(dir),
        )
        .layer(RetryLayer::new(policy().max_attempts(faults.len() + 1)))
        .service(client::<ReplayBody<Streamed>>(http2));
    let req = Request::put(server.uri("/")).body(body).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(60), service.oneshot(req))
        .await
        .expect("in time")
        .unwrap_or_else(|e| panic!("http2={http2}: not retried: {e:?}"));
    let seen = received(&res);
    assert_eq!((seen.len, seen.sha256), (len as u64, hash), "http2={http2}");
    let log = server.seen();
    assert_eq!(log.len(), faults.len() + 1, "http2={http2}: {log:?}");
    // Every spill file had no name: the directory stays empty.
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
}

#[tokio::test]
async fn a_body_128_times_the_cap_is_replayed_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    for http2 in [false, true] {
        let len = 8 * MIB;
        let faults = vec![
            Fault::DropAfter(6 * MIB as u64),
            Fault::StatusAfter(503, 3 * MIB as u64, Some("0")),
        ];
        retried_from_disk(http2, faults, len, dir.path()).await;
    }
}

/// `Replay` built by hand (no layer) takes the spill as the layer does:
/// `Replay::new(..).spill_to_disk(..).spill_dir(..)` retries a body 32
/// times its cap from disk, and leaves no file in the directory.
#[tokio::test]
async fn a_replay_service_built_by_hand_spills_as_the_layer_does() {
    let dir = tempfile::tempdir().unwrap();
    let len = 2 * MIB;
    let (body, hash) = Streamed::random(len, 64 * KIB);
    let server = Faulty::start([Fault::DropAfter(MIB as u64)]).await;
    let retry = ServiceBuilder::new()
        .layer(RetryLayer::new(policy().max_attempts(2)))
        .service(client::<ReplayBody<Streamed>>(false));
    let service = mmap_body::Replay::new(retry, 64 * KIB)
        .spill_to_disk(2 * len as u64)
        .spill_dir(dir.path());
    let req = Request::put(server.uri("/")).body(body).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(60), service.oneshot(req))
        .await
        .expect("in time")
        .unwrap_or_else(|e| panic!("not retried from the spill: {e:?}"));
    let seen = received(&res);
    assert_eq!((seen.len, seen.sha256), (len as u64, hash));
    assert_eq!(server.seen().len(), 2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// What an inner service saw: it reads the attempt's body whole, keeps a
/// clone of it, and answers 200; the test then looks at the clone.
type Kept = Arc<Mutex<Option<ReplayBody<Streamed>>>>;

async fn first_attempt(layer: ReplayLayer, len: usize) -> (ReplayBody<Streamed>, String) {
    let (body, hash) = Streamed::random(len, 64 * KIB);
    let kept: Kept = Arc::default();
    let keep = kept.clone();
    let inner = tower::service_fn(move |req: Request<ReplayBody<Streamed>>| {
        let keep = keep.clone();
        async move {
            let body = req.into_body();
            *keep.lock().unwrap() = Some(body.clone());
            let bytes = body.collect().await.map(|c| c.to_bytes());
            Ok::<_, Infallible>(Response::new(bytes.map_or(0, |b| b.len())))
        }
    });
    let service = ServiceBuilder::new().layer(layer).service(inner);
    let req = Request::put("http://127.0.0.1/").body(body).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), service.oneshot(req))
        .await
        .expect("in time")
        .unwrap();
    // The attempt in flight got everything, whatever the spill did.
    assert_eq!(*res.body(), len, "the first attempt was disturbed");
    let clone = kept.lock().unwrap().take().unwrap();
    (clone, hash)
}

async fn replay(body: ReplayBody<Streamed>) -> Result<Bytes, Error> {
    tokio::time::timeout(Duration::from_secs(30), body.clone().collect())
        .await
        .expect("in time")
        .map(|c| c.to_bytes())
}

#[tokio::test]
async fn a_replay_reads_the_spill_back() {
    let dir = tempfile::tempdir().unwrap();
    let layer = ReplayLayer::new(100 * KIB)
        .spill_to_disk(64 * MIB as u64)
        .spill_dir(dir.path());
    let (body, hash) = first_attempt(layer, 16 * MIB + 5).await;
    assert!(body.is_replayable());
    // Twice: a replay does not use the spill up.
    for _ in 0..2 {
        let bytes = replay(body.clone()).await.expect("replayed");
        assert_eq!(sha256(&bytes), hash);
    }
}

#[tokio::test]
async fn a_body_past_the_spill_limit_is_not_replayable() {
    let dir = tempfile::tempdir().unwrap();
    let layer = ReplayLayer::new(64 * KIB)
        .spill_to_disk(MIB as u64)
        .spill_dir(dir.path());
    let (body, _) = first_attempt(layer, 4 * MIB).await;
    assert!(!body.is_replayable());
    let err = replay(body).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReplayBufferExceeded);
    assert!(err.to_string().contains("spill_to_disk"), "{err}");
}

#[tokio::test]
async fn a_missing_spill_directory_fails_the_replay_not_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let layer = ReplayLayer::new(64 * KIB)
        .spill_to_disk(64 * MIB as u64)
        .spill_dir(&missing);
    let (body, _) = first_attempt(layer, 2 * MIB).await;
    assert!(!body.is_replayable());
    let err = replay(body).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SpillFailed);
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

/// A spill directory that cannot be written to: here a path under a regular
/// file (`ENOTDIR`), which fails for root too, unlike permission bits.
#[tokio::test]
async fn an_unwritable_spill_directory_fails_the_replay_not_the_attempt() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = file.path().join("spill");
    let layer = ReplayLayer::new(64 * KIB)
        .spill_to_disk(64 * MIB as u64)
        .spill_dir(&under_a_file);
    let (body, _) = first_attempt(layer, 2 * MIB).await;
    assert!(!body.is_replayable());
    let err = replay(body).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SpillFailed);
    assert!(
        err.to_string().contains("cannot create a spill file"),
        "{err}"
    );
}

/// Through the retry stack: past the limit, the failure is returned, not
/// retried.
#[tokio::test]
async fn past_the_limit_a_dropped_attempt_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (body, _) = Streamed::random(4 * MIB, 64 * KIB);
    let server = Faulty::start([Fault::DropAfter(3 * MIB as u64)]).await;
    let service = ServiceBuilder::new()
        .layer(
            ReplayLayer::new(64 * KIB)
                .spill_to_disk(MIB as u64)
                .spill_dir(dir.path()),
        )
        .layer(RetryLayer::new(policy()))
        .service(client::<ReplayBody<Streamed>>(false));
    let req = Request::put(server.uri("/")).body(body).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), service.oneshot(req))
        .await
        .expect("in time");
    assert!(
        res.is_err(),
        "a dropped connection without a replay is an error"
    );
    assert_eq!(server.seen().len(), 1);
}

/// Spill files have no name and go with the last clone: nothing in the
/// directory at any time, and no descriptor of it left open after.
#[tokio::test]
async fn no_spill_file_outlives_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let dir_name = std::fs::canonicalize(dir.path()).unwrap();
    let open_in_dir = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(&dir_name))
            .count()
    };
    let layer = ReplayLayer::new(64 * KIB)
        .spill_to_disk(64 * MIB as u64)
        .spill_dir(dir.path());
    let (body, hash) = first_attempt(layer, 4 * MIB).await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(
        open_in_dir() > 0,
        "the test is vacuous: no spill file is open"
    );
    assert_eq!(sha256(&replay(body.clone()).await.unwrap()), hash);
    drop(body);
    // The writer thread closes its handle as it leaves.
    let mut left = open_in_dir();
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = open_in_dir();
    }
    assert_eq!(left, 0, "spill files still open after the last clone went");
}

/// A write that fails (here: past `RLIMIT_FSIZE`, as a full disk would)
/// turns the recording lossy: the attempt completes, the replay fails with
/// `SpillFailed`. In a child process: the limit is per process.
#[test]
fn a_failed_spill_write_fails_the_replay_not_the_attempt() {
    if std::env::var("MMAP_BODY_CHILD").as_deref() == Ok("fsize") {
        // SAFETY: ignoring SIGXFSZ and lowering a resource limit of this
        // child process, which does nothing else.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: MIB as libc::rlim_t,
                rlim_max: libc::RLIM_INFINITY,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let layer = ReplayLayer::new(64 * KIB)
                .spill_to_disk(64 * MIB as u64)
                .spill_dir(dir.path());
            let (body, _) = first_attempt(layer, 8 * MIB).await;
            // The writer reports the failure once it reaches the limit.
            let err = replay(body.clone()).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::SpillFailed, "{err}");
            assert!(!body.is_replayable());
        });
        std::process::exit(0);
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--exact")
        .arg(mmap_body_devkit::harness::test_name(
            module_path!(),
            "a_failed_spill_write_fails_the_replay_not_the_attempt",
        ))
        .arg("--nocapture")
        .env("MMAP_BODY_CHILD", "fsize")
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
