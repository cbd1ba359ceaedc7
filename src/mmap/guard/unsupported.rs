//! Platforms without `SIGBUS` handling: everything but Unix, and Unix built
//! with `--cfg mmap_body_portable`.

use std::io;

pub(super) fn install() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the SIGBUS guard exists on Unix only (and not in a build with \
         `--cfg mmap_body_portable`)",
    ))
}

/// No `SIGBUS` handled here: nothing a thread blocks matters.
pub(super) fn blocks_sigbus() -> bool {
    false
}
