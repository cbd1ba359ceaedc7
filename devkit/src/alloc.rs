//! A counting global allocator that counts only the threads that opt in,
//! so a test or the bench can measure its client while a server runs beside
//! it in the same process, or every thread of a process that is only the
//! side being measured. A binary installs it with `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Set by [`track_all_threads`]: every thread counts.
static ALL_THREADS: AtomicBool = AtomicBool::new(false);

/// Counts the heap used by threads that opted in with [`track_heap`]; the
/// rest of the process (the server, the test harness) is not counted.
#[derive(Debug)]
pub struct CountingAlloc;

fn tracked() -> bool {
    ALL_THREADS.load(Ordering::Relaxed) || TRACKED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every allocation and deallocation is `System`'s, with the
// caller's layout; the counters beside them allocate nothing.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promise to `alloc`, passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && tracked() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, which is `System`'s, with
        // this `layout`: the caller's promise to `dealloc`.
        unsafe { System.dealloc(ptr, layout) };
        if tracked() {
            // Saturating: memory allocated before tracking began may be freed.
            let _ = CURRENT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(layout.size()))
            });
        }
    }
}

/// What a tracked closure cost on the heap.
#[derive(Debug, Clone, Copy)]
pub struct HeapUse {
    /// Highest number of live bytes allocated by the tracked thread.
    pub peak: usize,
    /// Number of allocations it made.
    pub allocations: usize,
}

/// Counts the allocations of the calling thread from now on, from zero.
/// Only one thread may be tracked at a time in a test binary.
pub fn start_tracking() {
    CURRENT.store(0, Ordering::SeqCst);
    PEAK.store(0, Ordering::SeqCst);
    ALLOCATIONS.store(0, Ordering::SeqCst);
    TRACKED.with(|t| t.set(true));
}

/// Counts the allocations of every thread of the process from now on, from
/// zero: for a process that is only the side being measured (the benchmark
/// runs each sender in a process of its own).
pub fn track_all_threads() {
    CURRENT.store(0, Ordering::SeqCst);
    PEAK.store(0, Ordering::SeqCst);
    ALLOCATIONS.store(0, Ordering::SeqCst);
    ALL_THREADS.store(true, Ordering::SeqCst);
}

/// Stops counting and returns what the tracked thread (or, after
/// [`track_all_threads`], the process) used since tracking started.
pub fn stop_tracking() -> HeapUse {
    ALL_THREADS.store(false, Ordering::SeqCst);
    TRACKED.with(|t| t.set(false));
    HeapUse {
        peak: PEAK.load(Ordering::SeqCst),
        allocations: ALLOCATIONS.load(Ordering::SeqCst),
    }
}

/// Runs `future` on a new thread's own current-thread runtime and counts
/// the allocations made while it runs (not those of building the runtime).
pub fn track_heap<F>(future: F) -> (F::Output, HeapUse)
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            start_tracking();
            let out = rt.block_on(future);
            (out, stop_tracking())
        })
        .join()
        .expect("tracked thread panicked")
    })
}
