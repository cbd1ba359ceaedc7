//! Pieces the examples share: the `--size` argument and a line printed per
//! attempt of a retried upload. The rest (temp files of incompressible
//! bytes, the counting server, the scripted misbehaving upstream, sizes,
//! RSS, the counting allocator) comes from the repository's unpublished
//! `mmap-body-devkit`, shared with the tests and the benchmark.
#![allow(dead_code)] // each example uses a different part of this module

use mmap_body_devkit::size::{human, parse_size};
pub use mmap_body_devkit::BoxError;

/// The examples' one option, `--size 256MiB`; `default` without it.
pub fn size_arg(default: u64) -> Result<u64, BoxError> {
    let mut size = default;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--size", Some(value)) => size = parse_size(&value)?,
            _ => return Err(format!("unknown option `{arg}`; use --size 256MiB").into()),
        }
    }
    Ok(size)
}

/// For `ServiceBuilder::map_request` in a client stack, inside the retries:
/// counts each attempt in `attempts` and prints it as it leaves (method,
/// URI, `Content-Length`), after how much of the previous attempt `progress`
/// saw handed to `client`.
#[cfg(feature = "progress")]
pub fn log_attempt<B>(
    attempts: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
    progress: &mmap_body::progress::Progress,
    client: &'static str,
) -> impl Fn(http::Request<B>) -> http::Request<B> + Clone {
    let (attempts, progress) = (attempts.clone(), progress.clone());
    move |req| {
        let n = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n > 1 {
            println!(
                "client: progress: attempt {} had handed {} to {client}",
                progress.attempt(),
                sent_of_total(&progress)
            );
        }
        println!(
            "client: attempt {n}: {} {} content-length={:?}",
            req.method(),
            req.uri(),
            req.headers().get(http::header::CONTENT_LENGTH)
        );
        req
    }
}

/// `41.0 MiB of 64.0 MiB (64%)`: how much of the body the current attempt
/// has handed to the client.
#[cfg(feature = "progress")]
pub fn sent_of_total(progress: &mmap_body::progress::Progress) -> String {
    format!(
        "{} of {} ({:.0}%)",
        human(progress.sent()),
        human(progress.total().unwrap_or(0)),
        progress.fraction().unwrap_or(0.0) * 100.0
    )
}
