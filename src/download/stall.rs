//! The stall timeout: no byte for `timeout` is a drop.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// No byte for `timeout`: a drop. The deadline moves with each byte
/// without touching the timer (an `Instant` per frame); the timer is reset
/// only when the body is waiting.
pub(super) struct Stall {
    pub(super) timeout: Duration,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Stall {
    pub(super) fn new(timeout: Duration) -> Stall {
        Stall {
            timeout,
            last: Instant::now(),
            sleep: None,
        }
    }

    pub(super) fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Whether the deadline passed; otherwise a wake-up is registered.
    pub(super) fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.last + self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}
