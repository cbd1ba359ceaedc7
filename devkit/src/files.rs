//! Deterministic, incompressible bytes (so that no layer can compress or
//! deduplicate them away), temp files made of them, their SHA-256, and the
//! changes tests make to a file under a body.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// Fills `buf` with the xorshift64* sequence from `seed` and returns the
/// state to continue from: the same seed always gives the same bytes.
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

/// Writes `size` bytes of [`pattern`] to a new file at `path`, a MiB at a
/// time, calling `each` with every block written (to hash it, say).
pub fn write_pattern(path: &Path, size: u64, mut each: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let mut block = vec![0u8; 1 << 20];
    let mut seed = size ^ 0x9e37_79b9_7f4a_7c15;
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        seed = pattern(seed, &mut block[..n]);
        each(&block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// A new temp dir holding one file, `name`, of `size` bytes (see
/// [`write_file`]); both go when the returned `TempDir` is dropped.
pub fn temp_file(name: &str, size: u64) -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(name);
    write_file(&path, size)?;
    Ok((dir, path))
}

/// Writes `size` bytes of [`pattern`] to a new file at `path`, written back
/// to the disk before it returns (so no writeback runs while a measurement
/// reads it).
pub fn write_file(path: &Path, size: u64) -> std::io::Result<()> {
    write_pattern(path, size, |_| {})
}

/// A temp file of `len` pseudo-random bytes, removed with its directory.
#[derive(Debug)]
pub struct TestFile {
    /// The directory, removed when dropped.
    pub dir: tempfile::TempDir,
    /// The file in it.
    pub path: PathBuf,
    /// Its length.
    pub len: u64,
    /// The SHA-256 of its bytes, in lower-case hex.
    pub sha256: String,
}

/// A temp file of `len` bytes of [`pattern`] and their SHA-256.
pub fn test_file(len: u64) -> TestFile {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("body.bin");
    let mut hasher = Sha256::new();
    write_pattern(&path, len, |block| hasher.update(block)).expect("write the test file");
    TestFile {
        dir,
        path,
        len,
        sha256: hex(&hasher.finalize()),
    }
}

/// The SHA-256 of the file at `path`, in lower-case hex, read 1 MiB at a
/// time (a peer's stored file of a GiB is never held in memory).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hex(&hasher.finalize())),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// The SHA-256 of `bytes`, in lower-case hex.
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

/// Changes the file at `path` as `how` says.
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
