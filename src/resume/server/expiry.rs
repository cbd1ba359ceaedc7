//! Expiry: an upload lives `max-age` after its creation, and again after
//! its completion; then it is forgotten and its file removed (a completed
//! upload's too: the application moves away what it keeps). Expired
//! uploads are swept by [`Uploads::sweep_expired`], on a timer a server
//! starts, and a few before each request is answered, so that a server
//! that never calls it still gets its disk back.

use std::sync::Arc;
use std::time::Instant;

use super::store::{Store, Upload};
use super::Uploads;
use crate::sync::lock;

/// Expired uploads swept before a request is answered, at most: bounded
/// work per request, and more than one, so that sweeping keeps ahead of
/// the creations.
const SWEPT_PER_REQUEST: usize = 64;

/// Where an upload stands against the clock.
enum Expiry {
    /// Alive until then (`None`: for ever).
    Until(Option<Instant>),
    /// Expired now: forgotten, its file removed.
    Expired,
}

impl Uploads {
    /// Forgets every expired upload and removes its file, and returns how
    /// many it removed. Blocking (it removes files): call it from a
    /// blocking thread, for instance on a timer:
    ///
    /// ```no_run
    /// # async fn run(uploads: mmap_body::resume::Uploads) {
    /// let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    /// loop {
    ///     every.tick().await;
    ///     let uploads = uploads.clone();
    ///     let _ = tokio::task::spawn_blocking(move || uploads.sweep_expired()).await;
    /// }
    /// # }
    /// ```
    ///
    /// Without it, each request to the store sweeps up to 64 expired
    /// uploads before it is answered, so a server that keeps getting
    /// requests keeps its disk; the timer frees it when requests stop.
    /// Work is proportional to the uploads expired, not to all uploads.
    pub fn sweep_expired(&self) -> usize {
        self.sweep(Instant::now(), usize::MAX)
    }

    /// A few expired uploads swept, on the blocking pool when there is a
    /// runtime; no hop at all when none is due.
    pub(super) async fn sweep_some(&self) {
        let now = Instant::now();
        if !self.inner.store.due(now) {
            return;
        }
        let uploads = self.clone();
        let sweep = move || uploads.sweep(now, SWEPT_PER_REQUEST);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(sweep).await),
            Err(_) => drop(sweep()),
        }
    }

    /// Sweeps the uploads whose deadline is `now` or earlier, at most
    /// `budget` of them; how many were removed.
    fn sweep(&self, now: Instant, budget: usize) -> usize {
        let store = &self.inner.store;
        let mut removed = 0;
        for _ in 0..budget {
            let upload = {
                let mut index = store.index();
                let Some(entry) = index.by_deadline.first_entry() else {
                    break;
                };
                if entry.key().0 > now {
                    break;
                }
                let n = entry.key().1;
                let id = entry.remove();
                match index.by_id.get(&id) {
                    Some(upload) if upload.n == n => Arc::clone(upload),
                    // Cancelled, or expired when it was asked for.
                    _ => continue,
                }
            };
            match expire(store, &upload, now) {
                Expiry::Expired => removed += 1,
                // Its deadline moved (it completed): back in the index.
                Expiry::Until(Some(deadline)) => {
                    let mut index = store.index();
                    index
                        .by_deadline
                        .insert((deadline, upload.n), upload.id.clone());
                }
                Expiry::Until(None) => {}
            }
        }
        removed
    }

    /// The upload `id`, unless it expired (then it is forgotten).
    pub(super) fn find(&self, id: &str) -> Option<Arc<Upload>> {
        let upload = self.inner.store.get(id)?;
        match expire(&self.inner.store, &upload, Instant::now()) {
            Expiry::Until(_) => Some(upload),
            Expiry::Expired => None,
        }
    }
}

/// Expires `upload` if its deadline is `now` or earlier: any append to it
/// stops, nothing completes it, and its file is removed.
fn expire(store: &Store, upload: &Upload, now: Instant) -> Expiry {
    let mut state = lock(&upload.state);
    match state.deadline {
        Some(deadline) if deadline <= now => {}
        deadline => return Expiry::Until(deadline),
    }
    state.generation += 1;
    state.gone = true;
    drop(state);
    {
        let mut index = store.index();
        if index.by_id.get(&upload.id).is_some_and(|u| u.n == upload.n) {
            index.by_id.remove(&upload.id);
        }
    }
    let _ = std::fs::remove_file(&upload.path);
    Expiry::Expired
}
