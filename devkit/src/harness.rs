//! What a test prints and how it runs itself again: an error and its
//! sources on one line, and a test's own name for `--exact`.

/// An error and its sources, on one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(err) = next {
        out.push_str(" <- ");
        out.push_str(&err.to_string());
        next = err.source();
    }
    out
}

/// The name the test harness gives the test `test` of the module whose
/// `module_path!()` is `module_path`: what `--exact` wants to run it alone
/// in a child process (the crate's name left out, the modules kept).
pub fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_owned(),
    }
}
