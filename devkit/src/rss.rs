//! The process's resident memory, from `/proc/self/status` (Linux): peak
//! RSS (`VmHWM`) is a property of the whole process, so a binary that
//! measures it runs nothing else at the same time.

/// A `kB` field of `/proc/self/status` (`"VmRSS:"`, `"VmHWM:"`), or `None`
/// where there is no such file or field (not Linux).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak-RSS counter (`VmHWM`) to the current RSS (Linux >= 4.0).
pub fn reset_peak_rss() -> std::io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}
