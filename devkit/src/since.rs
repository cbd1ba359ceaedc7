//! For the bench: what changed since the last recorded run of the same
//! command: each paired ratio this run printed ("`h1 upload   32 at once: MmapBody / 64K
//! 0.90x (rounds …)`") against the same line of the newest section of
//! `BENCHMARKS.md` made by the same command, so that a regression is seen
//! the run it appears, not found in a later review.

use std::path::Path;

/// A ratio must move by this much (either way) to be listed.
const NOTABLE: f64 = 0.10;

/// The ratio lines of `text`: the label (whitespace collapsed) and the
/// median.
fn ratios(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let (left, _) = line.split_once("x (rounds ")?;
            let (label, median) = left.trim_end().rsplit_once(' ')?;
            let median: f64 = median.parse().ok()?;
            let label = label.split_whitespace().collect::<Vec<_>>().join(" ");
            (!label.is_empty()).then_some((label, median))
        })
        .collect()
}

/// The sections of `recorded` whose heading is `command`, newest first:
/// each one's date line and text.
fn sections<'a>(recorded: &'a str, command: &str) -> Vec<(&'a str, &'a str)> {
    let heading = format!("\n## `{command}`\n");
    let mut found: Vec<(&str, &str)> = recorded
        .match_indices(&heading)
        .map(|(at, _)| {
            let rest = &recorded[at + heading.len()..];
            let end = rest.find("\n## ").unwrap_or(rest.len());
            let section = &rest[..end];
            let date = section.trim_start().split(". ").next().unwrap_or("");
            (date, section)
        })
        .collect();
    found.reverse();
    found
}

/// The machine a section was run on, as its header says (`machine: CPU,
/// N cores`), without the memory and kernel, which change between
/// otherwise equal virtual machines.
fn machine_of(text: &str) -> Option<&str> {
    let at = text.find("machine: ")?;
    let rest = &text[at..];
    let end = rest.find(" cores")? + " cores".len();
    Some(&rest[..end])
}

/// Whether a higher value of the ratio `label` is better for this crate's
/// code: throughput and lag ratios put the reference over ours or ours
/// over the reference's time; CPU ratios put ours over the reference's.
fn higher_is_better(label: &str) -> bool {
    !label.contains("CPU")
}

/// The lines to print: each ratio of `tables` that moved by [`NOTABLE`]
/// or more since the last run of `command` on this `machine` (as the
/// bench's header names it) recorded in `file`, worse first; or why
/// nothing was compared. Runs on another machine are not compared with:
/// the ratios move with the CPU and kernel (a `sendfile` five times as
/// fast on one as on another), which would bury a regression.
pub fn report(file: &Path, command: &str, machine: &str, tables: &str) -> String {
    let Ok(recorded) = std::fs::read_to_string(file) else {
        return format!("\nNo {} to compare this run with.\n", file.display());
    };
    let runs = sections(&recorded, command);
    let Some(&(newest, newest_text)) = runs.first() else {
        return format!(
            "\nNo run of this command is recorded in {}: nothing to compare.\n",
            file.display()
        );
    };
    let here = machine_of(machine);
    let Some(&(date, before)) = runs.iter().find(|(_, text)| machine_of(text) == here) else {
        return format!(
            "\nNo run of this command on this machine ({}) is recorded in {}; the newest \
             ({newest}) ran on another ({}): nothing compared.\n",
            here.unwrap_or("unknown"),
            file.display(),
            machine_of(newest_text).unwrap_or("unknown"),
        );
    };
    let before = ratios(before);
    let now = ratios(tables);
    let mut moved: Vec<(bool, String)> = Vec::new();
    let mut compared = 0;
    for (label, was) in &before {
        let Some((_, is)) = now.iter().find(|(l, _)| l == label) else {
            continue;
        };
        compared += 1;
        let change = is / was - 1.0;
        if change.abs() >= NOTABLE {
            let worse = (change < 0.0) == higher_is_better(label);
            let word = if worse { "WORSE " } else { "better" };
            moved.push((
                worse,
                format!(
                    "  {word} {label}: {was:.2}x then, {is:.2}x now ({:+.0}%)",
                    change * 100.0
                ),
            ));
        }
    }
    moved.sort_by_key(|(worse, _)| !worse);
    let mut out = format!(
        "\nSince the run recorded {date} on this machine ({compared} ratios compared; moves \
         of {:.0}% or more):\n",
        NOTABLE * 100.0
    );
    if moved.is_empty() {
        out.push_str("  none\n");
    }
    for (_, line) in moved {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDED: &str = "# Benchmarks\n\n\
        ## `cargo bench -- --runs 5`\n\nWed, 02 Dec 2026 13:39:29 GMT. machine: AMD EPYC, 2 cores, \
        23.5 GiB of memory, Linux 6.1\n\n\
        ```text\n  h1 upload   32 at once: MmapBody / 64K   1.09x (rounds 0.92–1.82)\n\
          h1 upload   CPU: MmapBody / write() floor 1.12x (rounds 0.98–1.34)\n```\n\
        \n## `cargo bench -- --quick`\n\nThu. x\n\n  h1 upload   32 at once: MmapBody / 64K   9.00x (rounds 1–1)\n\
        \n## `cargo bench -- --runs 5`\n\nSun, 06 Dec 2026 06:50:00 GMT. machine: Intel Xeon, 2 cores, \
        23.6 GiB of memory, Linux 6.2\n\n  h1 upload   32 at once: MmapBody / 64K   3.00x (rounds 1–9)\n";

    const AMD: &str = "machine: AMD EPYC, 2 cores, 23.6 GiB of memory, Linux 6.18";

    #[test]
    fn a_ratio_that_fell_is_listed_as_worse() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("BENCHMARKS.md");
        std::fs::write(&file, RECORDED).unwrap();
        let now = "  h1 upload   32 at once: MmapBody / 64K   0.90x (rounds 0.82–0.99)\n\
                   h1 upload   CPU: MmapBody / write() floor 1.13x (rounds 1.0–1.2)\n";
        // The newest run of the command was on another machine: the one
        // before it, on this machine, is compared with.
        let out = report(&file, "cargo bench -- --runs 5", AMD, now);
        assert!(
            out.contains("Wed, 02 Dec 2026 13:39:29 GMT on this machine (2 ratios compared"),
            "{out}"
        );
        assert!(
            out.contains(
                "WORSE  h1 upload 32 at once: MmapBody / 64K: 1.09x then, 0.90x now (-17%)"
            ),
            "{out}"
        );
        assert!(!out.contains("floor"), "moved under 10%: {out}");
        // A CPU ratio that rose is worse; one that fell is better.
        let cpu = "  h1 upload   CPU: MmapBody / write() floor 1.40x (rounds 1.0–1.5)\n";
        assert!(report(&file, "cargo bench -- --runs 5", AMD, cpu).contains("WORSE  h1 upload CPU"));
        // Another command's run is not compared with.
        assert!(report(&file, "cargo bench -- --small", AMD, now).contains("nothing to compare"));
        // Nor a run on another machine.
        let arm = "machine: Neoverse-N1, 2 cores, 8 GiB of memory, Linux 6.1";
        let out = report(&file, "cargo bench -- --runs 5", arm, now);
        assert!(
            out.contains("No run of this command on this machine (machine: Neoverse-N1, 2 cores)"),
            "{out}"
        );
        assert!(
            out.contains("the newest (Sun, 06 Dec 2026 06:50:00 GMT) ran on another (machine: Intel Xeon, 2 cores)"),
            "{out}"
        );
    }
}
