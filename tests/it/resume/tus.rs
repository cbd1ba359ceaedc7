//! tus-js-client (npm, Node.js), in its two IETF modes (`ietf-draft-03`:
//! interop version 5; `ietf-draft-05`: 6), uploads 256 MiB to
//! `resume::Uploads` on a hyper server, through a relay on 127.0.0.1 that
//! cuts the connection once 60% of the file went through it (issue #30).
//! The upload resumes from the server's offset (`HEAD`, then a `PATCH` of
//! the rest), is stored whole (SHA-256 of the stored file, as the server's
//! last answer says it), and the server's log shows the resumption.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::server;
use crate::fault_matrix::MIB;
use crate::interop::{npm_dir, peer, record};

const SIZE: u64 = 256 * MIB;

/// A relay on 127.0.0.1 to `upstream` that cuts the first connection to
/// carry more than `cut_at` bytes from the client (both ways, at once);
/// and the bytes it carried from clients, in all.
async fn cutting_relay(upstream: SocketAddr, cut_at: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let carried = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let total = Arc::clone(&carried);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (carried, cut) = (Arc::clone(&total), Arc::clone(&cut));
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut from_client, mut to_server) = (client, server);
                let (mut server_read, mut server_write) = to_server.split();
                let (mut client_read, mut client_write) = from_client.split();
                let mut this_connection = 0u64;
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        this_connection += n as u64;
                        carried.fetch_add(n as u64, Ordering::SeqCst);
                        if this_connection > cut_at && !cut.swap(true, Ordering::SeqCst) {
                            // Cut: this connection ends here, both ways.
                            return;
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let down = tokio::io::copy(&mut server_read, &mut client_write);
                tokio::select! {
                    () = up => {}
                    _ = down => {}
                }
            });
        }
    });
    (addr, carried)
}

async fn tus_uploads_through_a_cut(protocol: &str, version: u64) {
    let Some(node) = peer("node", &["--version"], |line| Some(format!("node {line}"))) else {
        return;
    };
    let Some(tus) = npm_dir("tus-js-client@4.3.1") else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("upload.bin");
    mmap_body_devkit::files::write_file(&path, SIZE).unwrap();
    let sha = mmap_body_devkit::files::sha256_file(&path).unwrap();

    let (server, ctx) = server(true, None).await;
    let (relay, carried) = cutting_relay(server.addr, SIZE * 6 / 10).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/interop/peers/tus_upload.mjs");
    let run = tokio::process::Command::new(&node.program)
        .arg(&script)
        .arg(format!("http://{relay}/files"))
        .arg(&path)
        .arg(protocol)
        .env("TUS_DIR", &tus)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("tus-js-client ended in time")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tus-js-client: {stdout}\n{stderr}");
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("tus-js-client's result: {e}: {stdout}\n{stderr}"));

    // Stored whole: the server's last answer carries the stored file's hash.
    assert_eq!(result["sha256"], sha.as_str(), "{result}");
    assert_eq!(result["offset"], SIZE.to_string().as_str(), "{result}");
    assert_eq!(ctx.completed.load(Ordering::SeqCst), 1);
    // Resumed: a HEAD between two PATCHes, the second from the server's
    // offset (past 0, at most what went through before the cut).
    let methods: Vec<Method> = server.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(
        methods,
        [Method::POST, Method::PATCH, Method::HEAD, Method::PATCH],
        "{stderr}"
    );
    let appends: Vec<u64> = result["appends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let patches = server.of(Method::PATCH);
    assert_eq!(patches[1].offset, Some(appends[1]));
    assert!(appends[1] > 0 && appends[1] <= SIZE * 6 / 10, "{appends:?}");
    let sent = carried.load(Ordering::SeqCst);
    assert!(sent < SIZE + SIZE / 20, "{sent} bytes through the relay");
    record(
        &format!("tus-js-client-{protocol}"),
        "tus-js-client (Node.js)",
        &format!("tus-js-client 4.3.1, {}", node.version),
        &format!("HTTP/1.1, `{protocol}` (interop {version})"),
        &format!(
            "256 MiB to `resume::Uploads` through a relay that cuts at 60%: resumed from \
             {} (HEAD, then PATCH of the rest), {:.2} GiB through the relay in all, stored \
             whole (SHA-256)",
            appends[1],
            sent as f64 / f64::from(1u32 << 30)
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_ietf_draft_03_resumes_after_a_cut() {
    tus_uploads_through_a_cut("ietf-draft-03", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_ietf_draft_05_resumes_after_a_cut() {
    tus_uploads_through_a_cut("ietf-draft-05", 6).await;
}
