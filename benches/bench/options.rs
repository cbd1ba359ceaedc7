//! The command line, read with lexopt.

use lexopt::prelude::*;
use mmap_body_devkit::size::parse_size;
use mmap_body_devkit::BoxError;

use crate::cases::Sender;

pub(crate) const USAGE: &str =
    "usage: bench [--size 1GiB] [--runs 5] [--quick] [--cold] [--slow-disk 100MB] [--small] [--serve-dir] [--lease-break] [--resume] [--forms] [--download] [--proxies] [--h2-large] [--record FILE] [--only NAME,NAME...]
  --size   the file size (default 1GiB)
  --cold   drop the file's pages from the page cache before each case, so
           every sender reads it from disk (Linux)
  --slow-disk  with --cold, and the senders' reads from the file's disk
           throttled to this many bytes per second (a blkio cgroup; Linux,
           root, cgroup v1)
  --small  instead of the rest: small files (4 KiB, 64 KiB, 1 MiB) served
           by serve::respond and by ServeFile, requests per second
  --lease-break  instead of the rest: a FileBody of --size with every
           frame held, then another process opens the file for writing:
           how long it waited for the lease break (Linux)
  --serve-dir  instead of the rest: a directory served by serve::ServeDir,
           tower-http's ServeDir and nginx, each in its own process: small
           files (1, 16, 64 KiB) requests per second from wrk and h2load
           with 64 connections, one 1 GiB file (curl) GiB/s and CPU
  --resume instead of the rest: one upload dropped at 70%, resumed
           (ResumeLayer) against resent, bytes and time (--features resume)
  --forms  instead of the rest: the file as a multipart/form-data part,
           multipart::Form against reqwest's multipart, and dropped at 50%
           (--features multipart,reqwest)
  --download instead of the rest: one download cut three times (a
           relay), resumed (ResumeDownloadLayer) against restarted from
           zero, bytes on the wire and time; and the layer's CPU with no
           cut against the bare client (--features download)
  --proxies instead of the rest: ReverseProxy against axum-reverse-proxy
           and plain forwarding, with and without a drop at 50%
           (--features proxy,spill)
  --h2-large  HTTP/2 receivers (the upload server, the download client)
           allow 1 MiB DATA frames and 8/16 MiB windows
  --record FILE  also append this run's report to FILE (Markdown), under
           its command line and the date: BENCHMARKS.md is made this way
  --runs   rounds of measurements; throughput is the median (default 5)
  --quick  64MiB and one round, to check the bench still runs
  --only   run only these senders: full-copy, reader-4k, reader-64k, mmap,
           mmap-64k, mmap-4m, mmap-keep, mmap-nohint, mmap-noguard, mmap+replay, sendfile, write-floor,
           serve-mmap,
           serve-file, reqwest-file, reqwest-bytes, reqwest-stack,
           proxy-plain, proxy-spill, proxy-replay, many-mmap,
           many-reader-64k, many-serve-mmap, many-serve-file, file-leased,
           file-pread, serve-filebody, serve-filebody-pread (the reqwest
           cases need --features reqwest, the proxy ones --features spill;
           many-mmap and many-reader-64k send 32 files of 1/16 of --size at
           once, the many-serve ones serve the file to 8 clients at once)";

/// The command line.
pub(crate) struct Options {
    pub(crate) size: u64,
    pub(crate) runs: usize,
    pub(crate) quick: bool,
    pub(crate) cold: bool,
    pub(crate) slow_disk: Option<u64>,
    pub(crate) record: Option<std::path::PathBuf>,
    pub(crate) h2_large: bool,
    pub(crate) small: bool,
    pub(crate) lease_break: bool,
    pub(crate) serve_dir: bool,
    pub(crate) resume: bool,
    pub(crate) forms: bool,
    pub(crate) download: bool,
    pub(crate) proxies: bool,
    pub(crate) only: Option<Vec<Sender>>,
}

impl Options {
    /// Reads this process's arguments. `--bench`, which `cargo bench` adds
    /// for libtest harnesses, is accepted and ignored.
    pub(crate) fn from_env() -> Result<Options, BoxError> {
        let (mut size, mut runs, mut only, mut slow_disk) = (None, None, None, None);
        let mut record = None;
        let (mut quick, mut cold, mut h2_large, mut small) = (false, false, false, false);
        let (mut resume, mut proxies, mut lease_break, mut forms) = (false, false, false, false);
        let mut download = false;
        let mut serve_dir = false;
        let mut parser = lexopt::Parser::from_env();
        while let Some(arg) = parser.next()? {
            match arg {
                Long("quick") => quick = true,
                Long("cold") => cold = true,
                Long("h2-large") => h2_large = true,
                Long("small") => small = true,
                Long("serve-dir") => serve_dir = true,
                Long("resume") => resume = true,
                Long("download") => download = true,
                Long("lease-break") => lease_break = true,
                Long("forms") => forms = true,
                Long("proxies") => proxies = true,
                Long("bench") => {}
                Long("size") => size = Some(parse_size(&parser.value()?.string()?)?),
                Long("record") => record = Some(parser.value()?.into()),
                Long("slow-disk") => {
                    slow_disk = Some(parse_size(&parser.value()?.string()?)?);
                    cold = true;
                }
                Long("runs") => runs = Some(parser.value()?.parse::<usize>()?.max(1)),
                Long("only") => {
                    let names = parser.value()?.string()?;
                    let senders = names.split(',').map(|name| {
                        Sender::from_name(name.trim())
                            .ok_or_else(|| format!("unknown sender `{name}`\n{USAGE}"))
                    });
                    only = Some(senders.collect::<Result<_, _>>()?);
                }
                Short('h') | Long("help") => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                _ => return Err(format!("{}\n{USAGE}", arg.unexpected()).into()),
            }
        }
        // `--quick` is 64 MiB and one round unless said otherwise.
        let size = size.unwrap_or(if quick { 64 << 20 } else { 1 << 30 });
        if size == 0 {
            return Err("--size must be at least one byte".into());
        }
        Ok(Options {
            size,
            runs: runs.unwrap_or(if quick { 1 } else { 5 }),
            quick,
            cold,
            slow_disk,
            record,
            h2_large,
            small,
            lease_break,
            serve_dir,
            resume,
            forms,
            download,
            proxies,
            only,
        })
    }
}
