//! What a failed attempt's error tells the policy: whether a retry cannot
//! fix it (the body itself is wrong), and whether the request provably
//! never reached the server, so that sending it again is safe whatever its
//! method.
//!
//! `E`, the error of the service below the retry layer, is a concrete type
//! (hyper-util's client error, reqwest's) or a boxed one (tower's `timeout`,
//! `buffer`, `limit`, any `BoxError`). The types this module can see into
//! are listed in [`as_error`]; other errors are neither permanent nor
//! unsent, which is the safe answer for both questions.

use std::any::Any;
use std::error::Error as StdError;
use std::io;

/// Why an attempt is known to have sent nothing of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsent {
    /// No connection was made: it was refused, or the connector failed
    /// (hyper-util's and reqwest's `is_connect()`).
    Connect,
    /// hyper handed the request back unwritten: the connection it was
    /// queued on closed first (hyper's `is_canceled()`).
    #[cfg(feature = "hyper-errors")]
    NotWritten,
    /// An HTTP/2 server reset the stream with `REFUSED_STREAM`, which says
    /// it did no processing of it (RFC 9113 §8.7).
    #[cfg(feature = "hyper-errors")]
    RefusedStream,
    /// An HTTP/2 server sent `GOAWAY` with a last stream id below this
    /// request's stream, which it therefore never processed (RFC 9113 §6.8).
    #[cfg(feature = "hyper-errors")]
    GoAway,
}

impl Unsent {
    /// A few words for `tracing`.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Unsent::Connect => "the connection failed",
            #[cfg(feature = "hyper-errors")]
            Unsent::NotWritten => "hyper gave the request back unwritten",
            #[cfg(feature = "hyper-errors")]
            Unsent::RefusedStream => "the HTTP/2 stream was refused",
            #[cfg(feature = "hyper-errors")]
            Unsent::GoAway => "GOAWAY below the request's stream",
        }
    }
}

/// `err` as a `std::error::Error` whose chain can be walked, when `E` is a
/// type this module knows.
pub(crate) fn as_error<E: 'static>(err: &E) -> Option<&(dyn StdError + 'static)> {
    let any = err as &dyn Any;
    if let Some(boxed) = any.downcast_ref::<crate::error::BoxError>() {
        return Some(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn StdError + Send>>() {
        return Some(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn StdError>>() {
        return Some(&**boxed);
    }
    if let Some(ours) = any.downcast_ref::<crate::Error>() {
        return Some(ours);
    }
    if let Some(io) = any.downcast_ref::<io::Error>() {
        return Some(io);
    }
    #[cfg(feature = "hyper-errors")]
    {
        if let Some(client) = any.downcast_ref::<hyper_util::client::legacy::Error>() {
            return Some(client);
        }
        if let Some(hyper) = any.downcast_ref::<hyper::Error>() {
            return Some(hyper);
        }
    }
    #[cfg(feature = "reqwest")]
    if let Some(reqwest) = any.downcast_ref::<::reqwest::Error>() {
        return Some(reqwest);
    }
    None
}

/// Whether `err` is, or carries in its chain, one of this crate's errors
/// that a retry cannot fix (a truncated or changed file, a length
/// mismatch: [`Error::is_permanent`](crate::Error::is_permanent)).
///
/// An error this module cannot see into is not permanent; that is safe
/// because a body's permanent failure is also recorded in the body itself,
/// where [`ReplayBody::is_replayable`](crate::ReplayBody::is_replayable)
/// reports it.
pub(crate) fn is_permanent<E: 'static>(err: &E) -> bool {
    as_error(err)
        .and_then(crate::Error::find_in)
        .is_some_and(crate::Error::is_permanent)
}

/// Whether `err` proves that the attempt sent nothing of the request, and
/// how.
///
/// The chain is walked from the top, and the walk stops at an error that
/// came from the request body (this crate's, hyper's "user body" error,
/// reqwest's `is_body()`): what lies under it is about where the body's
/// bytes came from, not about this request's connection.
pub(crate) fn unsent<E: 'static>(err: &E) -> Option<Unsent> {
    let mut next = as_error(err);
    while let Some(err) = next {
        if err.is::<crate::Error>() || is_body_error(err) {
            return None;
        }
        if let Some(found) = evidence(err) {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// What one link of a chain proves on its own.
fn evidence(err: &(dyn StdError + 'static)) -> Option<Unsent> {
    // A refused connection: the kernel's answer to a connect, never to a
    // write (a peer that goes away after accepting gives a reset).
    if let Some(io) = err.downcast_ref::<io::Error>() {
        return (io.kind() == io::ErrorKind::ConnectionRefused).then_some(Unsent::Connect);
    }
    #[cfg(feature = "hyper-errors")]
    {
        if let Some(client) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            return client.is_connect().then_some(Unsent::Connect);
        }
        if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
            // hyper makes a "canceled" error only where it gives the
            // request back unstarted.
            return hyper.is_canceled().then_some(Unsent::NotWritten);
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_remote() && h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Some(Unsent::RefusedStream);
            }
            // h2 gives a remote GOAWAY error only to streams above the
            // frame's last stream id, and to streams opened after it;
            // streams at or below it that the connection's end cuts off
            // get a broken pipe instead.
            if h2.is_remote() && h2.is_go_away() {
                return Some(Unsent::GoAway);
            }
            return None;
        }
    }
    #[cfg(feature = "reqwest")]
    if let Some(reqwest) = err.downcast_ref::<::reqwest::Error>() {
        if reqwest.is_connect() {
            return Some(Unsent::Connect);
        }
    }
    None
}

/// An error that says the request body failed, as the client reports it.
fn is_body_error(err: &(dyn StdError + 'static)) -> bool {
    #[cfg(feature = "hyper-errors")]
    if let Some(hyper) = err.downcast_ref::<hyper::Error>() {
        return hyper.is_user();
    }
    #[cfg(feature = "reqwest")]
    if let Some(reqwest) = err.downcast_ref::<::reqwest::Error>() {
        return reqwest.is_body();
    }
    let _ = err;
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BoxError;

    /// An error with a source, to build chains.
    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<dyn StdError + Send + Sync>>);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn refused() -> io::Error {
        io::Error::from(io::ErrorKind::ConnectionRefused)
    }

    #[test]
    fn a_refused_connection_anywhere_in_the_chain_is_unsent() {
        let boxed: BoxError = Box::new(Wrap("connect", Some(Box::new(refused()))));
        assert_eq!(unsent(&boxed), Some(Unsent::Connect));
        assert_eq!(unsent(&refused()), Some(Unsent::Connect));
    }

    #[test]
    fn a_reset_or_a_timeout_is_not_proof() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::TimedOut,
            io::ErrorKind::UnexpectedEof,
        ] {
            let boxed: BoxError = Box::new(Wrap("send", Some(Box::new(io::Error::from(kind)))));
            assert_eq!(unsent(&boxed), None, "{kind:?}");
        }
    }

    #[test]
    fn the_walk_stops_at_the_body_s_own_error() {
        // A body whose bytes came from a connection that was refused: the
        // request itself may have been half sent.
        let body = crate::Error::io("reading the source", refused());
        let boxed: BoxError = Box::new(Wrap("send", Some(Box::new(body))));
        assert_eq!(unsent(&boxed), None);
    }

    #[test]
    fn unknown_error_types_are_neither() {
        #[derive(Debug)]
        struct Opaque;
        assert_eq!(unsent(&Opaque), None);
        assert!(!is_permanent(&Opaque));
    }

    #[test]
    fn permanent_errors_are_found_in_boxes() {
        let err = crate::Error::new(crate::ErrorKind::Truncated, "gone");
        let boxed: BoxError = Box::new(Wrap("send", Some(Box::new(err))));
        assert!(is_permanent(&boxed));
        let io: BoxError = Box::new(refused());
        assert!(!is_permanent(&io));
    }
}
