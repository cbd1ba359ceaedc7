//! `--download`: a download whose connection drops at 30%, 50% and 70%
//! of the file, resumed against restarted from zero; and the layer's cost
//! when nothing drops. One process: a hyper server answering with
//! `serve::respond`, a relay (`devkit::relay`) that cuts the connections,
//! and a hyper-util client, either
//!
//! - `resumed`: with `ResumeDownloadLayer` (each cut: a range request for
//!   the rest), or
//! - `restarted`: the bare client, the whole GET sent again after each
//!   cut, as a retry from the response head does (tower's retry, curl
//!   `--retry` without `-C -`).
//!
//! The consumer counts the bytes (no hashing: the tests check the bytes).
//! Reported: the time to the last byte, the bytes the relay passed to the
//! client (heads included), the process's CPU; then, without relay or cut,
//! the CPU and time of the layer against the bare client.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mmap_body::download::ResumeDownloadLayer;
use mmap_body::MmapBody;
use mmap_body_devkit::files::write_file;
use mmap_body_devkit::relay::{Cut, Relay};
use mmap_body_devkit::size::human;
use mmap_body_devkit::BoxError;
use tower::{Layer, ServiceExt};

use crate::measure::cpu_secs;
use crate::report::median;

#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    wire: u64,
    cpu: f64,
}

/// Where the connection drops, as fractions of the file.
const DROPS: [f64; 3] = [0.3, 0.5, 0.7];

async fn server(path: &Path) -> SocketAddr {
    let path = path.to_owned();
    mmap_body_devkit::server::serve(move |req: Request<hyper::body::Incoming>| {
        let path = path.clone();
        async move {
            // SAFETY: the bench owns the file and nothing changes it.
            let body = unsafe { MmapBody::open(&path) }.expect("the bench's file");
            Ok::<_, std::convert::Infallible>(mmap_body::serve::respond(
                req.method(),
                req.headers(),
                body,
            ))
        }
    })
    .await
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

fn get(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).expect("a request")
}

/// Reads `response`'s body to its end, counting bytes.
async fn drain<B>(response: Response<B>) -> Result<u64, BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body = response.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(Into::into)?.into_data() {
            got += data.len() as u64;
        }
    }
    Ok(got)
}

async fn resumed(server: SocketAddr, size: u64) -> Result<Sample, BoxError> {
    // Each connection carries the file from where the last one stopped.
    let mut at = 0.0;
    let cuts = DROPS.map(|p| {
        let cut = Cut::After(((p - at) * size as f64) as u64);
        at = p;
        cut
    });
    let relay = Relay::start(server, cuts).await;
    let service = ResumeDownloadLayer::new()
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .layer(client());
    let (cpu, start) = (cpu_secs()?, Instant::now());
    let response = service.oneshot(get(&relay.uri("/f"))).await?;
    let got = drain(response).await?;
    let seconds = start.elapsed().as_secs_f64();
    if got != size {
        return Err(format!("resumed: {got} bytes of {size}").into());
    }
    Ok(Sample {
        seconds,
        wire: relay.bytes_to_clients(),
        cpu: cpu_secs()? - cpu,
    })
}

async fn restarted(server: SocketAddr, size: u64) -> Result<Sample, BoxError> {
    // Each attempt starts from byte 0 and drops at the next point.
    let cuts = DROPS.map(|p| Cut::After((p * size as f64) as u64));
    let relay = Relay::start(server, cuts).await;
    let client = client();
    let (cpu, start) = (cpu_secs()?, Instant::now());
    let mut whole = false;
    for _ in 0..=DROPS.len() {
        let response = client.clone().oneshot(get(&relay.uri("/f"))).await?;
        if matches!(drain(response).await, Ok(n) if n == size) {
            whole = true;
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if !whole {
        return Err("restarted: never whole".into());
    }
    Ok(Sample {
        seconds,
        wire: relay.bytes_to_clients(),
        cpu: cpu_secs()? - cpu,
    })
}

/// No relay, no cut: the layer's cost against the bare client.
async fn no_cut(server: SocketAddr, size: u64, layer: bool) -> Result<Sample, BoxError> {
    let uri = format!("http://{server}/f");
    let (cpu, start) = (cpu_secs()?, Instant::now());
    let got = if layer {
        let service = ResumeDownloadLayer::new().layer(client());
        drain(service.oneshot(get(&uri)).await?).await?
    } else {
        drain(client().oneshot(get(&uri)).await?).await?
    };
    let seconds = start.elapsed().as_secs_f64();
    if got != size {
        return Err(format!("no cut: {got} bytes of {size}").into());
    }
    Ok(Sample {
        seconds,
        wire: got,
        cpu: cpu_secs()? - cpu,
    })
}

/// Runs `runs` rounds of the four cases, alternating their order.
pub(crate) fn run(size: u64, runs: usize, record: Option<&Path>) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("download.bin");
    write_file(&path, size)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let header = format!(
        "{}\ndownload: one {} GET over HTTP/1.1 from serve::respond, the connection \
         dropped at 30%, 50% and 70% of the file (a relay); {runs} round(s), one process \
         (client, relay and server)\n",
        crate::report::machine(),
        human(size)
    );
    println!("{header}");
    let server = rt.block_on(server(&path));
    let names = ["resumed", "restarted", "layer, no cut", "bare, no cut"];
    let mut samples: [Vec<Sample>; 4] = Default::default();
    for round in 0..runs {
        let mut order = [0, 1, 2, 3];
        if round % 2 == 1 {
            order.reverse();
        }
        for case in order {
            let sample = rt.block_on(async {
                match case {
                    0 => resumed(server, size).await,
                    1 => restarted(server, size).await,
                    2 => no_cut(server, size, true).await,
                    _ => no_cut(server, size, false).await,
                }
            })?;
            println!(
                "round {}/{runs}: {:<14} {:.2} s, {} on the wire, CPU {:.2} s",
                round + 1,
                names[case],
                sample.seconds,
                human(sample.wire),
                sample.cpu
            );
            samples[case].push(sample);
        }
    }
    let pick = |case: usize, f: fn(&Sample) -> f64| {
        median(samples[case].iter().map(f).collect()).unwrap_or(0.0)
    };
    let row = |case: usize, name: &str| {
        format!(
            "| {name} | {:.2} | {} | {:.2} |\n",
            pick(case, |s| s.seconds),
            human(pick(case, |s| s.wire as f64) as u64),
            pick(case, |s| s.cpu),
        )
    };
    let paired = |a: usize, b: usize, f: fn(&Sample) -> f64| {
        median(
            samples[a]
                .iter()
                .zip(&samples[b])
                .map(|(x, y)| f(x) / f(y))
                .collect(),
        )
        .unwrap_or(0.0)
    };
    let mut tables = String::from(
        "| case | seconds to the last byte (median) | bytes on the wire | CPU s (client + relay + server) |\n|---|---|---|---|\n",
    );
    tables.push_str(&row(
        0,
        "`ResumeDownloadLayer`: each cut resumed from its byte",
    ));
    tables.push_str(&row(1, "bare client: each cut restarts from zero"));
    tables.push_str(&row(2, "`ResumeDownloadLayer`, no relay, no cut"));
    tables.push_str(&row(3, "bare client, no relay, no cut"));
    tables.push_str(&format!(
        "\nresumed / restarted, paired per round: time {:.2}x, bytes on the wire {:.2}x \
         ({:.2} GiB per GiB downloaded; goal <= 1.05)\n\
         layer / bare with no cut, paired per round: CPU {:.3}x (goal <= 1.03), time {:.2}x\n",
        paired(0, 1, |s| s.seconds),
        paired(0, 1, |s| s.wire as f64),
        pick(0, |s| s.wire as f64) / size as f64,
        paired(2, 3, |s| s.cpu),
        paired(2, 3, |s| s.seconds),
    ));
    println!("{tables}");
    if let Some(file) = record {
        crate::record::append(file, &header, &tables)?;
    }
    Ok(())
}
