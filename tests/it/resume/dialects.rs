//! `resume::Uploads` answering the clients that exist, each in its interop
//! version (issue #30): requests written by hand over raw TCP on
//! 127.0.0.1, shaped as URLSession (iOS 17: version 3, iOS 18.0: 5, iOS
//! 18.1 and later: 6) and tus-js-client (5 and 6) send them, and as this
//! crate's client does (8): the creation, an append cut mid-body, `HEAD`,
//! the rest; stored whole (SHA-256), each answer in the request's dialect.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{server, LIMIT};
use mmap_body_devkit::files::sha256;

/// An answer read off the socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// Sends `head` (the request line and fields, without the blank line) and
/// `body`, with `Connection: close`; all of it, or only `cut` bytes of the
/// body before the connection is dropped (then `None`).
async fn exchange(addr: SocketAddr, head: &str, body: &[u8], cut: Option<usize>) -> Option<Raw> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    if let Some(cut) = cut {
        stream.write_all(&body[..cut]).await.unwrap();
        stream.flush().await.unwrap();
        // Let the server take what arrived, then drop: a lost connection.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(stream);
        return None;
    }
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Some(Raw {
        status,
        head: head.to_owned(),
    })
}

/// Waits (10 s at most) until the store's files hold every byte the last
/// `PATCH` read, and that count stopped growing.
async fn settled(server: &super::Server) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = None;
    loop {
        let read = server
            .of(http::Method::PATCH)
            .last()
            .map_or(0, |seen| seen.read);
        let stored: u64 = std::fs::read_dir(server._dir.path())
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.metadata().ok())
            .map(|meta| meta.len())
            .sum();
        if read > 0 && stored == read && last == Some(read) {
            return;
        }
        last = Some(read);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cut append's {read} bytes were not stored ({stored})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// How each version says "more to come" and "this is the last", and what
/// else its appends carry.
fn flag(version: u64, complete: bool) -> String {
    match version {
        3 if complete => String::new(),
        3 => "\r\nUpload-Incomplete: ?1".to_owned(),
        _ => format!("\r\nUpload-Complete: ?{}", u8::from(complete)),
    }
}

fn media(version: u64) -> &'static str {
    if version >= 6 {
        "\r\nContent-Type: application/partial-upload"
    } else {
        ""
    }
}

/// The answer's completeness, read in the version's field.
fn says_complete(version: u64, raw: &Raw) -> Option<bool> {
    if version == 3 {
        assert_eq!(raw.header("upload-complete"), None, "{raw:?}");
        raw.header("upload-incomplete").map(|v| v == "?0")
    } else {
        assert_eq!(raw.header("upload-incomplete"), None, "{raw:?}");
        raw.header("upload-complete").map(|v| v == "?1")
    }
}

/// The careful creation (no content, as tus-js-client makes it and as a
/// client without the `104` must), an append cut at 60%, `HEAD`, the rest.
async fn created_cut_and_resumed(version: u64) {
    let (server, _ctx) = server(true, None).await;
    let addr = server.addr;
    let data: Vec<u8> = (0..(2u32 << 20) + 3)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let len = data.len();
    let v = format!("\r\nUpload-Draft-Interop-Version: {version}");

    let created = exchange(
        addr,
        &format!(
            "POST /files HTTP/1.1{v}{}\r\nUpload-Length: {len}\r\nContent-Length: 0",
            flag(version, false)
        ),
        b"",
        None,
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201, "version {version}: {created:?}");
    assert_eq!(says_complete(version, &created), Some(false), "{created:?}");
    assert_eq!(created.header("upload-offset"), Some("0"));
    let version_text = version.to_string();
    assert_eq!(
        created.header("upload-draft-interop-version"),
        Some(version_text.as_str())
    );
    let location = created.header("location").unwrap().to_owned();
    assert_eq!(
        created.header("upload-limit").is_some(),
        version >= 6,
        "{created:?}"
    );

    // An append of everything, cut at 60%.
    let cut = len * 6 / 10;
    let sent = exchange(
        addr,
        &format!(
            "PATCH {location} HTTP/1.1{v}{}{}\r\nUpload-Offset: 0\r\nContent-Length: {len}",
            flag(version, true),
            media(version)
        ),
        &data,
        Some(cut),
    )
    .await;
    assert!(sent.is_none());
    // A `HEAD` stops an append still running (the draft's rule): ask once
    // the server stored what the cut append brought, as a client that
    // retries after a backoff does.
    settled(&server).await;

    let head = exchange(addr, &format!("HEAD {location} HTTP/1.1{v}"), b"", None)
        .await
        .unwrap();
    assert_eq!(head.status, 204, "{head:?}");
    assert_eq!(says_complete(version, &head), Some(false), "{head:?}");
    assert_eq!(head.header("cache-control"), Some("no-store"));
    let offset: usize = head.header("upload-offset").unwrap().parse().unwrap();
    assert!(offset > 0 && offset <= cut, "offset {offset} of {cut} sent");

    let rest = &data[offset..];
    let done = exchange(
        addr,
        &format!(
            "PATCH {location} HTTP/1.1{v}{}{}\r\nUpload-Offset: {offset}\r\nContent-Length: {}",
            flag(version, true),
            media(version),
            rest.len()
        ),
        rest,
        None,
    )
    .await
    .unwrap();
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(says_complete(version, &done), Some(true), "{done:?}");
    assert_eq!(done.header("x-sha256"), Some(sha256(&data).as_str()));
    let len_text = len.to_string();
    assert_eq!(done.header("upload-offset"), Some(len_text.as_str()));
}

#[tokio::test]
async fn version_3_as_urlsession_on_ios_17_resumes() {
    tokio::time::timeout(LIMIT, created_cut_and_resumed(3))
        .await
        .unwrap();
}

#[tokio::test]
async fn version_5_as_urlsession_on_ios_18_and_tus_js_client_draft_03_resumes() {
    tokio::time::timeout(LIMIT, created_cut_and_resumed(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn version_6_as_urlsession_on_ios_18_1_and_tus_js_client_draft_05_resumes() {
    tokio::time::timeout(LIMIT, created_cut_and_resumed(6))
        .await
        .unwrap();
}

#[tokio::test]
async fn version_4_resumes() {
    tokio::time::timeout(LIMIT, created_cut_and_resumed(4))
        .await
        .unwrap();
}

#[tokio::test]
async fn version_7_resumes() {
    tokio::time::timeout(LIMIT, created_cut_and_resumed(7))
        .await
        .unwrap();
}

#[tokio::test]
async fn version_9_is_answered_as_8() {
    tokio::time::timeout(LIMIT, created_cut_and_resumed(9))
        .await
        .unwrap();
}

#[tokio::test]
async fn version_8_as_this_crate_speaks_resumes() {
    tokio::time::timeout(LIMIT, created_cut_and_resumed(8))
        .await
        .unwrap();
}

/// URLSession's own shape: the whole body in the creation (`Upload-Complete:
/// ?1`, `Upload-Incomplete: ?0` in version 3). Whole, it is stored and
/// answered in the request's dialect. Cut, it cannot be resumed from this
/// server: hyper sends no `104` interim response, so the client never
/// learned where the upload is, and the server keeps nothing of it; the
/// client's retry (a new creation) is stored whole.
#[tokio::test]
async fn urlsession_creations_whole_and_cut() {
    let (server, ctx) = server(true, None).await;
    let addr = server.addr;
    let data: Vec<u8> = (0..(1u32 << 20) + 17).map(|i| (i % 251) as u8).collect();
    let len = data.len();
    for version in [3, 5, 6] {
        let v = format!("\r\nUpload-Draft-Interop-Version: {version}");
        let creation = format!(
            "POST /files HTTP/1.1{v}{}\r\nUpload-Length: {len}\r\nContent-Length: {len}",
            flag(version, true).replace("\r\nUpload-Incomplete: ?1", ""),
        );
        // Version 3 says it with `Upload-Incomplete: ?0`.
        let creation = if version == 3 {
            format!("{creation}\r\nUpload-Incomplete: ?0")
        } else {
            creation
        };
        let before = ctx.ids.lock().unwrap().len();
        assert!(exchange(addr, &creation, &data, Some(len / 2))
            .await
            .is_none());
        assert_eq!(ctx.ids.lock().unwrap().len(), before, "no upload to resume");
        let whole = exchange(addr, &creation, &data, None).await.unwrap();
        assert_eq!(whole.status, 200, "version {version}: {whole:?}");
        assert_eq!(says_complete(version, &whole), Some(true), "{whole:?}");
        assert_eq!(whole.header("x-sha256"), Some(sha256(&data).as_str()));
    }
}

/// A version this server does not speak is not a creation: the request is
/// the application's, as a plain upload.
#[tokio::test]
async fn an_unknown_version_is_a_plain_upload() {
    let (server, _ctx) = server(true, None).await;
    let data = vec![7u8; 1000];
    let plain = exchange(
        server.addr,
        "POST /files HTTP/1.1\r\nUpload-Draft-Interop-Version: 2\r\nUpload-Complete: ?1\r\nContent-Length: 1000",
        &data,
        None,
    )
    .await
    .unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("upload-complete"), None, "{plain:?}");
    assert_eq!(plain.header("x-sha256"), Some(sha256(&data).as_str()));
}

/// The client finds a server of the newest draft by `Upload-Limit` in the
/// `OPTIONS` answer (no `Accept-Patch`, which the newest draft dropped),
/// resumes after a drop, and says the version it spoke.
#[tokio::test]
async fn the_client_finds_the_newest_servers_by_upload_limit() {
    use super::{upload_whole, AtTrip};
    use crate::fault_matrix::{Proto, MIB};
    use std::sync::atomic::Ordering;
    let file = mmap_body_devkit::files::test_file(4 * MIB);
    let (server, ctx) = server(true, Some((2 * MIB, AtTrip::Drop))).await;
    ctx.newest_options.store(true, Ordering::SeqCst);
    let resumed = upload_whole(Proto::H1, &server, http::Method::POST, &file)
        .await
        .expect("resumed");
    assert_eq!(resumed.interop_version, 8);
    assert_eq!(resumed.appends.len(), 2, "{resumed:?}");
    assert!(resumed.appends[1] > 0, "{resumed:?}");
}

/// The same dialects over HTTP/2 (URLSession and browsers speak it): a
/// careful creation, half the content in an append that says more is to
/// come, `HEAD`, the rest; each answer in the request's dialect, the file
/// stored whole.
#[tokio::test]
async fn the_dialects_over_http2() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    let (server, _ctx) = server(true, None).await;
    let client = mmap_body_devkit::server::client::<Full<Bytes>>(true);
    let data: Vec<u8> = (0..(1u32 << 20) + 9).map(|i| (i % 241) as u8).collect();
    let len = data.len();
    let half = len / 2;
    for version in [3u64, 5, 6, 8] {
        let send = |method: &str, path: &str, fields: Vec<(String, String)>, body: &[u8]| {
            let mut req = http::Request::builder()
                .method(method)
                .uri(format!("http://{}{path}", server.addr))
                .header("upload-draft-interop-version", version.to_string());
            for (name, value) in fields {
                req = req.header(name, value);
            }
            let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
            let client = client.clone();
            async move {
                let res = tokio::time::timeout(LIMIT, client.request(req))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(res.version(), http::Version::HTTP_2);
                let (parts, body) = res.into_parts();
                body.collect().await.unwrap();
                let head = parts
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                    .collect::<Vec<_>>()
                    .join("\r\n");
                Raw {
                    status: parts.status.as_u16(),
                    head: format!("HTTP/2 {}\r\n{head}", parts.status.as_u16()),
                }
            }
        };
        let flag = |complete: bool| -> Vec<(String, String)> {
            match (version, complete) {
                (3, true) => vec![],
                (3, false) => vec![("upload-incomplete".into(), "?1".into())],
                (_, c) => vec![("upload-complete".into(), format!("?{}", u8::from(c)))],
            }
        };
        let media = || -> Vec<(String, String)> {
            if version >= 6 {
                vec![("content-type".into(), "application/partial-upload".into())]
            } else {
                vec![]
            }
        };
        let mut fields = flag(false);
        fields.push(("upload-length".into(), len.to_string()));
        let created = send("POST", "/files", fields, b"").await;
        assert_eq!(created.status, 201, "version {version}: {created:?}");
        assert_eq!(says_complete(version, &created), Some(false), "{created:?}");
        let location = created.header("location").unwrap().to_owned();

        let mut fields = flag(false);
        fields.extend(media());
        fields.push(("upload-offset".into(), "0".into()));
        let first = send("PATCH", &location, fields, &data[..half]).await;
        let expected = if version <= 6 { 201 } else { 204 };
        assert_eq!(first.status, expected, "version {version}: {first:?}");
        assert_eq!(says_complete(version, &first), Some(false), "{first:?}");

        let head = send("HEAD", &location, vec![], b"").await;
        assert_eq!(head.status, 204, "{head:?}");
        let half_text = half.to_string();
        assert_eq!(head.header("upload-offset"), Some(half_text.as_str()));

        let mut fields = flag(true);
        fields.extend(media());
        fields.push(("upload-offset".into(), half_text.clone()));
        let done = send("PATCH", &location, fields, &data[half..]).await;
        assert_eq!(done.status, 200, "version {version}: {done:?}");
        assert_eq!(says_complete(version, &done), Some(true), "{done:?}");
        assert_eq!(done.header("x-sha256"), Some(sha256(&data).as_str()));
    }
}
