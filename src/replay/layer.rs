//! [`ReplayLayer`].

use std::sync::Arc;

use tower_layer::Layer;

use super::spill::SpillConfig;
use super::Replay;

/// Applies [`Replay`] to a service: `Content-Length` from the body's exact
/// size, and request bodies that a retry can send again.
///
/// See the [module docs](crate::replay) for where it goes in a stack.
#[derive(Debug, Clone)]
pub struct ReplayLayer {
    max_replay_bytes: usize,
    spill: Option<Arc<SpillConfig>>,
}

impl ReplayLayer {
    /// A layer that records at most `max_replay_bytes` of each streamed
    /// request body for replay, in memory. Bodies that are cheap to clone
    /// (such as [`MmapBody`](crate::MmapBody), a body given to
    /// [`ReplayBody::restartable`](crate::ReplayBody::restartable), or one
    /// already in a [`ReplayBody`](crate::ReplayBody)) are replayable at
    /// any size and never recorded.
    pub fn new(max_replay_bytes: usize) -> ReplayLayer {
        ReplayLayer {
            max_replay_bytes,
            spill: None,
        }
    }

    /// Past the in-memory cap, keeps recording each streamed body into a
    /// temp file, up to `max_bytes` in all (memory and disk); replays read
    /// it back as [`MmapBody`](crate::MmapBody) slices, zero-copy.
    ///
    /// The file has no name from the start (`O_TMPFILE`, or unlinked at
    /// once), so it is gone with the body's last clone, even if the process
    /// is killed. It is written by a thread of its own: the attempt in
    /// flight waits for the disk only if the writer falls 2 MiB behind. On
    /// Linux the writer goes past the page cache (`O_DIRECT`, 1 MiB writes)
    /// where the file system allows it and the disk keeps up (each write
    /// under 2 ms), so a spilled body does not push other files out of the
    /// page cache; a replay then reads it from the disk. If
    /// the file cannot be made or written (no such directory, no
    /// permission, disk full) or the body passes `max_bytes`, the attempt
    /// in flight goes on as it was, [`is_replayable`] turns false, and a
    /// replay fails with [`ErrorKind::SpillFailed`] or
    /// [`ErrorKind::ReplayBufferExceeded`].
    ///
    /// [`is_replayable`]: crate::ReplayBody::is_replayable
    /// [`ErrorKind::SpillFailed`]: crate::ErrorKind::SpillFailed
    /// [`ErrorKind::ReplayBufferExceeded`]: crate::ErrorKind::ReplayBufferExceeded
    #[cfg(feature = "spill")]
    #[cfg_attr(docsrs, doc(cfg(feature = "spill")))]
    pub fn spill_to_disk(mut self, max_bytes: u64) -> ReplayLayer {
        Arc::make_mut(self.spill.get_or_insert_with(Arc::default)).max_bytes = Some(max_bytes);
        self
    }

    /// Where spill files go (default: the OS temp dir,
    /// [`std::env::temp_dir`]). Only used with
    /// [`spill_to_disk`](ReplayLayer::spill_to_disk).
    #[cfg(feature = "spill")]
    #[cfg_attr(docsrs, doc(cfg(feature = "spill")))]
    pub fn spill_dir(mut self, dir: impl Into<std::path::PathBuf>) -> ReplayLayer {
        Arc::make_mut(self.spill.get_or_insert_with(Arc::default)).dir = Some(dir.into());
        self
    }
}

impl<S> Layer<S> for ReplayLayer {
    type Service = Replay<S>;

    fn layer(&self, inner: S) -> Replay<S> {
        Replay::new(inner, self.max_replay_bytes).with_spill(self.spill.clone())
    }
}
