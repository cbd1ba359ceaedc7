//! `Range` (RFC 9110 §14.2): which bytes a `GET` asks for, parsed by
//! `http-range-header` as tower-http's `ServeFile` does.

use http::HeaderValue;

/// What a `Range` header asks for, when the server honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// Bytes `first..=last`, both inside the body.
    Bytes { first: u64, last: u64 },
    /// A valid range that selects no byte of the body: 416.
    Unsatisfiable,
}

/// Parses a `Range` value (RFC 9110 §14.1.2) for a body of `len` bytes,
/// with `http-range-header` (as tower-http does). `None` means "ignore it
/// and send everything": not `bytes`, malformed, several ranges, or none
/// left to send (a suffix range of an empty file: satisfiable, but with no
/// byte to put in a `206`).
pub(super) fn parse_range(value: &HeaderValue, len: u64) -> Option<Wanted> {
    let parsed = http_range_header::parse_range_header(value.to_str().ok()?).ok()?;
    match parsed.validate(len) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => Some(Wanted::Bytes {
                first: *one.start(),
                last: *one.end(),
            }),
            _ => None,
        },
        Err(http_range_header::RangeUnsatisfiableError::Unsatisfiable) => {
            Some(Wanted::Unsatisfiable)
        }
        // Invalid or refused (too many, overlapping): the server may ignore
        // a Range it does not want to serve (§14.2).
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> Option<Wanted> {
        parse_range(&HeaderValue::from_str(value).unwrap(), len)
    }

    fn bytes(first: u64, last: u64) -> Option<Wanted> {
        Some(Wanted::Bytes { first, last })
    }

    #[test]
    fn single_ranges() {
        assert_eq!(range("bytes=0-99", 1000), bytes(0, 99));
        assert_eq!(range("bytes=100-", 1000), bytes(100, 999));
        assert_eq!(range("bytes=-100", 1000), bytes(900, 999));
        assert_eq!(range("BYTES=5-5", 1000), bytes(5, 5));
        assert_eq!(range("bytes=-5000", 1000), bytes(0, 999));
        assert_eq!(range("bytes=990-5000", 1000), bytes(990, 999));
        assert_eq!(range("bytes=0-99999999999999999999999", 10), bytes(0, 9));
    }

    #[test]
    fn unsatisfiable_ranges() {
        for value in ["bytes=1000-", "bytes=1000-2000", "bytes=-0"] {
            assert_eq!(range(value, 1000), Some(Wanted::Unsatisfiable), "{value}");
        }
        assert_eq!(range("bytes=0-", 0), Some(Wanted::Unsatisfiable));
        assert_eq!(
            range("bytes=99999999999999999999999-", 10),
            Some(Wanted::Unsatisfiable)
        );
    }

    #[test]
    fn ranges_the_server_ignores() {
        for value in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "bytes 0-1",
            "bytes=+1-2",
            "bytes=0x10-",
            // No whitespace around `=` or `-` (§14.1.2).
            "bytes = 5 - 5",
        ] {
            assert_eq!(range(value, 1000), None, "{value}");
        }
        // A suffix of an empty file is satisfiable but has no bytes to put
        // in a 206: the whole (empty) file.
        assert_eq!(range("bytes=-1", 0), None);
    }
}
