//! Raw HTTP/1.1 on both sides of the proxy, for what a hyper client or
//! server would tidy up: requests written byte for byte, an upstream that
//! logs the head it read and answers with canned bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::REQUEST_LIMIT;

/// Sends `request` over a raw socket and returns the whole answer (the
/// request should ask for `Connection: close`).
pub(super) async fn raw_answer(proxy: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(REQUEST_LIMIT, stream.read_to_end(&mut answer));
    let _ = read.await.expect("the proxy answered in time");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status of a raw answer.
pub(super) fn status_of(answer: &str) -> u16 {
    let status = answer.split(' ').nth(1).unwrap_or("");
    status
        .parse()
        .unwrap_or_else(|_| panic!("no status in {answer:?}"))
}

/// A raw HTTP/1.1 upstream: for each connection, reads a request head
/// (bodiless requests only), logs it, writes `answer` and closes.
pub(super) async fn raw_upstream(answer: &'static [u8]) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Default::default();
    let log = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                log.lock().unwrap().push(head);
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, heads)
}

/// The values of header `name` in a raw head, one per line.
pub(super) fn lines_of<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim())
        .collect()
}

pub(super) fn label(http2: bool) -> &'static str {
    if http2 {
        "[h2 client]"
    } else {
        "[h1 client]"
    }
}
