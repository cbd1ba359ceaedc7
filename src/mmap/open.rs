//! The checks made when a file is opened: a regular file only, never a
//! `/proc`-style one, and errors that name the path.

use std::fs::{File, Metadata};
use std::io;
use std::path::Path;

use super::sys;

pub(crate) fn with_path(err: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{what} `{}`: {err}", path.display()))
}

pub(super) fn maybe_with_path(err: io::Error, what: &str, path: Option<&Path>) -> io::Error {
    match path {
        Some(path) => with_path(err, what, path),
        None => io::Error::new(err.kind(), format!("{what} the file: {err}")),
    }
}

fn invalid_input(path: Option<&Path>, reason: &str) -> io::Error {
    let name = match path {
        Some(path) => format!("`{}`", path.display()),
        None => "the file".to_owned(),
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("cannot send {name} as an MmapBody: {reason}"),
    )
}

pub(super) fn reject_non_regular(meta: &Metadata, path: Option<&Path>) -> io::Result<()> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(invalid_input(path, sys::non_regular_reason(kind)))
}

/// Files such as those in `/proc` and `/sys` report a size of 0 and still
/// have contents, made up as they are read: a mapping of them is empty or
/// faults. A regular file of size 0 that yields a byte is one of them.
pub(super) fn reject_pseudo_file(file: &File, path: Option<&Path>) -> io::Result<()> {
    let mut probe = [0u8; 1];
    match sys::read_start(file, &mut probe) {
        Ok(0) => Ok(()),
        Ok(_) => Err(invalid_input(
            path,
            "it reports a size of 0 but is not empty (a /proc-style file); \
             read it into memory instead",
        )),
        Err(err) => Err(maybe_with_path(err, "cannot read", path)),
    }
}
