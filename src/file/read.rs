//! A [`FileBody`](super::FileBody) without a lease: each frame read from
//! the file with `pread` (one copy), on tokio's blocking pool inside a
//! runtime, one read ahead of the frame going out, and checked after the
//! read.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::error::Error;
use crate::mmap::{read_exact_at, FileOrigin};

/// The frames of a range of a file, read with `pread`.
#[derive(Debug)]
pub(super) struct ReadBody {
    origin: Arc<FileOrigin>,
    start: u64,
    end: u64,
    pos: u64,
    chunk: usize,
    /// The read of the next frame, under way on the blocking pool.
    ahead: Option<Ahead>,
}

impl ReadBody {
    pub(super) fn new(origin: FileOrigin, chunk: usize) -> ReadBody {
        let end = origin.len;
        ReadBody {
            origin: Arc::new(origin),
            start: 0,
            end,
            pos: 0,
            chunk,
            ahead: None,
        }
    }

    pub(super) fn origin(&self) -> &FileOrigin {
        &self.origin
    }

    /// Where the range starts in the file, and where it ends.
    pub(super) fn range(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    pub(super) fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// The sub-range `from..to` of the file, from its start.
    pub(super) fn slice(&self, from: u64, to: u64) -> ReadBody {
        ReadBody {
            origin: Arc::clone(&self.origin),
            start: from,
            end: to,
            pos: from,
            chunk: self.chunk,
            ahead: None,
        }
    }

    pub(super) fn set_chunk(&mut self, chunk: usize) {
        self.chunk = chunk;
    }

    /// The file unchanged since it was opened, and still holding the range.
    pub(super) fn verify(&self) -> Result<(), Error> {
        self.origin.check(self.end)
    }

    /// The next frame: the next `chunk` bytes, read and then checked.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        let left = self.remaining();
        if left == 0 {
            return Poll::Ready(None);
        }
        let len = left.min(self.chunk as u64) as usize;
        let read = match self.ahead.take() {
            Some(ahead) if ahead.at == self.pos && ahead.len == len => match ahead.poll(cx) {
                Ok(read) => read,
                Err(ahead) => {
                    self.ahead = Some(ahead);
                    return Poll::Pending;
                }
            },
            _ => match Ahead::start(&self.origin, self.pos, len, self.end) {
                Ok(ahead) => match ahead.poll(cx) {
                    Ok(read) => read,
                    Err(ahead) => {
                        self.ahead = Some(ahead);
                        return Poll::Pending;
                    }
                },
                // Outside a runtime: read here.
                Err(()) => read(&self.origin, self.pos, len, self.end),
            },
        };
        match read {
            Ok(bytes) => {
                self.pos += len as u64;
                let next = self.remaining().min(self.chunk as u64) as usize;
                if next > 0 {
                    self.ahead = Ahead::start(&self.origin, self.pos, next, self.end).ok();
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Err(err) => {
                // Nothing more is sent from a file that changed.
                self.pos = self.end;
                Poll::Ready(Some(Err(err)))
            }
        }
    }
}

impl Clone for ReadBody {
    /// The same range from its start; the read under way stays with `self`.
    fn clone(&self) -> ReadBody {
        self.slice(self.start, self.end)
    }
}

/// Reads `len` bytes at `at`, then checks the file is unchanged and still
/// holds `..end`: the bytes are the file's as it was opened only if it
/// still is after they were read.
fn read(origin: &FileOrigin, at: u64, len: usize, end: u64) -> Result<Bytes, Error> {
    let mut buf = vec![0u8; len];
    if let Err(err) = read_exact_at(&origin.file, &mut buf, at) {
        // A file that shrank says so; any other failure is I/O.
        origin.check(end)?;
        return Err(Error::io(
            format!("could not read {} to send it", origin.name()),
            err,
        ));
    }
    origin.check(end)?;
    Ok(Bytes::from(buf))
}

/// A read on tokio's blocking pool.
#[derive(Debug)]
struct Ahead {
    at: u64,
    len: usize,
    #[cfg(feature = "tokio")]
    task: tokio::task::JoinHandle<Result<Bytes, Error>>,
    /// Without tokio no read is ever started: none can be made.
    #[cfg(not(feature = "tokio"))]
    never: std::convert::Infallible,
}

impl Ahead {
    /// The read of `len` bytes at `at` started on the blocking pool;
    /// `Err` outside a runtime (or without the feature `tokio`).
    #[cfg(feature = "tokio")]
    fn start(origin: &Arc<FileOrigin>, at: u64, len: usize, end: u64) -> Result<Ahead, ()> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ())?;
        let origin = Arc::clone(origin);
        let task = runtime.spawn_blocking(move || read(&origin, at, len, end));
        Ok(Ahead { at, len, task })
    }

    #[cfg(not(feature = "tokio"))]
    fn start(_: &Arc<FileOrigin>, _: u64, _: usize, _: u64) -> Result<Ahead, ()> {
        Err(())
    }

    /// The read's result once it is done; `self` back while it is not.
    #[cfg(feature = "tokio")]
    fn poll(mut self, cx: &mut Context<'_>) -> Result<Result<Bytes, Error>, Ahead> {
        use std::future::Future;
        use std::pin::Pin;
        match Pin::new(&mut self.task).poll(cx) {
            Poll::Pending => Err(self),
            Poll::Ready(Ok(read)) => Ok(read),
            Poll::Ready(Err(err)) => Ok(Err(Error::new(
                crate::ErrorKind::Io,
                format!("the read of the file on tokio's blocking pool failed: {err}"),
            ))),
        }
    }

    #[cfg(not(feature = "tokio"))]
    fn poll(self, _: &mut Context<'_>) -> Result<Result<Bytes, Error>, Ahead> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn origin(bytes: &[u8]) -> FileOrigin {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        FileOrigin::of(file, None).unwrap()
    }

    fn drain(mut body: ReadBody) -> Result<Vec<u8>, Error> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        loop {
            match body.poll_next(&mut cx) {
                Poll::Ready(Some(frame)) => out.extend_from_slice(&frame?),
                Poll::Ready(None) => return Ok(out),
                Poll::Pending => std::thread::yield_now(),
            }
        }
    }

    #[test]
    fn frames_outside_a_runtime_are_the_files_bytes() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let body = ReadBody::new(origin(&bytes), 4096);
        assert_eq!(drain(body.clone()).unwrap(), bytes);
        assert_eq!(drain(body.slice(5, 9000)).unwrap(), &bytes[5..9000]);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_that_shrank_is_truncated_and_one_rewritten_modified() {
        let body = ReadBody::new(origin(&[7; 9000]), 4096);
        body.origin.file.set_len(5000).unwrap();
        assert_eq!(drain(body).unwrap_err().kind(), ErrorKind::Truncated);

        let body = ReadBody::new(origin(&[7; 9000]), 4096);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::os::unix::fs::FileExt::write_at(&body.origin.file, b"x", 10).unwrap();
        assert_eq!(drain(body).unwrap_err().kind(), ErrorKind::Modified);
    }
}
