//! [`PathRules`]: what a proxy does with a request's path before it
//! forwards it under the upstream's prefix: decode what needs no encoding,
//! resolve dot segments, and refuse the spellings that upstreams read in
//! other ways than this proxy does (the options Envoy calls path
//! normalisation, merge slashes and reject escaped slashes).

/// What to do with `.` and `..` segments (also spelled `%2e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotSegments {
    /// Resolve them as RFC 3986 §5.2.4 says, never above the root: `/a/../b`
    /// is forwarded as `/b`, `/../admin` as `/admin`, under the prefix.
    Normalize,
    /// Refuse the request (`400`).
    Refuse,
}

/// What to do with `%2F`, `%5C` and `\` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Refuse the request (`400`): an upstream that decodes them sees
    /// segments this proxy did not, `..%2f..%2fadmin` among them.
    Refuse,
    /// Forward them as they are (`%2F` stays encoded; `\` is then encoded
    /// as `%5C`), for upstreams that take them as data.
    Keep,
}

/// How [`Upstream`](super::Upstream) turns a request's path into the
/// upstream's. The default is the safe one: unreserved characters decoded
/// (`%61` is `a`, `%2e` is `.`, RFC 3986 §6.2.2.2) and the other
/// percent-encodings' hex upper-cased, dot segments resolved, and refused:
/// encoded slashes and backslashes, and a `;` after a dot segment (`..;`,
/// which Tomcat-style upstreams read as `..`). Slashes are not merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    dot_segments: DotSegments,
    escaped_slashes: EscapedSlashes,
    merge_slashes: bool,
    params_in_dot_segments: bool,
}

impl Default for PathRules {
    fn default() -> PathRules {
        PathRules {
            dot_segments: DotSegments::Normalize,
            escaped_slashes: EscapedSlashes::Refuse,
            merge_slashes: false,
            params_in_dot_segments: false,
        }
    }
}

impl PathRules {
    /// The default rules (see the type's docs).
    pub fn new() -> PathRules {
        PathRules::default()
    }

    /// Resolve or refuse dot segments (default: resolve).
    pub fn dot_segments(mut self, rule: DotSegments) -> PathRules {
        self.dot_segments = rule;
        self
    }

    /// Refuse or keep `%2F`, `%5C` and `\` (default: refuse).
    pub fn escaped_slashes(mut self, rule: EscapedSlashes) -> PathRules {
        self.escaped_slashes = rule;
        self
    }

    /// Merge runs of `/` into one (default: no).
    pub fn merge_slashes(mut self, merge: bool) -> PathRules {
        self.merge_slashes = merge;
        self
    }

    /// Allow a `;` parameter on a dot segment (`..;x`), which is then not a
    /// dot segment to this proxy (default: refuse the request).
    pub fn params_in_dot_segments(mut self, allow: bool) -> PathRules {
        self.params_in_dot_segments = allow;
        self
    }

    /// The path to forward for `path`, or why it is refused.
    pub(crate) fn apply(&self, path: &str) -> Result<String, &'static str> {
        let mut decoded = String::with_capacity(path.len());
        let bytes = path.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    let Some(byte) = hex else {
                        return Err("the path has a malformed percent-encoding");
                    };
                    if is_unreserved(byte) {
                        decoded.push(byte as char);
                    } else {
                        if (byte == b'/' || byte == b'\\')
                            && self.escaped_slashes == EscapedSlashes::Refuse
                        {
                            return Err("the path has an encoded slash or backslash \
                                        (%2F, %5C), which upstreams may decode");
                        }
                        decoded.push_str(&format!("%{byte:02X}"));
                    }
                    i += 3;
                }
                b'\\' => {
                    if self.escaped_slashes == EscapedSlashes::Refuse {
                        return Err("the path has a backslash, which upstreams may read as `/`");
                    }
                    decoded.push_str("%5C");
                    i += 1;
                }
                other if other >= 0x80 => {
                    decoded.push_str(&format!("%{other:02X}"));
                    i += 1;
                }
                other => {
                    decoded.push(other as char);
                    i += 1;
                }
            }
        }
        let mut segments: Vec<&str> = decoded.split('/').collect();
        if !self.params_in_dot_segments
            && segments.iter().any(|s| {
                // `;` as it is, or encoded: an upstream may decode it first.
                let name = s.split([';']).next().unwrap_or(s);
                let name = name.split("%3B").next().unwrap_or(name);
                name.len() < s.len() && (name == "." || name == "..")
            })
        {
            return Err("the path has a `;` on a `.` or `..` segment (`..;`), \
                        which some upstreams read as `..`");
        }
        if self.merge_slashes {
            let first = segments.first().copied();
            segments.retain(|s| !s.is_empty());
            if first == Some("") {
                segments.insert(0, "");
            }
            // A path that ended in `/` keeps it.
            if decoded.len() > 1 && decoded.ends_with('/') {
                segments.push("");
            }
        }
        let has_dots = segments.iter().any(|s| *s == "." || *s == "..");
        if !has_dots {
            return Ok(segments.join("/"));
        }
        if self.dot_segments == DotSegments::Refuse {
            return Err("the path has `.` or `..` segments; send it normalised");
        }
        Ok(remove_dot_segments(&segments))
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §5.2.4 over the segments of an absolute path: `.` dropped,
/// `..` drops the segment before it (none above the root), and a path that
/// ends in one of them ends in `/`.
fn remove_dot_segments(segments: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let absolute = segments.first() == Some(&"");
    let rest = if absolute { &segments[1..] } else { segments };
    let mut trailing_slash = false;
    for segment in rest {
        trailing_slash = false;
        match *segment {
            "." => trailing_slash = true,
            ".." => {
                out.pop();
                trailing_slash = true;
            }
            other => out.push(other),
        }
    }
    let mut path = String::new();
    if absolute {
        path.push('/');
    }
    path.push_str(&out.join("/"));
    if trailing_slash && !path.ends_with('/') {
        path.push('/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules() {
        let rules = PathRules::new();
        let ok: &[(&str, &str)] = &[
            ("/a/b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../admin", "/admin"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/%2e%2E/b", "/b"),
            ("/%61dmin/%7Euser", "/admin/~user"),
            ("/a%20b/%c3%a9", "/a%20b/%C3%A9"),
            ("/a..b/.hidden/...", "/a..b/.hidden/..."),
            ("/a//b", "/a//b"),
            ("/", "/"),
            ("/a;v=1/b", "/a;v=1/b"),
        ];
        for (path, want) in ok {
            assert_eq!(rules.apply(path).as_deref(), Ok(*want), "{path}");
        }
        for path in [
            "/p/%2e%2e%2f%2e%2e%2fadmin",
            "/p/..%2f..%2fadmin",
            "/p/..%5c..%5cadmin",
            "/p/..%5C..%5Cadmin",
            "/p/..\\..\\admin",
            "/p/..;/..;/admin",
            "/p/.;x/admin",
            "/p/%2e%2e;/admin",
            "/p/..%3b/..%3B/admin",
            "/p/%zz",
            "/p/%2",
        ] {
            assert!(rules.apply(path).is_err(), "{path}");
        }
    }

    #[test]
    fn each_rule_can_be_changed() {
        let refuse = PathRules::new().dot_segments(DotSegments::Refuse);
        assert!(refuse.apply("/a/../b").is_err());
        assert_eq!(refuse.apply("/a/b").as_deref(), Ok("/a/b"));
        let keep = PathRules::new().escaped_slashes(EscapedSlashes::Keep);
        assert_eq!(keep.apply("/a%2fb").as_deref(), Ok("/a%2Fb"));
        assert_eq!(keep.apply("/a\\b").as_deref(), Ok("/a%5Cb"));
        // Kept encoded, `%2F` is not a separator: `..%2F..` is one segment.
        assert_eq!(
            keep.apply("/p/..%2f..%2fx").as_deref(),
            Ok("/p/..%2F..%2Fx")
        );
        let merge = PathRules::new().merge_slashes(true);
        assert_eq!(merge.apply("//a///b/").as_deref(), Ok("/a/b/"));
        assert_eq!(merge.apply("/a//../b").as_deref(), Ok("/b"));
        let params = PathRules::new().params_in_dot_segments(true);
        assert_eq!(params.apply("/p/..;/x").as_deref(), Ok("/p/..;/x"));
    }
}
