//! The crate's one error type.

use std::fmt;
use std::io;
use std::sync::Arc;

/// The boxed error of tower and hyper, used wherever this crate takes or
/// returns "any error".
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, for a caller to match on.
///
/// Returned by [`Error::kind`]. New kinds may be added; match with a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The mapped file became shorter than the range being sent. The body
    /// stopped instead of touching pages past the new end of the file
    /// (which would kill the process with `SIGBUS`).
    Truncated,
    /// The mapped file's size or modification time changed since it was
    /// mapped, so the bytes a retry would send may differ from the first
    /// attempt's. Or (feature `download`) a download's representation
    /// changed between a dropped connection and its resume: the server's
    /// answer to the range request was not the rest of the same version.
    Modified,
    /// A replay was asked of a [`ReplayBody`] whose
    /// recording passed its `max_replay_bytes` cap.
    ///
    #[cfg_attr(feature = "replay", doc = "[`ReplayBody`]: crate::ReplayBody")]
    #[cfg_attr(
        not(feature = "replay"),
        doc = "[`ReplayBody`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayBody.html"
    )]
    ReplayBufferExceeded,
    /// The part of a recorded request body past the in-memory cap could not
    /// be kept on disk (the spill file could not be made or written: no such
    /// directory, no permission, disk full), so a replay cannot send it.
    SpillFailed,
    /// A request's `Content-Length` disagrees with its body: the header and
    /// the body's exact size differ, the header is malformed or repeated with
    /// different values, or the body produced more or fewer bytes than
    /// declared.
    ContentLengthMismatch,
    /// A [`MmapBody::slice`](crate::MmapBody::slice) range lies outside the
    /// body or is inverted.
    OutOfRange,
    /// An operating-system I/O error (for example `fstat` failed).
    Io,
    /// A server's answer broke the protocol the request follows, or asked
    /// for what this crate refuses to do: a resumable upload's resource on
    /// another origin, an upload reported complete short of its body, an
    /// answer without a field the protocol requires. Retrying the same
    /// request to the same server does not help.
    Protocol,
    /// The wrapped request body of a [`ReplayBody`]
    /// failed; [`std::error::Error::source`] is that body's error.
    ///
    #[cfg_attr(feature = "replay", doc = "[`ReplayBody`]: crate::ReplayBody")]
    #[cfg_attr(
        not(feature = "replay"),
        doc = "[`ReplayBody`]: https://docs.rs/mmap-body/latest/mmap_body/struct.ReplayBody.html"
    )]
    Body,
    /// An argument was refused before anything was sent: a media type that
    /// is not `type/subtype` (a multipart part's [`Part::mime_str`]). The
    /// message names the argument and what is wrong with it.
    ///
    #[cfg_attr(
        feature = "multipart",
        doc = "[`Part::mime_str`]: crate::multipart::Part::mime_str"
    )]
    #[cfg_attr(
        not(feature = "multipart"),
        doc = "[`Part::mime_str`]: https://docs.rs/mmap-body/latest/mmap_body/multipart/struct.Part.html#method.mime_str"
    )]
    InvalidInput,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "file truncated while mapped",
            ErrorKind::Modified => "modified since the body began",
            ErrorKind::ReplayBufferExceeded => "replay buffer exceeded",
            ErrorKind::SpillFailed => "replay spill to disk failed",
            ErrorKind::ContentLengthMismatch => "content-length mismatch",
            ErrorKind::OutOfRange => "range out of bounds",
            ErrorKind::Io => "i/o error",
            ErrorKind::Protocol => "protocol violation",
            ErrorKind::Body => "request body failed",
            ErrorKind::InvalidInput => "invalid argument",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible operation in this crate.
///
/// It is `Send + Sync + 'static`, so it converts into hyper's and tower's
/// boxed errors; find it again with `downcast_ref::<mmap_body::Error>()` on
/// the boxed error or anywhere in its [`source`](std::error::Error::source)
/// chain. Its message says what happened and what to do about it.
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// Shared, so that an error can be cloned for every clone of a body
    /// that reaches the same failure, chain and all.
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Error {
        self.source = Some(Arc::from(source.into()));
        self
    }

    pub(crate) fn io(context: impl Into<String>, err: io::Error) -> Error {
        Error::new(ErrorKind::Io, context).with_source(err)
    }

    /// The first `mmap_body::Error` in `err`'s
    /// [`source`](std::error::Error::source) chain, `err` itself included:
    /// how to find this crate's error inside hyper's, reqwest's or tower's.
    ///
    /// ```
    /// # fn check(err: &(dyn std::error::Error + 'static)) {
    /// if let Some(ours) = mmap_body::Error::find_in(err) {
    ///     eprintln!("the body failed: {ours} ({:?})", ours.kind());
    /// }
    /// # }
    /// ```
    pub fn find_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        find_source(err, |_| true)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// `true` for errors that retrying the same request cannot fix: the
    /// body itself is wrong or can no longer be sent as it was.
    ///
    /// [`RetryPolicy`] never retries these.
    ///
    #[cfg_attr(feature = "retry", doc = "[`RetryPolicy`]: crate::retry::RetryPolicy")]
    #[cfg_attr(
        not(feature = "retry"),
        doc = "[`RetryPolicy`]: https://docs.rs/mmap-body/latest/mmap_body/retry/struct.RetryPolicy.html"
    )]
    pub fn is_permanent(&self) -> bool {
        !matches!(self.kind, ErrorKind::Io)
    }
}

impl Clone for Error {
    /// The same kind, message and source chain (the source is shared).
    fn clone(&self) -> Error {
        Error {
            kind: self.kind,
            message: self.message.clone(),
            source: self.source.clone(),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("mmap_body::Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| &**e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind {
            ErrorKind::Truncated => io::ErrorKind::UnexpectedEof,
            ErrorKind::OutOfRange | ErrorKind::ContentLengthMismatch | ErrorKind::InvalidInput => {
                io::ErrorKind::InvalidInput
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// The first error of type `T` in `err`'s source chain (`err` itself
/// included) for which `matches` holds: how the crate finds its own error,
/// tower's `Elapsed` or an `io::Error` of some kind inside hyper's,
/// reqwest's or tower's errors. (hyper's `find_source` does the same.)
pub(crate) fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
    matches: impl Fn(&T) -> bool,
) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>().filter(|found| matches(found)) {
            return Some(found);
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: std::error::Error + Send + Sync + 'static>() {}
        assert_bounds::<Error>();
    }

    #[test]
    fn display_names_kind_and_advice() {
        let err = Error::new(ErrorKind::Truncated, "re-open the file and send again");
        assert_eq!(
            err.to_string(),
            "file truncated while mapped: re-open the file and send again"
        );
        assert!(err.is_permanent());
    }

    #[test]
    fn source_chain_reaches_io_error() {
        let err = Error::io("fstat failed", io::Error::other("boom"));
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(!err.is_permanent());
        let source = std::error::Error::source(&err).expect("source");
        assert_eq!(source.to_string(), "boom");
    }
}
