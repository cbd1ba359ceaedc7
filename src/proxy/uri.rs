//! [`Upstream`]: where requests are forwarded, and the request URI each
//! one gets there.

use std::fmt;
use std::str::FromStr;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;

use super::path::PathRules;

/// The server a proxy forwards to: a scheme, an authority, and an optional
/// path prefix, such as `http://127.0.0.1:9000` or
/// `http://storage.internal/v1`.
///
/// A request for `/files/a.bin?v=2` is forwarded to
/// `http://storage.internal/v1/files/a.bin?v=2`: the prefix, then the
/// request's path as [`PathRules`] leave it (by default: dot segments
/// resolved, unreserved characters decoded, encoded slashes refused) and
/// its query as the client sent it.
///
/// ```
/// use mmap_body::proxy::Upstream;
///
/// let upstream: Upstream = "http://storage.internal/v1".parse().unwrap();
/// let uri = upstream.uri_for(&"/files/a.bin?v=2".parse().unwrap()).unwrap();
/// assert_eq!(uri, "http://storage.internal/v1/files/a.bin?v=2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// Empty, or `/`-led without a trailing `/`.
    prefix: String,
    rules: PathRules,
}

/// Why a URI cannot be an [`Upstream`]: it is not a URI, or it lacks a
/// scheme or host, or it has a query or fragment.
#[derive(Debug, Clone)]
pub struct InvalidUpstream(String);

impl fmt::Display for InvalidUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidUpstream {}

impl TryFrom<Uri> for Upstream {
    type Error = InvalidUpstream;

    fn try_from(uri: Uri) -> Result<Upstream, InvalidUpstream> {
        let invalid = |why: &str| InvalidUpstream(format!("the upstream {uri} {why}"));
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("has no scheme; write it as http://host:port"))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("has no host; write it as http://host:port"))?;
        if uri.query().is_some() {
            return Err(invalid(
                "has a query; give only a scheme, host and path prefix",
            ));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        if has_dot_segment(&prefix) {
            return Err(invalid("has `.` or `..` segments in its path"));
        }
        Ok(Upstream {
            scheme,
            authority,
            prefix,
            rules: PathRules::default(),
        })
    }
}

impl FromStr for Upstream {
    type Err = InvalidUpstream;

    fn from_str(s: &str) -> Result<Upstream, InvalidUpstream> {
        let uri: Uri = s
            .parse()
            .map_err(|e| InvalidUpstream(format!("the upstream {s:?} is not a URI: {e}")))?;
        Upstream::try_from(uri)
    }
}

impl TryFrom<&str> for Upstream {
    type Error = InvalidUpstream;

    fn try_from(s: &str) -> Result<Upstream, InvalidUpstream> {
        s.parse()
    }
}

impl TryFrom<&String> for Upstream {
    type Error = InvalidUpstream;

    fn try_from(s: &String) -> Result<Upstream, InvalidUpstream> {
        s.parse()
    }
}

impl TryFrom<String> for Upstream {
    type Error = InvalidUpstream;

    fn try_from(s: String) -> Result<Upstream, InvalidUpstream> {
        s.parse()
    }
}

/// An [`Upstream`] given where a `TryInto<Upstream>` is taken (as
/// [`ReverseProxy::builder`](super::ReverseProxy::builder) takes one)
/// cannot fail.
impl From<std::convert::Infallible> for InvalidUpstream {
    fn from(never: std::convert::Infallible) -> InvalidUpstream {
        match never {}
    }
}

impl Upstream {
    /// The upstream's authority (`host:port`): what the client library
    /// sends as `Host` (HTTP/1.1) or `:authority` (HTTP/2).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// How request paths are checked and normalised (see [`PathRules`]).
    pub fn path_rules(mut self, rules: PathRules) -> Upstream {
        self.rules = rules;
        self
    }

    /// The URI a request for `uri` is forwarded to: this upstream's scheme
    /// and authority, its path prefix, then `uri`'s path and query. Only
    /// the path and query of `uri` are used, so an absolute-form request
    /// (`PUT http://elsewhere/x`) cannot choose another host; `*`
    /// (`OPTIONS *`) becomes the prefix, or `/`.
    ///
    /// `None` when the [`PathRules`] refuse the path (see
    /// [`forward_uri`](Upstream::forward_uri) for why).
    pub fn uri_for(&self, uri: &Uri) -> Option<Uri> {
        self.forward_uri(uri).ok()
    }

    /// [`uri_for`](Upstream::uri_for), or why the path is refused: an
    /// upstream that read it otherwise than this proxy could be reached
    /// outside the prefix, or a file outside the directory it serves.
    pub fn forward_uri(&self, uri: &Uri) -> Result<Uri, &'static str> {
        let normalised = match uri.path() {
            "*" | "" => String::new(),
            path => self.rules.apply(path)?,
        };
        let path = normalised.as_str();
        let mut joined = String::with_capacity(self.prefix.len() + path.len() + 1);
        joined.push_str(&self.prefix);
        match path {
            // `OPTIONS *` (asterisk-form) asks about the server as a whole:
            // here, about the prefix.
            "*" | "" => {
                if self.prefix.is_empty() {
                    joined.push('/');
                }
            }
            p if p.starts_with('/') => joined.push_str(p),
            p => {
                joined.push('/');
                joined.push_str(p);
            }
        }
        if let Some(query) = uri.query() {
            joined.push('?');
            joined.push_str(query);
        }
        let path_and_query =
            PathAndQuery::try_from(joined).map_err(|_| "the path is not a valid URI path")?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| "the path is not a valid URI path")
    }
}

/// Whether a path has a `.` or `..` segment, plain or percent-encoded.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uris() {
        // (upstream, request URI, forwarded URI)
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "http://up:9000",
                "/a/b?x=1&y=2",
                Some("http://up:9000/a/b?x=1&y=2"),
            ),
            ("http://up:9000/", "/a", Some("http://up:9000/a")),
            ("http://up/v1", "/a/b", Some("http://up/v1/a/b")),
            ("http://up/v1/", "/a/b?q", Some("http://up/v1/a/b?q")),
            ("http://up/v1", "/", Some("http://up/v1/")),
            ("http://up", "/", Some("http://up/")),
            ("http://up/v1", "/a%20b/%3F", Some("http://up/v1/a%20b/%3F")),
            // Absolute form: the client does not choose the host.
            (
                "http://up/v1",
                "http://evil.example/a?b",
                Some("http://up/v1/a?b"),
            ),
            ("https://up", "*", Some("https://up/")),
            ("http://up/v1", "*", Some("http://up/v1")),
            // Dot segments, plain or encoded, are resolved under the
            // prefix, never above it.
            ("http://up/v1", "/../admin", Some("http://up/v1/admin")),
            ("http://up/v1", "/a/./b", Some("http://up/v1/a/b")),
            ("http://up/v1", "/a/%2E%2e/b", Some("http://up/v1/b")),
            ("http://up/v1", "/a/.%2e", Some("http://up/v1/")),
            ("http://up", "/..", Some("http://up/")),
            // Encoded slashes and `..;` are refused.
            ("http://up/v1", "/a/..%2f..%2fadmin", None),
            ("http://up/v1", "/..;/admin", None),
            // Dots inside a name are fine.
            (
                "http://up",
                "/a..b/.hidden/...",
                Some("http://up/a..b/.hidden/..."),
            ),
        ];
        for (base, uri, want) in cases {
            let upstream: Upstream = base.parse().unwrap();
            let got = upstream.uri_for(&uri.parse().unwrap());
            assert_eq!(
                got.map(|u| u.to_string()).as_deref(),
                *want,
                "{base} + {uri}"
            );
        }
    }

    #[test]
    fn invalid_upstreams() {
        for bad in [
            "/just/a/path",
            "up:9000",
            "http://up/?q=1",
            "http://up/a/../b",
            "not a uri",
        ] {
            let err = bad.parse::<Upstream>().expect_err(bad);
            assert!(err.to_string().contains("upstream"), "{bad}: {err}");
        }
        let ok: Upstream = "http://127.0.0.1:1/".parse().unwrap();
        assert_eq!(ok.authority().as_str(), "127.0.0.1:1");
    }
}
