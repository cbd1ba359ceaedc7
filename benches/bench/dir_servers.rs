//! The servers of `--serve-dir`, each in a process of its own: this
//! binary again (`--child serve-dir ours|tower ROOT nodelay|defaults`), an
//! axum app on a 2-worker runtime with `serve::ServeDir` or tower-http's
//! `ServeDir` at `/files`; and nginx with 2 worker processes, `sendfile
//! on` and `open_file_cache`, the same root at `/files/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mmap_body_devkit::BoxError;

/// A server of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    /// `mmap_body::serve::ServeDir` under `axum::serve`; `nodelay`:
    /// `TCP_NODELAY` on accepted sockets, else `axum::serve`'s defaults.
    Ours { nodelay: bool },
    /// tower-http 0.7's `ServeDir`, the same way.
    Tower { nodelay: bool },
    /// nginx (its defaults set `tcp_nodelay on`).
    Nginx,
    /// axum answering the small files from memory (`Bytes` read at
    /// start), `TCP_NODELAY`: hyper's ceiling on this machine.
    Memory,
}

impl Server {
    pub(crate) const ALL: [Server; 6] = [
        Server::Ours { nodelay: false },
        Server::Tower { nodelay: false },
        Server::Ours { nodelay: true },
        Server::Tower { nodelay: true },
        Server::Nginx,
        Server::Memory,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Server::Ours { nodelay: false } => "ServeDir (mmap-body), axum defaults",
            Server::Ours { nodelay: true } => "ServeDir (mmap-body), TCP_NODELAY",
            Server::Tower { nodelay: false } => "ServeDir (tower-http), axum defaults",
            Server::Tower { nodelay: true } => "ServeDir (tower-http), TCP_NODELAY",
            Server::Nginx => "nginx (sendfile, open_file_cache)",
            Server::Memory => "axum from memory (the ceiling), TCP_NODELAY",
        }
    }
}

/// A running server: its HTTP/1.1 and HTTP/2 (prior knowledge) addresses
/// and its processes.
pub(crate) struct Running {
    pub(crate) h1: SocketAddr,
    pub(crate) h2: SocketAddr,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Running {
    /// User plus system CPU seconds of the server's processes (nginx's
    /// master and workers) so far, from `/proc`.
    pub(crate) fn cpu_secs(&self) -> f64 {
        let root = self.child.id();
        let ticks = clock_ticks();
        let mut total = 0u64;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0.0;
        };
        for entry in entries.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // After the command's closing parenthesis: state, ppid, ...
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let pid: u32 = head
                .split(' ')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ppid: u32 = fields.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            if pid == root || ppid == root {
                let utime: u64 = fields.get(11).and_then(|t| t.parse().ok()).unwrap_or(0);
                let stime: u64 = fields.get(12).and_then(|t| t.parse().ok()).unwrap_or(0);
                total += utime + stime;
            }
        }
        total as f64 / ticks
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The measurements are taken (from `/proc`): nothing to wait for
        // but the processes' end. nginx's master takes its workers with
        // it on SIGTERM.
        drop(self.child.stdin.take());
        if self._dir.is_some() {
            // SAFETY: `kill` with the pid of nginx's master, which this
            // process spawned and has not waited for; no memory is passed.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: `sysconf` has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Starts `server` serving `root`; `None` (with a message) for nginx when
/// it is not installed.
pub(crate) fn start(server: Server, root: &Path) -> Result<Option<Running>, BoxError> {
    match server {
        Server::Ours { .. } | Server::Tower { .. } | Server::Memory => {
            let (kind, nodelay) = match server {
                Server::Ours { nodelay } => ("ours", nodelay),
                Server::Tower { nodelay } => ("tower", nodelay),
                _ => ("memory", true),
            };
            let mut child = Command::new(std::env::current_exe()?)
                .args(["--child", "serve-dir", kind])
                .arg(root)
                .arg(if nodelay { "nodelay" } else { "defaults" })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let mut stdout = BufReader::new(child.stdout.take().ok_or("no child stdout")?);
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            let addr: SocketAddr = line
                .trim()
                .strip_prefix("listening ")
                .ok_or_else(|| format!("the server said `{}`", line.trim()))?
                .parse()?;
            // Whatever else it prints is drained by a thread of its own.
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = stdout.read_to_string(&mut rest);
            });
            Ok(Some(Running {
                h1: addr,
                h2: addr,
                child,
                _dir: None,
            }))
        }
        Server::Nginx => nginx(root),
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn nginx(root: &Path) -> Result<Option<Running>, BoxError> {
    let program = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|p| Command::new(p).arg("-v").output().is_ok());
    let Some(program) = program else {
        println!("nginx: skipped (not installed; .ci/interop-setup installs it)");
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let d = dir.path().display();
    let (p1, p2) = (free_port()?, free_port()?);
    // SAFETY: `geteuid` has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let config = format!(
        "{user}
worker_processes 2;
master_process on;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    open_file_cache max=1000 inactive=60s;
    default_type application/octet-stream;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{p1};
        listen 127.0.0.1:{p2} http2;
        location /files/ {{ alias {}/; }}
    }}
}}
",
        root.display()
    );
    let conf = dir.path().join("nginx.conf");
    std::fs::File::create(&conf)?.write_all(config.as_bytes())?;
    let child = Command::new(program)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .spawn()?;
    let running = Running {
        h1: SocketAddr::from(([127, 0, 0, 1], p1)),
        h2: SocketAddr::from(([127, 0, 0, 1], p2)),
        child,
        _dir: Some(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(running.h2).is_err() {
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(running._dir.as_ref().unwrap().path().join("error.log"));
            return Err(format!("nginx did not start: {}", log.unwrap_or_default()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(running))
}

/// `--child serve-dir ours|tower ROOT nodelay|defaults`: the server, until
/// its stdin closes.
pub(crate) fn child(args: &[String]) -> Result<(), BoxError> {
    let [kind, root, nodelay] = args else {
        return Err("--child serve-dir ours|tower ROOT nodelay|defaults".into());
    };
    let nodelay = nodelay == "nodelay";
    let app = match kind.as_str() {
        "ours" => axum::Router::new().nest_service("/files", mmap_body::serve::ServeDir::new(root)),
        "tower" => {
            axum::Router::new().nest_service("/files", tower_http::services::ServeDir::new(root))
        }
        "memory" => {
            let mut app = axum::Router::new();
            for entry in std::fs::read_dir(root)? {
                let path = entry?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if std::fs::metadata(&path)?.len() <= 1 << 20 {
                    let bytes = bytes::Bytes::from(std::fs::read(&path)?);
                    app = app.route(
                        &format!("/files/{name}"),
                        axum::routing::get(move || async move { bytes.clone() }),
                    );
                }
            }
            app
        }
        other => return Err(format!("unknown server `{other}`").into()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let server = if nodelay {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            tokio::spawn(async move { axum::serve(listener, app).await })
        } else {
            tokio::spawn(async move { axum::serve(listener, app).await })
        };
        // Until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        server.abort();
        Ok::<_, BoxError>(())
    })
}
