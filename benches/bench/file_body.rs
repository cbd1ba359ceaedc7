//! `FileBody` (issue #31): its rows beside `MmapBody`, `ReaderStream` and
//! `ServeFile` in the main run, and `--lease-break`: how long a writer
//! waits for a lease break while a body's frames are held.

use std::time::Instant;

use http_body::Body;
use mmap_body::FileBody;
use mmap_body_devkit::bodies::poll_now;
use mmap_body_devkit::files::write_file;
use mmap_body_devkit::size::human;
use mmap_body_devkit::BoxError;

use crate::cases::*;
use crate::report::{median, paired_ratio, say};

/// `FileBody` beside `MmapBody`, `ReaderStream` and `ServeFile` (issue #31).
pub(crate) fn ratios(
    out: &mut String,
    goals: &mut Vec<(String, bool)>,
    results: &[(Case, Vec<Option<Sample>>)],
    proto: Proto,
) {
    let case = |sender| Case { sender, proto };
    let time = |s: &Sample| s.secs;
    let cpu = |s: &Sample| s.cpu_secs;
    let p = proto.name();
    let (leased, pread) = (case(Sender::FileLeased), case(Sender::FilePread));
    if let Some(r) = paired_ratio(results, leased, case(Sender::Mmap), time) {
        say!(
            out,
            "  {p} upload   {:<28} {r}",
            "FileBody leased / MmapBody"
        );
        if proto == Proto::H1 {
            goals.push((
                format!("FileBody leased >= 0.95x MmapBody: {r}"),
                r.median >= 0.95,
            ));
        }
    }
    if let Some(c) = paired_ratio(results, case(Sender::Mmap), leased, cpu) {
        say!(
            out,
            "  {p} upload   {:<28} {c}",
            "CPU: FileBody leased / MmapBody"
        );
        if proto == Proto::H1 {
            goals.push((
                format!("FileBody leased CPU <= 1.05x MmapBody's: {c}"),
                c.median <= 1.05,
            ));
        }
    }
    if let Some(r) = paired_ratio(results, pread, case(Sender::Reader64K), time) {
        say!(out, "  {p} upload   {:<28} {r}", "FileBody pread / 64K");
        if proto == Proto::H1 {
            goals.push((
                format!("FileBody pread >= 1.5x ReaderStream-64K: {r}"),
                r.median >= 1.5,
            ));
        }
    }
    let serve_file = case(Sender::ServeFile);
    for (ours, label) in [
        (Sender::ServeFileBody, "FileBody / ServeFile"),
        (Sender::ServeFilePread, "FileBody pread / ServeFile"),
    ] {
        if let Some(r) = paired_ratio(results, case(ours), serve_file, time) {
            say!(out, "  {p} download {label:<28} {r}");
        }
    }
}

/// `--lease-break`: a `FileBody` of `size` bytes whose frames are all held
/// (all but the last byte), then another process opens the file for
/// writing (`sh -c 'printf x > file'`): how long its `open` waited, which
/// is the copy of the held frames out of the file. Per round, a fresh file.
pub(crate) fn lease_break(
    size: u64,
    runs: usize,
    record: Option<&std::path::Path>,
) -> Result<(), BoxError> {
    let header = format!(
        "{}\nlease break: a FileBody of {} with every frame held; another process \
         opens the file for writing; {runs} round(s)\n",
        crate::report::machine(),
        human(size)
    );
    println!("{header}");
    let mut waits = Vec::new();
    for round in 0..runs {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("leased.bin");
        write_file(&path, size)?;
        let mut body = FileBody::open(&path)?;
        if !body.is_mapped() {
            return Err("--lease-break: the kernel gave no lease on the temp file".into());
        }
        let mut held = Vec::new();
        while body.size_hint().exact() > Some(1) {
            match poll_now(&mut body) {
                Some(Ok(frame)) => held.extend(frame.into_data().ok()),
                other => return Err(format!("a frame: {other:?}").into()),
            }
        }
        let started = Instant::now();
        let out = std::process::Command::new("sh")
            .args(["-c", "printf x > \"$0\""])
            .arg(&path)
            .output()?;
        let waited = started.elapsed();
        if !out.status.success() {
            return Err(format!("the writer failed: {out:?}").into());
        }
        let bytes: usize = held.iter().map(|f| f.len()).sum();
        println!(
            "round {}/{runs}: {} held in {} frames, the writer waited {:.1} ms",
            round + 1,
            human(bytes as u64),
            held.len(),
            waited.as_secs_f64() * 1e3
        );
        waits.push(waited.as_secs_f64() * 1e3);
        drop(held);
    }
    let tables = format!(
        "| frames held | the writer's open waited (median ms) | rounds |\n|---|---|---|\n\
         | {} | {:.1} | {runs} |\n",
        human(size.saturating_sub(1)),
        median(waits).unwrap_or(0.0)
    );
    println!("{tables}");
    if let Some(file) = record {
        crate::record::append(file, &header, &tables)?;
    }
    Ok(())
}
