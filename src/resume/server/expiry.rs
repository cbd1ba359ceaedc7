//! Expiry: an upload lives `max-age` after its creation; then it is
//! forgotten and its file removed.

use std::sync::Arc;

use super::store::Upload;
use super::Uploads;

impl Uploads {
    /// The upload `id`, unless it expired (then it is forgotten).
    pub(super) fn find(&self, id: &str) -> Option<Arc<Upload>> {
        let upload = self.inner.store.get(id)?;
        let expired = self
            .inner
            .limits
            .max_age
            .is_some_and(|age| upload.created.elapsed() > age);
        if expired {
            self.inner.store.forget(id, &upload);
            return None;
        }
        Some(upload)
    }
}
