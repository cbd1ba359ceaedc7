//! The process's resident memory, from `/proc/self/status` (Linux): for a
//! binary that measures its peak RSS (`VmHWM`), a property of the whole
//! process, so a binary of its own.

/// A `kB` field of `/proc/self/status`, e.g. `"VmHWM:"`.
pub fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the peak-RSS counter (`VmHWM`) to the current RSS (Linux >= 4.0).
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
}
