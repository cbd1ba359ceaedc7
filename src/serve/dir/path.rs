//! The request's path as a path under the root: percent-decoded, and
//! refused (`None`: a `404`, or the fallback) when it could leave the root.
//!
//! The rules are tower-http `ServeDir`'s: the leading `/`s dropped, the rest
//! percent-decoded and read as UTF-8, then split into components, where `.`
//! is skipped and `..`, a root or a drive prefix refuse the path. Since the
//! split comes after the decoding, `%2F` separates components as `/` does
//! (unless [`Rules::encoded_slash`] is off). Beyond tower-http, a NUL byte
//! refuses the path here (tower-http lets `open` refuse it), as does a path
//! no file system takes (longer than [`MAX_PATH`] bytes, or a component
//! longer than [`MAX_NAME`]).

use std::path::{Component, Path, PathBuf};

/// The longest relative path taken, in bytes (Linux's `PATH_MAX`).
pub(super) const MAX_PATH: usize = 4096;
/// The longest component taken, in bytes (`NAME_MAX` of every common file
/// system).
pub(super) const MAX_NAME: usize = 255;

/// How strictly a request's path is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rules {
    /// `%2F` (and `%2f`) separates components, as tower-http takes it; when
    /// `false`, a path with one is refused.
    pub(super) encoded_slash: bool,
}

/// The path under `root` that the URI path `request` names, or `None` if
/// it is refused.
pub(super) fn under_root(root: &Path, request: &str, rules: Rules) -> Option<PathBuf> {
    let relative = relative(request, rules)?;
    let mut path = root.to_path_buf();
    path.push(relative);
    Some(path)
}

/// The relative path `request` names (empty for the root itself).
pub(super) fn relative(request: &str, rules: Rules) -> Option<PathBuf> {
    let trimmed = request.trim_start_matches('/');
    if !rules.encoded_slash && has_encoded_slash(trimmed.as_bytes()) {
        return None;
    }
    let decoded = String::from_utf8(percent_decode(trimmed.as_bytes())).ok()?;
    if decoded.len() > MAX_PATH || decoded.contains('\0') {
        return None;
    }
    let mut path = PathBuf::new();
    for component in Path::new(&decoded).components() {
        match component {
            Component::Normal(name) => {
                if name.len() > MAX_NAME || !plain_name(Path::new(name)) {
                    return None;
                }
                path.push(name);
            }
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(path)
}

/// `true` for a name that is one plain component on this platform: on
/// Windows, not `c:` or `con` (tower-http's guard, issue #204, kept
/// simpler: no `:` and no `\` at all).
fn plain_name(name: &Path) -> bool {
    let plain = name
        .components()
        .all(|component| matches!(component, Component::Normal(_)));
    if cfg!(windows) {
        let text = name.to_string_lossy();
        return plain && !text.contains([':', '\\']) && !reserved_on_windows(&text);
    }
    plain
}

/// A DOS device name (`CON`, `NUL`, `COM1`, ...), which Windows opens
/// whatever the directory.
fn reserved_on_windows(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or("").trim_end();
    let upper = base.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || (upper.len() == 4
        && (upper.starts_with("COM") || upper.starts_with("LPT"))
        && upper.as_bytes()[3].is_ascii_digit())
}

fn has_encoded_slash(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] == b'F' || w[2] == b'f'))
}

/// Percent-decodes `bytes` (RFC 3986 §2.1): `%` and two hex digits is the
/// byte they name; any other `%` stands for itself, as the
/// `percent-encoding` crate (tower-http's) decodes it.
pub(super) fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(byte);
        i += 1;
    }
    out
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOWER: Rules = Rules {
        encoded_slash: true,
    };
    const STRICT: Rules = Rules {
        encoded_slash: false,
    };

    #[test]
    fn decodes_as_percent_encoding_does() {
        let cases: &[(&str, &[u8])] = &[
            ("a%20b", b"a b"),
            ("%41%4a%4A", b"AJJ"),
            ("100%", b"100%"),
            ("%2", b"%2"),
            ("%zz%", b"%zz%"),
            ("%%41", b"%A"),
            ("%E2%82%AC", "€".as_bytes()),
            ("%ff", &[0xff]),
        ];
        for (raw, want) in cases {
            assert_eq!(percent_decode(raw.as_bytes()), *want, "{raw}");
        }
    }

    #[test]
    fn the_path_under_the_root() {
        let root = Path::new("/srv");
        let ok: &[(&str, &str)] = &[
            ("/", "/srv"),
            ("", "/srv"),
            ("/a.txt", "/srv/a.txt"),
            ("//a.txt", "/srv/a.txt"),
            ("/dir/", "/srv/dir"),
            ("/./dir/./a", "/srv/dir/a"),
            ("/a%20b.txt", "/srv/a b.txt"),
            ("/dir%2Fa.txt", "/srv/dir/a.txt"),
            ("/dir%2fa.txt", "/srv/dir/a.txt"),
            // A backslash is a byte of a name on Unix, as in tower-http.
            #[cfg(unix)]
            ("/a%5Cb", "/srv/a\\b"),
            ("/.hidden", "/srv/.hidden"),
            ("/a..b", "/srv/a..b"),
        ];
        for (request, want) in ok {
            assert_eq!(
                under_root(root, request, TOWER).as_deref(),
                Some(Path::new(want)),
                "{request}"
            );
        }
    }

    #[test]
    fn refuses_every_way_out() {
        let long_name = format!("/{}", "a".repeat(MAX_NAME + 1));
        let long_path = "/a".repeat(MAX_PATH);
        let refused: &[&str] = &[
            "/..",
            "/../etc/passwd",
            "/dir/../../x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/.%2e/x",
            "/dir%2F..%2F..%2Fx",
            "/%2Fetc/passwd",
            "/a%00b",
            "/%c0%ae%c0%ae/x",
            "/%ff",
            &long_name,
            &long_path,
        ];
        for request in refused {
            assert_eq!(
                under_root(Path::new("/srv"), request, TOWER),
                None,
                "{request}"
            );
        }
    }

    #[test]
    fn the_strict_rule_refuses_encoded_slashes() {
        assert_eq!(relative("/dir%2Fa.txt", STRICT), None);
        assert_eq!(relative("/dir%2fa.txt", STRICT), None);
        assert_eq!(
            relative("/dir/a.txt", STRICT).as_deref(),
            Some(Path::new("dir/a.txt"))
        );
    }

    #[test]
    fn windows_device_names() {
        for name in ["con", "CON.txt", "nul ", "com1", "LPT9.log", "conin$"] {
            assert!(reserved_on_windows(name), "{name}");
        }
        for name in ["console", "com", "comx", "a.con"] {
            assert!(!reserved_on_windows(name), "{name}");
        }
    }
}
