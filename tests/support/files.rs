//! Test files: temp files of deterministic, incompressible bytes, their
//! SHA-256, and the changes tests make to a file under a body.

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

pub use mmap_body_devkit::files::pattern;

/// A temp file of `len` bytes of [`pattern`] and their SHA-256.
pub fn test_file(len: u64) -> TestFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("body.bin");
    let mut hasher = Sha256::new();
    mmap_body_devkit::files::write_pattern(&path, len, |block| hasher.update(block))
        .expect("write the test file");
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
