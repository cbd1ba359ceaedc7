//! A consumer that keeps every frame of a big `MmapBody` (`collect()`)
//! under a memory limit gets an error, not the OOM killer: the detach that
//! would copy the frames it holds (memory the kernel cannot reclaim) is
//! measured against what the process may still take. The child runs in a
//! memory cgroup (v1, `memory.limit_in_bytes`) of its own, made by the
//! test; where none can be made (not root, no memory controller) the test
//! says so and checks nothing.
#![cfg(target_os = "linux")]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt;
use mmap_body::{ErrorKind, MmapBody};
use mmap_body_devkit::files::test_file;

const MIB: u64 = 1024 * 1024;
const CHILD: &str = "MMAP_BODY_DETACH_CHILD";
/// The cgroup's limit, and the body the child keeps whole: twice as much.
const LIMIT: u64 = 160 * MIB;
const BODY: u64 = 320 * MIB;

/// A v1 memory cgroup of this test's, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    fn make() -> Option<Cgroup> {
        let root = Path::new("/sys/fs/cgroup/memory");
        let dir = root.join(format!("mmap-body-detach-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cgroup = Cgroup(dir);
        std::fs::write(cgroup.0.join("memory.limit_in_bytes"), LIMIT.to_string()).ok()?;
        Some(cgroup)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn keeping_a_body_past_the_memory_limit_is_an_error_not_an_oom_kill() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let Some(cgroup) = Cgroup::make() else {
        eprintln!("skipped: no v1 memory cgroup can be made here (not root?)");
        return;
    };
    let file = test_file(BODY);
    let ended = mmap_body_devkit::harness::run_child(
        module_path!(),
        "child_keeps_the_whole_body",
        CHILD,
        &format!("{}\n{}", cgroup.0.display(), file.path.display()),
        Duration::from_secs(120),
    );
    assert_eq!(
        ended.status.signal(),
        None,
        "the child was killed ({:?}): {}{}",
        ended.status,
        ended.stdout,
        ended.stderr
    );
    assert!(
        ended.status.success() && ended.stderr.contains("collect failed: Some(OutOfMemory)"),
        "{:?}: {}{}",
        ended.status,
        ended.stdout,
        ended.stderr
    );
}

/// In its own cgroup: collects the whole body.
#[test]
fn child_keeps_the_whole_body() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    let (cgroup, path) = case.split_once('\n').expect("cgroup and file");
    std::fs::write(
        Path::new(cgroup).join("cgroup.procs"),
        std::process::id().to_string(),
    )
    .expect("join the cgroup");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // SAFETY: the parent's temp file; nothing changes it.
    let body = unsafe { MmapBody::open(path) }.unwrap();
    match runtime.block_on(body.collect()) {
        Ok(all) => eprintln!("collect kept {} bytes", all.to_bytes().len()),
        Err(err) => {
            let source = std::error::Error::source(&err)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .map(std::io::Error::kind);
            assert_eq!(err.kind(), ErrorKind::Io, "{err}");
            eprintln!("collect failed: {source:?}: {err}");
        }
    }
}
