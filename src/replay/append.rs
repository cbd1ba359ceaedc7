//! Appending recorded frames to the spill file, past the page cache where
//! the kernel allows it (Linux, `O_DIRECT`).
//!
//! # Why past the page cache
//!
//! A spill file is written once and read back only if the request is
//! retried: most of it is never read. Written through the page cache, every
//! byte is copied by the kernel into freshly allocated cache pages, which
//! then push other files' pages out. Measured on this project's 2-core VM
//! (`dd` of 1 GiB in 2 MiB blocks to the spill directory's ext4): 0.47 to
//! 2.9 s of system CPU buffered, 0.09 s with `O_DIRECT`.
//!
//! # How
//!
//! The file is opened a second time, with `O_DIRECT` (through
//! `/proc/self/fd`, since it has no name). Frames are copied into a staging
//! buffer (an anonymous mapping, so page-aligned) and written from it in
//! whole [`ALIGN`] blocks at aligned offsets, as `O_DIRECT` requires, one
//! write per [`STAGE`] (the fewer and larger, the faster direct writes go).
//! Staged bytes become readable once the stage is written, or when a
//! reader waits for them: then
//! [`Appender::flush_tail`] writes the tail through the page cache, and
//! that block is finished through the page cache too: a direct write over
//! a range with cached pages makes the kernel write them back and drop them
//! first, waiting for the disk, and pages a replay has mapped are unmapped
//! under it. Direct writes only ever go to blocks past every page cached.
//!
//! Direct writes wait for the disk; buffered ones return once the kernel
//! has the bytes. Where the disk is slow (direct writes slower than
//! [`SLOW`] several times in a row: a spinning disk, network block
//! storage), the page cache is the better buffer, and the appender goes
//! back to it for the rest of the file ([`Appender::stop_direct`]).
//! Where `O_DIRECT` is refused (at open, or `EINVAL` at a write: tmpfs on
//! older kernels, some FUSE and network file systems), or off Linux, every
//! write goes through the page cache, as before.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use bytes::Bytes;

/// The unit of direct writes, and their alignment: a multiple of every page
/// size Linux uses (4, 16 and 64 KiB) and of every logical block size.
pub(super) const ALIGN: usize = 64 * 1024;

/// Bytes staged before they are written: one direct write each.
const STAGE: usize = 1024 * 1024;

/// A direct write of a whole stage that takes longer than this is slow: the
/// disk then takes less than 512 MiB/s.
const SLOW: std::time::Duration = std::time::Duration::from_millis(2);

/// Slow direct writes in a row after which the page cache takes over.
const SLOW_IN_A_ROW: u32 = 4;

/// Appends frames to a spill file, and knows how much of it is readable.
pub(super) struct Appender {
    /// The writer's handle through the page cache; its position is the end
    /// of the file while nothing is direct.
    file: File,
    direct: Option<Direct>,
    /// Bytes appended (staged or written).
    end: u64,
    /// Bytes a reader may map: written, direct or buffered.
    readable: u64,
}

/// Direct writing in progress.
struct Direct {
    file: File,
    stage: memmap2::MmapMut,
    /// File offset of `stage[0]`: a multiple of [`ALIGN`].
    base: u64,
    /// Bytes in `stage`.
    fill: usize,
    /// The block at `base` holds bytes written through the page cache: it
    /// is finished through the page cache too.
    cached_block: bool,
    /// Whole-stage direct writes slower than [`SLOW`], in a row.
    slow: u32,
    /// How many of those make the page cache take over.
    slow_in_a_row: u32,
    /// [`SLOW`], but for tests.
    slow_after: std::time::Duration,
}

impl Appender {
    /// An appender for `file` (empty, opened for writing), writing past the
    /// page cache where the system allows it.
    pub(super) fn new(file: File) -> Appender {
        let direct = open_direct(&file).and_then(|direct| {
            Some(Direct {
                file: direct,
                stage: memmap2::MmapMut::map_anon(STAGE).ok()?,
                base: 0,
                fill: 0,
                cached_block: false,
                slow: 0,
                slow_in_a_row: SLOW_IN_A_ROW,
                slow_after: SLOW,
            })
        });
        Appender {
            file,
            direct,
            end: 0,
            readable: 0,
        }
    }

    /// An appender that writes only through the page cache.
    #[cfg(test)]
    pub(super) fn buffered(file: File) -> Appender {
        Appender {
            file,
            direct: None,
            end: 0,
            readable: 0,
        }
    }

    /// Takes a whole-stage write longer than `after` as slow, and goes back
    /// to the page cache after `in_a_row` of them.
    #[cfg(test)]
    pub(super) fn slow(mut self, after: std::time::Duration, in_a_row: u32) -> Appender {
        if let Some(direct) = &mut self.direct {
            (direct.slow_after, direct.slow_in_a_row) = (after, in_a_row);
        }
        self
    }

    /// Never goes back to the page cache for slow writes (a test on a busy
    /// machine sees some).
    #[cfg(test)]
    pub(super) fn never_slow(self) -> Appender {
        self.slow(SLOW, u32::MAX)
    }

    /// `true` while writes go past the page cache.
    #[cfg(test)]
    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Bytes of the file a reader may map.
    pub(super) fn readable(&self) -> u64 {
        self.readable
    }

    /// Appends every frame of `batch`, in order. Through the page cache
    /// they are readable at once; past it, once the stage they are in was
    /// written (or [`flush_tail`](Appender::flush_tail)).
    pub(super) fn append(&mut self, batch: &[Bytes]) -> io::Result<()> {
        if self.direct.is_none() {
            write_batch(&mut self.file, batch)?;
            self.end += batch.iter().map(|b| b.len() as u64).sum::<u64>();
            self.readable = self.end;
            return Ok(());
        }
        for frame in batch {
            let mut rest = &frame[..];
            while !rest.is_empty() {
                let Some(direct) = &mut self.direct else {
                    // Direct writing stopped within this batch.
                    self.file.write_all(rest)?;
                    self.end += rest.len() as u64;
                    self.readable = self.end;
                    break;
                };
                let take = rest.len().min(STAGE - direct.fill);
                direct.stage[direct.fill..direct.fill + take].copy_from_slice(&rest[..take]);
                direct.fill += take;
                self.end += take as u64;
                rest = &rest[take..];
                if direct.fill == STAGE {
                    self.write_blocks()?;
                }
            }
        }
        Ok(())
    }

    /// Bytes appended: written, or staged (copied: no frame is held).
    pub(super) fn appended(&self) -> u64 {
        self.end
    }

    /// Makes every byte appended readable: the whole blocks staged are
    /// written, and the tail of the last one through the page cache.
    pub(super) fn flush_tail(&mut self) -> io::Result<()> {
        self.write_blocks()?;
        if let Some(direct) = &mut self.direct {
            if direct.fill > 0 {
                write_all_at(&self.file, &direct.stage[..direct.fill], direct.base)?;
                direct.cached_block = true;
                self.readable = self.end;
            }
        }
        Ok(())
    }

    /// From now on every write goes through the page cache.
    pub(super) fn stop_direct(&mut self) -> io::Result<()> {
        let Some(direct) = self.direct.take() else {
            return Ok(());
        };
        write_all_at(&self.file, &direct.stage[..direct.fill], direct.base)?;
        self.file.seek(SeekFrom::Start(self.end))?;
        self.readable = self.end;
        Ok(())
    }

    /// Writes the whole blocks staged, and keeps the rest staged.
    fn write_blocks(&mut self) -> io::Result<()> {
        let Some(direct) = &mut self.direct else {
            return Ok(());
        };
        let whole = direct.fill / ALIGN * ALIGN;
        if whole == 0 {
            return Ok(());
        }
        let mut from = 0;
        if direct.cached_block {
            write_all_at(&self.file, &direct.stage[..ALIGN], direct.base)?;
            direct.cached_block = false;
            from = ALIGN;
        }
        if from < whole {
            let at = direct.base + from as u64;
            let started = std::time::Instant::now();
            match write_direct(&direct.file, &direct.stage[from..whole], at) {
                Ok(()) if whole - from == STAGE && started.elapsed() > direct.slow_after => {
                    direct.slow += 1;
                }
                Ok(()) => direct.slow = 0,
                Err(err) if err.kind() == io::ErrorKind::InvalidInput => {
                    // This file system takes no direct writes after all.
                    return self.stop_direct();
                }
                Err(err) => return Err(err),
            }
        }
        direct.stage.copy_within(whole..direct.fill, 0);
        direct.fill -= whole;
        direct.base += whole as u64;
        self.readable = direct.base;
        if direct.slow >= direct.slow_in_a_row {
            return self.stop_direct();
        }
        Ok(())
    }
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("direct", &self.direct.is_some())
            .field("end", &self.end)
            .field("readable", &self.readable)
            .finish_non_exhaustive()
    }
}

/// The file `file` is, opened again for writing past the page cache.
#[cfg(target_os = "linux")]
fn open_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_file: &File) -> Option<File> {
    None
}

/// Writes `buf` (whole blocks, from an aligned buffer) at `at` (aligned).
/// A short write that leaves the rest unaligned is `InvalidInput`, as the
/// kernel's refusal of a direct write is.
fn write_direct(file: &File, mut buf: &[u8], mut at: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match write_at(file, buf, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n % ALIGN == 0 => {
                buf = &buf[n..];
                at += n as u64;
            }
            Ok(_) => return Err(io::ErrorKind::InvalidInput.into()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn write_all_at(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, at)
    }
    #[cfg(not(unix))]
    {
        let mut file = file;
        file.seek(SeekFrom::Start(at))?;
        file.write_all(buf)
    }
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], at: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::write_at(file, buf, at)
}

#[cfg(not(unix))]
fn write_at(file: &File, buf: &[u8], at: u64) -> io::Result<usize> {
    let mut file = file;
    file.seek(SeekFrom::Start(at))?;
    file.write(buf)
}

/// Writes every frame of `batch`, in order, with vectored writes at the
/// file's position.
fn write_batch(file: &mut File, batch: &[Bytes]) -> io::Result<()> {
    let mut frame = 0;
    let mut offset = 0;
    while frame < batch.len() {
        let slices: Vec<io::IoSlice<'_>> = batch[frame..]
            .iter()
            .enumerate()
            .map(|(i, b)| io::IoSlice::new(if i == 0 { &b[offset..] } else { b }))
            .take(64)
            .collect();
        let mut written = match file.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        // Step over what was written.
        while written > 0 {
            let left = batch[frame].len() - offset;
            if written >= left {
                written -= left;
                frame += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use bytes::Bytes;

    use super::{Appender, STAGE};

    /// Frames of odd lengths, with a reader waiting now and then, and the
    /// direct writing stopped half way: the file holds every byte in order,
    /// and what was readable at each step was written already.
    #[test]
    fn frames_of_any_length_land_in_order_and_readable_means_written() {
        let data: Vec<u8> = (0..5 * STAGE + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for (stop_at, buffered) in [(usize::MAX, false), (3, false), (usize::MAX, true)] {
            let file = tempfile::tempfile().unwrap();
            let mut appender = if buffered {
                Appender::buffered(file.try_clone().unwrap())
            } else {
                Appender::new(file.try_clone().unwrap()).never_slow()
            };
            let lens = [1, 4095, 65536, 70000, 3, STAGE, 2 * STAGE + 17, 999];
            let (mut at, mut round) = (0, 0);
            while at < data.len() {
                let len = lens[round % lens.len()].min(data.len() - at);
                let frame = Bytes::copy_from_slice(&data[at..at + len]);
                appender.append(&[frame]).unwrap();
                at += len;
                round += 1;
                if round == stop_at {
                    appender.stop_direct().unwrap();
                }
                if round % 3 == 0 {
                    appender.flush_tail().unwrap();
                    assert_eq!(appender.readable(), at as u64);
                }
                let readable = appender.readable() as usize;
                assert!(readable <= at);
                if appender.is_direct() {
                    assert!(at - readable < STAGE, "at most a stage held back");
                }
                let mut on_disk = vec![0; readable];
                let mut reader = file.try_clone().unwrap();
                std::io::Seek::rewind(&mut reader).unwrap();
                reader.read_exact(&mut on_disk).unwrap();
                assert!(
                    on_disk == data[..readable],
                    "round {round}: readable bytes differ"
                );
            }
            appender.flush_tail().unwrap();
            assert_eq!(appender.readable(), data.len() as u64);
            let mut all = Vec::new();
            let mut reader = file.try_clone().unwrap();
            std::io::Seek::rewind(&mut reader).unwrap();
            reader.read_to_end(&mut all).unwrap();
            assert!(
                all == data,
                "stop_at {stop_at} buffered {buffered}: the file differs"
            );
        }
    }

    /// Bytes written past the page cache leave none of their pages in it,
    /// where through it every page stays cached: 8 MiB appended each way,
    /// then the file's pages asked after (`mincore` on a mapping of it,
    /// which reads nothing in).
    #[cfg(target_os = "linux")]
    #[test]
    fn direct_writes_leave_no_pages_in_the_page_cache() {
        let len = 8 * STAGE;
        let frame = Bytes::from(vec![5u8; 64 * 1024]);
        let cached = |direct: bool| {
            let file = tempfile::tempfile().unwrap();
            let mut appender = if direct {
                // Slow writes under a loaded test run would switch it back.
                Appender::new(file.try_clone().unwrap()).never_slow()
            } else {
                Appender::buffered(file.try_clone().unwrap())
            };
            if direct && !appender.is_direct() {
                return None;
            }
            for _ in 0..len / frame.len() {
                appender.append(std::slice::from_ref(&frame)).unwrap();
            }
            appender.flush_tail().unwrap();
            assert_eq!(appender.readable(), len as u64);
            // SAFETY: a temp file private to this test, not written while
            // mapped.
            let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
            let page = page_size();
            let mut resident = vec![0u8; len / page + 1];
            // SAFETY: `map` is a live mapping of `len` bytes, page-aligned
            // (mmap's address), and `resident` has a byte per page of it.
            let rc = unsafe { libc::mincore(map.as_ptr() as *mut _, len, resident.as_mut_ptr()) };
            assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
            Some(
                resident
                    .iter()
                    .take(len / page)
                    .filter(|&&p| p & 1 == 1)
                    .count(),
            )
        };
        let through = cached(false).unwrap();
        assert_eq!(
            through,
            len / page_size(),
            "written through the page cache: all cached"
        );
        if let Some(past) = cached(true) {
            assert_eq!(past, 0, "written past the page cache: {past} pages cached");
        }
    }

    /// Four slow whole-stage writes in a row (every write counts as slow
    /// here) and the page cache takes over: the fifth stage and everything
    /// after it are cached, every byte lands in order.
    #[cfg(target_os = "linux")]
    #[test]
    fn slow_direct_writes_hand_over_to_the_page_cache() {
        let file = tempfile::tempfile().unwrap();
        let appender = Appender::new(file.try_clone().unwrap());
        if !appender.is_direct() {
            return;
        }
        let mut appender = appender.slow(std::time::Duration::ZERO, 4);
        let frame = Bytes::from((0..STAGE).map(|i| (i % 253) as u8).collect::<Vec<_>>());
        for stage in 0..8 {
            appender.append(std::slice::from_ref(&frame)).unwrap();
            assert_eq!(appender.is_direct(), stage < 3, "after stage {stage}");
        }
        appender.flush_tail().unwrap();
        assert_eq!(appender.readable(), 8 * STAGE as u64);
        let mut all = Vec::new();
        let mut reader = file.try_clone().unwrap();
        std::io::Seek::rewind(&mut reader).unwrap();
        reader.read_to_end(&mut all).unwrap();
        assert!(
            all.chunks(STAGE).all(|c| c == &frame[..]),
            "the file differs"
        );
    }

    #[cfg(target_os = "linux")]
    fn page_size() -> usize {
        // SAFETY: `sysconf` has no preconditions.
        usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap()
    }

    /// On Linux, where the temp dir's file system takes `O_DIRECT` (this
    /// crate's CI: ext4), writes go past the page cache.
    #[cfg(target_os = "linux")]
    #[test]
    fn direct_where_the_file_system_allows() {
        use std::os::unix::fs::OpenOptionsExt;
        let named = tempfile::NamedTempFile::new().unwrap();
        let takes_direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(named.path())
            .is_ok();
        let appender = Appender::new(tempfile::tempfile().unwrap());
        assert_eq!(appender.is_direct(), takes_direct, "{appender:?}");
    }
}
