//! `--serve-dir`: a directory served by `serve::ServeDir`, by tower-http's
//! `ServeDir` (each under `axum::serve`'s defaults and with `TCP_NODELAY`)
//! and by nginx (`sendfile on`, `open_file_cache`), each server in a
//! process of its own (`dir_servers.rs`), loaded by programs that are not
//! the server: `wrk` (HTTP/1.1) and `h2load` (HTTP/2, prior knowledge)
//! with 64 connections for small files (1, 16, 64 KiB), `curl` for one
//! large file (1 GiB). A tool that is missing skips its rows with a
//! message (`.ci/interop-setup` installs them from Debian's packages).
//!
//! The servers run in rounds, forwards then backwards; each row's ratios
//! (ours over tower-http's, ours over nginx) are paired per round, and
//! their medians printed with their range against the goals of issue #32:
//! at least 2x tower-http everywhere, 0.8x nginx on small files and 0.7x
//! on the large one.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::dir_servers::{start, Running, Server};
use crate::report::median;
use mmap_body_devkit::files::write_file;
use mmap_body_devkit::size::human;
use mmap_body_devkit::BoxError;

/// Connections of the small-file load.
const CONNECTIONS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// Small file of `size` bytes, HTTP/2 if `h2`: requests/s.
    Small { size: u64, h2: bool },
    /// The large file: GiB/s of one download at a time.
    Large { size: u64, h2: bool },
}

impl Row {
    fn proto(self) -> &'static str {
        match self {
            Row::Small { h2, .. } | Row::Large { h2, .. } if h2 => "HTTP/2",
            _ => "HTTP/1.1",
        }
    }
}

/// One measurement: the rate (requests/s or GiB/s) and the server's CPU
/// (µs per request, or s per GiB).
type Sample = Option<(f64, f64)>;

fn found(program: &str, arg: &str) -> bool {
    let ok = Command::new(program).arg(arg).output().is_ok();
    if !ok {
        println!("{program}: not installed, its rows are skipped (.ci/interop-setup installs it)");
    }
    ok
}

pub(crate) fn run(quick: bool, runs: usize, record: Option<&Path>) -> Result<(), BoxError> {
    let (wrk, h2load, curl) = (
        found("wrk", "-v"),
        found("h2load", "--version"),
        found("curl", "--version"),
    );
    let dir = tempfile::tempdir()?;
    let sizes: &[u64] = if quick {
        &[16 << 10]
    } else {
        &[1 << 10, 16 << 10, 64 << 10]
    };
    let large = if quick { 16 << 20 } else { 1 << 30 };
    let secs = if quick { 1 } else { 2 };
    for &size in sizes {
        write_file(&dir.path().join(format!("f{size}")), size)?;
    }
    write_file(&dir.path().join("large"), large)?;
    let mut rows = Vec::new();
    for h2 in [false, true] {
        if (!h2 && wrk) || (h2 && h2load) {
            rows.extend(sizes.iter().map(|&size| Row::Small { size, h2 }));
        }
        if curl {
            rows.push(Row::Large { size: large, h2 });
        }
    }
    let header = format!(
        "{}\nserve-dir: small files with {CONNECTIONS} connections for {secs} s each (wrk -t1, \
         h2load -t1), one {} file by curl (2 downloads each); every server in its own process, \
         axum's on a 2-worker runtime, nginx with 2 workers; {runs} round(s)\n",
        crate::report::machine(),
        human(large)
    );
    println!("{header}");
    // samples[row][server][round]
    let servers = Server::ALL;
    let mut samples = vec![vec![Vec::<Sample>::new(); servers.len()]; rows.len()];
    for round in 0..runs {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..servers.len()).collect()
        } else {
            (0..servers.len()).rev().collect()
        };
        for s in order {
            let started = start(servers[s], dir.path()).unwrap_or_else(|e| {
                eprintln!("{}: did not start: {e}", servers[s].name());
                None
            });
            let Some(running) = started else {
                for row in &mut samples {
                    row[s].push(None);
                }
                continue;
            };
            for (r, row) in rows.iter().enumerate() {
                if servers[s] == Server::Memory && matches!(row, Row::Large { .. }) {
                    samples[r][s].push(None);
                    continue;
                }
                let sample = measure(&running, *row, secs);
                match &sample {
                    Ok(Some((rate, cpu))) => eprintln!(
                        "round {}/{runs}: {} {:>8} {:<40} {rate:>10.2} (cpu {cpu:.2})",
                        round + 1,
                        row.proto(),
                        label(*row),
                        servers[s].name()
                    ),
                    Ok(None) => {}
                    Err(e) => eprintln!("{} {}: {e}", servers[s].name(), label(*row)),
                }
                samples[r][s].push(sample.ok().flatten());
            }
        }
    }
    let tables = report(&rows, &servers, &samples);
    print!("{tables}");
    if let Some(record) = record {
        crate::record::append(record, &header, &tables)?;
        println!("\nrecorded in {}", record.display());
    }
    Ok(())
}

fn label(row: Row) -> String {
    match row {
        Row::Small { size, .. } | Row::Large { size, .. } => human(size),
    }
}

fn measure(server: &Running, row: Row, secs: u64) -> Result<Sample, BoxError> {
    let cpu_before = server.cpu_secs();
    let started = Instant::now();
    let (rate, units) = match row {
        Row::Small { size, h2: false } => {
            let url = format!("http://{}/files/f{size}", server.h1);
            let rate = wrk(&url, secs)?;
            (rate, rate * started.elapsed().as_secs_f64())
        }
        Row::Small { size, h2: true } => {
            let url = format!("http://{}/files/f{size}", server.h2);
            let (rate, requests) = h2load(&url, secs)?;
            (rate, requests)
        }
        Row::Large { size, h2 } => {
            let addr = if h2 { server.h2 } else { server.h1 };
            let url = format!("http://{addr}/files/large");
            let mut time = 0.0;
            for _ in 0..2 {
                time += curl(&url, h2, size)?;
            }
            let gib = 2.0 * size as f64 / (1u64 << 30) as f64;
            (gib / time, gib)
        }
    };
    let cpu = server.cpu_secs() - cpu_before;
    let per = match row {
        Row::Small { .. } => cpu * 1e6 / units.max(1.0),
        Row::Large { .. } => cpu / units,
    };
    Ok(Some((rate, per)))
}

fn output(command: &mut Command) -> Result<String, BoxError> {
    let out = command.output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(text)
}

/// `wrk`'s requests per second; an error if any answer was not a 2xx.
fn wrk(url: &str, secs: u64) -> Result<f64, BoxError> {
    let text = output(Command::new("wrk").args([
        "-t1",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{secs}s"),
        url,
    ]))?;
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("wrk saw errors: {text}").into());
    }
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .ok_or_else(|| format!("no Requests/sec in {text}"))?;
    Ok(rate.trim().parse()?)
}

/// `h2load`'s requests per second and requests done; an error if any
/// failed.
fn h2load(url: &str, secs: u64) -> Result<(f64, f64), BoxError> {
    let text = output(Command::new("h2load").args([
        "-t1",
        &format!("-c{CONNECTIONS}"),
        "-m1",
        "-D",
        &secs.to_string(),
        url,
    ]))?;
    // finished in 2.00s, 53425.50 req/s, 836.12MB/s
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.strip_suffix(" req/s"))
        .ok_or_else(|| format!("no req/s in {text}"))?
        .parse::<f64>()?;
    // requests: 106851 total, 106915 started, 106851 done, 106851 succeeded, 0 failed, ...
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .ok_or_else(|| format!("no requests line in {text}"))?;
    let count = |what: &str| {
        line.split(", ")
            .find(|p| p.ends_with(what))
            .and_then(|p| p.split_whitespace().rev().nth(1))
            .and_then(|n| n.parse::<f64>().ok())
    };
    if count("failed").unwrap_or(1.0) > 0.0 || count("errored").unwrap_or(1.0) > 0.0 {
        return Err(format!("h2load saw failures: {line}").into());
    }
    Ok((rate, count("succeeded").unwrap_or(0.0)))
}

/// Seconds `curl` took to download `url` (`size` bytes).
fn curl(url: &str, h2: bool, size: u64) -> Result<f64, BoxError> {
    let mut command = Command::new("curl");
    command.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download} %{time_total}",
    ]);
    if h2 {
        command.arg("--http2-prior-knowledge");
    }
    let text = output(command.arg(url))?;
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.first() != Some(&"200") || parts.get(1) != Some(&size.to_string().as_str()) {
        return Err(format!("curl got {text}").into());
    }
    Ok(parts.get(2).ok_or("no time")?.parse()?)
}

fn report(rows: &[Row], servers: &[Server], samples: &[Vec<Vec<Sample>>]) -> String {
    let mut out = String::from(
        "| file | protocol | server | rate (median; min–max) | server CPU |\n|---|---|---|---|---|\n",
    );
    for (r, row) in rows.iter().enumerate() {
        let (unit, cpu_unit) = match row {
            Row::Small { .. } => ("requests/s", "µs/request"),
            Row::Large { .. } => ("GiB/s", "CPU s/GiB"),
        };
        for (s, server) in servers.iter().enumerate() {
            let ok: Vec<(f64, f64)> = samples[r][s].iter().flatten().copied().collect();
            if ok.is_empty() {
                continue;
            }
            let rates: Vec<f64> = ok.iter().map(|s| s.0).collect();
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rates.iter().copied().fold(0.0, f64::max);
            let rate = median(rates).unwrap_or(0.0);
            let cpu = median(ok.iter().map(|s| s.1).collect()).unwrap_or(0.0);
            let digits = if matches!(row, Row::Large { .. }) {
                2
            } else {
                0
            };
            out.push_str(&format!(
                "| {} | {} | {} | {rate:.digits$} ({min:.digits$}–{max:.digits$}) {unit} | {cpu:.2} {cpu_unit} |\n",
                label(*row),
                row.proto(),
                server.name()
            ));
        }
    }
    out.push_str(
        "\n(axum from memory: the same hyper and axum answering from `Bytes` in memory, \
         the most any file server under them can do here.)\n",
    );
    out.push_str("\nRatios, paired per round (median; min–max), and the goals of issue #32:\n");
    let index = |server: Server| servers.iter().position(|s| *s == server);
    for (r, row) in rows.iter().enumerate() {
        for nodelay in [false, true] {
            let ours = index(Server::Ours { nodelay });
            let large = matches!(row, Row::Large { .. });
            let pairs = [
                (
                    index(Server::Tower { nodelay }),
                    "tower-http ServeDir",
                    Some(2.0),
                ),
                (
                    index(Server::Nginx),
                    "nginx",
                    Some(if large { 0.7 } else { 0.8 }),
                ),
                (
                    index(Server::Memory).filter(|_| nodelay && !large),
                    "axum from memory",
                    None,
                ),
            ];
            for (other, name, goal) in pairs {
                let (Some(ours), Some(other)) = (ours, other) else {
                    continue;
                };
                let paired: Vec<f64> = samples[r][ours]
                    .iter()
                    .zip(&samples[r][other])
                    .filter_map(|(a, b)| Some(a.as_ref()?.0 / b.as_ref()?.0))
                    .collect();
                let Some(ratio) = median(paired.clone()) else {
                    continue;
                };
                let min = paired.iter().copied().fold(f64::INFINITY, f64::min);
                let max = paired.iter().copied().fold(0.0, f64::max);
                let (met, goal) = match goal {
                    Some(goal) if ratio >= goal => ("met", format!(", goal {goal}x")),
                    Some(goal) => ("MISSED", format!(", goal {goal}x")),
                    None => ("info", String::new()),
                };
                let setting = if nodelay {
                    "TCP_NODELAY"
                } else {
                    "axum defaults"
                };
                out.push_str(&format!(
                    "  [{met}] {} {} ({setting}): ours / {name} {ratio:.2}x ({min:.2}–{max:.2}){goal}\n",
                    label(*row),
                    row.proto()
                ));
            }
        }
    }
    out
}
