//! Signal hygiene of the `SIGBUS` guard (`mmap_body::guard`): with a
//! handler of the program's own installed before or after the crate's,
//! with faults outside the crate's mappings, with many threads faulting at
//! once, and with no setup at all.
//!
//! The `SIGBUS` disposition is process-wide, so every case runs in a child
//! process: this binary started again for one test, with
//! `MMAP_BODY_GUARD_CHILD` naming the case. A child exits 0 when all its
//! checks hold and with a code of its own for each check that fails (and
//! says which on stderr); the parent asserts how it ended (that code, or
//! death by `SIGBUS`) and kills it after 60 s, since a handler that returns
//! from a fault it did not repair makes the read fault again forever.
#![cfg(all(unix, not(mmap_body_portable)))]

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use libc::{c_int, c_void, siginfo_t};
use mmap_body::{guard, Error, ErrorKind, MmapBody};
use mmap_body_devkit::bodies::poll_now;
use mmap_body_devkit::files::{test_file, truncate, TestFile};

const MIB: usize = 1024 * 1024;
/// What every truncated file is cut to: the rest of its pages are gone.
const CUT: u64 = 4096;
const CHILD_ENV: &str = "MMAP_BODY_GUARD_CHILD";
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The parent's side: run one case in a child, bounded in time.

/// How a child ended, and what it wrote.
struct Ended {
    case: String,
    status: ExitStatus,
    output: String,
}

impl Ended {
    fn assert_passed(&self) {
        assert_eq!(
            self.status.code(),
            Some(0),
            "child `{}` failed ({:?}); its output:\n{}",
            self.case,
            self.status,
            self.output
        );
    }

    fn assert_killed_by_sigbus(&self) {
        assert_eq!(
            self.status.signal(),
            Some(libc::SIGBUS),
            "child `{}` was not killed by SIGBUS ({:?}); its output:\n{}",
            self.case,
            self.status,
            self.output
        );
    }
}

/// Runs the test `test` of this binary alone in a child process, as case
/// `case`, and returns how it ended; fails if it runs longer than
/// [`CHILD_TIMEOUT`] (then kills it) or never started the case.
fn run_child(test: &str, case: &str) -> Ended {
    let ended =
        mmap_body_devkit::harness::run_child(module_path!(), test, CHILD_ENV, case, CHILD_TIMEOUT);
    let output = format!("{}{}", ended.stdout, ended.stderr);
    assert!(
        output.contains(&started(case)),
        "child `{case}` never ran: is `{test}` this test's name? ({:?}); its output:\n{output}",
        ended.status
    );
    Ended {
        case: case.to_owned(),
        status: ended.status,
        output,
    }
}

/// What a child prints first: proof that it ran the case (`--exact` with a
/// wrong name runs no test and exits 0).
fn started(case: &str) -> String {
    format!("guard child `{case}` started")
}

// ---------------------------------------------------------------------------
// The child's side.

/// The case this process runs, if it is a child.
fn child_case() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// A check of a child that failed: its exit code and what it saw.
#[derive(Debug)]
struct Failed {
    code: i32,
    what: String,
}

/// `Ok` if `ok`, else the failure `code`, described by `what`.
fn ensure(ok: bool, code: i32, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok {
        Ok(())
    } else {
        Err(Failed { code, what: what() })
    }
}

/// Runs `case` of a child and ends the process: 0 when it returned `Ok`,
/// the failed check's code otherwise. Core dumps are off, so the children
/// meant to die by `SIGBUS` write none.
///
/// No read lease is taken in a child: these cases test the guard, which
/// acts where the kernel gives none (under a lease a truncation waits for
/// the held frames' copy and never faults; `file_body.rs` tests that).
fn run_case(case: &str, run: impl FnOnce() -> Result<(), Failed>) -> ! {
    mmap_body::FileBody::disable_leases();
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `setrlimit` reads the limit it is given; lowering a limit
    // needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    eprintln!("{}", started(case));
    match run() {
        Ok(()) => std::process::exit(0),
        Err(failed) => {
            eprintln!(
                "child `{case}`: check {} failed: {}",
                failed.code, failed.what
            );
            std::process::exit(failed.code)
        }
    }
}

fn page_size() -> usize {
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).expect("the page size")
}

/// Opens `path` as an `MmapBody` of 1 MiB frames, with no guard call: the
/// crate installs its handler itself (unless the child opted out).
fn open(path: &std::path::Path) -> MmapBody {
    // SAFETY: the temp file is private to this process; truncating it under
    // the mapping is the point of these tests.
    unsafe { MmapBody::open(path) }
        .expect("open the body")
        .chunk_size(MIB)
}

/// The next frame of a body that must have one.
fn frame(body: &mut MmapBody) -> Bytes {
    poll_now(body)
        .expect("a frame")
        .expect("an Ok frame")
        .into_data()
        .expect("a data frame")
}

/// The next poll of `body`, which must be an error.
fn next_error(body: &mut MmapBody) -> Result<Error, String> {
    match poll_now(body) {
        Some(Err(err)) => Ok(err),
        Some(Ok(frame)) => Err(format!("a frame: {frame:?}")),
        None => Err("the end of the body".to_owned()),
    }
}

/// `err` is `Truncated`, and says so because the handler poisoned the
/// mapping (the `fstat` check alone, which also sees a shorter file, says
/// "shrank" instead).
fn is_poisoned(err: &Error) -> bool {
    err.kind() == ErrorKind::Truncated && err.to_string().contains("SIGBUS guard")
}

fn zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// A body over a new 4 MiB file; its first two frames are taken, the file
/// is cut to [`CUT`] bytes and the second frame (all past the new end) is
/// copied, as h2's framing or a TLS stack would: returns the file, the
/// body, its first frame and that copy.
fn copy_a_truncated_frame() -> (TestFile, MmapBody, Bytes, Vec<u8>) {
    let file = test_file(4 * MIB as u64);
    let mut body = open(&file.path);
    let first = frame(&mut body);
    let second = frame(&mut body);
    truncate(&file.path, CUT);
    let copy = second.to_vec();
    (file, body, first, copy)
}

// ---------------------------------------------------------------------------
// The child's own handlers, for a mapping of its own made with memmap2.

/// The child's own mapping, `OWN_START..OWN_END`: its handler repairs
/// faults there.
static OWN_START: AtomicUsize = AtomicUsize::new(0);
static OWN_END: AtomicUsize = AtomicUsize::new(0);
static OWN_PAGE: AtomicUsize = AtomicUsize::new(0);
/// Faults the child's handler repaired in its own mapping.
static OWN_FAULTS: AtomicUsize = AtomicUsize::new(0);
/// Calls of the child's handler for any other address.
static FOREIGN: AtomicUsize = AtomicUsize::new(0);
/// The action the chaining handler replaced: `sa_sigaction`, `sa_flags`.
static PREVIOUS_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREVIOUS_FLAGS: AtomicI32 = AtomicI32::new(0);

/// The exit code of a child whose non-chaining handler got a fault outside
/// its own mapping: returning would only fault again, forever.
const FOREIGN_FAULT: i32 = 99;

/// A mapping of the child's own, over a 4 MiB file of its own, recorded
/// for its handler.
struct OwnMapping {
    file: TestFile,
    map: memmap2::Mmap,
}

impl OwnMapping {
    fn new() -> OwnMapping {
        let file = test_file(4 * MIB as u64);
        let f = std::fs::File::open(&file.path).unwrap();
        // SAFETY: the temp file is private to this process; truncating it
        // under the mapping is the point of these tests.
        let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        OWN_PAGE.store(page_size(), Ordering::SeqCst);
        OWN_START.store(map.as_ptr() as usize, Ordering::SeqCst);
        OWN_END.store(map.as_ptr() as usize + map.len(), Ordering::SeqCst);
        OwnMapping { file, map }
    }

    /// Cuts the file to [`CUT`] bytes and copies one page of the mapping
    /// past the new end: one fault.
    fn copy_a_page_past_the_end(&self) -> Vec<u8> {
        truncate(&self.file.path, CUT);
        let page = page_size();
        let at = 2 * page.max(CUT as usize);
        self.map[at..at + page].to_vec()
    }
}

/// Maps a page of zeros over the faulting page if `addr` is in the child's
/// own mapping, as the crate's handler does for its own; `false` if not.
fn repair_own(addr: usize) -> bool {
    if !(OWN_START.load(Ordering::SeqCst)..OWN_END.load(Ordering::SeqCst)).contains(&addr) {
        return false;
    }
    let page = OWN_PAGE.load(Ordering::SeqCst);
    // SAFETY: the page holding `addr` belongs to the child's own mapping,
    // which is alive (it is being read); replacing it with a private,
    // read-only page of zeros touches nothing else.
    let zeros = unsafe {
        libc::mmap(
            (addr & !(page - 1)) as *mut c_void,
            page,
            libc::PROT_READ,
            libc::MAP_FIXED | libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
            -1,
            0,
        )
    };
    OWN_FAULTS.fetch_add(1, Ordering::SeqCst);
    zeros != libc::MAP_FAILED
}

/// A handler that knows only the child's own mapping: anything else is
/// counted and ends the child at once with [`FOREIGN_FAULT`].
extern "C" fn own_faults_only(_sig: c_int, info: *mut siginfo_t, _ctx: *mut c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t`.
    let addr = unsafe { (*info).si_addr() } as usize;
    if repair_own(addr) {
        return;
    }
    FOREIGN.fetch_add(1, Ordering::SeqCst);
    // SAFETY: `_exit` is async-signal-safe.
    unsafe { libc::_exit(FOREIGN_FAULT) }
}

/// A well-behaved handler installed after the crate's: repairs faults in
/// the child's own mapping and passes every other one to the action it
/// replaced.
extern "C" fn own_faults_then_previous(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid `siginfo_t`.
    let addr = unsafe { (*info).si_addr() } as usize;
    if repair_own(addr) {
        return;
    }
    FOREIGN.fetch_add(1, Ordering::SeqCst);
    let handler = PREVIOUS_HANDLER.load(Ordering::SeqCst);
    let flags = PREVIOUS_FLAGS.load(Ordering::SeqCst);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // The default action: put it back, and the retried read ends the
        // process.
        // SAFETY: an all-zero `sigaction` with SIG_DFL is valid, and
        // `sigaction` is async-signal-safe.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
        }
    } else if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, `sa_sigaction` holds a three-argument
        // handler, called with the arguments this one got.
        let previous: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        previous(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO, a one-argument handler.
        let previous: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        previous(sig);
    }
}

/// The current `SIGBUS` action.
fn sigbus_action() -> libc::sigaction {
    // SAFETY: an all-zero `sigaction` is a valid value to fill in.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reads the current action into `current`; changes nothing.
    let rc = unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) };
    assert_eq!(rc, 0, "sigaction: {}", std::io::Error::last_os_error());
    current
}

/// Installs `handler` (SA_SIGINFO) for `SIGBUS`, first saving the action
/// it replaces for [`own_faults_then_previous`]; returns that action.
fn install_own(
    handler: extern "C" fn(c_int, *mut siginfo_t, *mut c_void),
) -> Result<libc::sigaction, Failed> {
    let previous = sigbus_action();
    PREVIOUS_HANDLER.store(previous.sa_sigaction, Ordering::SeqCst);
    PREVIOUS_FLAGS.store(previous.sa_flags, Ordering::SeqCst);
    // SAFETY: an all-zero `sigaction` is a valid value to fill in.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = handler as usize;
    ours.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `sa_mask` is ours to initialise.
    unsafe { libc::sigemptyset(&mut ours.sa_mask) };
    // SAFETY: installs a handler that only does atomic operations, `mmap`,
    // `sigaction`, `_exit` and calls the previous handler.
    let rc = unsafe { libc::sigaction(libc::SIGBUS, &ours, std::ptr::null_mut()) };
    ensure(rc == 0, 10, || {
        format!("sigaction: {}", std::io::Error::last_os_error())
    })?;
    Ok(previous)
}

// ---------------------------------------------------------------------------
// 1 and 2: a handler of the program's own, before and after the crate's.

/// A handler the program installed before the crate's still repairs its
/// own faults (the crate chains to it) and never sees the crate's.
#[test]
fn a_handler_installed_before_the_crate_still_gets_its_own_faults() {
    if let Some(case) = child_case() {
        run_case(&case, handler_before_the_crate);
    }
    run_child(
        "a_handler_installed_before_the_crate_still_gets_its_own_faults",
        "before",
    )
    .assert_passed();
}

fn handler_before_the_crate() -> Result<(), Failed> {
    let own = OwnMapping::new();
    install_own(own_faults_only)?;
    ensure(!guard::is_installed(), 11, || {
        "the crate's handler is installed before any body".into()
    })?;
    let (_file, mut body, _first, copy) = copy_a_truncated_frame();
    ensure(guard::is_installed(), 12, || {
        "opening a body did not install the crate's handler".into()
    })?;
    ensure(copy.len() == MIB && zeros(&copy), 13, || {
        "the truncated frame did not read as zeros".into()
    })?;
    let (mine, foreign) = (
        OWN_FAULTS.load(Ordering::SeqCst),
        FOREIGN.load(Ordering::SeqCst),
    );
    ensure(mine == 0 && foreign == 0, 14, || {
        format!("the child's handler saw the body's faults: {mine} own, {foreign} foreign")
    })?;
    let err = next_error(&mut body).map_err(|got| Failed {
        code: 15,
        what: format!("the next poll after the truncation was {got}"),
    })?;
    ensure(is_poisoned(&err), 16, || {
        format!("not the poisoned mapping's Truncated error: {err}")
    })?;
    let page = own.copy_a_page_past_the_end();
    let mine = OWN_FAULTS.load(Ordering::SeqCst);
    ensure(mine == 1, 17, || {
        format!("the child's handler repaired {mine} faults of its own mapping, not 1")
    })?;
    ensure(zeros(&page), 18, || {
        "the child's own truncated page did not read as zeros".into()
    })?;
    ensure(FOREIGN.load(Ordering::SeqCst) == 0, 19, || {
        "the child's handler saw a foreign fault".into()
    })
}

/// A handler the program installs after the crate's, chaining to the
/// action it replaced, keeps both working: its own faults are its own, the
/// body's reach the crate's handler through it, and a body opened later
/// leaves it in place.
#[test]
fn a_handler_installed_after_the_crate_that_chains_keeps_both_working() {
    if let Some(case) = child_case() {
        run_case(&case, handler_after_the_crate);
    }
    run_child(
        "a_handler_installed_after_the_crate_that_chains_keeps_both_working",
        "after",
    )
    .assert_passed();
}

fn handler_after_the_crate() -> Result<(), Failed> {
    let file = test_file(4 * MIB as u64);
    let mut body = open(&file.path);
    ensure(guard::is_installed(), 20, || {
        "opening a body did not install the crate's handler".into()
    })?;
    let own = OwnMapping::new();
    let crates = install_own(own_faults_then_previous)?;
    ensure(
        crates.sa_flags & libc::SA_SIGINFO != 0
            && crates.sa_sigaction != libc::SIG_DFL
            && crates.sa_sigaction != libc::SIG_IGN,
        21,
        || "the action replaced is not an SA_SIGINFO handler".into(),
    )?;
    // A body opened now must leave the child's handler in place.
    let ours = sigbus_action().sa_sigaction;
    let later = test_file(64 * 1024);
    let _later = open(&later.path);
    ensure(sigbus_action().sa_sigaction == ours, 29, || {
        "a body opened after the child's handler replaced it".into()
    })?;
    let _first = frame(&mut body);
    let second = frame(&mut body);
    truncate(&file.path, CUT);
    let copy = second.to_vec();
    ensure(copy.len() == MIB && zeros(&copy), 22, || {
        "the truncated frame did not read as zeros".into()
    })?;
    let (mine, passed) = (
        OWN_FAULTS.load(Ordering::SeqCst),
        FOREIGN.load(Ordering::SeqCst),
    );
    ensure(mine == 0 && passed > 0, 23, || {
        format!(
            "the body's faults did not go through the child's handler to the crate's: \
             {mine} taken as the child's own, {passed} passed on"
        )
    })?;
    let err = next_error(&mut body).map_err(|got| Failed {
        code: 24,
        what: format!("the next poll after the truncation was {got}"),
    })?;
    ensure(is_poisoned(&err), 25, || {
        format!("not the poisoned mapping's Truncated error: {err}")
    })?;
    let page = own.copy_a_page_past_the_end();
    let mine = OWN_FAULTS.load(Ordering::SeqCst);
    ensure(mine == 1, 26, || {
        format!("the child's handler repaired {mine} faults of its own mapping, not 1")
    })?;
    ensure(zeros(&page), 27, || {
        "the child's own truncated page did not read as zeros".into()
    })?;
    ensure(FOREIGN.load(Ordering::SeqCst) == passed, 28, || {
        "the child's own fault was passed on".into()
    })
}

// ---------------------------------------------------------------------------
// 3: faults that are not the crate's, and the process without the guard.

/// With the crate's handler installed (by a body, or by `install`), a
/// fault in a mapping the crate did not make still ends the process by
/// `SIGBUS`.
#[test]
fn a_fault_outside_the_crates_mappings_still_ends_the_process() {
    if let Some(case) = child_case() {
        run_case(&case, || fault_outside_the_crate(&case));
    }
    for case in ["installed_by_a_body", "installed_by_install"] {
        run_child(
            "a_fault_outside_the_crates_mappings_still_ends_the_process",
            case,
        )
        .assert_killed_by_sigbus();
    }
}

fn fault_outside_the_crate(case: &str) -> Result<(), Failed> {
    let file = test_file(4 * MIB as u64);
    let _body = if case == "installed_by_a_body" {
        Some(open(&file.path))
    } else {
        guard::install().map_err(|e| Failed {
            code: 30,
            what: format!("install: {e}"),
        })?;
        None
    };
    ensure(guard::is_installed(), 31, || {
        "the crate's handler is not installed".into()
    })?;
    let own = OwnMapping::new();
    let page = own.copy_a_page_past_the_end();
    Err(Failed {
        code: 32,
        what: format!(
            "the process lived through a fault outside the crate's mappings (read {} bytes)",
            page.len()
        ),
    })
}

/// After `opt_out`, a user-space copy of a truncated frame kills the
/// process by `SIGBUS`; with the guard the crate installs by itself, the
/// same copy reads zeros and the process lives.
#[test]
fn without_the_guard_a_user_space_copy_is_sigbus() {
    if let Some(case) = child_case() {
        run_case(&case, || copy_with_or_without_the_guard(&case));
    }
    let test = "without_the_guard_a_user_space_copy_is_sigbus";
    run_child(test, "opted_out").assert_killed_by_sigbus();
    run_child(test, "guarded").assert_passed();
}

fn copy_with_or_without_the_guard(case: &str) -> Result<(), Failed> {
    if case == "opted_out" {
        ensure(guard::opt_out(), 40, || {
            "opt_out found the handler installed already".into()
        })?;
    }
    let (_file, _body, _first, copy) = copy_a_truncated_frame();
    ensure(case != "opted_out", 41, || {
        format!(
            "the process lived through a truncated copy without the guard (installed: {})",
            guard::is_installed()
        )
    })?;
    ensure(zeros(&copy), 42, || {
        "the truncated frame did not read as zeros".into()
    })
}

// ---------------------------------------------------------------------------
// 4: many threads at once.

const THREADS: usize = 8;

/// Eight threads faulting at once are all repaired: each on a body of its
/// own, and all on the frames of one body; every body then fails.
#[test]
fn many_threads_faulting_at_once_are_all_repaired() {
    if let Some(case) = child_case() {
        match case.as_str() {
            "own_bodies" => run_case(&case, threads_with_own_bodies),
            "one_body" => run_case(&case, threads_on_one_body),
            other => panic!("no case `{other}`"),
        }
    }
    for case in ["own_bodies", "one_body"] {
        run_child("many_threads_faulting_at_once_are_all_repaired", case).assert_passed();
    }
}

/// Takes the eight frames of a body over an 8 MiB file (1 MiB frames, the
/// last one a byte short: the body's last byte is its own frame) and
/// returns the 2nd to 8th.
fn held_frames(body: &mut MmapBody) -> Vec<Bytes> {
    let mut frames: Vec<Bytes> = (0..8).map(|_| frame(body)).collect();
    assert_eq!(
        body.size_hint().exact(),
        Some(1),
        "only the last byte is left"
    );
    frames.remove(0);
    frames
}

/// Copies every frame of `frames` and checks each read all zeros.
fn copy_all(frames: &[Bytes], code: i32, who: &str) -> Result<(), Failed> {
    for (i, frame) in frames.iter().enumerate() {
        let copy = frame.to_vec();
        ensure(copy.len() >= MIB - 1 && zeros(&copy), code, || {
            format!("{who}: frame {} did not read as zeros", i + 2)
        })?;
    }
    Ok(())
}

/// After its frames were dropped: the body's next poll is `Truncated`, and
/// the mapping is poisoned.
fn fails_poisoned(body: &mut MmapBody, code: i32, who: &str) -> Result<(), Failed> {
    let err = next_error(body).map_err(|got| Failed {
        code,
        what: format!("{who}: the next poll after the truncation was {got}"),
    })?;
    ensure(err.kind() == ErrorKind::Truncated, code, || {
        format!("{who}: not Truncated: {err}")
    })?;
    let err = body.verify().err();
    ensure(err.as_ref().is_some_and(is_poisoned), code + 1, || {
        format!("{who}: the mapping is not poisoned: {err:?}")
    })
}

fn threads_with_own_bodies() -> Result<(), Failed> {
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let who = format!("thread {t}");
                let file = test_file(8 * MIB as u64);
                let mut body = open(&file.path);
                let frames = held_frames(&mut body);
                barrier.wait();
                truncate(&file.path, CUT);
                barrier.wait();
                copy_all(&frames, 50, &who)?;
                drop(frames);
                fails_poisoned(&mut body, 51, &who)
            })
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| Failed {
            code: 53,
            what: "a thread panicked".into(),
        })??;
    }
    Ok(())
}

fn threads_on_one_body() -> Result<(), Failed> {
    let file = test_file(8 * MIB as u64);
    let mut body = open(&file.path);
    let frames = held_frames(&mut body);
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (barrier, frames, mut clone) = (barrier.clone(), frames.clone(), body.clone());
            std::thread::spawn(move || {
                let who = format!("thread {t}");
                barrier.wait();
                barrier.wait();
                copy_all(&frames, 55, &who)?;
                drop(frames);
                // A clone starts again at the start: its first frame is
                // refused, the mapping being poisoned.
                let err = next_error(&mut clone).map_err(|got| Failed {
                    code: 56,
                    what: format!("{who}: the clone's first poll was {got}"),
                })?;
                ensure(is_poisoned(&err), 57, || {
                    format!("{who}: the clone's error is not the poisoned one: {err}")
                })
            })
        })
        .collect();
    barrier.wait();
    truncate(&file.path, CUT);
    barrier.wait();
    for thread in threads {
        thread.join().map_err(|_| Failed {
            code: 54,
            what: "a thread panicked".into(),
        })??;
    }
    drop(frames);
    fails_poisoned(&mut body, 58, "the original body")
}

// ---------------------------------------------------------------------------
// 5: no setup.

/// Without any setup the first body installs the guard (and `opt_out`
/// then says so); after `opt_out` no body does, but `install` still can.
#[test]
fn the_process_without_any_setup_has_the_guard() {
    if let Some(case) = child_case() {
        match case.as_str() {
            "no_setup" => run_case(&case, no_setup),
            "opted_out" => run_case(&case, opted_out_then_installed),
            other => panic!("no case `{other}`"),
        }
    }
    let test = "the_process_without_any_setup_has_the_guard";
    run_child(test, "no_setup").assert_passed();
    run_child(test, "opted_out").assert_passed();
}

fn no_setup() -> Result<(), Failed> {
    let before = sigbus_action().sa_sigaction;
    ensure(!guard::is_installed(), 60, || {
        "installed before any body".into()
    })?;
    let file = test_file(64 * 1024);
    let _body = open(&file.path);
    ensure(guard::is_installed(), 61, || {
        "not installed after the first body".into()
    })?;
    ensure(sigbus_action().sa_sigaction != before, 62, || {
        "the process's SIGBUS action did not change".into()
    })?;
    ensure(!guard::opt_out(), 63, || {
        "opt_out after the first body returned true".into()
    })?;
    ensure(guard::is_installed(), 64, || {
        "no longer installed after opt_out".into()
    })
}

fn opted_out_then_installed() -> Result<(), Failed> {
    ensure(guard::opt_out(), 70, || {
        "opt_out in a fresh process returned false".into()
    })?;
    let before = sigbus_action().sa_sigaction;
    let file = test_file(64 * 1024);
    let _body = open(&file.path);
    ensure(!guard::is_installed(), 71, || {
        "a body installed the handler after opt_out".into()
    })?;
    ensure(sigbus_action().sa_sigaction == before, 72, || {
        "a body changed the process's SIGBUS action after opt_out".into()
    })?;
    ensure(guard::install().is_ok(), 73, || {
        "install after opt_out failed".into()
    })?;
    ensure(guard::is_installed(), 74, || {
        "not installed after install".into()
    })?;
    ensure(sigbus_action().sa_sigaction != before, 75, || {
        "install did not change the process's SIGBUS action".into()
    })
}
