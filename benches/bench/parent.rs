//! The parent process: the rounds of cases, each sender run in a
//! child process, and the reports read back from them.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use crate::cases::*;
use crate::child::*;
use crate::measure::*;
use crate::neighbour::Neighbour;
use crate::options::Options;
use crate::report::*;
use mmap_body_devkit::counting::start_counting_server_with;
use mmap_body_devkit::files::write_file;
use mmap_body_devkit::size::human;
use mmap_body_devkit::BoxError;

/// The `many-*` cases: this many uploads at once, each of a file of
/// `--size / MANY_DIVISOR` bytes (64 MiB at the default 1 GiB).
pub(crate) const MANY: usize = 32;
pub(crate) const MANY_DIVISOR: u64 = 16;

pub(crate) fn parent(options: Options) -> Result<(), BoxError> {
    if options.proxies {
        #[cfg(all(feature = "proxy", feature = "spill"))]
        return crate::compare::run(options.size, options.runs, options.record.as_deref());
        #[cfg(not(all(feature = "proxy", feature = "spill")))]
        return Err("--proxies needs --features proxy,spill".into());
    }
    if options.forms {
        #[cfg(all(feature = "multipart", feature = "reqwest"))]
        return crate::forms::run(options.size, options.runs, options.record.as_deref());
        #[cfg(not(all(feature = "multipart", feature = "reqwest")))]
        return Err("--forms needs --features multipart,reqwest".into());
    }
    if options.download {
        #[cfg(feature = "download")]
        return crate::download::run(options.size, options.runs, options.record.as_deref());
        #[cfg(not(feature = "download"))]
        return Err("--download needs --features download".into());
    }
    if options.resume {
        #[cfg(all(feature = "resume", feature = "progress"))]
        return crate::resume::run(options.size, options.runs, options.record.as_deref());
        #[cfg(not(all(feature = "resume", feature = "progress")))]
        return Err("--resume needs --features resume".into());
    }
    if options.lease_break {
        return crate::file_body::lease_break(
            options.size,
            options.runs,
            options.record.as_deref(),
        );
    }
    if options.serve_dir {
        let runs = if options.quick {
            1
        } else {
            options.runs.min(3)
        };
        return crate::serve_dir::run(options.quick, runs, options.record.as_deref());
    }
    if options.small {
        let requests = if options.quick { 400 } else { 4000 };
        return crate::small::run(options.runs, requests, options.record.as_deref());
    }
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
    // Written back as it is made, so no writeback runs during the measurements.
    write_file(&path, size)?;
    let many_dir = dir.path().join("many");
    let each = (size / MANY_DIVISOR).max(1);
    if cases.iter().any(|c| c.sender.is_many()) {
        std::fs::create_dir(&many_dir)?;
        for i in 0..MANY {
            let file = many_dir.join(format!("{i}.bin"));
            write_file(&file, each)?;
        }
    }
    let slow_disk = match options.slow_disk {
        Some(rate) => Some(crate::slow_disk::SlowDisk::new(&path, rate)?),
        None => None,
    };
    if let Some(slow) = &slow_disk {
        // Every child made from here on joins it.
        std::env::set_var(crate::slow_disk::CGROUP_VAR, &slow.dir);
    }
    let mut report = String::new();
    report.push_str(&machine());
    report.push_str(&format!(
        "\nfile: {}{}; {} round(s) of {} cases; each sender in a fresh process\n",
        human(size),
        match (options.cold, options.slow_disk) {
            (_, Some(rate)) => format!(
                ", cold (its pages dropped before each case), the senders' reads from its disk \
                 throttled to {}/s",
                human(rate)
            ),
            (true, None) => ", cold (its pages dropped before each case)".to_owned(),
            (false, None) => String::new(),
        },
        options.runs,
        cases.len()
    ));
    print!("{report}");

    // The upload server: one worker thread, so the sender has the other core.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let upload_addr = server_rt.block_on(start_counting_server_with(options.h2_large))?;
    if options.h2_large {
        let line = "HTTP/2 receivers: DATA frames up to 1 MiB, windows 8 MiB (stream) / 16 MiB \
                    (connection)\n";
        println!("{line}");
        report.push_str(line);
    }
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
            if options.cold {
                drop_cached_pages(&path)?;
            }
            let sample = if case.sender.is_download() {
                run_download(&client_rt, case, &path, size, options.h2_large)
            } else if case.sender.is_many() {
                run_upload(case, upload_addr, &many_dir, each).map(|mut sample| {
                    sample.bytes = each * MANY as u64;
                    sample
                })
            } else {
                run_upload(case, upload_addr, &path, size)
            }
            .and_then(|sample| {
                let expected = if case.sender.is_many() { each } else { size };
                check_framing(case.sender, expected, sample)
            });
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
                        gib_per_s(sample.sent(size), sample.secs),
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

    let mut tables = String::new();
    print_table(&mut tables, &results, size);
    let failed = results
        .iter()
        .filter(|(_, samples)| samples.iter().any(Option::is_none))
        .count();
    print_ratios(&mut tables, &results, size, options.quick);
    print!("{tables}");
    print!(
        "{}",
        crate::record::since_last(options.record.as_deref(), &tables)
    );
    if let Some(record) = &options.record {
        crate::record::append(record, &report, &tables)?;
        println!("\nrecorded in {}", record.display());
    }
    if failed > 0 {
        return Err(format!("{failed} case(s) failed; see above").into());
    }
    Ok(())
}

pub(crate) fn child_command(case: Case, path: &Path, size: u64) -> Result<Command, BoxError> {
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
pub(crate) fn check_framing(sender: Sender, size: u64, sample: Sample) -> Result<Sample, BoxError> {
    let exact = !matches!(
        sender,
        Sender::Reader4K | Sender::Reader64K | Sender::ReqwestFile | Sender::ManyReader64K
    );
    let expected = format!("content-length={size}");
    if exact && sample.framing != expected {
        return Err(format!("the receiver saw `{}`, not `{expected}`", sample.framing).into());
    }
    Ok(sample)
}

/// Runs the sender in a child process, which uploads to `addr` and reports.
pub(crate) fn run_upload(
    case: Case,
    addr: SocketAddr,
    path: &Path,
    size: u64,
) -> Result<Sample, BoxError> {
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
pub(crate) fn run_download(
    rt: &tokio::runtime::Runtime,
    case: Case,
    path: &Path,
    size: u64,
    h2_large: bool,
) -> Result<Sample, BoxError> {
    let clients = case.sender.clients();
    let ((secs, framing), mut sample) = with_server(case, path, size, |addr| {
        rt.block_on(async {
            let started = Instant::now();
            let downloads =
                (0..clients).map(|_| tokio::spawn(download(case.proto, addr, size, h2_large)));
            let all = async {
                let mut framing = String::new();
                for download in downloads.collect::<Vec<_>>() {
                    framing = download.await??.1;
                }
                Ok::<_, BoxError>((started.elapsed().as_secs_f64(), framing))
            };
            tokio::time::timeout(time_limit(size * clients as u64), all)
                .await
                .map_err(|_| BoxError::from("the download took too long"))?
        })
    })?;
    sample.secs = secs;
    sample.framing = framing;
    if clients > 1 {
        sample.bytes = size * clients as u64;
    }
    Ok(sample)
}

/// Starts a server child process for `case` serving `path`, runs `client`
/// against the address it prints, then closes its stdin so that it reports
/// what serving cost it; returns what `client` returned and that report.
pub(crate) fn with_server<T>(
    case: Case,
    path: &Path,
    size: u64,
    client: impl FnOnce(SocketAddr) -> Result<T, BoxError>,
) -> Result<(T, Sample), BoxError> {
    let mut child = child_command(case, path, size)?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let outcome = match line.trim().strip_prefix("listening ") {
        Some(addr) => addr
            .parse::<SocketAddr>()
            .map_err(BoxError::from)
            .and_then(client),
        None => Err(format!("child said `{}` instead of its address", line.trim()).into()),
    };
    drop(child.stdin.take());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest)?;
    let status = child.wait()?;
    let outcome = outcome?;
    if !status.success() {
        return Err(format!("server child exited with {status}: {rest}").into());
    }
    Ok((outcome, parse_report(&rest)?))
}

/// GETs the file, counting its bytes; returns the seconds from request to
/// last byte and the framing of the response.
pub(crate) async fn download(
    proto: Proto,
    addr: SocketAddr,
    size: u64,
    h2_large: bool,
) -> Result<(f64, String), BoxError> {
    let client = if h2_large {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(proto == Proto::H2)
            .http2_max_frame_size(mmap_body_devkit::counting::H2_LARGE_FRAME)
            .http2_initial_stream_window_size(mmap_body_devkit::counting::H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(mmap_body_devkit::counting::H2_CONNECTION_WINDOW)
            .build(connector)
    } else {
        client::<Empty<Bytes>>(proto)
    };
    let uri = format!("http://{addr}/file").parse()?;
    let started = Instant::now();
    let response = client.get(uri).await?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()).into());
    }
    let framing = mmap_body_devkit::counting::framing(response.version(), response.headers());
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

pub(crate) fn parse_report(text: &str) -> Result<Sample, BoxError> {
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
        neighbour: None,
        framing: String::new(),
        attempts: None,
        bytes: 0,
    };
    for field in line.split_whitespace() {
        let (key, value) = field.split_once('=').ok_or("malformed report")?;
        match key {
            "secs" => sample.secs = value.parse()?,
            "cpu" => sample.cpu_secs = value.parse()?,
            "heap" => sample.heap_peak = value.parse()?,
            "allocations" => sample.allocations = value.parse()?,
            "rss_kib" => sample.peak_rss_kib = value.parse()?,
            _ if Neighbour::parse(&mut sample.neighbour, key, value)? => {}
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
