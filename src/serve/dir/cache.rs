//! Open files kept across requests, as nginx's `open_file_cache`: bounded,
//! least recently used first out, and checked on every use.
//!
//! A kept file is used again only while a `stat` of its path still shows
//! the file it was opened as ([`Identity`]: device, inode, size,
//! modification and change times) and its body is intact (no break of its
//! read lease came, no page of its mapping was lost). A file written in
//! place, truncated, renamed over or replaced through a symbolic link is
//! seen by the first request after the change, which opens the path again.

use std::collections::HashMap;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::FileBody;

/// The default [`ServeDir::open_file_cache`](super::ServeDir::open_file_cache).
pub(super) const DEFAULT_OPEN_FILES: usize = 256;

/// What names a version of a file at a path, as `stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

impl Identity {
    pub(super) fn of(meta: &Metadata) -> Identity {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Identity {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The open files, shared by every clone of a `ServeDir`.
#[derive(Debug)]
pub(super) struct OpenFiles {
    max: usize,
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    files: HashMap<PathBuf, Entry>,
    /// Counts uses; an entry's `used` is the count at its last use.
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    body: FileBody,
    identity: Identity,
    used: u64,
}

impl OpenFiles {
    /// Keeps at most `max` files open (0: none).
    pub(super) fn new(max: usize) -> OpenFiles {
        OpenFiles {
            max,
            kept: Mutex::default(),
        }
    }

    /// The most files kept.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// The body kept for `path`, if the file there is still the one
    /// opened (`now` is what a `stat` of the path just said); a kept file
    /// that no longer is goes.
    pub(super) fn get(&self, path: &Path, now: &Metadata) -> Option<FileBody> {
        if self.max == 0 {
            return None;
        }
        let identity = Identity::of(now);
        let mut kept = crate::sync::lock(&self.kept);
        kept.clock += 1;
        let clock = kept.clock;
        let entry = kept.files.get_mut(path)?;
        if entry.identity == identity && entry.body.intact() {
            entry.used = clock;
            return Some(entry.body.clone());
        }
        kept.files.remove(path);
        None
    }

    /// Keeps `body`, opened from `path` as `meta` says, in place of the
    /// least recently used file when full.
    pub(super) fn put(&self, path: &Path, meta: &Metadata, body: &FileBody) {
        if self.max == 0 {
            return;
        }
        let mut kept = crate::sync::lock(&self.kept);
        kept.clock += 1;
        let used = kept.clock;
        if kept.files.len() >= self.max && !kept.files.contains_key(path) {
            let oldest = kept
                .files
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(path, _)| path.clone());
            if let Some(oldest) = oldest {
                kept.files.remove(&oldest);
            }
        }
        kept.files.insert(
            path.to_path_buf(),
            Entry {
                body: body.clone(),
                identity: Identity::of(meta),
                used,
            },
        );
    }

    /// How many files are kept open.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        crate::sync::lock(&self.kept).files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> (PathBuf, FileBody, Metadata) {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let (body, meta) = FileBody::open_with_metadata(&path).unwrap();
        (path, body, meta)
    }

    #[test]
    fn keeps_at_most_max_and_drops_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = OpenFiles::new(2);
        let (a, body_a, meta_a) = file(dir.path(), "a", "a");
        let (b, body_b, meta_b) = file(dir.path(), "b", "b");
        let (c, body_c, meta_c) = file(dir.path(), "c", "c");
        cache.put(&a, &meta_a, &body_a);
        cache.put(&b, &meta_b, &body_b);
        assert!(cache.get(&a, &meta_a).is_some());
        cache.put(&c, &meta_c, &body_c);
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&b, &meta_b).is_none(),
            "b was the least recently used"
        );
        assert!(cache.get(&a, &meta_a).is_some());
        assert!(cache.get(&c, &meta_c).is_some());
    }

    #[test]
    fn a_changed_file_is_not_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = OpenFiles::new(8);
        let (a, body, meta) = file(dir.path(), "a", "first");
        cache.put(&a, &meta, &body);
        assert!(cache.get(&a, &std::fs::metadata(&a).unwrap()).is_some());
        // Renamed over: a new inode at the path, same size.
        let new = dir.path().join("new");
        std::fs::write(&new, "other").unwrap();
        std::fs::rename(&new, &a).unwrap();
        assert!(cache.get(&a, &std::fs::metadata(&a).unwrap()).is_none());
        assert_eq!(cache.len(), 0, "the stale file was let go");
    }

    #[test]
    fn zero_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = OpenFiles::new(0);
        let (a, body, meta) = file(dir.path(), "a", "a");
        cache.put(&a, &meta, &body);
        assert!(cache.get(&a, &meta).is_none());
    }
}
