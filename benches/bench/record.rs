//! `--record FILE`: the run's report appended to a Markdown file (the
//! project's `BENCHMARKS.md`), under the command that made it and the
//! date, so that no number there is typed by hand.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use mmap_body_devkit::BoxError;

/// Appends one section for this run: a heading with the command, the date,
/// the machine and file lines (`header`), then `tables` (the Markdown
/// table as it is; the ratios and goals, plain lines, as text blocks).
pub(crate) fn append(file: &Path, header: &str, tables: &str) -> Result<(), BoxError> {
    let mut text = String::new();
    if !file.exists() {
        text.push_str(
            "# Benchmarks\n\n\
             Written by the bench itself (`benches/bench/`, `--record`): each section is \
             one run, as it printed it, under the command that ran it. Throughput is the \
             median over rounds; ratios are medians of per-round ratios, with their range; \
             CPU is the sending process's user + system time. See `benches/bench/main.rs` \
             for what each case is.\n",
        );
    }
    let date = httpdate::fmt_http_date(SystemTime::now());
    text.push_str(&format!("\n## `{}`\n\n{date}. ", command()));
    text.push_str(&header.trim().replace('\n', "\n\n"));
    text.push_str("\n\n");
    let mut fenced = false;
    for line in tables.lines() {
        let prose = !line.starts_with('|') && !line.trim().is_empty();
        if prose != fenced {
            text.push_str(if prose { "\n```text\n" } else { "```\n" });
            fenced = prose;
        }
        if prose || line.starts_with('|') || !fenced {
            text.push_str(line);
            text.push('\n');
        }
    }
    if fenced {
        text.push_str("```\n");
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// The command line that ran this bench, as a person would type it.
pub(crate) fn command() -> String {
    let features: Vec<&str> = [
        ("retry", cfg!(feature = "retry")),
        ("serve", cfg!(feature = "serve")),
        ("spill", cfg!(feature = "spill")),
        ("reqwest", cfg!(feature = "reqwest")),
        ("multipart", cfg!(feature = "multipart")),
        ("download", cfg!(feature = "download")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    // Without `--bench` (cargo's) and `--record FILE` (where it went).
    let mut args = Vec::new();
    let mut all = std::env::args().skip(1);
    while let Some(arg) = all.next() {
        if arg == "--record" {
            all.next();
        } else if arg != "--bench" && !arg.starts_with("--record=") {
            args.push(arg);
        }
    }
    format!(
        "cargo bench --bench bench --features {} -- {}",
        features.join(","),
        args.join(" ")
    )
}

/// What moved since the last run of this command on this machine recorded
/// in `record` (or in the project's `BENCHMARKS.md`), for the report's end.
pub(crate) fn since_last(record: Option<&Path>, tables: &str) -> String {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    mmap_body_devkit::since::report(
        record.unwrap_or(&default),
        &command(),
        &crate::report::machine(),
        tables,
    )
}
