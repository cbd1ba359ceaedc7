//! A `multipart/form-data` upload (a text field and a 64 MiB file part)
//! from a hyper-util client behind `ReplayLayer`, `tower::retry::RetryLayer`
//! and `RetryPolicy`, to a local axum server that parses it with axum's own
//! `Multipart` extractor. The server answers the first attempt `503` after
//! reading half of the file; the retry sends the whole form again, from the
//! file, and the server reports what it parsed: the fields, the file name,
//! the file's length and SHA-256.
//!
//! Crates it uses, to copy it into your own: `mmap-body` (`multipart`,
//! `retry`), `tokio`, `axum` (`multipart`), `hyper-util` (`client-legacy`,
//! `http1`, `tokio`), `tower` (`retry`, `util`), `http`, `http-body-util`,
//! `sha2`, `tempfile`.
//!
//! ```text
//! cargo run --release --example upload_form --features multipart
//! ```

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use http::header::CONTENT_TYPE;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mmap_body::multipart::{Form, FormBody, Part};
use mmap_body::retry::RetryPolicy;
use mmap_body::{FileBody, ReplayBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};
use sha2::{Digest, Sha256};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SIZE: usize = 64 << 20;

/// Reads the form field by field. On the first request, stops half-way
/// through the file and answers 503; after that, reads it all and says
/// what it got.
async fn upload(
    State(requests): State<Arc<AtomicUsize>>,
    mut form: Multipart,
) -> (StatusCode, String) {
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mut report = Vec::new();
    loop {
        let mut field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return (StatusCode::BAD_REQUEST, format!("bad form: {err}")),
        };
        let name = field.name().unwrap_or("").to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let mime = field.content_type().map(str::to_owned);
        let (mut len, mut sha) = (0usize, Sha256::new());
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    len += chunk.len();
                    sha.update(&chunk);
                }
                Ok(None) => break,
                Err(err) => return (StatusCode::BAD_REQUEST, format!("bad part: {err}")),
            }
            if n == 1 && file_name.is_some() && len >= SIZE / 2 {
                println!(
                    "server: request {n}: read {} MiB of the file, answering 503",
                    len >> 20
                );
                return (StatusCode::SERVICE_UNAVAILABLE, "try again".into());
            }
        }
        let line = match file_name {
            Some(file_name) => format!(
                "{name}: file {file_name:?} ({}), {len} bytes, sha256 {:x}",
                mime.unwrap_or_default(),
                sha.finalize()
            ),
            None => format!("{name}: {len} bytes"),
        };
        println!("server: request {n}: {line}");
        report.push(line);
    }
    (StatusCode::OK, report.join("\n"))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The file to upload: 64 MiB of pseudo-random bytes, and their SHA-256.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("holiday.mp4");
    let mut bytes = vec![0u8; SIZE];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for word in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    std::fs::File::create(&path)?.write_all(&bytes)?;
    let sent = format!("{:x}", Sha256::digest(&bytes));
    drop(bytes);

    // The server: axum's `Multipart` parses the form.
    let requests = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/upload", axum::routing::post(upload))
        // axum takes 2 MiB of a body by default; this one is bigger.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(requests.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The client: replay outside the retries, as the `replay` docs say.
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<FormBody>>();
    let service = ServiceBuilder::new()
        // A `FormBody` is cloned for each attempt, never recorded: this
        // 8 MiB cap does not apply to it.
        .layer(ReplayLayer::new(DEFAULT_MAX_REPLAY_BYTES))
        .layer(RetryLayer::new(
            RetryPolicy::default()
                // A POST is retried only when told: this one stores the
                // file under its name, so doing it twice does no harm.
                .retry_non_idempotent(true)
                .backoff(Duration::from_millis(100), Duration::from_secs(1)),
        ))
        .service(client);

    // Zero-copy under a read lease, `pread` where the kernel gives none.
    let video = FileBody::open(&path)?;
    let form = Form::new().text("title", "Holiday, day 1").part(
        "file",
        Part::file(video)
            .file_name("holiday.mp4")
            .mime_str("video/mp4")?,
    );
    let request = http::Request::post(format!("http://{addr}/upload"))
        .header(CONTENT_TYPE, form.content_type())
        .body(form.into_body())?;
    println!(
        "client: POST /upload, content-length {} (the form's exact size)",
        request.body().len()
    );
    let started = Instant::now();
    let response = service.oneshot(request).await?;
    let status = response.status();
    let text = String::from_utf8(response.into_body().collect().await?.to_bytes().to_vec())?;
    println!(
        "client: {status} after {} attempt(s) in {:.2} s",
        requests.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
    if !status.is_success() || !text.contains(&format!("{SIZE} bytes, sha256 {sent}")) {
        return Err(format!("the upload failed ({status}): {text}").into());
    }
    println!("client: the server parsed the file whole (SHA-256 equal)");
    Ok(())
}
