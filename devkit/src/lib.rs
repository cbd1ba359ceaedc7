//! What mmap-body's tests, examples and benchmark share, and a user of the
//! crate never needs, one module a role:
//!
//! - [`alloc`]: a counting global allocator (heap peaks of one thread or of
//!   the whole process), for the binaries that install it;
//! - [`files`]: deterministic, incompressible bytes and temp files of them;
//! - [`rss`]: the process's resident memory from `/proc/self/status`;
//! - [`server`]: a hyper server on 127.0.0.1 that counts what it receives
//!   and reports how the request announced its length;
//! - [`size`]: sizes on the command line and in reports (`64MiB`, `1.0 GiB`).
//!
//! Not published: mmap-body reaches it as a path-only dev-dependency.
#![deny(missing_docs)]

pub mod alloc;
pub mod files;
pub mod rss;
pub mod server;
pub mod size;

/// The error type of the helpers here and of the programs using them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
