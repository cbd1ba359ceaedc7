//! [`Warm`] without tokio: a plain mapping, every frame ready at once.

use std::sync::Arc;
use std::task::{Context, Poll};

use super::Warm;
use crate::mmap::mapping::Mapping;

#[derive(Debug, Default)]
pub(super) struct State;

pub(super) fn reads_ahead(_warm: &Warm) -> bool {
    false
}

pub(super) fn finished(_warm: &mut Warm) {}

pub(super) fn defer(cx: &mut Context<'_>) {
    cx.waker().wake_by_ref();
}

pub(super) fn poll_ready(
    _warm: &mut Warm,
    _mapping: &Arc<Mapping>,
    (_start, most, _limit): (usize, usize, usize),
    _load_pages: bool,
    _cx: &mut Context<'_>,
) -> Poll<usize> {
    Poll::Ready(most)
}
