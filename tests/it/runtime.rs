//! `MmapBody` as a neighbour on a tokio runtime (feature `tokio`): the
//! pages of a cold file are read on the blocking pool, not faulted in by
//! hyper's `write()` on the runtime's thread.

use std::io::Write;

use mmap_body::MmapBody;
use mmap_body_devkit::executor::{AroundPoll, ObservedExecutor};
use mmap_body_devkit::files::test_file;
use mmap_body_devkit::server::{client, hashing_server, received};

/// Major page faults taken so far by the calling thread
/// (`/proc/thread-self/stat`, field 12).
fn major_faults_of_this_thread() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(9).unwrap().parse().unwrap()
}

/// Drops the file's pages from the page cache, so that the next read of
/// them goes to the disk (it must be clean: written and synced).
fn make_cold(path: &std::path::Path) -> bool {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.sync_all().unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a plain advice on an open descriptor of this test's file.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) == 0 }
}

/// A 64 MiB upload of a cold file from a `current_thread` runtime, over
/// HTTP/1.1 and HTTP/2: the thread that runs the runtime (and hyper's
/// writes, or h2's copies) takes no major fault; the pages came in on the
/// blocking pool. (Without it, the writes fault the pages in on the
/// runtime's thread: 11 major faults here over HTTP/1.1.)
#[test]
fn a_cold_file_faults_on_the_blocking_pool_not_on_the_runtime() {
    for http2 in [false, true] {
        cold_upload(http2);
    }
}

fn cold_upload(http2: bool) {
    let file = test_file(64 * 1024 * 1024);
    let _ = std::io::stderr().flush();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (faults, seen) = runtime.block_on(async {
        let addr = hashing_server().await;
        if !make_cold(&file.path) {
            return (None, None);
        }
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::open(&file.path) }.unwrap();
        let before = major_faults_of_this_thread();
        let req = http::Request::put(format!("http://{addr}/"))
            .body(body)
            .unwrap();
        let res = client(http2).request(req).await.expect("upload");
        let faults = major_faults_of_this_thread() - before;
        (Some(faults), Some(received(&res)))
    });
    let (Some(faults), Some(seen)) = (faults, seen) else {
        eprintln!("skipped: posix_fadvise(DONTNEED) refused on this file system");
        return;
    };
    assert_eq!(seen.sha256, file.sha256);
    eprintln!("http2={http2}: major faults on the runtime's thread: {faults}");
    assert!(
        faults <= 2,
        "http2={http2}: {faults} major faults on the runtime's thread for a cold 64 MiB upload"
    );
}

/// What the body a test sends has handed out, and the most of it that went
/// out in one poll of a task the client spawned.
#[derive(Default)]
struct Turns {
    handed_out: std::sync::atomic::AtomicU64,
    most_in_one_poll: std::sync::atomic::AtomicU64,
    polls: std::sync::atomic::AtomicU64,
}

/// Counts, around every poll of a task the client spawned (through
/// [`ObservedExecutor`]), the bytes the body handed out during that poll.
#[derive(Clone)]
struct CountPolls(std::sync::Arc<Turns>);

impl AroundPoll for CountPolls {
    type Mark = u64;

    fn before(&self) -> u64 {
        self.0.handed_out.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn after(&self, before: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let during = self.0.handed_out.load(Relaxed) - before;
        self.0.most_in_one_poll.fetch_max(during, Relaxed);
        self.0.polls.fetch_add(1, Relaxed);
    }
}

/// `MmapBody`, counting the bytes of each frame it hands out.
struct Counted(MmapBody, std::sync::Arc<Turns>);

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = mmap_body::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.0).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            let len = frame.data_ref().map_or(0, |data| data.len());
            self.1
                .handed_out
                .fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// A warm 256 MiB upload from a `current_thread` runtime, the server on the
/// same runtime, over HTTP/1.1 and HTTP/2: no poll of the client's tasks
/// gets more than 2 MiB out of the body (its yield is honoured even when
/// hyper polls the body again before the runtime rescheduled it, as its
/// HTTP/1.1 dispatcher does after every yield). A count, not a time: the
/// half-millisecond bound can only make it less.
#[test]
fn no_poll_of_the_clients_tasks_takes_more_than_two_mib_of_the_body() {
    let file = test_file(256 * 1024 * 1024);
    for http2 in [false, true] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let turns = std::sync::Arc::new(Turns::default());
        let seen = runtime.block_on(async {
            let addr = hashing_server().await;
            // SAFETY: the temp file is private to this test.
            let body = unsafe { MmapBody::open(&file.path) }.unwrap();
            let mut builder = hyper_util::client::legacy::Client::builder(ObservedExecutor(
                CountPolls(turns.clone()),
            ));
            builder.http2_only(http2);
            let client = builder.build_http();
            let req = http::Request::put(format!("http://{addr}/"))
                .body(Counted(body, turns.clone()))
                .unwrap();
            received(&client.request(req).await.expect("upload"))
        });
        assert_eq!(seen.sha256, file.sha256);
        use std::sync::atomic::Ordering::Relaxed;
        let (most, polls) = (
            turns.most_in_one_poll.load(Relaxed),
            turns.polls.load(Relaxed),
        );
        assert_eq!(turns.handed_out.load(Relaxed), 256 << 20);
        eprintln!("http2={http2}: at most {most} bytes in one of {polls} polls");
        assert!(
            most <= 2 << 20,
            "http2={http2}: {most} bytes of the body in one poll of a task"
        );
    }
}
