//! Test files: temp files of deterministic, incompressible bytes, their
//! SHA-256, and the changes tests make to a file under a body.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// A temp file of `len` pseudo-random bytes, removed with its directory.
pub struct TestFile {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub len: u64,
    pub sha256: String,
}

/// Deterministic, incompressible bytes: xorshift64*.
pub fn pattern(seed: u64, buf: &mut [u8]) -> u64 {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    x
}

pub fn test_file(len: u64) -> TestFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("body.bin");
    let mut file = std::fs::File::create(&path).expect("create");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut seed = len ^ 0x9e37_79b9_7f4a_7c15;
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        seed = pattern(seed, &mut buf[..n]);
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    file.sync_all().expect("sync");
    TestFile {
        dir,
        path,
        len,
        sha256: hex(&hasher.finalize()),
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex, as `sha256` writes it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cuts the file at `path` to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// How a test changes a file under a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Cut to 1 MiB.
    Truncate,
    /// The same bytes, a modification time 5 s in the future.
    Touch,
}

pub fn change(path: &Path, how: Change) {
    match how {
        Change::Truncate => truncate(path, 1 << 20),
        Change::Touch => std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap(),
    }
}
