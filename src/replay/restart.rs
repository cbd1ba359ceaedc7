//! Which bodies restart by cloning, and how: [`Restart`], the three
//! functions a cloned [`Source`](super::source::Source) needs for one body
//! type.
//!
//! The crate's own cheap bodies ([`MmapBody`], [`FileBody`], [`Full<Bytes>`],
//! [`Empty<Bytes>`]) are known by type. A [`ReplayBody`] of any inner body
//! restarts by cloning too, whatever the inner body is, but a generic type
//! cannot be recognised behind `dyn Any`; so every `ReplayBody<X>` type,
//! when one is first made, leaves its [`Restart`] in a registry keyed by its
//! `TypeId`, where a [`ReplayLayer`](super::ReplayLayer) handed such a body
//! finds it. That is how a body the user declared restartable
//! ([`ReplayBody::restartable`]), or one already wrapped by another replay
//! layer, passes a `ReplayLayer` replayable at any size and never recorded.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use bytes::Bytes;
use http_body::Body;
use http_body_util::{Empty, Full};

use super::ReplayBody;
use crate::error::Error;
use crate::sync::{read, write};
use crate::{FileBody, MmapBody};

/// How to restart a body of type `B` by cloning it.
pub(super) struct Restart<B> {
    /// A fresh copy from the start; `None` if none can be made.
    pub(super) clone: fn(&B) -> Option<B>,
    /// Whether a copy would still send every byte: `Ok(false)` once it
    /// cannot, `Err` with the reason once the body changed (a file behind
    /// it truncated or modified).
    pub(super) intact: fn(&B) -> Result<bool, Error>,
    /// A copy from an offset on, where the body can be sliced; `None`
    /// where it cannot (the copy then skips its first bytes).
    pub(super) slice: fn(&B, u64) -> Option<Result<B, Error>>,
}

impl<B> Clone for Restart<B> {
    fn clone(&self) -> Restart<B> {
        *self
    }
}

impl<B> Copy for Restart<B> {}

impl<B: Clone> Restart<B> {
    /// For a body whose clones restart it and that has no other way to
    /// say whether it changed.
    pub(super) fn by_clone() -> Restart<B> {
        Restart {
            clone: |body| Some(body.clone()),
            intact: |_| Ok(true),
            slice: |_, _| None,
        }
    }
}

impl<B: 'static> Restart<B> {
    /// How `B` restarts, if it is known to: one of the crate's cheap
    /// bodies, or a [`ReplayBody`] type registered by [`register`].
    pub(super) fn find() -> Option<Restart<B>> {
        let id = TypeId::of::<B>();
        if id == TypeId::of::<MmapBody>() {
            cast(Restart::<MmapBody> {
                clone: |body| Some(body.clone()),
                intact: |body| body.verify().map(|()| true),
                slice: |body, offset| Some(body.slice(offset..)),
            })
        } else if id == TypeId::of::<FileBody>() {
            cast(Restart::<FileBody> {
                clone: |body| Some(body.clone()),
                intact: |body| body.verify().map(|()| true),
                slice: |body, offset| Some(body.slice(offset..)),
            })
        } else if id == TypeId::of::<Full<Bytes>>() {
            cast(Restart::<Full<Bytes>>::by_clone())
        } else if id == TypeId::of::<Empty<Bytes>>() {
            cast(Restart::<Empty<Bytes>>::by_clone())
        } else {
            let registry = read(registry());
            registry.get(&id)?.downcast_ref::<Restart<B>>().copied()
        }
    }
}

/// `restart` as the same type under another name, when it is.
fn cast<T: 'static, U: 'static>(restart: Restart<T>) -> Option<Restart<U>> {
    (&restart as &dyn Any).downcast_ref::<Restart<U>>().copied()
}

/// The [`Restart`] of each `ReplayBody<X>` type made so far.
type Registry = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

fn registry() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Leaves the [`Restart`] of `ReplayBody<X>` in the registry, once per
/// type (a read lock after the first time).
pub(super) fn register<X: Body + 'static>() {
    let id = TypeId::of::<ReplayBody<X>>();
    if read(registry()).contains_key(&id) {
        return;
    }
    let restart = Restart::<ReplayBody<X>> {
        clone: |body| Some(body.clone()),
        intact: ReplayBody::check_replayable,
        slice: |body, offset| Some(body.resume_from(offset)),
    };
    write(registry())
        .entry(id)
        .or_insert_with(|| Box::new(restart));
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body of the user's own, unknown to the crate.
    #[derive(Clone)]
    struct Mine(Full<Bytes>);

    impl Body for Mine {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::pin::Pin::new(&mut self.0).poll_frame(cx)
        }
    }

    #[test]
    fn the_crates_cheap_bodies_are_known() {
        assert!(Restart::<Full<Bytes>>::find().is_some());
        assert!(Restart::<Empty<Bytes>>::find().is_some());
        assert!(Restart::<MmapBody>::find().is_some());
        assert!(Restart::<Mine>::find().is_none());
    }

    #[tokio::test]
    async fn a_replay_body_type_is_found_once_one_was_made() {
        // Before any was made: unknown.
        assert!(Restart::<ReplayBody<Mine>>::find().is_none());
        let body = ReplayBody::restartable(Mine(Full::new(Bytes::from_static(b"abc"))));
        let restart = Restart::<ReplayBody<Mine>>::find().expect("registered when made");
        let copy = (restart.clone)(&body).expect("a copy");
        assert_eq!((restart.intact)(&body).ok(), Some(true));
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "abc");
        let tail = (restart.slice)(&body, 1).expect("sliced").unwrap();
        assert_eq!(tail.collect().await.unwrap().to_bytes(), "bc");
    }
}
