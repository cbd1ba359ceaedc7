//! The request-level `Content-Length` rules that [`Replay`](super::Replay)
//! applies before a request is sent ([`settle_content_length`]): which
//! requests get a `Content-Length` from their body's size, which declared
//! lengths are refused, and the canonical form an accepted one is sent in.
//!
//! Holding each attempt to the length settled here while it streams is
//! [`ExactLength`](super::exact::ExactLength)'s job.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method};
use http_body::SizeHint;

use crate::error::{Error, ErrorKind};

/// Methods whose semantics define no request body (RFC 9110 §9.3): an empty
/// body gets no `Content-Length: 0`.
fn defines_no_body(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ]
    .contains(method)
}

/// A request refused before it was sent: `situation`, then what to do.
fn refused(situation: String, what_to_do: &str) -> Error {
    Error::new(
        ErrorKind::ContentLengthMismatch,
        format!("{situation}; the request was not sent. {what_to_do}"),
    )
}

/// What a request body says of its size before it is polled.
#[derive(Debug, Clone)]
pub(super) struct BodySize {
    pub(super) hint: SizeHint,
    /// `is_end_stream()`: the body is known to have no bytes at all.
    pub(super) ended: bool,
}

impl BodySize {
    fn exact(&self) -> Option<u64> {
        if self.ended {
            Some(0)
        } else {
            self.hint.exact()
        }
    }
}

/// The one `Content-Length` the request's headers declare: `None` without
/// one; an error if a value is not a decimal number or two values differ.
fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut declared: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let parsed = value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                refused(
                    format!(
                        "malformed header: the Content-Length header {value:?} is not a \
                         decimal number of bytes"
                    ),
                    "Send digits only (no sign, list or blank), or remove the header to \
                     have it set from the body's size",
                )
            })?;
        if let Some(first) = declared.filter(|&first| first != parsed) {
            return Err(refused(
                format!(
                    "conflicting headers: the request has several Content-Length headers \
                     with different values ({first} and {parsed}), so servers could \
                     disagree on where it ends"
                ),
                "Keep one Content-Length header, with the body's length",
            ));
        }
        declared = Some(parsed);
    }
    Ok(declared)
}

/// Settles the request's `Content-Length`, given what its body says of its
/// size, and returns the length each attempt must send (`None`: unknown,
/// the body is sent with its own framing).
///
/// - Without a declared length, a body of exact size gets a
///   `Content-Length` (but no `0` on methods that define no body), unless
///   the request has `Transfer-Encoding`.
/// - A declared length is refused if it is malformed, repeated with
///   different values, sent with `Transfer-Encoding`, contradicted by the
///   body's size hint, or `0` on a body that may have bytes: an HTTP/1.1
///   client never polls a body once it has written `Content-Length: 0`, so
///   [`ExactLength`](super::exact::ExactLength) would never see those
///   bytes, and the server would accept an empty request as complete.
/// - An accepted value is written back in its canonical form (one header,
///   no leading zeros), so a peer that parses strictly (HTTP/2 servers do)
///   reads the same number.
pub(super) fn settle_content_length(
    headers: &mut HeaderMap,
    method: &Method,
    size: &BodySize,
) -> Result<Option<u64>, Error> {
    let declared = declared_length(headers)?;
    let chunked = headers.contains_key(TRANSFER_ENCODING);
    let Some(declared) = declared else {
        return match size.exact() {
            Some(exact) if !chunked => {
                if exact > 0 || !defines_no_body(method) {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(exact));
                }
                Ok(Some(exact))
            }
            _ => Ok(None),
        };
    };
    if chunked {
        return Err(refused(
            "two framings: the request has both Transfer-Encoding and Content-Length, \
             which lets servers disagree on where it ends (request smuggling)"
                .to_owned(),
            "Remove one of the two headers",
        ));
    }
    if let Some(exact) = size.exact() {
        if declared != exact {
            return Err(refused(
                format!(
                    "declared length differs from the body's size: the Content-Length \
                     header says {declared} bytes but the body has exactly {exact}"
                ),
                "Fix the header, or remove it to have it set from the body's size",
            ));
        }
    } else if declared < size.hint.lower() {
        return Err(refused(
            format!(
                "declared length below the body's size: the Content-Length header says \
                 {declared} bytes but the body's size hint says it has at least {}",
                size.hint.lower()
            ),
            "Fix the header, or remove it to send the body with its own framing",
        ));
    } else if let Some(upper) = size.hint.upper().filter(|&upper| declared > upper) {
        return Err(refused(
            format!(
                "declared length above the body's size: the Content-Length header says \
                 {declared} bytes but the body's size hint says it has at most {upper}"
            ),
            "Fix the header, or remove it to send the body with its own framing",
        ));
    } else if declared == 0 {
        return Err(refused(
            "declared zero on a body that may have bytes: the Content-Length header \
             says 0 bytes but the body's size is unknown, and an HTTP/1.1 client would \
             silently drop its bytes"
                .to_owned(),
            "Remove the header to send the body as it is, or send an empty body",
        ));
    }
    headers.remove(CONTENT_LENGTH);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(declared));
    Ok(Some(declared))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        method: Method,
        headers: &[(&str, &str)],
        exact: Option<u64>,
    ) -> (Result<Option<u64>, ErrorKind>, Vec<String>) {
        let hint = exact.map_or_else(SizeHint::new, SizeHint::with_exact);
        run_hint(method, headers, hint)
    }

    /// A header map of `(name, value)` pairs, in order, repeats kept.
    fn header_map(headers: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn run_hint(
        method: Method,
        headers: &[(&str, &str)],
        hint: SizeHint,
    ) -> (Result<Option<u64>, ErrorKind>, Vec<String>) {
        let mut map = header_map(headers);
        let size = BodySize {
            ended: hint.exact() == Some(0),
            hint,
        };
        let out = settle_content_length(&mut map, &method, &size).map_err(|e| e.kind());
        let cl = map
            .get_all(CONTENT_LENGTH)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        (out, cl)
    }

    #[test]
    fn sets_content_length_from_exact_size() {
        assert_eq!(
            run(Method::PUT, &[], Some(10)),
            (Ok(Some(10)), vec!["10".into()])
        );
        assert_eq!(
            run(Method::POST, &[], Some(0)),
            (Ok(Some(0)), vec!["0".into()])
        );
        assert_eq!(
            run(Method::GET, &[], Some(3)),
            (Ok(Some(3)), vec!["3".into()])
        );
    }

    #[test]
    fn no_zero_length_on_methods_without_body_semantics() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
        ] {
            assert_eq!(run(m.clone(), &[], Some(0)), (Ok(Some(0)), vec![]), "{m}");
        }
    }

    #[test]
    fn unknown_size_or_chunked_is_left_alone() {
        assert_eq!(run(Method::POST, &[], None), (Ok(None), vec![]));
        assert_eq!(
            run(Method::POST, &[("transfer-encoding", "chunked")], Some(5)),
            (Ok(None), vec![])
        );
    }

    #[test]
    fn declared_length_is_checked() {
        let ok = run(Method::PUT, &[("content-length", "5")], Some(5));
        assert_eq!(ok, (Ok(Some(5)), vec!["5".into()]));
        let streamed = run(Method::PUT, &[("content-length", "5")], None);
        assert_eq!(streamed.0, Ok(Some(5)));
        let mismatched = Err(ErrorKind::ContentLengthMismatch);
        for headers in [
            &[("content-length", "6")][..],
            &[("content-length", "+5")],
            &[("content-length", "")],
            &[("content-length", "5, 5")],
            &[("content-length", "5"), ("content-length", "6")],
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
        ] {
            assert_eq!(
                run(Method::PUT, headers, Some(5)).0,
                mismatched,
                "{headers:?}"
            );
        }
        let repeated = run(
            Method::PUT,
            &[("content-length", "5"), ("content-length", "5")],
            Some(5),
        );
        assert_eq!(repeated.0, Ok(Some(5)));
    }

    fn hint(lower: u64, upper: Option<u64>) -> SizeHint {
        let mut hint = SizeHint::new();
        hint.set_lower(lower);
        if let Some(upper) = upper {
            hint.set_upper(upper);
        }
        hint
    }

    #[test]
    fn declared_length_must_fit_the_size_hint() {
        let mismatched = Err(ErrorKind::ContentLengthMismatch);
        let cl = |v| [("content-length", v)];
        // Below the lower bound, above the upper bound.
        assert_eq!(run_hint(Method::PUT, &cl("5"), hint(6, None)).0, mismatched);
        assert_eq!(
            run_hint(Method::PUT, &cl("9"), hint(0, Some(8))).0,
            mismatched
        );
        // Inside the bounds: the streaming check takes over.
        assert_eq!(
            run_hint(Method::PUT, &cl("7"), hint(6, Some(8))).0,
            Ok(Some(7))
        );
        assert_eq!(
            run_hint(Method::PUT, &cl("6"), hint(6, None)).0,
            Ok(Some(6))
        );
    }

    #[test]
    fn declared_zero_never_hides_a_body_with_bytes() {
        let mismatched = Err(ErrorKind::ContentLengthMismatch);
        let zero = [("content-length", "0")];
        assert_eq!(run_hint(Method::PUT, &zero, SizeHint::new()).0, mismatched);
        assert_eq!(
            run_hint(Method::POST, &zero, hint(0, Some(10))).0,
            mismatched
        );
        // A body known to be empty may say so.
        assert_eq!(
            run_hint(Method::PUT, &zero, hint(0, Some(0))).0,
            Ok(Some(0))
        );
        assert_eq!(run(Method::PUT, &zero, Some(0)).0, Ok(Some(0)));
    }

    #[test]
    fn accepted_lengths_are_written_back_canonical() {
        let zeros = run(
            Method::PUT,
            &[("content-length", "0000000000000000000000005")],
            None,
        );
        assert_eq!(zeros, (Ok(Some(5)), vec!["5".into()]));
        let many_zeros = run(
            Method::PUT,
            &[("content-length", "000000000000000000000000")],
            Some(0),
        );
        assert_eq!(many_zeros, (Ok(Some(0)), vec!["0".into()]));
        let repeated = run(
            Method::PUT,
            &[("content-length", "5"), ("content-length", "05")],
            Some(5),
        );
        assert_eq!(repeated, (Ok(Some(5)), vec!["5".into()]));
    }

    /// Each refusal names its situation (one message a situation) and says
    /// what to do.
    #[test]
    fn each_refusal_says_which_situation_and_what_to_do() {
        let exact = |n| SizeHint::with_exact(n);
        /// Headers, the body's size, words of the situation, of what to do.
        type Case<'a> = (&'a [(&'a str, &'a str)], SizeHint, &'a str, &'a str);
        let cases: [Case<'_>; 7] = [
            (
                &[("content-length", "5 ")],
                exact(5),
                "malformed header",
                "digits only",
            ),
            (
                &[("content-length", "5"), ("content-length", "6")],
                exact(5),
                "conflicting headers",
                "Keep one",
            ),
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                exact(5),
                "two framings",
                "Remove one",
            ),
            (
                &[("content-length", "6")],
                exact(5),
                "exactly 5",
                "remove it",
            ),
            (
                &[("content-length", "5")],
                hint(6, None),
                "at least 6",
                "own framing",
            ),
            (
                &[("content-length", "9")],
                hint(0, Some(8)),
                "at most 8",
                "own framing",
            ),
            (
                &[("content-length", "0")],
                SizeHint::new(),
                "declared zero",
                "empty body",
            ),
        ];
        let situations = cases.len();
        let mut messages = Vec::new();
        for (headers, size, situation, what_to_do) in cases {
            let mut map = header_map(headers);
            let size = BodySize {
                hint: size,
                ended: false,
            };
            let err = settle_content_length(&mut map, &Method::PUT, &size).unwrap_err();
            let message = err.to_string();
            assert_eq!(err.kind(), ErrorKind::ContentLengthMismatch, "{message}");
            assert!(message.contains(situation), "{situation}: {message}");
            assert!(message.contains(what_to_do), "{what_to_do}: {message}");
            assert!(message.contains("the request was not sent"), "{message}");
            messages.push(message);
        }
        messages.sort();
        messages.dedup();
        assert_eq!(messages.len(), situations, "two situations share a message");
    }

    proptest::proptest! {
        /// Any `Content-Length` values and size hints: never a panic; an
        /// accepted request carries one canonical value that is the
        /// number declared and fits the hint.
        #[test]
        fn any_content_length(
            values in proptest::collection::vec("[0-9]{0,25}|[ -~]{0,8}", 0..3),
            lower in 0u64..300,
            extra in proptest::option::of(0u64..300),
            post in proptest::bool::ANY,
        ) {
            let mut map = http::HeaderMap::new();
            for value in &values {
                if let Ok(value) = HeaderValue::from_str(value) {
                    map.append(CONTENT_LENGTH, value);
                }
            }
            let sent: Vec<String> = map
                .get_all(CONTENT_LENGTH)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            let upper = extra.map(|e| lower + e);
            let size = BodySize { hint: hint(lower, upper), ended: upper == Some(0) };
            let method = if post { Method::POST } else { Method::GET };
            let out = settle_content_length(&mut map, &method, &size);
            let after: Vec<&str> = map
                .get_all(CONTENT_LENGTH)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            match out {
                Ok(Some(n)) => {
                    proptest::prop_assert!(n >= lower && upper.is_none_or(|u| n <= u));
                    if !sent.is_empty() {
                        // Every value sent said n.
                        proptest::prop_assert!(sent.iter().all(|v| v.parse::<u64>() == Ok(n)));
                        proptest::prop_assert!(n > 0 || upper == Some(0));
                    }
                    let canonical = n.to_string();
                    proptest::prop_assert!(after.is_empty() || after == vec![canonical.as_str()]);
                    proptest::prop_assert!(!after.is_empty() || (n == 0 && !post));
                }
                Ok(None) => {
                    proptest::prop_assert!(sent.is_empty() && after.is_empty());
                }
                Err(err) => {
                    proptest::prop_assert_eq!(err.kind(), ErrorKind::ContentLengthMismatch);
                    proptest::prop_assert!(!sent.is_empty());
                }
            }
        }
    }
}
