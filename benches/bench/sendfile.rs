//! The limits, behind a hand-written HTTP/1.1 head: `sendfile(2)` (no copy
//! in user space nor from it), and `write(2)` of a resident buffer (the one
//! copy into the kernel that every sender through hyper's `write()` makes).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;

use crate::measure::time_limit;
use mmap_body_devkit::BoxError;

/// The physical limit: a request head written by hand, then the kernel
/// copies the file into the socket with `sendfile(2)`; no user-space
/// buffer, no page mapped into this process.
#[cfg(target_os = "linux")]
pub(crate) fn sendfile_upload(
    addr: SocketAddr,
    path: &Path,
    size: u64,
) -> Result<String, BoxError> {
    use std::os::fd::AsRawFd;

    let file = std::fs::File::open(path)?;
    let mut socket = connect_with_head(addr, size)?;
    let mut offset: libc::off_t = 0;
    while (offset as u64) < size {
        // Linux sends at most 0x7ffff000 bytes per call.
        let count = (size - offset as u64).min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the whole call (`socket` and
        // `file` live to the end of this function) and `offset` points to an
        // `off_t` that the kernel may update.
        let sent =
            unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut offset, count) };
        if sent < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err.into());
        }
        if sent == 0 {
            return Err("sendfile sent nothing: the file shrank".into());
        }
    }
    read_response(&mut socket)
}

/// The floor of a `write()`-based sender: the same head, then the whole
/// `buffer` (already in memory: no mapping, no frames, no runtime, no
/// hyper) written in 1 MiB `write(2)`s, as hyper writes 1 MiB frames.
pub(crate) fn write_upload(addr: SocketAddr, buffer: &[u8]) -> Result<String, BoxError> {
    let mut socket = connect_with_head(addr, buffer.len() as u64)?;
    for chunk in buffer.chunks(1 << 20) {
        socket.write_all(chunk)?;
    }
    read_response(&mut socket)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn sendfile_upload(
    _addr: SocketAddr,
    _path: &Path,
    _size: u64,
) -> Result<String, BoxError> {
    Err("sendfile(2) is Linux only".into())
}

/// A connection to the bench's server with the request head of a `size`
/// byte PUT already written, both directions bounded in time.
fn connect_with_head(addr: SocketAddr, size: u64) -> Result<std::net::TcpStream, BoxError> {
    let mut socket = std::net::TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(time_limit(size)))?;
    socket.set_write_timeout(Some(time_limit(size)))?;
    write!(
        socket,
        "PUT /upload HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {size}\r\n\r\n"
    )?;
    Ok(socket)
}

/// Reads one HTTP/1.1 response with a `content-length` and returns its body.
pub(crate) fn read_response(socket: &mut std::net::TcpStream) -> Result<String, BoxError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk)?;
        if n == 0 {
            return Err("the server closed the connection before answering".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("the server answered: {head}").into());
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or("the response has no content-length")?;
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk)?;
        if n == 0 {
            return Err("the server closed the connection mid-answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned())
}
