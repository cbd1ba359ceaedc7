//! A TCP relay on 127.0.0.1 that breaks connections where a test says:
//! the network failing mid-download, at a chosen byte, whatever the
//! peers' speed. Each connection it accepts takes the next [`Cut`] of its
//! script (connections past the script pass whole); it counts the bytes
//! it passed to clients, as "bytes on the wire".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the relay does to one connection's answer (the bytes from the
/// server to the client, head included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Passes it whole.
    Pass,
    /// Closes both sides once this many bytes went through: a dropped
    /// connection (the client reads an early EOF).
    After(u64),
    /// Stops forwarding once this many bytes went through and keeps the
    /// connection open, silent, for a minute: a stalled connection.
    StallAfter(u64),
}

/// A running relay; it stops accepting when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    to_clients: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Relays 127.0.0.1:<port> to `upstream`, connection `i` following
    /// `script[i]`.
    pub async fn start(upstream: SocketAddr, script: impl IntoIterator<Item = Cut>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let script = Arc::new(Mutex::new(script.into_iter().collect::<Vec<_>>()));
        let to_clients = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (wire, count) = (to_clients.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let cut = script.lock().unwrap().get(n).copied().unwrap_or(Cut::Pass);
                tokio::spawn(relay(client, upstream, cut, wire.clone()));
            }
        });
        Relay {
            addr,
            to_clients,
            connections,
            task,
        }
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Bytes passed from servers to clients so far, heads included.
    pub fn bytes_to_clients(&self) -> u64 {
        self.to_clients.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, cut: Cut, wire: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let limit = match cut {
        Cut::Pass => u64::MAX,
        Cut::After(n) | Cut::StallAfter(n) => n,
    };
    let mut passed = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    while passed < limit {
        let want = buf
            .len()
            .min(usize::try_from(limit - passed).unwrap_or(usize::MAX));
        match server_read.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                passed += n as u64;
                wire.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    }
    if let Cut::StallAfter(_) = cut {
        if passed >= limit {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
    up.abort();
    // Both halves dropped here: the connection closes.
}
