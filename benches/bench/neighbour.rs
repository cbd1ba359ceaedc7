//! How good a neighbour a sender is on its runtime: the major page faults
//! taken on the runtime's thread, and how late a 1 ms ticker task on the
//! same runtime wakes while the sender runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Major page faults the calling thread has taken so far
/// (`/proc/thread-self/stat`, field 12); 0 where there is no such file.
pub(crate) fn thread_major_faults() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0;
    };
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = stat.rfind(')').map_or("", |at| &stat[at + 2..]);
    after
        .split(' ')
        .nth(9)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A task that asks to wake every millisecond and records how late each
/// wake-up is. Started before the measured part (its buffer is allocated
/// up front, so it adds nothing to the heap counted).
pub(crate) struct Ticker {
    lags: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    pub(crate) fn start(rt: &tokio::runtime::Runtime) -> Ticker {
        let lags = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
        let stop = Arc::new(AtomicBool::new(false));
        let (record, stopped) = (lags.clone(), stop.clone());
        let task = rt.spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                let due = Instant::now() + Duration::from_millis(1);
                tokio::time::sleep_until(due.into()).await;
                let late = Instant::now().saturating_duration_since(due);
                let mut lags = record.lock().unwrap();
                if lags.len() < lags.capacity() {
                    lags.push(late.as_micros().min(u32::MAX as u128) as u32);
                }
            }
        });
        Ticker { lags, stop, task }
    }

    /// Stops the ticker; its p99 and worst lag, in microseconds.
    pub(crate) fn stop(self) -> (u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
        let mut lags = self.lags.lock().unwrap().clone();
        lags.sort_unstable();
        let at = |q: f64| {
            lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        (at(0.99), lags.last().copied().unwrap_or(0))
    }
}
