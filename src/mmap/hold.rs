//! The end of an attempt under the `SIGBUS` guard: its last byte waits
//! until no frame it handed out can still be read from the file. Either
//! the holder dropped them (a transport writes and drops its frames), or
//! they are detached: their pages swapped in place for a private copy
//! ([`Mapping::detach`]). A detach is bounded by the memory the process may
//! still take (a consumer keeping gigabytes of frames gets an error, not
//! the OOM killer: the copy is memory the kernel cannot reclaim) and, inside
//! a tokio runtime, runs on the blocking pool, not on the worker.

use std::sync::Arc;
use std::task::{ready, Context, Poll};

use super::mapping::Mapping;
use super::{guard, sys, MmapBody};
use crate::error::Error;

/// A detach running on the blocking pool.
#[derive(Debug, Default)]
pub(super) struct Detaching {
    #[cfg(feature = "tokio")]
    task: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

/// Where each detach ran, by the mapping's address, for the tests.
#[cfg(test)]
static DETACHED_ON: std::sync::Mutex<Vec<(usize, std::thread::ThreadId)>> =
    std::sync::Mutex::new(Vec::new());

/// Detaches `ranges` of `mapping` (see [`Mapping::detach`]).
fn detach(mapping: &Mapping, ranges: &[(usize, usize)]) -> Result<(), Error> {
    #[cfg(test)]
    crate::sync::lock(&DETACHED_ON)
        .push((mapping.map.as_ptr() as usize, std::thread::current().id()));
    mapping.detach(ranges)
}

impl Detaching {
    /// Starts detaching `ranges` on the blocking pool, inside a tokio
    /// runtime; elsewhere detaches them at once and says how it went.
    fn start(mapping: &Arc<Mapping>, ranges: Vec<(usize, usize)>) -> Result<Detaching, Error> {
        #[cfg(feature = "tokio")]
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mapping = Arc::clone(mapping);
            let task = runtime.spawn_blocking(move || detach(&mapping, &ranges));
            return Ok(Detaching { task: Some(task) });
        }
        detach(mapping, &ranges)?;
        Ok(Detaching::default())
    }

    /// Ready once no detach runs: with its outcome, if one did.
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<(), Error>>> {
        #[cfg(feature = "tokio")]
        if let Some(task) = &mut self.task {
            let done = ready!(std::pin::Pin::new(task).poll(cx));
            self.task = None;
            return Poll::Ready(Some(done.unwrap_or_else(|joined| {
                Err(Error::io(
                    "the copy of the frames a consumer holds did not finish",
                    std::io::Error::other(joined.to_string()),
                ))
            })));
        }
        let _ = cx;
        Poll::Ready(None)
    }
}

#[cfg(feature = "tokio")]
use std::future::Future;

/// The error for a consumer that holds `held` bytes of frames when the
/// process may take only `room` more.
fn too_much(mapping: &Mapping, held: u64, room: u64) -> Error {
    Error::io(
        format!(
            "the consumer of {} keeps {held} bytes of its frames to the end (collect(), \
             to_bytes, a channel that keeps them), and copying them to keep them safe from \
             changes to the file would take more memory than the process may still take \
             ({room} bytes); stream the body instead of keeping it, or take it whole with \
             Bytes::from(body)",
            mapping.name()
        ),
        std::io::Error::from(std::io::ErrorKind::OutOfMemory),
    )
}

impl MmapBody {
    /// Ready once the body's tail may be read and sent: no frame of this
    /// attempt can be read from the file any more. Without the guard (a
    /// page the file lost raises `SIGBUS` where it is read, so nobody can
    /// read zeros) at once.
    pub(super) fn poll_released(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(done) = ready!(self.detaching.poll_done(cx)) {
            return Poll::Ready(done);
        }
        let held = match &self.in_flight {
            Some(in_flight) if guard::is_active() => in_flight.count(),
            _ => 0,
        };
        if held == 0 {
            return Poll::Ready(Ok(()));
        }
        if self.held_before.is_none_or(|before| held < before) {
            // Frames are being dropped (or this is the first look): let
            // the transport write what it holds. On tokio this task runs
            // again only after the runtime polled its I/O.
            self.held_before = Some(held);
            self.warm.defer(cx);
            return Poll::Pending;
        }
        // Nothing dropped since the last look: the consumer keeps its
        // frames (or its writes are stuck). Waiting could hang it, so the
        // frames it holds are detached from the file, once the file is
        // checked (a truncation already visible copies nothing) and if the
        // copy fits in half the memory the process may still take.
        self.mapping.check_file(self.end)?;
        let Some(in_flight) = &self.in_flight else {
            return Poll::Ready(Ok(()));
        };
        let ranges = in_flight.ranges();
        let bytes: u64 = ranges.iter().map(|(start, end)| (end - start) as u64).sum();
        if let Some(room) = sys::headroom() {
            if bytes > room / 2 {
                return Poll::Ready(Err(too_much(&self.mapping, bytes, room)));
            }
        }
        self.detaching = Detaching::start(&self.mapping, ranges)?;
        match ready!(self.detaching.poll_done(cx)) {
            Some(done) => Poll::Ready(done),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(all(test, feature = "tokio", target_os = "linux", not(mmap_body_portable)))]
mod tests {
    use std::io::Write;

    use bytes::Bytes;
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn frames_kept_to_the_end_are_detached_off_the_worker() {
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        // SAFETY: the temp file is private to this test.
        let body = unsafe { MmapBody::from_file(file) }.unwrap();
        assert!(guard::is_active(), "the first mapping installs the guard");
        let base = Bytes::from(body.clone()).as_ptr() as usize;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // `collect` keeps every frame: the last byte waits for no drop,
        // and the frames are detached.
        let all = runtime.block_on(body.collect()).unwrap().to_bytes();
        assert!(all == data, "the bytes kept are the file's");
        let on: Vec<_> = crate::sync::lock(&DETACHED_ON)
            .iter()
            .filter(|(at, _)| *at == base)
            .map(|(_, thread)| *thread)
            .collect();
        assert_eq!(on.len(), 1, "one detach of this body's frames");
        assert_ne!(
            on[0],
            std::thread::current().id(),
            "not on the runtime's thread"
        );
    }
}
