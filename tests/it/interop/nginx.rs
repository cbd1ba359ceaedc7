//! nginx (Debian's, with its DAV module) as the peer: the upstream of
//! `MmapBody` PUTs of 1 GiB (hyper-util and `ReqwestService`), of a file
//! truncated mid-upload, of a retry after its `503`; the same over TLS
//! (rustls, a certificate made here) on HTTP/1.1 and HTTP/2; and nginx in
//! front of this crate's `ReverseProxy` (`proxy_request_buffering off`).
//! What nginx stored (the file, its SHA-256) and logged (status, request
//! length, the framing headers it received) is what each case checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use mmap_body::replay::ReplayLayer;
use mmap_body::retry::RetryPolicy;
use mmap_body::MmapBody;
use mmap_body_devkit::files::{sha256_file, test_file, TestFile};
use mmap_body_devkit::harness::chain;
use mmap_body_devkit::server::client;
use mmap_body_devkit::tls::{tls_client, TestCert};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

use super::{free_port, peer, record, wait_for_port, Peer, TruncateAfter};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Each upload's bound (a 1 GiB PUT takes a few seconds here).
const LIMIT: Duration = Duration::from_secs(180);

/// Debian's nginx, if installed.
pub(super) fn nginx() -> Option<Peer> {
    // Debian puts it in /usr/sbin, which a user's PATH may lack.
    let program = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx");
    peer(program, &["-v"], |line| {
        line.strip_prefix("nginx version: ").map(str::to_owned)
    })
}

/// One line of the access log, in the format [`Nginx::start`] sets.
#[derive(Debug, Clone)]
struct Access {
    method: String,
    uri: String,
    status: u16,
    /// The whole request: line, headers and body.
    request_length: u64,
    content_length: Option<String>,
    transfer_encoding: Option<String>,
    protocol: String,
}

/// An nginx of its own (single process, in the foreground), in a temp dir
/// holding its config, logs, temp files and document root; killed when
/// dropped.
pub(super) struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
    _child: tokio::process::Child,
}

impl Nginx {
    /// Starts nginx listening on a free port of 127.0.0.1 (`listen` is
    /// what follows the address: ` ssl http2`), with `server` inside its
    /// one `server {}` block; `{dir}` in it is the temp dir.
    pub(super) async fn start(nginx: &Peer, listen: &str, server: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        let port = free_port();
        let server = server.replace("{dir}", &d);
        let config = format!(
            r#"
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format peer '$request_method|$uri|$status|$request_length|$http_content_length|$http_transfer_encoding|$server_protocol';
    access_log {d}/access.log peer;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port}{listen};
        root {d}/www;
        {server}
    }}
}}
"#
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = tokio::process::Command::new(&nginx.program)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let nginx = Nginx {
            dir,
            port,
            _child: child,
        };
        // On a failed start, its error log says why.
        let log = nginx.dir.path().join("error.log");
        let ready =
            tokio::time::timeout(Duration::from_secs(10), wait_for_port(port, "nginx")).await;
        assert!(
            ready.is_ok(),
            "nginx did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        nginx
    }

    pub(super) fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// Where nginx keeps a file PUT at `path`.
    pub(super) fn stored(&self, path: &str) -> PathBuf {
        self.dir
            .path()
            .join("www")
            .join(path.trim_start_matches('/'))
    }

    fn marker(&self) -> PathBuf {
        self.dir.path().join("fail-next")
    }

    fn access_log(&self) -> Vec<Access> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        let field = |s: &str| (s != "-").then(|| s.to_owned());
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split('|').collect();
                assert_eq!(f.len(), 7, "an access log line: {line}");
                Access {
                    method: f[0].to_owned(),
                    uri: f[1].to_owned(),
                    status: f[2].parse().unwrap(),
                    request_length: f[3].parse().unwrap(),
                    content_length: field(f[4]),
                    transfer_encoding: field(f[5]),
                    protocol: f[6].to_owned(),
                }
            })
            .collect()
    }

    /// The access log's lines for `uri`, once there are `n` (nginx writes
    /// a line when it is done with the request, which for a broken upload
    /// is when it sees the connection go).
    async fn wait_for(&self, uri: &str, n: usize) -> Vec<Access> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let lines: Vec<Access> = self
                .access_log()
                .into_iter()
                .filter(|a| a.uri == uri)
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx logged {lines:?} for {uri}, not {n} lines, in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// PUT into `{dir}/www`, new directories made as needed (201 Created).
const DAV: &str = r#"
        location /dav/ {
            dav_methods PUT;
            create_full_put_path on;
        }
        location /flaky/ {
            if (-f {dir}/fail-next) {
                add_header Retry-After 1 always;
                return 503;
            }
            dav_methods PUT;
            create_full_put_path on;
        }
"#;

/// The answer to a request sent by `sending`, within [`LIMIT`].
async fn answer<R, E: std::fmt::Debug>(
    sending: impl std::future::Future<Output = Result<R, E>>,
) -> R {
    tokio::time::timeout(LIMIT, sending)
        .await
        .expect("in time")
        .expect("an answer")
}

fn open(file: &TestFile) -> MmapBody {
    // SAFETY: the temp file is this test's, unchanged while mapped (the
    // truncation tests change it on purpose: that is what they test).
    unsafe { MmapBody::open(&file.path) }.expect("open")
}

/// nginx stored `path` whole: the same length and SHA-256 as `file`.
fn assert_stored_whole(nginx: &Nginx, path: &str, file: &TestFile) {
    let stored = nginx.stored(path);
    let len = std::fs::metadata(&stored)
        .unwrap_or_else(|e| panic!("nginx stored no {path}: {e}"))
        .len();
    assert_eq!(len, file.len, "{path}: the stored length");
    assert_eq!(
        sha256_file(&stored).unwrap(),
        file.sha256,
        "{path}: the stored SHA-256"
    );
}

/// nginx logged one complete PUT of `path` with `file`'s exact length
/// as `Content-Length` and no `Transfer-Encoding`.
async fn assert_logged_put(nginx: &Nginx, path: &str, file: &TestFile, protocol: &str) {
    let lines = nginx.wait_for(path, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let put = &lines[0];
    assert_eq!(put.method, "PUT");
    assert_eq!(put.status, 201, "{put:?}");
    assert_eq!(put.protocol, protocol, "{put:?}");
    assert_eq!(put.content_length, Some(file.len.to_string()), "{put:?}");
    assert_eq!(put.transfer_encoding, None, "{put:?}");
    assert!(put.request_length > file.len, "{put:?}");
}

/// 1 GiB `MmapBody` PUTs over HTTP/1.1 with hyper-util and with
/// `ReqwestService`: nginx stores each whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_stores_1_gib_puts_whole() {
    let Some(peer) = nginx() else { return };
    let nginx = Nginx::start(&peer, "", DAV).await;
    let file = test_file(GIB);

    let req = Request::put(nginx.url("http", "/dav/hyper.bin"))
        .body(open(&file))
        .unwrap();
    let res = answer(client(false).request(req)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_logged_put(&nginx, "/dav/hyper.bin", &file, "HTTP/1.1").await;
    assert_stored_whole(&nginx, "/dav/hyper.bin", &file);

    let reqwest = reqwest::Client::builder().no_proxy().build().unwrap();
    let req = Request::put(nginx.url("http", "/dav/reqwest.bin"))
        .body(open(&file))
        .unwrap();
    let service = mmap_body::reqwest::ReqwestService::new(reqwest);
    let res = answer(service.oneshot(req)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_logged_put(&nginx, "/dav/reqwest.bin", &file, "HTTP/1.1").await;
    assert_stored_whole(&nginx, "/dav/reqwest.bin", &file);

    record(
        "nginx-1-put",
        "nginx (DAV `PUT`)",
        &peer.version,
        "HTTP/1.1",
        "1 GiB `MmapBody` PUT via hyper-util and via `ReqwestService`: 201, its access log shows the exact `Content-Length` and no `Transfer-Encoding`, the stored file's SHA-256 equal",
    );
}

/// Uploads a 256 MiB file that is cut to 1 MiB once 32 MiB were sent: the
/// upload fails with `Truncated` and nginx never stores it complete.
async fn truncated_upload_is_never_stored(nginx: &Nginx, scheme: &str, path: &str, send: SendWith) {
    let file = test_file(256 * MIB);
    let body = TruncateAfter::new(open(&file), &file.path, 32 * MIB, MIB);
    let req = Request::put(nginx.url(scheme, path)).body(body).unwrap();
    let outcome = tokio::time::timeout(LIMIT, send(req))
        .await
        .expect("the broken upload ended in time");
    // Plain TCP: the kernel copies the frames, and one already queued from
    // the pages cut off fails its write with EFAULT (os error 14), as
    // `mmap_body::guard` documents; otherwise the body's `Truncated`.
    eprintln!("{path}: {outcome:?}");
    match outcome {
        Err(e) => assert!(
            e.contains("truncated") || (scheme == "http" && e.contains("(os error 14)")),
            "{path}: the error says the file was truncated: {e}"
        ),
        Ok(status) => panic!("{path}: a truncated upload was answered {status}"),
    }
    let lines = nginx.wait_for(path, 1).await;
    assert_eq!(lines.len(), 1, "{path}: retried: {lines:?}");
    assert!(
        lines.iter().all(|a| a.status >= 400),
        "{path}: nginx logged a success: {lines:?}"
    );
    match std::fs::metadata(nginx.stored(path)) {
        Err(_) => {}
        Ok(meta) => assert!(
            meta.len() < file.len,
            "{path}: nginx stored all {} bytes",
            meta.len()
        ),
    }
}

/// How a truncation case sends its request: the answer's status, or the
/// error chain as text.
type SendWith = Box<
    dyn FnOnce(
        Request<TruncateAfter<MmapBody>>,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<StatusCode, String>>>>,
>;

/// Sends through `ReplayLayer` + `RetryLayer(RetryPolicy)` + hyper-util
/// (over TLS with `cert`): the stack reports the body's own error even
/// where hyper's HTTP/2 client only says it reset the stream.
fn stack_send(http2: bool, cert: Option<&TestCert>) -> SendWith {
    use mmap_body::replay::ReplayBody;
    type Body = ReplayBody<TruncateAfter<MmapBody>>;
    fn status_or_chain(
        outcome: Result<http::Response<hyper::body::Incoming>, tower::BoxError>,
    ) -> Result<StatusCode, String> {
        outcome.map(|res| res.status()).map_err(|e| chain(&*e))
    }
    let policy =
        RetryPolicy::default().backoff(Duration::from_millis(5), Duration::from_millis(20));
    let layers = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(policy));
    match cert {
        None => {
            let service = layers.service(client::<Body>(http2));
            Box::new(move |req| {
                Box::pin(async move { status_or_chain(service.oneshot(req).await) })
            })
        }
        Some(cert) => {
            let service = layers.service(tls_client::<Body>(http2, cert));
            Box::new(move |req| {
                Box::pin(async move { status_or_chain(service.oneshot(req).await) })
            })
        }
    }
}

/// A file truncated mid-upload (plain HTTP/1.1): nginx keeps nothing
/// complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_never_stores_a_truncated_upload() {
    let Some(peer) = nginx() else { return };
    let nginx = Nginx::start(&peer, "", DAV).await;
    truncated_upload_is_never_stored(&nginx, "http", "/dav/cut.bin", stack_send(false, None)).await;
    record(
        "nginx-2-truncated",
        "nginx (DAV `PUT`)",
        &peer.version,
        "HTTP/1.1",
        "a 256 MiB file cut to 1 MiB after 32 MiB were sent, through `ReplayLayer` + `RetryLayer`: sent once, an error (`Truncated`, or the kernel's `EFAULT` for a frame already queued), nginx logs a 4xx and keeps no complete file",
    );
}

/// `ReplayLayer` + `RetryLayer(RetryPolicy)` + hyper-util against an nginx
/// that answers `503` with `Retry-After: 1` while a marker file exists
/// (removed once nginx logged the 503): the retry is stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_503_then_the_retry_is_stored_whole() {
    let Some(peer) = nginx() else { return };
    let nginx = Nginx::start(&peer, "", DAV).await;
    std::fs::write(nginx.marker(), b"").unwrap();
    let file = test_file(64 * MIB);
    let path = "/flaky/retried.bin";

    // The marker goes once nginx has logged its 503.
    let watch = {
        let log = nginx.dir.path().join("access.log");
        let marker = nginx.marker();
        tokio::spawn(async move {
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.lines().any(|l| l.contains("|503|")) {
                    std::fs::remove_file(&marker).unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let service = ServiceBuilder::new()
        .layer(ReplayLayer::new(64 * 1024))
        .layer(RetryLayer::new(RetryPolicy::default().max_attempts(3)))
        .service(client(false));
    let req = Request::put(nginx.url("http", path))
        .body(open(&file))
        .unwrap();
    let res = answer(service.oneshot(req)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    watch.await.unwrap();
    let lines = nginx.wait_for(path, 2).await;
    let statuses: Vec<u16> = lines.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [503, 201], "{lines:?}");
    for line in &lines {
        assert_eq!(line.content_length, Some(file.len.to_string()), "{line:?}");
        assert_eq!(line.transfer_encoding, None, "{line:?}");
    }
    assert_stored_whole(&nginx, path, &file);
    record(
        "nginx-3-retry",
        "nginx (`return 503`, then DAV `PUT`)",
        &peer.version,
        "HTTP/1.1",
        "`ReplayLayer` + `RetryLayer(RetryPolicy)`: its log shows 503 then 201, both with the exact `Content-Length`; the stored file's SHA-256 equal",
    );
}

/// nginx over TLS (`listen … ssl http2`, a certificate made by the test):
/// 256 MiB `MmapBody` PUTs over rustls with ALPN `http/1.1` and `h2`
/// stored whole, and a file truncated mid-upload over each: the process
/// lives (the crate's `SIGBUS` guard, installed by the first body), the
/// upload fails with `Truncated`, nginx keeps nothing complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_over_tls_stores_whole_and_survives_a_truncation() {
    let Some(peer) = nginx() else { return };
    let cert = TestCert::generate();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, &cert.key_pem).unwrap();
    let server = format!(
        "ssl_certificate {};\n        ssl_certificate_key {};\n{DAV}",
        cert_path.display(),
        key_path.display()
    );
    let nginx = Nginx::start(&peer, " ssl http2", &server).await;
    let file = test_file(256 * MIB);
    for (http2, protocol) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
        let path = format!("/dav/tls-{}.bin", if http2 { "h2" } else { "h1" });
        let req = Request::put(nginx.url("https", &path))
            .body(open(&file))
            .unwrap();
        let res = answer(tls_client(http2, &cert).request(req)).await;
        assert_eq!(res.status(), StatusCode::CREATED, "{protocol}");
        let _ = res.into_body().collect().await;
        assert_logged_put(&nginx, &path, &file, protocol).await;
        assert_stored_whole(&nginx, &path, &file);

        let cut = format!("/dav/tls-cut-{}.bin", if http2 { "h2" } else { "h1" });
        truncated_upload_is_never_stored(&nginx, "https", &cut, stack_send(http2, Some(&cert)))
            .await;
    }
    record(
        "nginx-4-tls",
        "nginx (TLS, DAV `PUT`)",
        &peer.version,
        "HTTP/1.1 and HTTP/2 over TLS (rustls, ring)",
        "256 MiB `MmapBody` PUT stored whole (SHA-256); a file truncated mid-upload: the process lives (no setup call), `ReplayLayer` + `RetryLayer` report `Truncated` and send it once, nginx keeps no complete file",
    );
}

/// nginx in front of this crate's axum proxy: client → nginx
/// (`proxy_request_buffering off`, HTTP/1.1 upstream) → `ReverseProxy`
/// (replay spilled to disk) → an upstream that drops the first attempt
/// after 8 MiB. The 64 MiB upload arrives whole, and the hop-by-hop
/// headers nginx sends (`Connection` and what it names, `Keep-Alive`) and
/// the upstream answers with stop at the proxy, while `Via` is appended to
/// in both directions (RFC 9110 §7.6).
#[cfg(feature = "spill")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_of_the_reverse_proxy() {
    use http::HeaderMap;
    use mmap_body::proxy::ReverseProxy;
    use mmap_body_devkit::faulty::{Fault, Faulty};
    use mmap_body_devkit::server::serve_axum;

    let Some(peer) = nginx() else { return };
    let mut hop = HeaderMap::new();
    hop.insert("connection", "x-upstream-hop".parse().unwrap());
    hop.insert("x-upstream-hop", "for the proxy only".parse().unwrap());
    hop.insert("keep-alive", "timeout=5".parse().unwrap());
    let upstream = Faulty::start([Fault::DropAfter(8 * MIB)])
        .await
        .answer_with(hop);
    let spill = tempfile::tempdir().unwrap();
    let proxy = ReverseProxy::builder(format!("http://{}/store", upstream.addr))
        .unwrap()
        .spill_to_disk(256 * MIB)
        .spill_dir(spill.path())
        .retry(RetryPolicy::default().backoff(Duration::from_millis(5), Duration::from_millis(20)))
        .build();
    let ours = serve_axum(axum::Router::new().nest_service("/api", proxy)).await;
    let edge = format!(
        r#"
        location /edge/ {{
            proxy_pass http://{ours}/api/;
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_set_header Connection "keep-alive, x-nginx-hop";
            proxy_set_header X-Nginx-Hop "for the next hop only";
            proxy_set_header Keep-Alive "timeout=5";
            proxy_set_header Via "1.1 nginx";
        }}
"#
    );
    let nginx = Nginx::start(&peer, "", &edge).await;
    let file = test_file(64 * MIB);
    let req = Request::put(nginx.url("http", "/edge/up.bin"))
        .body(open(&file))
        .unwrap();
    let res = answer(client(false).request(req)).await;
    assert_eq!(res.status(), StatusCode::OK);

    // What the upstream saw: the drop, then the whole body with nginx's
    // `Content-Length`, none of nginx's hop-by-hop headers, `Via` appended.
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let whole = &seen[1];
    assert_eq!(whole.sha256.as_deref(), Some(file.sha256.as_str()));
    assert_eq!(whole.content_length, Some(file.len.to_string()));
    assert_eq!(whole.transfer_encoding, None);
    for name in ["connection", "x-nginx-hop", "keep-alive"] {
        assert!(
            whole.headers.get(name).is_none(),
            "the upstream got {name}: {:?}",
            whole.headers
        );
    }
    assert_eq!(whole.headers["via"], "1.1 nginx, 1.1 mmap-body");

    // What the client got through nginx: none of the upstream's hop-by-hop
    // headers (nginx passes an unknown one on, so their absence is the
    // proxy's doing), and the proxy's `Via`.
    assert!(res.headers().get("x-upstream-hop").is_none(), "{res:?}");
    assert_eq!(res.headers()["via"], "1.1 mmap-body");
    let lines = nginx.wait_for("/edge/up.bin", 1).await;
    assert_eq!(lines[0].status, 200, "{lines:?}");
    assert!(lines[0].request_length > file.len, "{lines:?}");
    record(
        "nginx-5-front",
        "nginx in front of `ReverseProxy`",
        &peer.version,
        "HTTP/1.1 both hops, `proxy_request_buffering off`",
        "a 64 MiB PUT whose first upstream attempt drops after 8 MiB arrives whole (SHA-256 at the upstream); nginx's `Connection` / `Keep-Alive` / named headers and the upstream's stop at the proxy; `Via: 1.1 nginx, 1.1 mmap-body` upstream, `1.1 mmap-body` to the client",
    );
}
