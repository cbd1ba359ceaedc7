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

/// What a `Range` with any number of ranges asks of a body of `len`
/// bytes, for a server that answers several with `multipart/byteranges`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// Ignore the header: send everything.
    Whole,
    /// No range selects a byte: 416.
    Unsatisfiable,
    /// One range (perhaps several that overlap or touch, coalesced).
    One { first: u64, last: u64 },
    /// Several disjoint ranges, none touching another, in the order the
    /// request asked for them.
    Many(Vec<(u64, u64)>),
}

/// The [`Plan`] for a `Range` value: at most `max_ranges` ranges (more:
/// the whole body), those that select bytes kept, overlapping or adjacent
/// ones coalesced (RFC 9110 §14.2) and the rest kept in the order asked
/// (§15.3.7.2), and the whole body sent instead when
/// the ranges together ask for more bytes than the body has (a client
/// asking for the same bytes many times over: the amplification RFC 9110
/// §14.2 warns of).
pub(super) fn plan(value: &HeaderValue, len: u64, max_ranges: usize) -> Plan {
    let Ok(text) = value.to_str() else {
        return Plan::Whole;
    };
    let max = std::num::NonZeroUsize::new(max_ranges.max(1)).unwrap_or(std::num::NonZeroUsize::MIN);
    let Ok(parsed) = http_range_header::parse_range_header_with_max_ranges(text, max) else {
        return Plan::Whole;
    };
    if parsed.len() == 1 {
        // One range: exactly as `parse_range` answers it.
        return match parse_range(value, len) {
            None => Plan::Whole,
            Some(Wanted::Unsatisfiable) => Plan::Unsatisfiable,
            Some(Wanted::Bytes { first, last }) => Plan::One { first, last },
        };
    }
    if len == 0 {
        return Plan::Whole;
    }
    use http_range_header::SyntacticallyCorrectRange as R;
    let ranges: Vec<(u64, u64)> = parsed
        .into_ranges()
        .into_iter()
        .filter_map(|range| match range {
            R::FromStart(first) if first < len => Some((first, len - 1)),
            R::FromLast(n) if n > 0 => Some((len.saturating_sub(n), len - 1)),
            R::Indexed(first, last) if first < len => Some((first, last.min(len - 1))),
            _ => None,
        })
        .collect();
    if ranges.is_empty() {
        return Plan::Unsatisfiable;
    }
    let asked: u64 = ranges
        .iter()
        .map(|(first, last)| last - first + 1)
        .fold(0, u64::saturating_add);
    if asked > len {
        return Plan::Whole;
    }
    // Overlapping or adjacent ranges coalesced in a sweep by start; each
    // group then takes the place of its first range in the request: parts
    // go in the order asked (RFC 9110 §15.3.7.2).
    let mut by_start: Vec<usize> = (0..ranges.len()).collect();
    by_start.sort_unstable_by_key(|&i| ranges[i]);
    // (where the group was first asked, first byte, last byte)
    let mut groups: Vec<(usize, u64, u64)> = Vec::with_capacity(ranges.len());
    for i in by_start {
        let (first, last) = ranges[i];
        match groups.last_mut() {
            Some((asked, _, end)) if first <= end.saturating_add(1) => {
                *end = (*end).max(last);
                *asked = (*asked).min(i);
            }
            _ => groups.push((i, first, last)),
        }
    }
    groups.sort_unstable_by_key(|&(asked, ..)| asked);
    match groups.as_slice() {
        [(_, first, last)] => Plan::One {
            first: *first,
            last: *last,
        },
        _ => Plan::Many(
            groups
                .into_iter()
                .map(|(_, first, last)| (first, last))
                .collect(),
        ),
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
    fn plans_for_several_ranges() {
        let p = |value: &str, len: u64| plan(&HeaderValue::from_str(value).unwrap(), len, 8);
        assert_eq!(
            p("bytes=0-9,20-29", 100),
            Plan::Many(vec![(0, 9), (20, 29)])
        );
        // Overlapping and touching ranges coalesced, in the order asked:
        // a group goes where its first range was.
        assert_eq!(
            p("bytes=50-59,0-9,5-14,15-19", 100),
            Plan::Many(vec![(50, 59), (0, 19)])
        );
        assert_eq!(
            p("bytes=30-39,10-19,0-4,18-25", 100),
            Plan::Many(vec![(30, 39), (10, 25), (0, 4)])
        );
        assert_eq!(
            p("bytes=90-99,0-9,5-14,15-19", 100),
            Plan::Many(vec![(90, 99), (0, 19)])
        );
        assert_eq!(p("bytes=0-9,10-19", 100), Plan::One { first: 0, last: 19 });
        // Suffix and open ranges, clipped; unsatisfiable ones dropped.
        assert_eq!(
            p("bytes=-5,0-1,500-600", 100),
            Plan::Many(vec![(95, 99), (0, 1)])
        );
        assert_eq!(p("bytes=500-,600-700", 100), Plan::Unsatisfiable);
        // Asking for more bytes than the file has, or too many ranges.
        assert_eq!(p("bytes=0-99,0-99", 100), Plan::Whole);
        assert_eq!(p("bytes=0-60,50-99", 100), Plan::Whole);
        let many = (0..9)
            .map(|i| format!("{}-{}", i * 10, i * 10))
            .collect::<Vec<_>>();
        assert_eq!(p(&format!("bytes={}", many.join(",")), 1000), Plan::Whole);
        // One range: as parse_range answers it.
        assert_eq!(p("bytes=0-9", 100), Plan::One { first: 0, last: 9 });
        assert_eq!(p("bytes=100-", 100), Plan::Unsatisfiable);
        assert_eq!(p("items=0-1,2-3", 100), Plan::Whole);
        assert_eq!(p("bytes=0-1,2-3", 0), Plan::Whole);
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
