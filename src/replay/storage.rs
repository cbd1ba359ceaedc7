//! Where a recording keeps the bytes it has pulled, and what it does once
//! it cannot keep them all: [`Storage`], the kept / spilling / lost policy.
//!
//! The first bytes stay in memory as the frames they came in (reference
//! counts, no copy), up to the cap. Past it, with a spill configured, they go
//! to a spill file ([`Spill`]) up to its limit; without one, or past the
//! limit, or when the file cannot be made or written, everything kept is
//! freed and the recording is lost: the attempt in flight goes on, and a
//! replay gets the error saying why.

use std::sync::Arc;

use bytes::Bytes;

use super::spill::{Spill, SpillConfig};
use crate::error::{Error, ErrorKind};
use crate::MmapBody;

/// The bytes a recording keeps for replay.
pub(super) struct Storage {
    /// The first bytes, as the frames they came in, up to `cap`.
    frames: Vec<Bytes>,
    /// Bytes in `frames`.
    in_memory: u64,
    cap: usize,
    spill: Spilling,
    /// Why bytes pulled are no longer all kept, once they are not.
    lost: Option<Lost>,
}

/// Whether, and where, bytes past the cap go.
enum Spilling {
    /// Nowhere: past the cap the recording is lost.
    Off,
    /// To a spill file made with the first byte past the cap, up to `limit`
    /// bytes in all (memory and disk).
    Configured {
        config: Arc<SpillConfig>,
        limit: u64,
    },
    /// To this spill file, up to `limit` bytes in all.
    Writing { spill: Arc<Spill>, limit: u64 },
}

/// Why a recording stopped keeping bytes.
#[derive(Debug, Clone)]
enum Lost {
    /// The in-memory cap was passed and no spill is configured.
    Cap(usize),
    /// The spill limit was passed.
    Limit(u64),
    /// The spill file could not be made or written.
    SpillFailed(String),
}

impl Lost {
    /// The error of a replay that needs the lost bytes, `pulled` bytes
    /// having been sent.
    fn error(&self, pulled: u64) -> Error {
        match self {
            Lost::Cap(cap) => Error::new(
                ErrorKind::ReplayBufferExceeded,
                format!(
                    "cannot replay the request body: {pulled} bytes were sent but at most \
                     {cap} are kept for replay; raise max_replay_bytes, spill to disk \
                     (ReplayLayer::spill_to_disk), or send a body that can be cloned \
                     (MmapBody, Full<Bytes>)"
                ),
            ),
            Lost::Limit(limit) => Error::new(
                ErrorKind::ReplayBufferExceeded,
                format!(
                    "cannot replay the request body: {pulled} bytes were sent but at most \
                     {limit} are kept for replay, in memory and on disk; raise the limit \
                     given to spill_to_disk"
                ),
            ),
            Lost::SpillFailed(why) => Error::new(
                ErrorKind::SpillFailed,
                format!(
                    "cannot replay the request body: the part past the in-memory cap \
                     could not be kept on disk ({why}); check the spill directory and \
                     free space"
                ),
            ),
        }
    }
}

/// Where the bytes from a position past the frames in memory are.
pub(super) enum OnDisk {
    /// Written: these bytes of the spill file, up to what is written now.
    Written(MmapBody),
    /// Handed to the writer, not written yet: wait until `spill` has
    /// written past `at`.
    Queued { spill: Arc<Spill>, at: u64 },
}

impl Storage {
    /// Keeps up to `cap` bytes in memory and, with `spill` (and its limit),
    /// the rest on disk up to that limit. A body of `exact_len` known to
    /// exceed what can be kept is lost from the start (nothing is kept).
    pub(super) fn new(
        cap: usize,
        spill: Option<Arc<SpillConfig>>,
        exact_len: Option<u64>,
    ) -> Storage {
        let spill = match spill {
            Some(config) => match config.max_bytes {
                Some(limit) => Spilling::Configured { config, limit },
                None => Spilling::Off,
            },
            None => Spilling::Off,
        };
        let keepable = match &spill {
            Spilling::Configured { limit, .. } => (*limit).max(cap as u64),
            _ => cap as u64,
        };
        let lost = match exact_len {
            Some(len) if len > keepable => Some(match &spill {
                Spilling::Configured { limit, .. } => Lost::Limit(*limit),
                _ => Lost::Cap(cap),
            }),
            _ => None,
        };
        Storage {
            frames: Vec::new(),
            in_memory: 0,
            cap,
            spill: if lost.is_some() { Spilling::Off } else { spill },
            lost,
        }
    }

    /// Every byte pulled so far is kept (or none was pulled yet).
    pub(super) fn is_lossless(&self) -> bool {
        self.lost.is_none()
    }

    /// The frame kept in memory at `index`, if any.
    pub(super) fn frame(&self, index: usize) -> Option<&Bytes> {
        match self.lost {
            Some(_) => None,
            None => self.frames.get(index),
        }
    }

    /// Keeps `data`, the frame that brought the bytes pulled to `pulled`.
    /// Returns whether it was kept in memory (as the next frame).
    pub(super) fn keep(&mut self, data: &Bytes, pulled: u64) -> bool {
        if self.lost.is_some() {
            return false;
        }
        let past_cap = pulled > self.cap as u64;
        match &self.spill {
            _ if !past_cap => {
                self.frames.push(data.clone());
                self.in_memory += data.len() as u64;
                return true;
            }
            Spilling::Off => {
                self.lose(Lost::Cap(self.cap));
            }
            Spilling::Configured { limit, .. } | Spilling::Writing { limit, .. }
                if pulled > *limit =>
            {
                let limit = *limit;
                self.lose(Lost::Limit(limit));
            }
            Spilling::Configured { config, limit } => match Spill::create(config) {
                Ok(spill) => {
                    crate::trace::trace_event!(
                        target: "mmap_body::replay",
                        tracing::Level::DEBUG,
                        cap = self.cap,
                        limit = *limit,
                        "spilling the request body to disk"
                    );
                    spill.push(data.clone());
                    self.spill = Spilling::Writing {
                        spill,
                        limit: *limit,
                    };
                }
                Err(err) => {
                    self.lose(Lost::SpillFailed(err.to_string()));
                }
            },
            Spilling::Writing { spill, .. } => spill.push(data.clone()),
        }
        false
    }

    /// The original body failed: no replay gets past that point, so
    /// nothing kept is needed any more.
    pub(super) fn free(&mut self) {
        self.lose(Lost::Cap(self.cap));
    }

    /// A spill writer that failed turns the recording lossy.
    pub(super) fn check_spill(&mut self) {
        if let Spilling::Writing { spill, .. } = &self.spill {
            if let Err(why) = spill.written() {
                self.lose(Lost::SpillFailed(why));
            }
        }
    }

    /// Where the bytes from `pos` on are, `pos` being past the frames in
    /// memory and short of `pulled`: on disk, or an error saying why they
    /// are not kept.
    pub(super) fn on_disk(&mut self, pos: u64, pulled: u64) -> Result<OnDisk, Error> {
        if let Some(lost) = &self.lost {
            return Err(lost.error(pulled));
        }
        let (Spilling::Writing { spill, .. }, Some(from)) =
            (&self.spill, pos.checked_sub(self.in_memory))
        else {
            return Err(Lost::Cap(self.cap).error(pulled));
        };
        let written = match spill.written() {
            Ok(written) => written,
            Err(why) => return Err(self.lose(Lost::SpillFailed(why)).error(pulled)),
        };
        if from >= written {
            return Ok(OnDisk::Queued {
                spill: Arc::clone(spill),
                at: from,
            });
        }
        match spill.read(from, written) {
            Ok(body) => Ok(OnDisk::Written(body)),
            Err(err) => {
                let why = format!("mapping the spill file failed: {err}");
                Err(self.lose(Lost::SpillFailed(why)).error(pulled))
            }
        }
    }

    /// The spill file being written, if any: the front of the recording
    /// waits for it when it falls too far behind.
    pub(super) fn spill(&self) -> Option<&Arc<Spill>> {
        match &self.spill {
            Spilling::Writing { spill, .. } => Some(spill),
            _ => None,
        }
    }

    /// Stops keeping bytes, for `why`, and frees what was kept.
    fn lose(&mut self, why: Lost) -> &Lost {
        if let Lost::SpillFailed(reason) = &why {
            crate::trace::trace_event!(
                target: "mmap_body::replay",
                tracing::Level::WARN,
                reason = %reason,
                "spilling the request body failed; it can no longer be replayed"
            );
            let _ = reason;
        }
        self.frames = Vec::new();
        if let Spilling::Writing { spill, .. } = &self.spill {
            spill.close();
        }
        self.spill = Spilling::Off;
        self.lost.insert(why)
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Spilling::Writing { spill, .. } = &self.spill {
            spill.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    /// Keeps frames of these lengths, as a recording pulls them.
    fn keep_all(storage: &mut Storage, lens: &[usize]) -> (u64, Vec<bool>) {
        let mut pulled = 0;
        let mut in_memory = Vec::new();
        for &len in lens {
            pulled += len as u64;
            in_memory.push(storage.keep(&frame(len), pulled));
        }
        (pulled, in_memory)
    }

    #[test]
    fn keeps_frames_in_memory_up_to_the_cap() {
        let mut storage = Storage::new(10, None, None);
        let (_, in_memory) = keep_all(&mut storage, &[4, 6]);
        assert_eq!(in_memory, [true, true]);
        assert!(storage.is_lossless());
        assert_eq!(storage.frame(1).map(Bytes::len), Some(6));
        assert_eq!(storage.frame(2), None);
        // The same frames are kept, not copies.
        let data = frame(0);
        assert!(storage.keep(&data, 10));
        assert_eq!(storage.frame(2).map(|f| f.as_ptr()), Some(data.as_ptr()));
    }

    #[test]
    fn one_byte_past_the_cap_loses_everything() {
        let mut storage = Storage::new(10, None, None);
        let (pulled, in_memory) = keep_all(&mut storage, &[4, 7]);
        assert_eq!((pulled, in_memory), (11, vec![true, false]));
        assert!(!storage.is_lossless());
        // What was kept is freed: a replay cannot start.
        assert_eq!(storage.frame(0), None);
        let err = storage.on_disk(0, pulled).err().expect("lost");
        assert_eq!(err.kind(), ErrorKind::ReplayBufferExceeded);
        let message = err.to_string();
        assert!(
            message.contains("11 bytes were sent but at most 10"),
            "{message}"
        );
        assert!(message.contains("max_replay_bytes"), "{message}");
        // Later frames are not kept either.
        assert!(!storage.keep(&frame(1), 12));
    }

    #[test]
    fn a_body_known_to_be_too_long_is_never_kept() {
        let storage = Storage::new(10, None, Some(11));
        assert!(!storage.is_lossless());
        assert!(Storage::new(10, None, Some(10)).is_lossless());
        let config = Arc::new(SpillConfig {
            max_bytes: Some(100),
            dir: None,
        });
        // With a spill, its limit is what counts.
        assert!(Storage::new(10, Some(Arc::clone(&config)), Some(100)).is_lossless());
        let mut over = Storage::new(10, Some(config), Some(101));
        let err = over.on_disk(0, 1).err().expect("lost");
        assert!(err.to_string().contains("spill_to_disk"), "{err}");
    }

    #[test]
    fn a_spill_without_a_limit_is_off() {
        let config = Arc::new(SpillConfig {
            max_bytes: None,
            dir: None,
        });
        let mut storage = Storage::new(4, Some(config), None);
        keep_all(&mut storage, &[5]);
        let err = storage.on_disk(0, 5).err().expect("lost");
        assert_eq!(err.kind(), ErrorKind::ReplayBufferExceeded);
        assert!(err.to_string().contains("max_replay_bytes"), "{err}");
    }

    #[cfg(all(feature = "spill", unix))]
    mod spilling {
        use std::time::{Duration, Instant};

        use http_body::Body;

        use super::*;

        fn spill_to(dir: &std::path::Path, limit: u64) -> Option<Arc<SpillConfig>> {
            Some(Arc::new(SpillConfig {
                max_bytes: Some(limit),
                dir: Some(dir.to_owned()),
            }))
        }

        /// Waits until the writer has written everything it was handed.
        fn written(storage: &Storage, len: u64) {
            let spill = storage.spill().expect("spilling");
            let started = Instant::now();
            while spill.written() != Ok(len) {
                // As a reader would: the writer then writes out the tail of
                // a block it holds back.
                let waker = std::task::Waker::noop();
                let _ = spill.poll_written(len - 1, &mut std::task::Context::from_waker(waker));
                assert!(started.elapsed() < Duration::from_secs(10), "{spill:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        #[test]
        fn past_the_cap_bytes_go_to_disk_and_read_back() {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = Storage::new(4, spill_to(dir.path(), 100), None);
            let parts = [&b"abcd"[..], b"efg", b"hij"];
            let mut pulled = 0;
            let mut in_memory = Vec::new();
            for part in parts {
                pulled += part.len() as u64;
                in_memory.push(storage.keep(&Bytes::from_static(part), pulled));
            }
            assert_eq!(in_memory, [true, false, false]);
            assert!(storage.is_lossless());
            written(&storage, 6);
            // From the first byte past memory, and from inside the file.
            for (pos, expected) in [(4, &b"efghij"[..]), (6, b"ghij")] {
                let Ok(OnDisk::Written(body)) = storage.on_disk(pos, pulled) else {
                    panic!("not on disk at {pos}");
                };
                assert_eq!(body.size_hint().exact(), Some(expected.len() as u64));
                assert_eq!(Bytes::from(body), expected);
            }
            // Nothing is past what was written: wait for the writer.
            let Ok(OnDisk::Queued { at, .. }) = storage.on_disk(10, pulled + 1) else {
                panic!("not queued");
            };
            assert_eq!(at, 6);
            // The spill file has no name.
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }

        #[test]
        fn past_the_spill_limit_everything_is_lost() {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = Storage::new(4, spill_to(dir.path(), 10), None);
            let (pulled, _) = keep_all(&mut storage, &[4, 6]);
            assert!(storage.is_lossless());
            assert!(!storage.keep(&frame(1), pulled + 1));
            assert!(!storage.is_lossless());
            assert!(storage.spill().is_none(), "the spill file is closed");
            let err = storage.on_disk(4, pulled + 1).err().expect("lost");
            assert_eq!(err.kind(), ErrorKind::ReplayBufferExceeded);
            assert!(err.to_string().contains("at most 10 are kept"), "{err}");
        }

        #[test]
        fn a_spill_file_that_cannot_be_made_loses_the_recording() {
            let dir = tempfile::tempdir().unwrap();
            let missing = dir.path().join("missing");
            let mut storage = Storage::new(4, spill_to(&missing, 100), None);
            keep_all(&mut storage, &[4, 1]);
            assert!(!storage.is_lossless());
            let err = storage.on_disk(4, 5).err().expect("lost");
            assert_eq!(err.kind(), ErrorKind::SpillFailed);
            assert!(err.to_string().contains("missing"), "{err}");
        }
    }
}
