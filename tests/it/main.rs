//! The integration tests that need no process of their own, one module per
//! capability, in one test binary (`cargo test --test it`; one module:
//! `cargo test --test it -- replay::`).
//!
//! The tests that do need a process of their own (a global allocator, peak
//! RSS, the process-wide SIGBUS guard) are the other files of `tests/`.

mod defaults;
#[cfg(all(target_os = "linux", feature = "download", feature = "serve"))]
mod download;
#[cfg(all(target_os = "linux", feature = "retry"))]
mod fault_matrix;
#[cfg(all(feature = "retry", feature = "progress", feature = "reqwest"))]
mod idempotency;
#[cfg(all(
    target_os = "linux",
    feature = "serve",
    feature = "proxy",
    feature = "reqwest"
))]
mod interop;
#[cfg(feature = "serve")]
mod latency;
mod mmap_body;
#[cfg(feature = "serve")]
mod multipart;
#[cfg(feature = "multipart")]
mod multipart_form;
#[cfg(all(feature = "progress", feature = "retry"))]
mod progress;
#[cfg(feature = "proxy")]
mod proxy;
#[cfg(feature = "retry")]
mod replay;
#[cfg(feature = "retry")]
mod restartable;
#[cfg(all(
    target_os = "linux",
    feature = "resume",
    feature = "spill",
    feature = "progress"
))]
mod resume;
#[cfg(all(feature = "proxy", feature = "reqwest"))]
mod reverse_proxy;
#[cfg(all(target_os = "linux", feature = "tokio", not(mmap_body_portable)))]
mod runtime;
#[cfg(all(feature = "retry", feature = "progress", feature = "reqwest"))]
mod send_through;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "serve")]
mod serve_dir;
#[cfg(all(feature = "spill", feature = "retry", unix))]
mod spill;
mod tls;
#[cfg(all(target_os = "linux", feature = "tracing", feature = "spill"))]
mod tracing;
#[cfg(all(target_os = "linux", feature = "hyper-errors"))]
mod unsent;
#[cfg(all(feature = "retry", feature = "progress"))]
mod upload;
