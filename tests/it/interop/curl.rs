//! curl as the downloader of `serve::respond` behind axum (the server of
//! `tests/it/serve.rs`), over `--http1.1` and `--http2-prior-knowledge`:
//! a whole download, a single range (`-r`), a resumed partial file
//! (`-C -`), revalidation by date (`-z`) and by tag (`--etag-compare`)
//! answered `304`, and `HEAD` (`-I`). What curl wrote (its file, its
//! `--write-out` numbers, its header dump) is what is checked. Several
//! ranges at once (`-r 0-9,20-29`) are in `tests/it/multipart.rs`.

use std::path::Path;
use std::time::Duration;

use mmap_body_devkit::files::{sha256_file, test_file};

use super::{peer, record, Peer};

const LEN: u64 = 8 * 1024 * 1024 + 321;

fn curl() -> Option<Peer> {
    peer("curl", &["--version"], |line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("curl")).then(|| format!("curl {}", words.next().unwrap_or("?")))
    })
}

/// What curl reported for one transfer.
#[derive(Debug)]
struct Transfer {
    /// `%{http_code}`.
    status: u16,
    /// `%{size_download}`: body bytes it received.
    downloaded: u64,
    /// `%{http_version}`: `1.1` or `2`.
    version: String,
    /// The header block of the answer (`-D`), lower-cased names.
    headers: Vec<(String, String)>,
}

impl Transfer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs curl (`-sS`, 30 s at most) with `protocol` and `args` against
/// `url`, its header dump in `dir`.
async fn run(curl: &Peer, protocol: &str, args: &[&str], url: &str, dir: &Path) -> Transfer {
    let dump = dir.join("headers");
    let out = tokio::process::Command::new(&curl.program)
        .args(["-sS", "--max-time", "30", protocol, "-D"])
        .arg(&dump)
        .args(["-w", "%{http_code} %{size_download} %{http_version}"])
        .args(args)
        .arg(url)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(40), out)
        .await
        .expect("curl ended in time")
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl {args:?} {protocol}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `-w` prints after the body when the body goes to stdout (`-I`).
    let numbers: Vec<&str> = stdout
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let text = std::fs::read_to_string(&dump).unwrap_or_default();
    // The last header block (a `-C -` may follow nothing else, but be safe).
    let block = text
        .rsplit("\r\n\r\n")
        .find(|b| !b.is_empty())
        .unwrap_or("");
    let headers = block
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    Transfer {
        status: numbers[0].parse().unwrap(),
        downloaded: numbers[1].parse().unwrap(),
        version: numbers[2].to_owned(),
        headers,
    }
}

#[tokio::test]
async fn curl_downloads_ranges_resumes_and_revalidates() {
    let Some(curl) = curl() else { return };
    let file = test_file(LEN);
    let bytes = std::fs::read(&file.path).unwrap();
    let url = crate::serve::file_server(file.path.clone()).await;
    for (protocol, version) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();

        // Whole, keeping the server's date (-R) and tag for the checks below.
        let whole = run(
            &curl,
            protocol,
            &["-R", "--etag-save", "etag", "-o", "whole"],
            &url,
            d,
        )
        .await;
        assert_eq!((whole.status, whole.downloaded), (200, LEN), "{protocol}");
        assert_eq!(whole.version, version);
        assert_eq!(
            whole.header("content-length"),
            Some(LEN.to_string().as_str())
        );
        assert_eq!(whole.header("accept-ranges"), Some("bytes"));
        assert_eq!(sha256_file(&d.join("whole")).unwrap(), file.sha256);

        // One range.
        let range = run(
            &curl,
            protocol,
            &["-r", "1000-1999", "-o", "range"],
            &url,
            d,
        )
        .await;
        assert_eq!((range.status, range.downloaded), (206, 1000), "{protocol}");
        assert_eq!(
            range.header("content-range"),
            Some(format!("bytes 1000-1999/{LEN}").as_str())
        );
        assert_eq!(std::fs::read(d.join("range")).unwrap(), &bytes[1000..2000]);

        // A partial file of 3 MiB + 7, resumed: curl asks for the rest.
        let partial = 3 * 1024 * 1024 + 7;
        std::fs::write(d.join("partial"), &bytes[..partial]).unwrap();
        let resumed = run(&curl, protocol, &["-C", "-", "-o", "partial"], &url, d).await;
        assert_eq!(resumed.status, 206, "{protocol}");
        assert_eq!(resumed.downloaded, LEN - partial as u64);
        assert_eq!(sha256_file(&d.join("partial")).unwrap(), file.sha256);

        // Revalidation by date (the file's mtime, set by -R) and by tag.
        let by_date = run(&curl, protocol, &["-z", "whole", "-o", "again"], &url, d).await;
        assert_eq!((by_date.status, by_date.downloaded), (304, 0), "{protocol}");
        let by_tag = run(
            &curl,
            protocol,
            &["--etag-compare", "etag", "-o", "again"],
            &url,
            d,
        )
        .await;
        assert_eq!((by_tag.status, by_tag.downloaded), (304, 0), "{protocol}");
        assert!(!d.join("again").exists(), "a 304 wrote no file");

        // HEAD: the whole GET's headers and no body.
        let head = run(&curl, protocol, &["-I"], &url, d).await;
        assert_eq!((head.status, head.downloaded), (200, 0), "{protocol}");
        assert_eq!(
            head.header("content-length"),
            Some(LEN.to_string().as_str())
        );
        assert_eq!(head.header("etag"), whole.header("etag"));
    }
    record(
        "curl-1-download",
        "curl (downloading from `serve::respond`)",
        &curl.version,
        "HTTP/1.1 and HTTP/2 (prior knowledge)",
        "whole (SHA-256 of its file), `-r 1000-1999` (206, `Content-Range`), `-C -` on a 3 MiB partial file (206, only the rest sent, SHA-256 equal), `-z` and `--etag-compare` (304, nothing written), `-I`; `-r 0-9,20-29` multipart in `multipart.rs`",
    );
}
