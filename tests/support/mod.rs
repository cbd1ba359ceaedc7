//! Shared pieces of the integration tests, one file a role:
//!
//! - [`files`]: temp files of pseudo-random bytes, the pattern, SHA-256;
//! - [`server`]: the hashing server, `serve`, the hyper-util client, the
//!   pausing server;
//! - [`faulty`]: the server that misbehaves on purpose, following a script;
//! - [`bodies`]: test bodies (`Streamed`, `ExactStreamed`) and `poll_now`.
//!
//! The helpers that only a process of its own may use are not declared
//! here: a binary that needs them includes them itself, `alloc.rs` (the
//! counting allocator, shared with the examples) and `rss.rs` (peak RSS).

pub mod bodies;
pub mod faulty;
pub mod files;
pub mod server;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
