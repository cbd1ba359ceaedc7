//! Side-by-side benchmark: uploads (and downloads) the same temp file over
//! loopback with `MmapBody` and with what a user would otherwise reach for,
//! in one run, and prints a Markdown table and the ratios between them.
//!
//! ```text
//! cargo bench --bench bench --all-features [-- --size 1GiB --runs 5 --only mmap,sendfile --quick]
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
//! - `mmap-noguard`: `MmapBody` in a process that called
//!   `guard::opt_out()`: no SIGBUS handler, no frame tracked, the cost of
//!   the default's safety paired against it;
//! - `mmap+replay`: `MmapBody` behind `ReplayLayer`;
//! - `sendfile` (HTTP/1.1 only): a hand-written request head, then
//!   `sendfile(2)` of the file into the socket, the physical limit;
//! - `write-floor` (HTTP/1.1 only): the same head, then the file, read into
//!   memory before the measurement, written with 1 MiB `write(2)`s: the
//!   least CPU a sender through hyper's `write()` can use (its peak RSS is
//!   the whole file, by design);
//! - `many-mmap`, `many-reader-64k`: 32 files of 1/16 of the size uploaded
//!   at once from one runtime.
//!
//! With reqwest 0.13 (with `--features reqwest`; see `reqwest.rs`):
//! `reqwest-file` (`Body::from(File)`), `reqwest-bytes`
//! (`Body::from(Bytes::from(mmap_body))`) and `reqwest-stack` (`MmapBody`
//! through `ReplayLayer` + `RetryLayer` + `ReqwestService`).
//!
//! `--proxies` (with `--features proxy,spill`): this crate's
//! `ReverseProxy` against `axum-reverse-proxy` and plain forwarding, each
//! proxy in its own process, with and without a drop at 50%; see
//! `compare.rs`.
//!
//! `--download` (with `--features download`): one download cut three
//! times by a relay, resumed by `ResumeDownloadLayer` against restarted
//! from zero; and the layer's CPU with no cut; see `download.rs`.
//! `--serve-dir`: a directory served by `serve::ServeDir`, tower-http's
//! `ServeDir` and nginx, each in its own process, loaded by `wrk`,
//! `h2load` and `curl`; see `serve_dir.rs`.
//!
//! `--resume` (with `--features resume`): one upload dropped at 70%,
//! resumed by `ResumeLayer` against resent whole; see `resume.rs`.
//!
//! `--forms` (with `--features multipart,reqwest`): the file as a part of
//! a `multipart/form-data` upload, `multipart::Form` against reqwest's
//! `multipart` with `Part::stream_with_length`, and once dropped at 50%;
//! see `forms.rs`.
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
//! `serve-file` (tower-http `ServeFile`), and `many-serve-mmap`
//! (`serve::respond`) and `many-serve-file` with 8 clients at once.
//!
//! Every sender on a runtime (the server's, for downloads) shares it with a
//! task that asks to wake every millisecond: the table gives that ticker's
//! p99 and worst lag, and the major page faults taken by the runtime's
//! thread. The client's executor (the server's, for downloads) times every
//! poll of the tasks it spawns, those that poll the body and write it: the
//! table gives the 99.9th percentile and the longest, how long the sender
//! held the worker at a time.
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

mod cases;
mod child;
#[cfg(all(feature = "proxy", feature = "spill"))]
mod compare;
mod dir_servers;
#[cfg(feature = "download")]
mod download;
mod file_body;
#[cfg(all(feature = "multipart", feature = "reqwest"))]
mod forms;
mod measure;
mod neighbour;
mod options;
mod parent;
#[cfg(feature = "spill")]
mod proxy;
mod record;
mod report;
#[cfg(feature = "reqwest")]
mod reqwest;
#[cfg(all(feature = "resume", feature = "progress"))]
mod resume;
mod sendfile;
mod serve_dir;
mod slow_disk;
mod small;

use mmap_body_devkit::alloc::CountingAlloc;
use mmap_body_devkit::BoxError;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> Result<(), BoxError> {
    if !cfg!(target_os = "linux") {
        println!("the bench runs on Linux only: it reads /proc and uses sendfile(2)");
        return Ok(());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        #[cfg(all(feature = "proxy", feature = "spill"))]
        if args.get(1).map(String::as_str) == Some("proxy") {
            return compare::child(&args[2..]);
        }
        #[cfg(all(feature = "multipart", feature = "reqwest"))]
        if args.get(1).map(String::as_str) == Some("forms-server") {
            return forms::server_child();
        }
        if args.get(1).map(String::as_str) == Some("serve-dir") {
            return dir_servers::child(&args[2..]);
        }
        slow_disk::join_if_asked()?;
        return child::child(&args[1..]);
    }
    let options = options::Options::from_env()?;
    if cfg!(debug_assertions) {
        // CI runs the quick modes in the dev profile, to check that they run.
        println!("an unoptimised build: what follows shows that every case runs, not its speed");
    }
    parent::parent(options)
}
