//! Which precompressed file to try first: `Accept-Encoding` (RFC 9110
//! §12.5.3) against the variants a [`ServeDir`](super::ServeDir) was told
//! to look for, decided as tower-http `ServeDir` decides it.
//!
//! Each coding the client names is kept if it is `identity` or a
//! configured variant (`gzip` also as `x-gzip`; names in any case), with
//! its `q` (1 when absent; a malformed one drops the entry); those with `q`
//! 0 are dropped. The order of preference is by `q`, then, at equal `q`, by
//! `zstd` > `br` > `gzip` > `deflate` > `identity`. The server tries the
//! files in that order until one exists, and stops at `identity` (or the
//! end of the list) with the plain file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use http::header::{self, HeaderMap, HeaderValue};

/// A content coding of a precompressed variant, ordered by preference at
/// equal `q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Encoding {
    Identity,
    Deflate,
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    /// The variant's file name suffix (tower-http's).
    fn suffix(self) -> &'static str {
        match self {
            Encoding::Identity => "",
            Encoding::Deflate => ".zz",
            Encoding::Gzip => ".gz",
            Encoding::Brotli => ".br",
            Encoding::Zstd => ".zst",
        }
    }

    /// The `Content-Encoding` value.
    pub(super) fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Encoding::Identity => "identity",
            Encoding::Deflate => "deflate",
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        })
    }

    /// `path` with this variant's suffix: `a.js` -> `a.js.gz`.
    pub(super) fn variant_of(self, path: &Path) -> PathBuf {
        let mut name = path.file_name().map(OsString::from).unwrap_or_default();
        name.push(self.suffix());
        path.with_file_name(name)
    }
}

/// The precompressed variants a server looks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Variants {
    pub(super) gzip: bool,
    pub(super) deflate: bool,
    pub(super) br: bool,
    pub(super) zstd: bool,
}

impl Variants {
    /// Whether any is looked for (then answers carry
    /// `Vary: accept-encoding`).
    pub(super) fn any(self) -> bool {
        self.gzip || self.deflate || self.br || self.zstd
    }

    fn parse(self, coding: &str) -> Option<Encoding> {
        let is = |name: &str| coding.eq_ignore_ascii_case(name);
        if (is("gzip") || is("x-gzip")) && self.gzip {
            Some(Encoding::Gzip)
        } else if is("deflate") && self.deflate {
            Some(Encoding::Deflate)
        } else if is("br") && self.br {
            Some(Encoding::Brotli)
        } else if is("zstd") && self.zstd {
            Some(Encoding::Zstd)
        } else if is("identity") {
            Some(Encoding::Identity)
        } else {
            None
        }
    }

    /// The codings to try, most preferred first, up to (without) the first
    /// `identity`: the variants to look for before the plain file.
    pub(super) fn preferred(self, headers: &HeaderMap) -> Vec<Encoding> {
        if !self.any() {
            return Vec::new();
        }
        // (coding, q in thousandths), the highest q of each coding.
        let mut best: Vec<(Encoding, u16)> = Vec::new();
        let values = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok());
        for entry in values.flat_map(|value| value.split(',')) {
            let mut parts = entry.splitn(2, ';');
            let Some(coding) = parts.next().and_then(|c| self.parse(c.trim())) else {
                continue;
            };
            let q = match parts.next() {
                Some(q) => match qvalue(q.trim()) {
                    Some(q) => q,
                    None => continue,
                },
                None => 1000,
            };
            if q == 0 {
                continue;
            }
            match best.iter_mut().find(|(c, _)| *c == coding) {
                Some((_, seen)) => *seen = (*seen).max(q),
                None => best.push((coding, q)),
            }
        }
        best.sort_by_key(|&(coding, q)| std::cmp::Reverse((q, coding)));
        best.into_iter()
            .map(|(coding, _)| coding)
            .take_while(|coding| *coding != Encoding::Identity)
            .collect()
    }
}

/// A `q=` weight (RFC 9110 §12.4.2) in thousandths: `0` or `1`, then up
/// to three decimals, `1` only as `1`, `1.`, `1.0`...; `Q=` taken too.
fn qvalue(text: &str) -> Option<u16> {
    let rest = text
        .strip_prefix("q=")
        .or_else(|| text.strip_prefix("Q="))?;
    let (whole, fraction) = match rest.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (rest, ""),
    };
    let mut value: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    if fraction.len() > 3 {
        return None;
    }
    let mut factor = 100;
    for digit in fraction.bytes() {
        if !digit.is_ascii_digit() {
            return None;
        }
        value += factor * u16::from(digit - b'0');
        factor /= 10;
    }
    (value <= 1000).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const ALL: Variants = Variants {
        gzip: true,
        deflate: true,
        br: true,
        zstd: true,
    };

    fn preferred(variants: Variants, values: &[&str]) -> Vec<Encoding> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        variants.preferred(&headers)
    }

    #[test]
    fn q_values() {
        let cases: &[(&str, Option<u16>)] = &[
            ("q=1", Some(1000)),
            ("q=0", Some(0)),
            ("Q=0.5", Some(500)),
            ("q=0.123", Some(123)),
            ("q=1.000", Some(1000)),
            ("q=1.", Some(1000)),
            ("q=1.001", None),
            ("q=0.1234", None),
            ("q=2", None),
            ("q=.5", None),
            ("q = 0.5", None),
            ("x=0.5", None),
            ("q=0.5x", None),
        ];
        for (text, want) in cases {
            assert_eq!(qvalue(text), *want, "{text}");
        }
    }

    #[test]
    fn the_order_tower_http_tries() {
        let gzip_br = Variants {
            gzip: true,
            br: true,
            ..Variants::default()
        };
        type Case<'a> = (Variants, &'a [&'a str], &'a [Encoding]);
        let cases: &[Case] = &[
            (ALL, &[], &[]),
            (Variants::default(), &["gzip"], &[]),
            (ALL, &["gzip"], &[Gzip]),
            (ALL, &["GZIP"], &[Gzip]),
            (ALL, &["x-gzip"], &[Gzip]),
            (
                ALL,
                &["gzip, deflate, br, zstd"],
                &[Zstd, Brotli, Gzip, Deflate],
            ),
            (gzip_br, &["gzip, deflate, br, zstd"], &[Brotli, Gzip]),
            (ALL, &["gzip;q=1, br;q=0.5"], &[Gzip, Brotli]),
            (ALL, &["gzip; q=0.5", "br;q=0.6"], &[Brotli, Gzip]),
            (ALL, &["br;q=0, gzip"], &[Gzip]),
            (ALL, &["identity, gzip"], &[Gzip]),
            (ALL, &["identity;q=1, gzip;q=0.5"], &[]),
            (ALL, &["gzip;q=0.5, identity;q=0.7, br;q=0.2"], &[]),
            (ALL, &["gzip;q=0.9, identity;q=0.7, br;q=0.2"], &[Gzip]),
            (ALL, &["*"], &[]),
            (ALL, &["gzip;q=bad, br"], &[Brotli]),
            (ALL, &["gzip;q=0.1, gzip;q=0.9, br;q=0.5"], &[Gzip, Brotli]),
            (ALL, &["compress, gzip"], &[Gzip]),
        ];
        for (variants, values, want) in cases {
            assert_eq!(preferred(*variants, values), *want, "{values:?}");
        }
    }

    #[test]
    fn variant_file_names() {
        assert_eq!(
            Gzip.variant_of(Path::new("/r/a.js")),
            Path::new("/r/a.js.gz")
        );
        assert_eq!(Zstd.variant_of(Path::new("/r/a")), Path::new("/r/a.zst"));
        assert_eq!(
            Deflate.variant_of(Path::new("/r/a.txt")),
            Path::new("/r/a.txt.zz")
        );
    }
}
