//! What a process measures of itself: CPU time, peak RSS, and the time
//! limit of a measurement.

use std::time::Duration;

#[cfg(unix)]
pub(crate) fn rusage() -> std::io::Result<libc::rusage> {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a valid
    // value, and `getrusage` writes a whole one through the pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `usage` outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usage)
}

/// User plus system CPU time of this process (all its threads) so far.
#[cfg(not(unix))]
pub(crate) fn cpu_secs() -> std::io::Result<f64> {
    Err(std::io::Error::other("getrusage(2) is Unix only"))
}

/// User plus system CPU time of this process (all its threads) so far.
#[cfg(unix)]
pub(crate) fn cpu_secs() -> std::io::Result<f64> {
    let usage = rusage()?;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// The peak resident set size of this process since it started, in KiB:
/// `VmHWM`, the high-water mark of this program's own address space. (Not
/// `getrusage`'s `ru_maxrss`: Linux carries that over `execve` from the
/// process that spawned us, so every child would report at least the
/// parent's size.)
pub(crate) fn peak_rss_kib() -> std::io::Result<u64> {
    mmap_body_devkit::rss::status_kib("VmHWM:")
        .ok_or_else(|| std::io::Error::other("no VmHWM in /proc/self/status"))
}

/// Generous: one minute plus 10 MiB/s.
pub(crate) fn time_limit(size: u64) -> Duration {
    Duration::from_secs(60 + size / (10 << 20))
}

/// Drops the file's pages from the page cache (`posix_fadvise` with
/// `POSIX_FADV_DONTNEED`; the file was written back when it was made, so
/// every page is clean and goes), so that the next reader reads the disk.
#[cfg(target_os = "linux")]
pub(crate) fn drop_cached_pages(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    // SAFETY: `file` is open for the whole call; the advice reads no memory.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn drop_cached_pages(_path: &std::path::Path) -> std::io::Result<()> {
    Err(std::io::Error::other("--cold needs Linux"))
}
