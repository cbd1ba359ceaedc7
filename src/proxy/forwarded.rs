//! `Forwarded` (RFC 7239 §4): the element this proxy adds, and whether a
//! received value is one that can be appended to.

use std::net::IpAddr;

use http::header::FORWARDED;
use http::{HeaderMap, HeaderValue};

use super::headers::{append_list, is_tchar};

/// Appends this proxy's element for `peer` (and the client's `host`) to
/// the request's `Forwarded`, as one line.
///
/// A received `Forwarded` that is not well-formed ([`is_well_formed`]: an
/// unbalanced quote, a pair that is not `token=value`, a parameter twice
/// in an element) is dropped first, every line of it, and the upstream
/// gets this proxy's element alone. Appended to, the client's open quote
/// would take this proxy's element into its quoted string
/// (`for=6.6.6.6;x=", for=192.0.2.1`), and an upstream would read the
/// client's `for=` as the last hop; its earlier entries are unparseable
/// anyway, so nothing an upstream could trust is lost.
pub(super) fn append_forwarded(headers: &mut HeaderMap, peer: IpAddr, host: Option<&HeaderValue>) {
    let malformed = headers
        .get_all(FORWARDED)
        .iter()
        .any(|line| !is_well_formed(line.as_bytes()));
    if malformed {
        headers.remove(FORWARDED);
    }
    append_list(headers, FORWARDED, forwarded_element(peer, host));
}

/// Whether `line`, one `Forwarded` field line, follows RFC 7239 §4:
/// comma-separated elements, each `;`-separated pairs `token=value`, a
/// value a token or a quoted string (RFC 9110 §5.6.4), no parameter twice
/// in an element, at least one pair. Whitespace is allowed around `,` (the
/// list rule) and `;` (as some proxies write it), not around `=`.
pub(super) fn is_well_formed(line: &[u8]) -> bool {
    let mut rest = line;
    let mut pairs = 0usize;
    // The parameter names of the element being read.
    let mut names: Vec<&[u8]> = Vec::new();
    loop {
        rest = trim_start(rest);
        if rest.first().is_some_and(|&b| is_tchar(b)) {
            let Some((name, after)) = pair(rest) else {
                return false;
            };
            if names.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
                return false;
            }
            names.push(name);
            pairs += 1;
            rest = trim_start(after);
        }
        match rest.split_first() {
            None => return pairs > 0,
            Some((b';', after)) => rest = after,
            Some((b',', after)) => {
                names.clear();
                rest = after;
            }
            Some(_) => return false,
        }
    }
}

/// `token "=" ( token / quoted-string )` at the start of `s`: the name,
/// and what follows the value.
fn pair(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let (name, rest) = s.split_at(token_len(s));
    let rest = rest.strip_prefix(b"=")?;
    let rest = match rest.first()? {
        b'"' => after_quoted_string(rest)?,
        _ if token_len(rest) > 0 => &rest[token_len(rest)..],
        _ => return None,
    };
    Some((name, rest))
}

fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

/// What follows the quoted string that `s` starts with (RFC 9110 §5.6.4);
/// `None` if it is never closed or holds a control character.
fn after_quoted_string(s: &[u8]) -> Option<&[u8]> {
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Some(&s[i + 1..]),
            b'\\' => {
                let escaped = *s.get(i + 1)?;
                if escaped != b'\t' && (escaped < 0x20 || escaped == 0x7f) {
                    return None;
                }
                i += 2;
            }
            b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

fn trim_start(s: &[u8]) -> &[u8] {
    let blank = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[blank..]
}

/// A `Forwarded` element (RFC 7239 §4): `for=192.0.2.1`,
/// `for="[2001:db8::1]"`, and `;host="..."` when the client named one that
/// needs no escaping.
fn forwarded_element(peer: IpAddr, host: Option<&HeaderValue>) -> HeaderValue {
    let mut element = match peer {
        IpAddr::V4(ip) => format!("for={ip}"),
        IpAddr::V6(ip) => format!("for=\"[{ip}]\""),
    };
    let host = host.and_then(|h| h.to_str().ok()).filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    });
    if let Some(host) = host {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    HeaderValue::from_str(&element).expect("visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_values() {
        let good = [
            "for=192.0.2.43",
            "for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com",
            "For=\"[2001:db8:cafe::17]:4711\"",
            "for=\"_gazonk\"",
            "for=unknown;proto=https",
            "for=a , for=b",
            "for=a; proto=http",
            "for=a;;proto=http",
            "for=a,,for=b",
            "for=\"a\\\"b\"",
            "for=\"a,b;c=d\"",
            "host=\"caf\u{e9}\"",
            "for=a, for=a",
        ];
        for value in good {
            assert!(is_well_formed(value.as_bytes()), "{value}");
        }
        let bad: &[&[u8]] = &[
            b"",
            b" ",
            b",",
            b";",
            b"for=6.6.6.6;x=\"",
            b"for=\"6.6.6.6",
            b"for=\"a\\\"",
            b"for=6.6.6.6;by",
            b"for",
            b"for=",
            b"=a",
            b"for =a",
            b"for= a",
            b"for=a b",
            b"for=[::1]",
            b"for=a;for=b",
            b"for=a;FOR=b",
            b"for=a\"b\"",
            b"for=\"a\"b",
            b"for=\"a\x01\"",
            b"for=\"a\\\x01\"",
            b"for=\"a\x7f\"",
            b"for=a, x=\"",
        ];
        for value in bad {
            assert!(
                !is_well_formed(value),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn appended_or_replaced() {
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let host = HeaderValue::from_static("files.example");
        let ours = "for=192.0.2.1;host=\"files.example\"";
        // (received lines, the one line sent on)
        let cases: &[(&[&str], String)] = &[
            (&[], ours.to_owned()),
            (&["for=6.6.6.6"], format!("for=6.6.6.6, {ours}")),
            (
                &["for=a", "for=b;proto=http"],
                format!("for=a, for=b;proto=http, {ours}"),
            ),
            (&["for=6.6.6.6;x=\""], ours.to_owned()),
            // Each line on its own: these two join into a valid string.
            (&["for=a;x=\"", "\""], ours.to_owned()),
            (&["for=a", "by"], ours.to_owned()),
        ];
        for (received, want) in cases {
            let mut headers = HeaderMap::new();
            for line in *received {
                headers.append(FORWARDED, HeaderValue::from_str(line).unwrap());
            }
            append_forwarded(&mut headers, peer, Some(&host));
            let got: Vec<&str> = headers
                .get_all(FORWARDED)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(got, [want.as_str()], "{received:?}");
        }
    }
}
