//! `--slow-disk RATE`: the file's disk made slow for the senders, with a
//! cgroup (v1 `blkio`) that throttles their reads from that disk to RATE
//! bytes per second. Each child joins it first thing, so every read it
//! makes from the disk (on the runtime's thread, or on tokio's blocking
//! pool) waits as it would on a slow device.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use mmap_body_devkit::BoxError;

/// The environment variable naming the cgroup a child joins.
pub(crate) const CGROUP_VAR: &str = "MMAP_BODY_BENCH_CGROUP";

/// A throttling cgroup, removed on drop.
pub(crate) struct SlowDisk {
    pub(crate) dir: PathBuf,
}

impl SlowDisk {
    /// Makes a cgroup whose reads from the disk holding `file` are limited
    /// to `rate` bytes per second.
    pub(crate) fn new(file: &Path, rate: u64) -> Result<SlowDisk, BoxError> {
        let root = Path::new("/sys/fs/cgroup/blkio");
        if !root.join("blkio.throttle.read_bps_device").exists() {
            return Err("--slow-disk needs the cgroup v1 blkio controller at \
                        /sys/fs/cgroup/blkio (and root)"
                .into());
        }
        let disk = whole_disk(file)?;
        let dir = root.join(format!("mmap-body-bench-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot make the cgroup {}: {e}", dir.display()))?;
        let slow = SlowDisk { dir };
        std::fs::write(
            slow.dir.join("blkio.throttle.read_bps_device"),
            format!("{disk} {rate}"),
        )
        .map_err(|e| format!("cannot throttle {disk}: {e}"))?;
        Ok(slow)
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Moves this process into the cgroup its parent named, if it named one.
pub(crate) fn join_if_asked() -> Result<(), BoxError> {
    let Some(dir) = std::env::var_os(CGROUP_VAR) else {
        return Ok(());
    };
    let procs = Path::new(&dir).join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|e| format!("cannot join {}: {e}", procs.display()).into())
}

/// `MAJOR:MINOR` of the whole disk that holds `file` (a partition's
/// parent): throttling rules name disks.
fn whole_disk(file: &Path) -> Result<String, BoxError> {
    let dev = std::fs::metadata(file)?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.exists() {
        return Err(format!("{} is on no block device ({major}:{minor})", file.display()).into());
    }
    if sys.join("partition").exists() {
        let parent = std::fs::canonicalize(&sys)?.join("..").join("dev");
        return Ok(std::fs::read_to_string(parent)?.trim().to_owned());
    }
    Ok(format!("{major}:{minor}"))
}
