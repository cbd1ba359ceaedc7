//! Interop with programs no one here wrote (issue #22): nginx as an
//! upstream, in front of this crate's proxy and over TLS; curl as a
//! downloader; Python HTTP/2 (`h2`) and HTTP/1.1 (`aiohttp`) servers;
//! `multipart::Form` uploads read by python-multipart and by moto, a real
//! S3 (issue #34); a headless Chromium playing and seeking a video. Every peer is a real
//! program started by its test on 127.0.0.1 and stopped when the test
//! ends (killed on drop), and every case asserts what the peer observed:
//! its access log, its stored file, its own hash.
//!
//! `.ci/interop-setup` installs the programs from Debian's packages (curl,
//! nginx, Chromium, ffmpeg, Node.js); the tests make what needs no root
//! themselves, under `target/interop/`: a venv with the Python peers'
//! packages (pip) and playwright-core, which drives Chromium (npm). A peer
//! that cannot be found or installed is skipped with a message saying so,
//! unless `MMAP_BODY_INTEROP=require` (set by `.ci/run`), where it fails
//! the test.
//!
//! Each case also writes its row of the README's "Interop" table to
//! `target/interop/results/`; `.ci/interop-table` prints the table from
//! the last run's rows.

mod browser;
mod curl;
#[cfg(feature = "download")]
mod download;
#[cfg(feature = "multipart")]
mod forms;
mod nginx;
mod python;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Where `.ci/interop-setup` put the venv and the npm packages, and where
/// the cases write their rows: `MMAP_BODY_INTEROP_DIR`, or
/// `target/interop/` of this checkout.
pub(crate) fn setup_dir() -> PathBuf {
    std::env::var_os("MMAP_BODY_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop"))
}

/// A peer the suite found, with the version it printed.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The program to run.
    pub(crate) program: PathBuf,
    /// Its version, as the table shows it (`nginx/1.22.1`).
    pub(crate) version: String,
}

/// The peer `program`, asked for its version with `args` (the first line
/// it prints, on stdout or stderr, trimmed by `version`), or `None` after
/// saying why the case is skipped; a panic instead under
/// `MMAP_BODY_INTEROP=require`.
pub(crate) fn peer(
    program: impl AsRef<Path>,
    args: &[&str],
    version: impl Fn(&str) -> Option<String>,
) -> Option<Peer> {
    let program = which(program.as_ref());
    let program = program.as_path();
    let found = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            text.lines().find_map(|line| version(line.trim()))
        });
    match found {
        Some(version) => Some(Peer {
            program: program.to_owned(),
            version,
        }),
        None => {
            missing(&format!("{} ({})", program.display(), args.join(" ")));
            None
        }
    }
}

/// `program` as a path: looked up in `PATH` when it is a bare name (a
/// driver that takes a path, as playwright does, needs one).
fn which(program: &Path) -> PathBuf {
    if program.components().count() > 1 {
        return program.to_owned();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.to_owned())
}

/// Says that `what` is missing: a skip, or under
/// `MMAP_BODY_INTEROP=require` a failure.
pub(crate) fn missing(what: &str) {
    let message =
        format!("interop peer missing: {what} did not run; `.ci/interop-setup` installs the peers");
    if std::env::var("MMAP_BODY_INTEROP").as_deref() == Ok("require") {
        panic!("{message} (MMAP_BODY_INTEROP=require)");
    }
    eprintln!("skipped: {message}");
}

/// Writes this case's row of the README's Interop table (`peer`,
/// `version`, `protocol`, what was checked) to
/// `target/interop/results/<key>.row`.
pub(crate) fn record(key: &str, peer: &str, version: &str, protocol: &str, checked: &str) {
    let dir = setup_dir().join("results");
    std::fs::create_dir_all(&dir).expect("the results directory");
    let row = format!("| {peer} | {version} | {protocol} | {checked} |\n");
    std::fs::write(dir.join(format!("{key}.row")), row).expect("write the row");
}

/// Runs `program` with `args` to install something; its output is shown
/// only when it fails (then the peer counts as missing).
fn install(program: &str, args: &[&str], dir: &Path) -> bool {
    match std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            false
        }
    }
}

/// One install at a time in this process (two tests may want the venv).
static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The Python of a venv under [`setup_dir`] holding `packages` (pinned
/// `name==version`), made and filled with pip on first use; `None` (after
/// [`missing`]) when that fails (no `python3`, no registry).
pub(crate) fn venv(packages: &[&str]) -> Option<PathBuf> {
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = setup_dir();
    let python = dir.join("venv/bin/python");
    let have = |package: &str| {
        let (name, version) = package.split_once("==").expect("a pinned package");
        // `pip show` knows `moto`, not `moto[server]`.
        let name = name.split('[').next().unwrap_or(name);
        std::process::Command::new(&python)
            .args(["-m", "pip", "show", name])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l == format!("Version: {version}"))
            })
            .unwrap_or(false)
    };
    if packages.iter().all(|p| have(p)) {
        return Some(python);
    }
    std::fs::create_dir_all(&dir).expect("the interop directory");
    let ok = (python.exists() || install("python3", &["-m", "venv", "venv"], &dir))
        && install(
            python.to_str().expect("a UTF-8 path"),
            &[
                &["-m", "pip", "install", "-q", "--disable-pip-version-check"],
                packages,
            ]
            .concat(),
            &dir,
        );
    if !ok {
        missing(&format!(
            "a venv with {packages:?} (python3 -m venv; pip install)"
        ));
        return None;
    }
    Some(python)
}

/// A directory under [`setup_dir`] whose `node_modules` holds `package`
/// (`name@version`), installed with npm on first use; `None` (after
/// [`missing`]) when that fails.
pub(crate) fn npm_dir(package: &str) -> Option<PathBuf> {
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = setup_dir().join("node");
    let (name, version) = package.rsplit_once('@').expect("a pinned package");
    let manifest = dir.join("node_modules").join(name).join("package.json");
    let installed = std::fs::read_to_string(&manifest)
        .map(|m| m.contains(&format!("\"version\": \"{version}\"")))
        .unwrap_or(false);
    if installed {
        return Some(dir);
    }
    std::fs::create_dir_all(&dir).expect("the interop directory");
    if !install(
        "npm",
        &["install", "--silent", "--no-audit", "--no-fund", package],
        &dir,
    ) {
        missing(&format!("{package} (npm install)"));
        return None;
    }
    Some(dir)
}

/// A port on 127.0.0.1 that was free a moment ago, for a program that
/// takes its port from a config file.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until 127.0.0.1:`port` accepts connections (10 s at most).
pub(crate) async fn wait_for_port(port: u16, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `command`, which prints `LISTENING <port>` as its first line
/// once it listens on 127.0.0.1 (the Python peers do); the child is killed
/// when the returned handle drops.
pub(crate) async fn spawn_listening(
    mut command: tokio::process::Command,
    what: &str,
) -> (tokio::process::Child, u16) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} printed nothing within 20 s"))
        .expect("read its stdout")
        .unwrap_or_else(|| panic!("{what} ended before it listened"));
    let port = first
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what} printed {first:?}, not LISTENING <port>"));
    // The rest of its stdout, drained so that it never blocks on a pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// A body that truncates the file under it to `truncate_to` bytes once it
/// has yielded `after` bytes: a file cut short mid-upload, at a place the
/// test chooses, whatever the peer's speed.
pub(crate) struct TruncateAfter<B> {
    inner: B,
    path: PathBuf,
    after: u64,
    truncate_to: u64,
    yielded: u64,
}

impl<B> TruncateAfter<B> {
    /// `inner`, whose file is at `path`.
    pub(crate) fn new(inner: B, path: &Path, after: u64, truncate_to: u64) -> TruncateAfter<B> {
        TruncateAfter {
            inner,
            path: path.to_owned(),
            after,
            truncate_to,
            yielded: 0,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TruncateAfter<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            let before = this.yielded;
            this.yielded += frame.data_ref().map_or(0, |d| d.len() as u64);
            if before < this.after && this.yielded >= this.after {
                mmap_body_devkit::files::truncate(&this.path, this.truncate_to);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
