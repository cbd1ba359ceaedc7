//! [`ReplayLayer`].

use tower_layer::Layer;

use super::Replay;

/// Applies [`Replay`] to a service: `Content-Length` from the body's exact
/// size, and request bodies that a retry can send again.
///
/// See the [module docs](crate::replay) for where it goes in a stack.
#[derive(Debug, Clone, Copy)]
pub struct ReplayLayer {
    max_replay_bytes: usize,
}

impl ReplayLayer {
    /// A layer that records at most `max_replay_bytes` of each streamed
    /// request body for replay. Bodies that are cheap to clone (such as
    /// [`MmapBody`](crate::MmapBody)) are replayable at any size.
    pub fn new(max_replay_bytes: usize) -> ReplayLayer {
        ReplayLayer { max_replay_bytes }
    }
}

impl<S> Layer<S> for ReplayLayer {
    type Service = Replay<S>;

    fn layer(&self, inner: S) -> Replay<S> {
        Replay::new(inner, self.max_replay_bytes)
    }
}
