//! What mmap-body's tests and benchmark share, and a user of the crate
//! never needs, one module a role (the examples share nothing: each is a
//! program a user can copy):
//!
//! - [`files`]: deterministic, incompressible bytes, temp files of them and
//!   their SHA-256, and the changes tests make to a file under a body;
//! - [`server`]: real servers and the client the tests use on 127.0.0.1:
//!   the hashing server (and what it saw), `serve` for a handler of a
//!   test's own, `serve_axum`, the pausing server, the hyper-util client;
//! - [`tls`]: the same over TLS on 127.0.0.1 (rustls with ring): a test
//!   certificate made at run time, `serve_tls`, the hashing and pausing
//!   servers, a hyper-util client trusting that certificate, HTTP/1.1 or
//!   HTTP/2 through ALPN;
//! - [`counting`]: the receiving end of the benchmark, a
//!   server that counts what arrives and says how its length was announced
//!   (no hashing: it must not slow a measurement down);
//! - [`faulty`]: the one misbehaving server (HTTP/1.1 and HTTP/2), following
//!   a script of faults, logging every request and, if asked, narrating;
//! - [`relay`]: a TCP relay that cuts or stalls connections at chosen
//!   bytes (a network failing mid-download) and counts the bytes it passed;
//! - [`bodies`]: test bodies (`Streamed`, `ExactStreamed`) and `poll_now`;
//! - [`executor`]: a hyper executor on tokio that runs a hook around every
//!   poll of what it spawns (how long a task held the worker, what a body
//!   handed out in one poll);
//! - [`alloc`]: a counting global allocator, for the binaries that install
//!   it (one per binary: it counts the whole process);
//! - [`rss`]: the process's resident memory from `/proc/self/status`;
//! - [`size`]: sizes on the command line and in reports (`64MiB`, `1.0 GiB`);
//! - [`harness`]: an error chain on one line, a test's name for `--exact`.
//!
//! Not published: mmap-body reaches it as a path-only dev-dependency, and
//! it does not depend on mmap-body (its types would be a second copy).
#![deny(missing_docs)]

pub mod alloc;
pub mod bodies;
pub mod counting;
pub mod executor;
pub mod faulty;
pub mod files;
pub mod harness;
pub mod relay;
pub mod rss;
pub mod server;
pub mod since;
pub mod size;
pub mod tls;

/// The error type of the helpers here and of the programs using them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
