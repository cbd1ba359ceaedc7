//! The store: the uploads of one [`Uploads`](super::Uploads), by id, and
//! their files in its directory, which only [`Store::write`] appends to.
//! No descriptor is kept for an upload: an append opens its file and
//! closes it when it ends, so descriptors are bounded by the appends
//! running, not by the uploads a day of clients left behind.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};

use super::append::Stopped;
use super::version::Dialect;
use super::Completed;
use crate::sync::lock;

/// The uploads of one server and the directory of their files.
#[derive(Debug)]
pub(super) struct Store {
    dir: PathBuf,
    index: Mutex<Index>,
    next: AtomicU64,
    keys: RandomState,
}

/// The uploads by id, and in the order they expire.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) by_id: HashMap<String, Arc<Upload>>,
    /// Each upload with a deadline once, under the deadline it had when it
    /// was put here (and its number, to tell uploads apart): a sweep takes
    /// the first ones and finds the upload's present deadline in its state.
    pub(super) by_deadline: BTreeMap<(Instant, u64), String>,
}

/// One upload resource.
#[derive(Debug)]
pub(super) struct Upload {
    pub(super) id: String,
    /// Its number, unique in the store.
    pub(super) n: u64,
    pub(super) path: PathBuf,
    pub(super) location: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    pub(super) state: Mutex<UploadState>,
}

/// What changes as an upload's requests arrive.
#[derive(Debug)]
pub(super) struct UploadState {
    pub(super) offset: u64,
    pub(super) length: Option<u64>,
    pub(super) complete: bool,
    /// Bumped by every request to the upload: an append that is no longer
    /// the newest stops (the draft's §4.6, "terminate the previous request").
    pub(super) generation: u64,
    /// When it expires (`max-age` after its creation, and again after its
    /// completion), `None` for never.
    pub(super) deadline: Option<Instant>,
    /// Expired or cancelled: forgotten by the store, nothing more is
    /// written or completed.
    pub(super) gone: bool,
}

impl Store {
    pub(super) fn new(dir: PathBuf) -> Store {
        Store {
            dir,
            index: Mutex::default(),
            next: AtomicU64::new(1),
            keys: RandomState::new(),
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        lock(&self.index)
    }

    /// A new upload resource at `{prefix}{id}` for the creation `req`, its
    /// file made empty in the directory, living `max_age` (`None`: until
    /// it is cancelled).
    pub(super) fn create<B>(
        &self,
        prefix: &str,
        req: &Request<B>,
        max_age: Option<Duration>,
    ) -> io::Result<Arc<Upload>> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(n);
        let id = format!("{:016x}{n:x}", hasher.finish());
        let path = self.dir.join(format!("{id}.part"));
        // Made here, written by the appends, each with a descriptor of its own.
        File::options().write(true).create_new(true).open(&path)?;
        let deadline = max_age.and_then(|age| Instant::now().checked_add(age));
        let upload = Arc::new(Upload {
            id: id.clone(),
            n,
            path,
            location: format!("{prefix}{id}"),
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            state: Mutex::new(UploadState {
                offset: 0,
                length: None,
                complete: false,
                generation: 0,
                deadline,
                gone: false,
            }),
        });
        let mut index = self.index();
        if let Some(deadline) = deadline {
            index.by_deadline.insert((deadline, n), id.clone());
        }
        index.by_id.insert(id, Arc::clone(&upload));
        Ok(upload)
    }

    /// Whether an upload's deadline may have passed at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        let index = self.index();
        index
            .by_deadline
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= now)
    }

    /// The upload `id`, expired or not.
    pub(super) fn get(&self, id: &str) -> Option<Arc<Upload>> {
        self.index().by_id.get(id).cloned()
    }

    /// Forgets the upload `id`: any append to it stops, and its file is
    /// removed unless the upload completed (then it is the application's).
    pub(super) fn forget(&self, id: &str, upload: &Upload) {
        self.index().by_id.remove(id);
        let mut state = lock(&upload.state);
        state.generation += 1;
        state.gone = true;
        if !state.complete {
            let _ = std::fs::remove_file(&upload.path);
        }
    }

    /// Writes `batch` at the upload's offset, if the append of `generation`
    /// is still the upload's newest and the bytes stay within its length
    /// and `max_size`, under the upload's lock, so that the offset an
    /// answer reports is what is on disk. `file` is the append's own
    /// descriptor, opened at its first write. Blocking.
    pub(super) fn write(
        upload: &Upload,
        generation: u64,
        batch: &[Bytes],
        max_size: Option<u64>,
        file: &mut Option<File>,
    ) -> Result<(), Stopped> {
        let mut state = lock(&upload.state);
        if state.gone {
            return Err(Stopped::Gone);
        }
        if state.generation != generation {
            return Err(Stopped::Superseded);
        }
        let len: u64 = batch.iter().map(|b| b.len() as u64).sum();
        let end = state.offset + len;
        if state.length.is_some_and(|l| end > l) || max_size.is_some_and(|m| end > m) {
            return Err(Stopped::TooLong);
        }
        let at = state.offset;
        let file = match file {
            Some(file) => file,
            None => file.insert(
                File::options()
                    .write(true)
                    .open(&upload.path)
                    .map_err(Stopped::Io)?,
            ),
        };
        file.seek(SeekFrom::Start(at)).map_err(Stopped::Io)?;
        for data in batch {
            file.write_all(data).map_err(Stopped::Io)?;
        }
        state.offset = end;
        Ok(())
    }
}

impl Upload {
    /// The upload as the application gets it, `len` bytes long.
    pub(super) fn completed(&self, len: u64, dialect: Dialect) -> Completed {
        Completed {
            dialect,
            path: self.path.clone(),
            len,
            location: self.location.clone(),
            method: self.method.clone(),
            uri: self.uri.clone(),
            headers: self.headers.clone(),
        }
    }
}
