//! A directory served by `mmap_body::serve::ServeDir`, mounted in an axum
//! router with one line, as tower-http's `ServeDir` is: a temp directory
//! with an index, a stylesheet and its precompressed `.gz`, asked by a
//! hyper client the way a browser and a download manager would. Prints
//! each request and the status and headers it got, as `curl -i` would.
//!
//! Crates it uses, to copy it into your own: `mmap-body` (`serve`, a
//! default), `axum`, `hyper`, `hyper-util`, `http-body-util`, `tokio`,
//! `tempfile`.
//!
//! ```text
//! cargo run --example serve_dir
//! ```

use axum::http::{header, Method, Request};
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mmap_body::serve::{ServeDir, ServeFile};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request to make: method, path, headers.
type Ask<'a> = (Method, &'a str, &'a [(header::HeaderName, &'a str)]);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The site: an index, a stylesheet and its gzip'd copy, a subdirectory.
    let dir = tempfile::tempdir()?;
    let site = dir.path();
    std::fs::create_dir(site.join("docs"))?;
    std::fs::write(site.join("index.html"), "<h1>Hello</h1>\n")?;
    std::fs::write(site.join("docs/index.html"), "<h1>Docs</h1>\n")?;
    std::fs::write(site.join("site.css"), "body { margin: 0 }\n".repeat(100))?;
    // (Any bytes do for the example; a real site runs gzip at build time.)
    std::fs::write(site.join("site.css.gz"), b"\x1f\x8b pretend gzip")?;
    std::fs::write(site.join("404.html"), "<h1>Not here</h1>\n")?;

    // The one line: the same as with tower-http's ServeDir. (`nest_service`
    // takes `/assets` off the path the service sees; the directory
    // redirect puts it back with `redirect_path_prefix`.)
    let app = Router::new().nest_service(
        "/assets",
        ServeDir::new(site)
            .precompressed_gzip()
            .redirect_path_prefix("/assets")
            .not_found_service(ServeFile::new(site.join("404.html"))),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let asks: &[Ask] = &[
        (Method::GET, "/assets/", &[]),
        (Method::GET, "/assets/docs", &[]),
        (
            Method::GET,
            "/assets/site.css",
            &[(header::ACCEPT_ENCODING, "gzip, br")],
        ),
        (
            Method::GET,
            "/assets/site.css",
            &[(header::RANGE, "bytes=0-4,10-14")],
        ),
        (Method::HEAD, "/assets/site.css", &[]),
        (Method::GET, "/assets/../Cargo.toml", &[]),
        (Method::GET, "/assets/missing.png", &[]),
        (Method::POST, "/assets/site.css", &[]),
    ];
    for (method, path, headers) in asks {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}{path}"));
        for (name, value) in *headers {
            request = request.header(name, *value);
        }
        let response = client.request(request.body(Empty::new())?).await?;
        let sent: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        println!("> {method} {path} {}", sent.join("; "));
        println!("< {:?} {}", response.version(), response.status());
        for name in [
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::VARY,
            header::LOCATION,
            header::ALLOW,
        ] {
            if let Some(value) = response.headers().get(&name) {
                println!("< {name}: {}", value.to_str()?);
            }
        }
        let body = response.into_body().collect().await?.to_bytes();
        println!("< ({} bytes of body)\n", body.len());
    }
    Ok(())
}
