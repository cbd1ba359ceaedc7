//! How much memory this process may still take: what a detach of held
//! frames (a private copy of their pages, which the kernel cannot reclaim)
//! is measured against, so that a consumer keeping gigabytes of frames gets
//! an error instead of the OOM killer.
//!
//! Linux: the smaller of the system's `MemAvailable` and the headroom of the
//! process's memory cgroup (v2 `memory.max` − `memory.current`, v1
//! `memory.limit_in_bytes` − `memory.usage_in_bytes`), each found through
//! `/proc/self/cgroup` and `/proc/self/mountinfo`. Elsewhere: unknown.

/// The bytes this process may still take, if known.
#[cfg(target_os = "linux")]
pub(crate) fn headroom() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let available = read("/proc/meminfo").and_then(|text| mem_available(&text));
    let cgroup = match (read("/proc/self/cgroup"), read("/proc/self/mountinfo")) {
        (Some(cgroups), Some(mounts)) => {
            cgroup_headroom(&cgroups, &mounts, |path| std::fs::read_to_string(path).ok())
        }
        _ => None,
    };
    match (available, cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// The bytes this process may still take, if known.
#[cfg(not(target_os = "linux"))]
pub(crate) fn headroom() -> Option<u64> {
    None
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The headroom of the memory cgroup that `cgroups` (`/proc/self/cgroup`)
/// names, read through the mounts of `mountinfo` with `read`; `None` when
/// there is no limit or it cannot be read.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn cgroup_headroom(
    cgroups: &str,
    mountinfo: &str,
    read: impl Fn(&str) -> Option<String>,
) -> Option<u64> {
    let number = |path: String| -> Option<u64> { read(&path)?.trim().parse().ok() };
    let mut best: Option<u64> = None;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let (fstype, files) = if controllers.is_empty() {
            ("cgroup2", ("memory.max", "memory.current"))
        } else if controllers.split(',').any(|c| c == "memory") {
            ("cgroup", ("memory.limit_in_bytes", "memory.usage_in_bytes"))
        } else {
            continue;
        };
        let Some(dir) = cgroup_dir(mountinfo, fstype, path) else {
            continue;
        };
        // "max" (v2) or a huge number (v1): no limit.
        let (Some(limit), Some(used)) = (
            number(format!("{dir}/{}", files.0)),
            number(format!("{dir}/{}", files.1)),
        ) else {
            continue;
        };
        if limit >= 1 << 60 {
            continue;
        }
        let room = limit.saturating_sub(used);
        best = Some(best.map_or(room, |b| b.min(room)));
    }
    best
}

/// Where the cgroup `path` of a hierarchy of type `fstype` (with the
/// memory controller, for v1) is mounted.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn cgroup_dir(mountinfo: &str, fstype: &str, path: &str) -> Option<String> {
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options... - fstype source super
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        if right.next() != Some(fstype) {
            continue;
        }
        let super_options = right.nth(1).unwrap_or("");
        if fstype == "cgroup" && !super_options.split(',').any(|o| o == "memory") {
            continue;
        }
        let mut left = left.split_whitespace();
        let (root, mount) = (left.nth(3)?, left.next()?);
        // A namespaced mount shows its own root; the path is below it.
        let below = if root == "/" {
            path
        } else {
            path.strip_prefix(root).unwrap_or(path)
        };
        return Some(format!("{mount}{}", below.trim_end_matches('/')));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 29 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
30 24 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
31 24 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 24 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:  100 kB\nMemFree: 10 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(mem_available(text), Some(2 << 20));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn a_v1_memory_cgroup_limit_gives_its_headroom() {
        let files = |path: &str| match path {
            "/sys/fs/cgroup/memory/test/memory.limit_in_bytes" => Some("209715200\n".into()),
            "/sys/fs/cgroup/memory/test/memory.usage_in_bytes" => Some("9715200\n".into()),
            _ => None,
        };
        let cgroups = "5:cpu:/\n4:memory:/test\n0::/\n";
        assert_eq!(
            cgroup_headroom(cgroups, MOUNTINFO, files),
            Some(200_000_000)
        );
    }

    #[test]
    fn a_v2_limit_counts_and_max_means_none() {
        let limited = |path: &str| match path {
            "/sys/fs/cgroup/unified/app/memory.max" => Some("1000\n".into()),
            "/sys/fs/cgroup/unified/app/memory.current" => Some("400\n".into()),
            _ => None,
        };
        assert_eq!(cgroup_headroom("0::/app\n", MOUNTINFO, limited), Some(600));
        let unlimited = |path: &str| match path {
            "/sys/fs/cgroup/unified/app/memory.max" => Some("max\n".into()),
            "/sys/fs/cgroup/unified/app/memory.current" => Some("400\n".into()),
            _ => None,
        };
        assert_eq!(cgroup_headroom("0::/app\n", MOUNTINFO, unlimited), None);
        // v1's "no limit" is a page-rounded i64::MAX.
        let huge = |path: &str| match path {
            "/sys/fs/cgroup/memory/memory.limit_in_bytes" => Some("9223372036854771712".into()),
            "/sys/fs/cgroup/memory/memory.usage_in_bytes" => Some("1".into()),
            _ => None,
        };
        assert_eq!(cgroup_headroom("4:memory:/\n", MOUNTINFO, huge), None);
    }

    #[test]
    fn the_headroom_of_this_process_is_read() {
        #[cfg(target_os = "linux")]
        assert!(headroom().is_some_and(|bytes| bytes > 0));
    }
}
