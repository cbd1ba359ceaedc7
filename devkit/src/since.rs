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

/// The newest section of `recorded` whose heading is `command`: its date
/// line and its text.
fn last_section<'a>(recorded: &'a str, command: &str) -> Option<(&'a str, &'a str)> {
    let heading = format!("\n## `{command}`\n");
    let start = recorded.rfind(&heading)? + heading.len();
    let rest = &recorded[start..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    let section = &rest[..end];
    let date = section.trim_start().split(". ").next().unwrap_or("");
    Some((date, section))
}

/// Whether a higher value of the ratio `label` is better for this crate's
/// code: throughput and lag ratios put the reference over ours or ours
/// over the reference's time; CPU ratios put ours over the reference's.
fn higher_is_better(label: &str) -> bool {
    !label.contains("CPU")
}

/// The lines to print: each ratio of `tables` that moved by [`NOTABLE`]
/// or more since the last run of `command` recorded in `file`, worse
/// first; or why nothing was compared.
pub fn report(file: &Path, command: &str, tables: &str) -> String {
    let Ok(recorded) = std::fs::read_to_string(file) else {
        return format!("\nNo {} to compare this run with.\n", file.display());
    };
    let Some((date, before)) = last_section(&recorded, command) else {
        return format!(
            "\nNo run of this command is recorded in {}: nothing to compare.\n",
            file.display()
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
        "\nSince the run recorded {date} ({compared} ratios compared; moves of {:.0}% or more):\n",
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
        ## `cargo bench -- --runs 5`\n\nWed, 02 Dec 2026 13:39:29 GMT. machine\n\n\
        ```text\n  h1 upload   32 at once: MmapBody / 64K   1.09x (rounds 0.92–1.82)\n\
          h1 upload   CPU: MmapBody / write() floor 1.12x (rounds 0.98–1.34)\n```\n\
        \n## `cargo bench -- --quick`\n\nThu. x\n\n  h1 upload   32 at once: MmapBody / 64K   9.00x (rounds 1–1)\n";

    #[test]
    fn a_ratio_that_fell_is_listed_as_worse() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("BENCHMARKS.md");
        std::fs::write(&file, RECORDED).unwrap();
        let now = "  h1 upload   32 at once: MmapBody / 64K   0.90x (rounds 0.82–0.99)\n\
                   h1 upload   CPU: MmapBody / write() floor 1.13x (rounds 1.0–1.2)\n";
        let out = report(&file, "cargo bench -- --runs 5", now);
        assert!(
            out.contains("Wed, 02 Dec 2026 13:39:29 GMT (2 ratios compared"),
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
        assert!(report(&file, "cargo bench -- --runs 5", cpu).contains("WORSE  h1 upload CPU"));
        // Another command's run is not compared with.
        assert!(report(&file, "cargo bench -- --small", now).contains("nothing to compare"));
    }
}
