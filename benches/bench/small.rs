//! `--small`: small files served. A server process (this binary with
//! `--child`) serves one file, with `serve::respond` over an `MmapBody`
//! opened per request, or with tower-http's `ServeFile`; here, a fixed
//! number of keep-alive HTTP/1.1 clients ask for it again and again. The
//! measure is requests per second, and the server's CPU per request.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use crate::cases::*;
use crate::child::client;
use crate::parent::with_server;
use crate::report::median;
use mmap_body_devkit::files::write_file;
use mmap_body_devkit::size::human;
use mmap_body_devkit::BoxError;

/// The file sizes served.
const SIZES: [u64; 3] = [4 << 10, 64 << 10, 1 << 20];
/// Keep-alive connections asking at once.
const CLIENTS: usize = 8;

/// Runs the small-file cases: `runs` rounds of `requests` requests for each
/// size and server, alternating the servers.
pub(crate) fn run(runs: usize, requests: usize, record: Option<&Path>) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let servers = [Sender::ServeMmap, Sender::ServeFile];
    let header = format!(
        "{}\nsmall files: {requests} GETs per measurement from {CLIENTS} keep-alive HTTP/1.1 \
         connections, {runs} round(s)\n",
        crate::report::machine()
    );
    println!("{header}");
    // Printed at the end, in one piece, and recorded if asked.
    let mut tables = String::from(
        "| file | server | requests/s (median; min–max) | server CPU µs/request | server heap peak \
         | server peak RSS |\n|---|---|---|---|---|---|\n",
    );
    let mut ratios = Vec::new();
    for size in SIZES {
        let path = dir.path().join(format!("small-{size}.bin"));
        write_file(&path, size)?;
        let mut samples: Vec<Vec<(f64, f64, u64, u64)>> = vec![Vec::new(); servers.len()];
        for round in 0..runs {
            for i in 0..servers.len() {
                let index = if round % 2 == 0 {
                    i
                } else {
                    servers.len() - 1 - i
                };
                let case = Case {
                    sender: servers[index],
                    proto: Proto::H1,
                };
                let sample = measure(&rt, case, &path, size, requests)?;
                eprintln!(
                    "round {}/{runs}: {} {:<10} {:>8.0} requests/s",
                    round + 1,
                    human(size),
                    case.sender.name(),
                    sample.0
                );
                samples[index].push(sample);
            }
        }
        let mut medians = Vec::new();
        for (server, samples) in servers.iter().zip(&samples) {
            let rates: Vec<f64> = samples.iter().map(|s| s.0).collect();
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rates.iter().copied().fold(0.0, f64::max);
            let rate = median(rates).unwrap_or(0.0);
            let cpu = median(samples.iter().map(|s| s.1).collect()).unwrap_or(0.0);
            let heap = samples.iter().map(|s| s.2).max().unwrap_or(0);
            let rss = samples.iter().map(|s| s.3).max().unwrap_or(0);
            tables.push_str(&format!(
                "| {} | {} | {rate:.0} ({min:.0}–{max:.0}) | {:.1} | {} | {} |\n",
                human(size),
                server.describe(),
                cpu * 1e6 / requests as f64,
                human(heap),
                human(rss * 1024)
            ));
            medians.push(rate);
        }
        // Paired per round: MmapBody's rate over ServeFile's.
        let paired: Vec<f64> = samples[0]
            .iter()
            .zip(&samples[1])
            .map(|(ours, theirs)| ours.0 / theirs.0)
            .collect();
        ratios.push((size, median(paired).unwrap_or(0.0)));
    }
    tables.push_str("\nGoals (serve::respond at least as fast as ServeFile at every size):\n");
    for (size, ratio) in ratios {
        let met = if ratio >= 1.0 { "met" } else { "MISSED" };
        tables.push_str(&format!(
            "  [{met}] {}: MmapBody / ServeFile {ratio:.2}x requests/s\n",
            human(size)
        ));
    }
    print!("{tables}");
    if let Some(record) = record {
        crate::record::append(record, &header, &tables)?;
        println!("\nrecorded in {}", record.display());
    }
    Ok(())
}

/// One measurement: (requests/s, server CPU s, server heap, server RSS KiB).
fn measure(
    rt: &tokio::runtime::Runtime,
    case: Case,
    path: &Path,
    size: u64,
    requests: usize,
) -> Result<(f64, f64, u64, u64), BoxError> {
    let (secs, report) = with_server(case, path, size, |addr| {
        rt.block_on(load(addr, size, requests))
    })?;
    Ok((
        requests as f64 / secs,
        report.cpu_secs,
        report.heap_peak,
        report.peak_rss_kib,
    ))
}

/// `requests` GETs of `/file` from [`CLIENTS`] connections; the seconds it
/// took.
async fn load(addr: SocketAddr, size: u64, requests: usize) -> Result<f64, BoxError> {
    let client = client::<Empty<Bytes>>(Proto::H1);
    let uri: http::Uri = format!("http://{addr}/file").parse()?;
    // One request per connection first, so that every connection is open.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, uri) = (client.clone(), uri.clone());
        warm.spawn(async move { get(&client, uri, size).await });
    }
    while let Some(done) = warm.join_next().await {
        done??;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CLIENTS {
        let (client, uri) = (client.clone(), uri.clone());
        let share = requests / CLIENTS + usize::from(worker < requests % CLIENTS);
        tasks.spawn(async move {
            for _ in 0..share {
                get(&client, uri.clone(), size).await?;
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn get(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Empty<Bytes>,
    >,
    uri: http::Uri,
    size: u64,
) -> Result<(), BoxError> {
    let response = client.get(uri).await?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()).into());
    }
    let body = response.into_body().collect().await?.to_bytes();
    if body.len() as u64 != size {
        return Err(format!("got {} bytes of {size}", body.len()).into());
    }
    Ok(())
}
