//! How good a neighbour a sender is on its runtime: the major page faults
//! taken on the runtime's thread, and how late a 1 ms ticker task on the
//! same runtime wakes while the sender runs.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mmap_body_devkit::executor::AroundPoll;

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

/// What one sender did to its runtime's thread: major faults taken there,
/// and how late a 1 ms ticker on the same runtime woke (µs), as measured
/// and with the time the thread waited for a CPU taken out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Neighbour {
    pub(crate) faults: u64,
    pub(crate) lag_p99: u32,
    pub(crate) lag_max: u32,
    /// The 99.9th percentile and the longest poll of the tasks that move
    /// the body (each timed by [`TimePolls`]; 0 where none was, as
    /// with reqwest's own executor): how long the sender held the worker
    /// at a time. Unlike the ticker's lag, the other process and the host
    /// taking the CPU away touch only the rare poll they land in.
    pub(crate) poll_p999: u32,
    pub(crate) poll_max: u32,
}

impl Neighbour {
    /// The report's fields, as `parse` reads them.
    pub(crate) fn fields(&self) -> String {
        format!(
            "majflt={} lag_p99={} lag_max={} poll_p999={} poll_max={}",
            self.faults, self.lag_p99, self.lag_max, self.poll_p999, self.poll_max
        )
    }

    /// Takes one report field; `false` when `key` is not one of ours.
    pub(crate) fn parse(
        neighbour: &mut Option<Neighbour>,
        key: &str,
        value: &str,
    ) -> Result<bool, std::num::ParseIntError> {
        if !matches!(
            key,
            "majflt" | "lag_p99" | "lag_max" | "poll_p999" | "poll_max"
        ) {
            return Ok(false);
        }
        let n = neighbour.get_or_insert_with(Neighbour::default);
        match key {
            "majflt" => n.faults = value.parse()?,
            "lag_p99" => n.lag_p99 = value.parse()?,
            "lag_max" => n.lag_max = value.parse()?,
            "poll_p999" => n.poll_p999 = value.parse()?,
            _ => n.poll_max = value.parse()?,
        }
        Ok(true)
    }
}

/// How long each poll timed by [`TimePolls`] took:
/// counts per 10 µs step up to 50 ms (the last step takes the rest).
/// Statics, so that measuring allocates nothing.
static POLLS: [AtomicU32; 5000] = [const { AtomicU32::new(0) }; 5000];
static POLL_MAX: AtomicU32 = AtomicU32::new(0);

fn record_poll(took: Duration) {
    let micros = took.as_micros().min(u32::MAX as u128) as u32;
    POLLS[(micros / 10).min(4999) as usize].fetch_add(1, Ordering::Relaxed);
    POLL_MAX.fetch_max(micros, Ordering::Relaxed);
}

/// The 99.9th percentile and the longest of the polls recorded (µs).
fn polls_p999_and_max() -> (u32, u32) {
    let counts: Vec<u32> = POLLS.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let mut below = 0;
    let mut p999 = 0;
    for (step, &count) in counts.iter().enumerate() {
        below += u64::from(count);
        if below * 1000 >= total * 999 {
            p999 = (step as u32 + 1) * 10;
            break;
        }
    }
    (p999, POLL_MAX.load(Ordering::Relaxed))
}

/// Times each poll into [`POLLS`], for
/// [`ObservedExecutor`](mmap_body_devkit::executor::ObservedExecutor): how
/// long a task that moves the body held the worker, whatever else runs
/// there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TimePolls;

impl AroundPoll for TimePolls {
    type Mark = Instant;

    fn before(&self) -> Instant {
        Instant::now()
    }

    fn after(&self, started: Instant) {
        record_poll(started.elapsed());
    }
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

    /// Stops the ticker: its lags, the polls timed by [`TimePolls`],
    /// and the major faults the caller counted.
    pub(crate) fn stop(self, faults: u64) -> Neighbour {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
        let mut lags = self.lags.lock().unwrap().clone();
        lags.sort_unstable();
        let at = |q: f64| {
            lags.get(((lags.len() as f64 * q) as usize).min(lags.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let (poll_p999, poll_max) = polls_p999_and_max();
        Neighbour {
            faults,
            lag_p99: at(0.99),
            lag_max: lags.last().copied().unwrap_or(0),
            poll_p999,
            poll_max,
        }
    }
}
