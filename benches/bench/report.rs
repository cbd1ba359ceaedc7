//! The report: the table, the paired ratios and the goals.

use crate::cases::*;
use crate::neighbour::Neighbour;
use mmap_body_devkit::size::human;

/// `writeln!` into the report being built (a `String`, which cannot fail).
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
pub(crate) use say;

pub(crate) fn gib_per_s(size: u64, secs: f64) -> f64 {
    size as f64 / secs / (1u64 << 30) as f64
}

pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

pub(crate) fn ok_samples(samples: &[Option<Sample>]) -> Vec<&Sample> {
    samples.iter().flatten().collect()
}

pub(crate) fn print_table(out: &mut String, results: &[(Case, Vec<Option<Sample>>)], size: u64) {
    say!(
        out,
        "\n| direction | proto | sender | framing seen | GiB/s (median; min–max) \
         | sender CPU s | CPU s/GiB | heap peak (allocations) | sender peak RSS \
         | major faults on the runtime thread | 1 ms ticker p99 / worst lag \
         | longest task poll: p99.9 / max |"
    );
    say!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (case, samples) in results {
        let ok = ok_samples(samples);
        let speeds: Vec<f64> = ok.iter().map(|s| gib_per_s(s.sent(size), s.secs)).collect();
        let Some(speed) = median(speeds.clone()) else {
            say!(
                out,
                "| {} | {} | {} | failed | | | | | | | | |",
                direction(case.sender),
                case.proto.name(),
                case.sender.describe()
            );
            continue;
        };
        let min = speeds.iter().copied().fold(f64::INFINITY, f64::min);
        let max = speeds.iter().copied().fold(0.0, f64::max);
        let cpu = median(ok.iter().map(|s| s.cpu_secs).collect()).unwrap_or(0.0);
        let heap = ok.iter().map(|s| s.heap_peak).max().unwrap_or(0);
        let allocations = median(ok.iter().map(|s| s.allocations as f64).collect()).unwrap_or(0.0);
        let rss = ok.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
        let mut framings: Vec<&str> = ok.iter().map(|s| s.framing.as_str()).collect();
        framings.dedup();
        let framing = framings.join(" / ").replace("content-length=", "length ");
        let sent = ok.first().map_or(size, |s| s.sent(size));
        let cpu_per_gib = cpu / (sent as f64 / (1u64 << 30) as f64);
        let neighbour: Vec<Neighbour> = ok.iter().filter_map(|s| s.neighbour).collect();
        let (faults, lags, polls) = if neighbour.is_empty() {
            (String::new(), String::new(), String::new())
        } else {
            let faults = median(neighbour.iter().map(|n| n.faults as f64).collect()).unwrap_or(0.0);
            // The p99 is the median round's, the worst the worst round's.
            let lags = |p99: fn(&Neighbour) -> u32, max: fn(&Neighbour) -> u32| {
                let p99 = median(neighbour.iter().map(|n| f64::from(p99(n))).collect());
                let worst = neighbour.iter().map(max).max().unwrap_or(0);
                format!(
                    "{:.1} / {:.1} ms",
                    p99.unwrap_or(0.0) / 1000.0,
                    f64::from(worst) / 1000.0
                )
            };
            (
                format!("{faults:.0}"),
                lags(|n| n.lag_p99, |n| n.lag_max),
                if neighbour.iter().all(|n| n.poll_max == 0) {
                    String::new()
                } else {
                    lags(|n| n.poll_p999, |n| n.poll_max)
                },
            )
        };
        say!(out,
            "| {} | {} | {} | {framing} | {speed:.2} ({min:.2}–{max:.2}) | {cpu:.2} | {cpu_per_gib:.2} | {} ({allocations:.0}) | {} | {faults} | {lags} | {polls} |",
            direction(case.sender),
            case.proto.name(),
            case.sender.describe(),
            human(heap),
            human(rss * 1024)
        );
    }
}

pub(crate) fn direction(sender: Sender) -> &'static str {
    if sender.is_download() {
        "download"
    } else {
        "upload"
    }
}

/// Per-round ratios of one case against another: the median and the spread.
pub(crate) struct Ratio {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2}x (rounds {:.2}–{:.2})",
            self.median, self.min, self.max
        )
    }
}

/// `measure(other) / measure(ours)` for each round in which both ran, so
/// for times it says how many times faster ours is.
pub(crate) fn paired_ratio(
    results: &[(Case, Vec<Option<Sample>>)],
    ours: Case,
    other: Case,
    measure: fn(&Sample) -> f64,
) -> Option<Ratio> {
    let find = |case: Case| results.iter().find(|(c, _)| *c == case).map(|(_, s)| s);
    let (ours, other) = (find(ours)?, find(other)?);
    let ratios: Vec<f64> = ours
        .iter()
        .zip(other)
        .filter_map(|(a, b)| Some(measure(b.as_ref()?) / measure(a.as_ref()?)))
        .collect();
    Some(Ratio {
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max: ratios.iter().copied().fold(0.0, f64::max),
        median: median(ratios)?,
    })
}

pub(crate) fn print_ratios(
    out: &mut String,
    results: &[(Case, Vec<Option<Sample>>)],
    size: u64,
    quick: bool,
) {
    let case = |sender, proto| Case { sender, proto };
    let time = |s: &Sample| s.secs;
    let cpu = |s: &Sample| s.cpu_secs;
    say!(
        out,
        "\nRatios of throughput (median of the per-round ratios, and their range):"
    );
    let mut goals = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        let p = proto.name();
        let mmap = case(Sender::Mmap, proto);
        let pairs = [
            (Sender::Reader64K, "MmapBody / ReaderStream-64K"),
            (Sender::Reader4K, "MmapBody / ReaderStream-4K"),
            (Sender::FullCopy, "MmapBody / full copy"),
            (Sender::Sendfile, "MmapBody / sendfile"),
            (Sender::WriteFloor, "MmapBody / write() floor"),
        ];
        for (other, label) in pairs {
            if let Some(r) = paired_ratio(results, mmap, case(other, proto), time) {
                say!(out, "  {p} upload   {label:<28} {r}");
                if proto == Proto::H1 && other == Sender::Reader64K {
                    goals.push((
                        format!("MmapBody >= 2x ReaderStream-64K: {r}"),
                        r.median >= 2.0,
                    ));
                }
                if proto == Proto::H1 && other == Sender::Sendfile {
                    goals.push((format!("MmapBody >= 0.95x sendfile: {r}"), r.median >= 0.95));
                }
            }
        }
        let stack = case(Sender::ReqwestStack, proto);
        for (other, label) in [
            (Sender::Mmap, "reqwest stack / hyper-util"),
            (Sender::ReqwestFile, "reqwest stack / Body(File)"),
            (Sender::ReqwestBytes, "reqwest stack / Body(Bytes)"),
        ] {
            if let Some(r) = paired_ratio(results, stack, case(other, proto), time) {
                say!(out, "  {p} upload   {label:<28} {r}");
                if other == Sender::Mmap && proto == Proto::H1 {
                    goals.push((
                        format!("reqwest stack >= 0.9x hyper-util MmapBody: {r}"),
                        r.median >= 0.9,
                    ));
                }
            }
        }
        let floor = case(Sender::WriteFloor, proto);
        if let Some(c) = paired_ratio(results, floor, mmap, cpu) {
            say!(
                out,
                "  {p} upload   {:<28} {c}",
                "CPU: MmapBody / write() floor"
            );
            if proto == Proto::H1 {
                goals.push((
                    format!("MmapBody's CPU <= 1.15x the write() floor's: {c}"),
                    c.median <= 1.15,
                ));
            }
        }
        let keep = case(Sender::MmapKeep, proto);
        if let Some(c) = paired_ratio(results, keep, mmap, cpu) {
            let overhead = (c.median - 1.0) * 100.0;
            say!(
                out,
                "  {p} upload   {:<28} {c}: {overhead:.1}%",
                "pages released / kept, CPU"
            );
            if proto == Proto::H1 {
                goals.push((
                    format!("giving pages back costs <= 3% CPU over keeping them: {overhead:.1}%"),
                    overhead <= 3.0,
                ));
            }
        }
        let unguarded = case(Sender::MmapNoGuard, proto);
        if let Some(c) = paired_ratio(results, unguarded, mmap, cpu) {
            let overhead = (c.median - 1.0) * 100.0;
            say!(
                out,
                "  {p} upload   {:<28} {c}: {overhead:.1}%",
                "guarded (default) / opt-out, CPU"
            );
            goals.push((
                format!(
                    "{p}: the default SIGBUS guard costs <= 3% CPU over opting out: {overhead:.1}%"
                ),
                overhead <= 3.0,
            ));
        }
        let replay = case(Sender::MmapReplay, proto);
        if let Some(r) = paired_ratio(results, replay, mmap, time) {
            let overhead = (1.0 - r.median) * 100.0;
            say!(
                out,
                "  {p} upload   {:<28} {r}: overhead {overhead:.1}%",
                "replay / plain"
            );
            if let Some(c) = paired_ratio(results, mmap, replay, cpu) {
                let cpu_overhead = (c.median - 1.0) * 100.0;
                say!(
                    out,
                    "  {p} upload   {:<28} {c}: overhead {cpu_overhead:.1}%",
                    "replay / plain, sender CPU"
                );
            }
            if proto == Proto::H1 {
                let line = format!(
                    "replay overhead <= 5%: {overhead:.1}% (rounds {:.1}% to {:.1}%)",
                    (1.0 - r.max) * 100.0,
                    (1.0 - r.min) * 100.0
                );
                goals.push((line, overhead <= 5.0));
            }
        }
        let many = case(Sender::ManyMmap, proto);
        if let Some(r) = paired_ratio(results, many, case(Sender::ManyReader64K, proto), time) {
            say!(
                out,
                "  {p} upload   {:<28} {r}",
                "32 at once: MmapBody / 64K"
            );
            goals.push((
                format!("{p}: 32 uploads at once, MmapBody >= 1.1x ReaderStream-64K: {r}"),
                r.median >= 1.1,
            ));
        }
        let serve = case(Sender::ServeMmap, proto);
        if let Some(r) = paired_ratio(results, serve, case(Sender::ServeFile, proto), time) {
            say!(out, "  {p} download {:<28} {r}", "MmapBody / ServeFile");
        }
        crate::file_body::ratios(out, &mut goals, results, proto);
        let serve_many = case(Sender::ManyServeMmap, proto);
        let file_many = case(Sender::ManyServeFile, proto);
        if let Some(r) = paired_ratio(results, serve_many, file_many, time) {
            say!(
                out,
                "  {p} download {:<28} {r}",
                "8 clients: respond / ServeFile"
            );
        }
        // The neighbour goals (issue #18): per round, the reference's worst
        // ticker lag over ours, so >= 1 means ours stalled no longer; and
        // how long the sender's tasks held the worker per poll (p99.9).
        let neighbours = [
            (Sender::Mmap, Sender::Reader64K, "one upload"),
            (Sender::ManyMmap, Sender::ManyReader64K, "32 uploads"),
            (Sender::ServeMmap, Sender::ServeFile, "one download"),
            (Sender::ManyServeMmap, Sender::ManyServeFile, "8 downloads"),
        ];
        for (ours, reference, label) in neighbours {
            let worst = |s: &Sample| f64::from(s.neighbour.map_or(0, |n| n.lag_max).max(1));
            let poll = |s: &Sample| f64::from(s.neighbour.map_or(0, |n| n.poll_p999).max(1));
            let (ours, reference) = (case(ours, proto), case(reference, proto));
            if let Some(r) = paired_ratio(results, ours, reference, worst) {
                let faults = |c: Case| {
                    let samples = results.iter().find(|(k, _)| *k == c).map(|(_, s)| s)?;
                    let ok = ok_samples(samples);
                    ok.iter()
                        .filter_map(|s| s.neighbour)
                        .map(|n| n.faults)
                        .max()
                };
                let (our_faults, their_faults) = (faults(ours), faults(reference));
                say!(
                    out,
                    "  {p} {label:<12} {:<28} {r}",
                    "ticker worst lag, ref / ours"
                );
                if let Some(polls) = paired_ratio(results, ours, reference, poll) {
                    say!(
                        out,
                        "  {p} {label:<12} {:<28} {polls}",
                        "p99.9 task poll, ref / ours"
                    );
                    let longest = results
                        .iter()
                        .find(|(k, _)| *k == ours)
                        .map(|(_, s)| ok_samples(s))
                        .and_then(|ok| {
                            ok.iter()
                                .filter_map(|s| s.neighbour)
                                .map(|n| n.poll_p999)
                                .max()
                        })
                        .unwrap_or(0);
                    if longest > 0 {
                        goals.push((
                            format!(
                                "{p} {label}: the sender's tasks hold the worker about 1 ms at \
                                 most (p99.9 poll, worst round <= 1.5 ms): {:.2} ms",
                                f64::from(longest) / 1000.0
                            ),
                            longest <= 1500,
                        ));
                    }
                }
                goals.push((
                    format!(
                        "{p} {label}: the ticker's worst lag no more than the reference's \
                         ({} / {}): {r}",
                        reference.sender.name(),
                        ours.sender.name()
                    ),
                    r.median >= 1.0,
                ));
                if let (Some(ours), Some(theirs)) = (our_faults, their_faults) {
                    goals.push((
                        format!(
                            "{p} {label}: at most 1 major fault on the runtime's thread: \
                             {ours} (reference {theirs})"
                        ),
                        ours <= 1,
                    ));
                }
            }
        }
    }
    let plain = case(Sender::ProxyPlain, Proto::H1);
    let spill = case(Sender::ProxySpill, Proto::H1);
    if let Some(r) = paired_ratio(results, spill, plain, time) {
        let overhead = (1.0 - r.median) * 100.0;
        say!(
            out,
            "  h1 proxy    {:<28} {r}: overhead {overhead:.1}%",
            "replay+spill / plain"
        );
        if let Some(c) = paired_ratio(results, plain, spill, cpu) {
            say!(
                out,
                "  h1 proxy    {:<28} {c}: overhead {:.1}%",
                "replay+spill / plain, CPU",
                (c.median - 1.0) * 100.0
            );
        }
        goals.push((
            format!("proxy: replay+spill overhead <= 15%: {overhead:.1}%"),
            overhead <= 15.0,
        ));
    }
    if let Some((_, samples)) = results
        .iter()
        .find(|(c, _)| *c == case(Sender::ProxyReplay, Proto::H1))
    {
        let ratios: Vec<f64> = ok_samples(samples)
            .iter()
            .filter_map(|s| s.attempts)
            .map(|(first, second)| first / second)
            .collect();
        let (min, max) = (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
        if let Some(r) = median(ratios) {
            say!(
                out,
                "  h1 proxy    {:<28} {r:.2}x (rounds {min:.2}–{max:.2})",
                "replay from spill / 1st try"
            );
            goals.push((
                format!("proxy: a replay from the spill is as fast as the first attempt: {r:.2}x"),
                r >= 1.0,
            ));
        }
    }
    if let Some((_, samples)) = results
        .iter()
        .find(|(c, _)| *c == case(Sender::Mmap, Proto::H1))
    {
        let ok = ok_samples(samples);
        if let Some(heap) = ok.iter().map(|s| s.heap_peak).max() {
            goals.push((
                format!("heap peak < 64 KiB: {}", human(heap)),
                heap < 64 << 10,
            ));
        }
        if let Some(rss) = ok.iter().map(|s| s.peak_rss_kib).max() {
            let line = format!("sender peak RSS < 64 MiB: {}", human(rss * 1024));
            goals.push((line, rss < 64 << 10));
        }
    }
    if goals.is_empty() {
        return;
    }
    say!(out, "\nGoals (HTTP/1.1 upload, {}):", human(size));
    if quick || size < 1 << 30 {
        say!(
            out,
            "  (the goals are set for --size 1GiB; a smaller file only checks the bench runs)"
        );
    }
    for (line, met) in goals {
        say!(out, "  [{}] {line}", if met { "met" } else { "MISSED" });
    }
}

/// The machine, for the record: CPU model, cores, kernel.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or_else(String::new, |kib| {
            format!(", {} of memory", human(kib * 1024))
        });
    format!("machine: {cpu}, {cores} cores{memory}, Linux {kernel}")
}
