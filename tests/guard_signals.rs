//! The `SIGBUS` guard against what else a process does with the signal: a
//! `SIGBUS` sent with `kill(2)` before a file is truncated, and a runtime
//! whose threads block `SIGBUS`. Each case uploads a file over HTTP/2 (h2
//! copies frames in user space), through `ReplayLayer` + `RetryLayer` on a
//! hyper-util client (which reports the body's own error: hyper's alone
//! says "broken pipe"), to a local hyper server paused after 2 MiB,
//! truncates it, and lets the server read on.
//!
//! Each case runs in a child process (the disposition is process-wide, and
//! a case that fails dies by `SIGBUS`): this binary started again for one
//! test, with `MMAP_BODY_SIGNALS_CHILD` naming the case. The child prints
//! what it saw on one line; the parent checks it, or the signal that ended
//! the child.
#![cfg(all(target_os = "linux", not(mmap_body_portable), feature = "retry"))]

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use http::Request;
use mmap_body::retry::RetryPolicy;
use mmap_body::{guard, Error, ErrorKind, MmapBody, ReplayBody, ReplayLayer};
use mmap_body_devkit::files::{test_file, truncate};
use mmap_body_devkit::harness::{chain, run_child, Ended};
use mmap_body_devkit::server::{client, pausing_server};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

const MIB: u64 = 1024 * 1024;
const CHILD_ENV: &str = "MMAP_BODY_SIGNALS_CHILD";

/// The upload, as `safe_by_default.rs` makes it: 33 MiB in 8 MiB frames,
/// the server paused after 2 MiB (its stream window is 8 MiB), so h2 holds
/// most of the second frame, still to be copied, when the file is cut to
/// 1 MiB.
const LEN: u64 = 33 * MIB;
const FRAME: usize = 8 * MIB as usize;
const PAUSE_AT: u64 = 2 * MIB;

/// What a child saw, on one line of its stdout.
fn seen_line(kind: Option<ErrorKind>, failed: bool, poisoned: bool, complete: bool) -> String {
    format!("SEEN kind={kind:?} failed={failed} poisoned={poisoned} complete={complete}")
}

/// Uploads a file of [`LEN`] bytes over HTTP/2 on `runtime`, truncates it
/// to 1 MiB while the server is paused, and returns the line to print.
fn upload_and_truncate(runtime: &tokio::runtime::Runtime) -> String {
    runtime.block_on(async {
        let file = test_file(LEN);
        let server = pausing_server(PAUSE_AT).await;
        let uri = format!("http://127.0.0.1:{}/upload", server.addr.port());
        // SAFETY: the temp file is private to this test; its truncation
        // while mapped is the point of the test.
        let body = unsafe { MmapBody::open(&file.path) }
            .unwrap()
            .chunk_size(FRAME);
        // Shares the mapping: the guard's poison shows in its `verify`.
        let witness = body.clone();
        let req = Request::put(uri).body(body).unwrap();
        let policy =
            RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40));
        let upload = tokio::spawn(
            ServiceBuilder::new()
                .layer(ReplayLayer::new(64 * 1024))
                .layer(RetryLayer::new(policy))
                .service(client::<ReplayBody<MmapBody>>(true))
                .oneshot(req),
        );
        let log = server
            .change_while_paused(|| truncate(&file.path, MIB))
            .await;
        let outcome = tokio::time::timeout(Duration::from_secs(30), upload)
            .await
            .expect("the upload ended in time")
            .unwrap();
        for _ in 0..100 {
            if log.lock().unwrap().iter().all(|u| u.ended) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(err) = &outcome {
            eprintln!("the upload's error: {}", chain(&**err));
        }
        let kind = match &outcome {
            Err(err) => Error::find_in(&**err).map(Error::kind),
            Ok(_) => None,
        };
        let poisoned = witness
            .verify()
            .err()
            .is_some_and(|e| e.kind() == ErrorKind::Truncated && e.to_string().contains("SIGBUS"));
        let complete = log
            .lock()
            .unwrap()
            .iter()
            .any(|u| u.complete && u.read >= LEN);
        seen_line(kind, outcome.is_err(), poisoned, complete)
    })
}

/// Runs `test` of this binary alone in a child with `case`, for at most
/// 90 s.
fn run(test: &str, case: &str) -> Ended {
    run_child(
        module_path!(),
        test,
        CHILD_ENV,
        case,
        Duration::from_secs(90),
    )
}

fn child_case() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Core dumps off: the children that die by `SIGBUS` write none. And no
/// read lease: these children test the guard, which is what acts where
/// the kernel gives no lease (a file open for writing elsewhere, not the
/// process's own, a file system without leases); under a lease a
/// truncation waits for the held frames' copy and never faults.
fn no_core_dumps() {
    mmap_body::FileBody::disable_leases();
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `setrlimit` reads the limit it is given; lowering a limit
    // needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}

/// The current `SIGBUS` handler's address (`SIG_DFL` is 0).
fn sigbus_handler() -> usize {
    // SAFETY: an all-zero `sigaction` is a valid value to fill in.
    let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the current action; changes nothing.
    unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut now) };
    now.sa_sigaction
}

/// The upload that must survive: alive, failed with `Truncated`, the
/// mapping poisoned by the guard's repair (or, with `poisoned` false, never
/// read past the file's new end), the server never got it whole.
fn assert_survived(case: &str, ended: &Ended, poisoned: bool) {
    let out = format!("{}{}", ended.stdout, ended.stderr);
    assert!(
        ended.status.success(),
        "{case}: the child did not live ({:?}, signal {:?}):\n{out}",
        ended.status,
        ended.status.signal()
    );
    let line = ended
        .stdout
        .lines()
        .find_map(|l| l.find("SEEN ").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("{case}: no report:\n{out}"));
    assert_eq!(
        line,
        seen_line(Some(ErrorKind::Truncated), true, poisoned, false),
        "{case}:\n{out}"
    );
}

/// A `SIGBUS` sent with `kill(2)` after the guard is installed: in a test
/// binary the action before the crate's is Rust's own handler, which resets
/// `SIGBUS` to the default for any address outside its guard page. The
/// crate's handler stays installed, and a file truncated under an HTTP/2
/// upload afterwards fails the upload with `Truncated`; the process lives.
/// (Before issue #29 item 7, the handler the crate chained to removed it,
/// and the child died by `SIGBUS` at the truncation.)
#[test]
fn a_sigbus_sent_with_kill_leaves_the_guard_on() {
    if let Some(case) = child_case() {
        no_core_dumps();
        eprintln!("signals child `{case}` started");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        // The first mapping installs the guard.
        let file = test_file(64 * 1024);
        // SAFETY: the temp file is private to this test.
        let _first = unsafe { MmapBody::open(&file.path) }.unwrap();
        assert!(guard::is_installed());
        let ours = sigbus_handler();
        // SAFETY: `kill` sends a signal to this process, which any of its
        // threads that does not block it takes (libtest's main thread, say):
        // given 100 ms.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGBUS) }, 0);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            sigbus_handler(),
            ours,
            "the crate's handler is no longer installed after a sent SIGBUS"
        );
        println!("{}", upload_and_truncate(&runtime));
        return;
    }
    let test = "a_sigbus_sent_with_kill_leaves_the_guard_on";
    assert_survived("kill", &run(test, "kill"), true);
}

/// Calls of [`recording`], and what it found blocked in its first call.
static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static SAW_USR1_BLOCKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SAW_BUS_BLOCKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A handler of the program's own (one argument, no `SA_SIGINFO`): counts
/// its calls and notes which signals its thread blocks while it runs.
extern "C" fn recording(_sig: libc::c_int) {
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: an all-zero `sigset_t` is valid to fill; `pthread_sigmask`
    // only reads the mask into it; `sigismember` reads it.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        SAW_USR1_BLOCKED.store(libc::sigismember(&mask, libc::SIGUSR1) == 1, SeqCst);
        SAW_BUS_BLOCKED.store(libc::sigismember(&mask, libc::SIGBUS) == 1, SeqCst);
    }
    CALLS.fetch_add(1, SeqCst);
}

/// A handler installed before the crate's, with `SIGUSR1` in its
/// `sa_mask` and `SA_RESETHAND` or `SA_NODEFER`, gets a sent `SIGBUS` as
/// the kernel would give it: with `SIGUSR1` blocked, and `SIGBUS` blocked
/// unless `SA_NODEFER`; with `SA_RESETHAND` once, the second one then ends
/// the process (the default), with `SA_NODEFER` every time. The crate's
/// handler stays installed throughout.
#[test]
fn a_sent_sigbus_gets_the_previous_actions_mask_and_flags() {
    if let Some(case) = child_case() {
        use std::sync::atomic::Ordering::SeqCst;
        no_core_dumps();
        eprintln!("signals child `{case}` started");
        // SAFETY: an all-zero `sigaction` is valid to fill in.
        let mut own: libc::sigaction = unsafe { std::mem::zeroed() };
        own.sa_sigaction = recording as *const () as usize;
        own.sa_flags = match case.as_str() {
            "resethand" => libc::SA_RESETHAND,
            _ => libc::SA_NODEFER,
        };
        // SAFETY: `sa_mask` is ours to fill; the handler only does atomics
        // and reads its mask.
        unsafe {
            libc::sigemptyset(&mut own.sa_mask);
            libc::sigaddset(&mut own.sa_mask, libc::SIGUSR1);
            assert_eq!(libc::sigaction(libc::SIGBUS, &own, std::ptr::null_mut()), 0);
        }
        guard::install().unwrap();
        let ours = sigbus_handler();
        for round in 1..=2 {
            // SAFETY: `raise` sends SIGBUS to this thread (`tgkill`), whose
            // handler runs before it returns.
            assert_eq!(unsafe { libc::raise(libc::SIGBUS) }, 0);
            let (calls, usr1, bus) = (
                CALLS.load(SeqCst),
                SAW_USR1_BLOCKED.load(SeqCst),
                SAW_BUS_BLOCKED.load(SeqCst),
            );
            println!("ROUND {round} calls={calls} usr1_blocked={usr1} bus_blocked={bus}");
            assert_eq!(sigbus_handler(), ours, "the crate's handler went");
        }
        return;
    }
    let test = "a_sent_sigbus_gets_the_previous_actions_mask_and_flags";
    let reset = run(test, "resethand");
    assert_eq!(
        reset.status.signal(),
        Some(libc::SIGBUS),
        "SA_RESETHAND: the second SIGBUS ends the process: {}{}",
        reset.stdout,
        reset.stderr
    );
    assert!(
        reset
            .stdout
            .contains("ROUND 1 calls=1 usr1_blocked=true bus_blocked=true"),
        "SA_RESETHAND: {}{}",
        reset.stdout,
        reset.stderr
    );
    assert!(!reset.stdout.contains("ROUND 2"), "{}", reset.stdout);
    let nodefer = run(test, "nodefer");
    assert!(
        nodefer.status.success()
            && nodefer
                .stdout
                .contains("ROUND 1 calls=1 usr1_blocked=true bus_blocked=false")
            && nodefer
                .stdout
                .contains("ROUND 2 calls=2 usr1_blocked=true bus_blocked=false"),
        "SA_NODEFER: {:?} {}{}",
        nodefer.status,
        nodefer.stdout,
        nodefer.stderr
    );
}

/// Blocks `SIGBUS` on the calling thread, as a runtime's `on_thread_start`
/// may do for all its threads.
fn block_sigbus() {
    // SAFETY: an all-zero `sigset_t` is valid to fill; `pthread_sigmask`
    // changes this thread's mask only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGBUS);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A runtime whose threads all block `SIGBUS` (`on_thread_start`): the
/// kernel does not deliver a fault to a thread that blocks it, it kills the
/// process, so no handler can repair a truncated page read there. A body
/// polled on such a thread sees that (one `pthread_sigmask` query, at its
/// first frame) and reads its frames from the file with `pread` instead of
/// handing out the mapping: no thread then reads a page the file lost (the
/// mapping is never poisoned), and the upload fails with `Truncated`; the
/// process lives. (Before issue #29 item 12, the child died by `SIGBUS`.)
#[test]
fn a_runtime_whose_threads_block_sigbus_gets_truncated_not_killed() {
    if let Some(case) = child_case() {
        no_core_dumps();
        eprintln!("signals child `{case}` started");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(block_sigbus)
            .build()
            .unwrap();
        guard::install().unwrap();
        println!("{}", upload_and_truncate(&runtime));
        return;
    }
    let test = "a_runtime_whose_threads_block_sigbus_gets_truncated_not_killed";
    assert_survived("blocked", &run(test, "blocked"), false);
}
