//! The part of a recording kept on disk: frames past the in-memory cap,
//! appended to an unlinked temp file by a writer thread, and read back as
//! [`MmapBody`] slices of it.
//!
//! # Why a writer thread
//!
//! Frames are recorded inside `poll_frame`, on the async runtime's thread.
//! Measured on this project's 2-core VM (`write(2)` of 2 GiB to a temp
//! file, one frame per call): a 64 KiB write takes 12 µs at the median but
//! 164 µs at p99, a 1 MiB write 154 µs and 2.4 ms, and the worst writes
//! stall for 4–5 ms while the kernel writes back dirty pages; on a busy or
//! full disk, far longer. A runtime thread must not wait for that, so the
//! frames (reference-counted `Bytes`, not copies) go to a thread that
//! writes them. The attempt in flight never waits for the disk, unless the
//! writer falls more than [`MAX_BACKLOG`] behind: then it waits for the
//! writer to catch up, so that a disk slower than the network cannot make
//! the backlog grow without bound.
//!
//! The writer appends past the page cache where it can (see
//! [`append`](super::append)): bytes are then copied into a 1 MiB stage and
//! become readable a stage at a time, and a reader waiting for staged bytes
//! asks the writer to write them out ([`Spill::poll_written`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::append::Appender;
use crate::MmapBody;

/// How far the writer may fall behind the attempt in flight before the
/// attempt waits for it.
pub(super) const MAX_BACKLOG: u64 = 2 * 1024 * 1024;

/// Where and how much to spill, from [`ReplayLayer`](super::ReplayLayer).
#[derive(Debug, Clone, Default)]
pub(crate) struct SpillConfig {
    /// Bytes recorded in all (memory and disk); `None`: no spilling.
    pub(crate) max_bytes: Option<u64>,
    /// Where spill files go; `None`: the OS temp dir.
    pub(crate) dir: Option<PathBuf>,
}

impl SpillConfig {
    fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// A spill file and its writer.
pub(super) struct Spill {
    /// Read-only handle for mapping what was written.
    file: File,
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
}

struct State {
    queue: VecDeque<Bytes>,
    /// Bytes handed to the writer.
    queued: u64,
    /// Bytes on disk that a reader may map.
    written: u64,
    /// Bytes the writer holds no frame of any more: written or staged.
    appended: u64,
    /// A reader waits for bytes the writer holds back (staged, short of a
    /// whole stage): write them out.
    flush_wanted: bool,
    /// Why writing stopped, if it failed.
    error: Option<String>,
    /// No more frames will come; the writer may go.
    closed: bool,
    /// The writer is waiting for frames.
    writer_idle: bool,
    /// Tasks waiting for `written` to grow.
    waiters: Vec<Waker>,
}

use crate::sync::lock;

impl Spill {
    /// Creates an unlinked temp file in the configured directory and starts
    /// its writer. The file has no name from the start (`O_TMPFILE` where
    /// the kernel has it, else unlinked at once), so it disappears with its
    /// last handle, even if the process is killed.
    pub(super) fn create(config: &SpillConfig) -> io::Result<Arc<Spill>> {
        let dir = config.dir();
        let writer = temp_file(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create a spill file in `{}`: {e}", dir.display()),
            )
        })?;
        let spill = Arc::new(Spill {
            file: writer.try_clone()?,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: 0,
                written: 0,
                appended: 0,
                flush_wanted: false,
                error: None,
                closed: false,
                writer_idle: false,
                waiters: Vec::new(),
            }),
            work: Condvar::new(),
        });
        let shared = Arc::clone(&spill);
        std::thread::Builder::new()
            .name("mmap-body-spill".into())
            .stack_size(64 * 1024)
            .spawn(move || shared.run_writer(writer))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start the spill writer: {e}")))?;
        Ok(spill)
    }

    /// Hands a frame to the writer.
    pub(super) fn push(&self, data: Bytes) {
        let mut state = lock(&self.state);
        if state.closed || state.error.is_some() {
            return;
        }
        state.queued += data.len() as u64;
        state.queue.push_back(data);
        let idle = state.writer_idle;
        drop(state);
        // The writer takes everything queued each time it wakes: wake it
        // only when it is waiting.
        if idle {
            self.work.notify_one();
        }
    }

    /// Bytes on disk, or why there will be no more.
    pub(super) fn written(&self) -> Result<u64, String> {
        let state = lock(&self.state);
        match &state.error {
            Some(error) => Err(error.clone()),
            None => Ok(state.written),
        }
    }

    /// Ready once `written` is past `at` (or writing failed). Until then
    /// the writer is asked to write out what it holds back.
    pub(super) fn poll_written(&self, at: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.written > at || state.error.is_some() {
            return Poll::Ready(());
        }
        if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            state.waiters.push(cx.waker().clone());
        }
        let wake_writer = !state.flush_wanted && state.writer_idle;
        state.flush_wanted = true;
        drop(state);
        if wake_writer {
            self.work.notify_one();
        }
        Poll::Pending
    }

    /// Ready while the writer is less than [`MAX_BACKLOG`] behind.
    pub(super) fn poll_backlog(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        if state.queued - state.appended < MAX_BACKLOG || state.error.is_some() {
            return Poll::Ready(());
        }
        if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            state.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// No more frames: the writer drops what it has not written and goes,
    /// and with the last handle the file's blocks are freed.
    pub(super) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.queue.clear();
        let waiters = std::mem::take(&mut state.waiters);
        drop(state);
        self.work.notify_one();
        waiters.into_iter().for_each(Waker::wake);
    }

    /// The bytes `from..to` of the file as a body of its own: a read-only
    /// shared mapping, its pages given back as they are sent.
    pub(super) fn read(&self, from: u64, to: u64) -> io::Result<MmapBody> {
        let len = usize::try_from(to - from).map_err(io::Error::other)?;
        // SAFETY: the spill file has no name, so no other process can open
        // it (short of ptrace-level access to this one); this module only
        // ever appends to it and never truncates it, and `to` is within
        // what the writer reported written. The mapped bytes stay as they
        // are for as long as the mapping lives. (memmap2 aligns `from` to a
        // page itself.)
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(from)
                .len(len)
                .map(&self.file)?
        };
        Ok(MmapBody::from_appended_file(map))
    }

    /// The writer thread's loop: writes what is queued until the spill is
    /// closed or a write fails.
    fn run_writer(&self, file: File) {
        let mut appender = Appender::new(file);
        loop {
            let mut state = lock(&self.state);
            // Everything queued, in one go: one lock, one wake-up and few
            // system calls for many frames.
            let batch: Vec<Bytes> = loop {
                if state.closed {
                    return;
                }
                if !state.queue.is_empty() || state.flush_wanted {
                    break state.queue.drain(..).collect();
                }
                state.writer_idle = true;
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.writer_idle = false;
            };
            let flush = std::mem::take(&mut state.flush_wanted);
            drop(state);
            let result = (|| {
                appender.append(&batch)?;
                if flush {
                    appender.flush_tail()?;
                }
                Ok::<_, io::Error>(())
            })();
            drop(batch);
            let mut state = lock(&self.state);
            match result {
                Ok(()) => {
                    state.written = appender.readable();
                    state.appended = appender.appended();
                }
                Err(err) => {
                    state.error = Some(format!(
                        "writing the spill file failed after {} bytes: {err}",
                        state.written
                    ));
                    state.queue.clear();
                }
            }
            let waiters = std::mem::take(&mut state.waiters);
            let failed = state.error.is_some();
            drop(state);
            waiters.into_iter().for_each(Waker::wake);
            if failed {
                return;
            }
        }
    }
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Spill")
            .field("queued", &state.queued)
            .field("written", &state.written)
            .field("error", &state.error)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "spill")]
fn temp_file(dir: &std::path::Path) -> io::Result<File> {
    tempfile::tempfile_in(dir)
}

#[cfg(not(feature = "spill"))]
fn temp_file(_dir: &std::path::Path) -> io::Result<File> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "spilling to disk needs the `spill` feature",
    ))
}
