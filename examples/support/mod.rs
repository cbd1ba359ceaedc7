//! What the two retrying uploads (`retry_tower`, `upload_reqwest`) print
//! of each attempt and of its progress. The rest the examples share (temp
//! files, the counting server, the scripted misbehaving upstream, sizes,
//! RSS, the counting allocator) comes from the repository's unpublished
//! `mmap-body-devkit`, shared with the tests and the benchmark.

use mmap_body_devkit::size::human;

/// For `ServiceBuilder::map_request` in a client stack, inside the retries:
/// counts each attempt in `attempts` and prints it as it leaves (method,
/// URI, `Content-Length`), after how much of the previous attempt `progress`
/// saw handed to `client`.
#[cfg(feature = "progress")]
pub(crate) fn log_attempt<B>(
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
pub(crate) fn sent_of_total(progress: &mmap_body::progress::Progress) -> String {
    format!(
        "{} of {} ({:.0}%)",
        human(progress.sent()),
        human(progress.total().unwrap_or(0)),
        progress.fraction().unwrap_or(0.0) * 100.0
    )
}
