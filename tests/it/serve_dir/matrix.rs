//! The requests of the differential test: every kind of path, method,
//! `Accept-Encoding`, range and condition, each with the documented
//! difference (if any) its answers may show.

use http::Method;

use super::differential::Diff;

#[derive(Debug, Clone)]
pub(super) struct Case {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) diff: Option<Diff>,
}

fn case(method: Method, path: impl Into<String>) -> Case {
    Case {
        method,
        path: path.into(),
        headers: Vec::new(),
        diff: None,
    }
}

pub(super) fn get(path: impl Into<String>) -> Case {
    case(Method::GET, path)
}

impl Case {
    fn with(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    fn differs(mut self, diff: Diff) -> Case {
        self.diff = Some(diff);
        self
    }

    fn head(mut self) -> Case {
        self.method = Method::HEAD;
        self
    }
}

/// Every path kind: files of each type, directories with and without `/`
/// and a query, missing files, links, and traversal encoded every way.
fn paths() -> Vec<String> {
    let mut paths: Vec<String> = [
        "/",
        "/index.html",
        "/a.txt",
        "/style.css",
        "/data.json",
        "/script.js",
        "/image.png",
        "/noext",
        "/empty.txt",
        "/.hidden",
        "/big.bin",
        "/only.txt",
        "/a%20b.txt",
        "/about",
        "/dir",
        "/dir/",
        "/dir?x=1&y",
        "/dir/?x=1",
        "/dir//",
        "/dir/index.html",
        "/dir/sub.txt",
        "/dir/sub.txt/",
        "/a.txt/",
        "/a.txt/x",
        "/noindex",
        "/noindex/",
        "/noindex/x.txt",
        "/missing",
        "/missing/",
        "/dir/missing.txt",
        "/dir%2Fsub.txt",
        "/dir%2fsub.txt",
        "/link-out",
        "/link-in",
        "/./a.txt",
        "/dir/./sub.txt",
        "/A.TXT",
        // Out of the root, every way.
        "/../outside/secret.txt",
        "/..",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/%2e./outside/secret.txt",
        "/dir/../../outside/secret.txt",
        "/dir/%2e%2e/%2e%2e/outside/secret.txt",
        "/%2e%2e%2foutside%2fsecret.txt",
        "/..%2Foutside%2Fsecret.txt",
        "/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/%2Fetc%2Fpasswd",
        "//etc/passwd",
        "/..%5Coutside%5Csecret.txt",
        "/%5C..%5Coutside%5Csecret.txt",
        "/%c0%ae%c0%ae/outside/secret.txt",
        "/%252e%252e/outside/secret.txt",
        "/a%00.txt",
        "/%00",
        "/%ff",
        "/%",
        "/a.txt%",
        "/%zz",
    ]
    .map(str::to_owned)
    .to_vec();
    paths.push(format!("/{}", "n".repeat(300)));
    paths.push("/a".repeat(2100));
    paths
}

/// Hostile paths tower-http answers `500` (`ENAMETOOLONG`; `HEAD` with a
/// NUL: `open`'s `InvalidInput` is not its "not found").
fn refused(method: &Method, path: &str) -> bool {
    path.len() > 300 || (method == Method::HEAD && path.contains("%00"))
}

pub(super) fn main_matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    for path in paths() {
        for method in [Method::GET, Method::HEAD] {
            let mut case = case(method.clone(), path.clone());
            if refused(&method, &path) {
                case = case.differs(Diff::Refused);
            }
            cases.push(case);
        }
    }
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for path in ["/a.txt", "/missing", "/../x", "/dir"] {
            cases.push(case(method.clone(), path));
        }
    }
    let encodings = [
        "gzip",
        "br",
        "gzip, br",
        "br;q=0.5, gzip",
        "gzip;q=0.5, br;q=0.9",
        "identity",
        "gzip;q=0",
        "*",
        "x-gzip",
        "deflate",
        "zstd",
        "GZIP",
        "identity;q=1, gzip;q=0.5",
        "br;q=0, gzip;q=0",
        "gzip;q=bad",
        "gzip, deflate, br, zstd",
    ];
    for path in ["/a.txt", "/style.css", "/only.txt", "/dir/", "/missing"] {
        for ae in encodings {
            cases.push(get(path).with("accept-encoding", ae));
            cases.push(get(path).with("accept-encoding", ae).head());
        }
    }
    use Diff::*;
    let ranges: &[(&str, Option<Diff>)] = &[
        ("bytes=0-99", None),
        ("bytes=-100", None),
        ("bytes=299990-", None),
        ("bytes=0-", None),
        ("bytes=299999-299999", None),
        ("bytes=0-999999", None),
        ("bytes=300000-", None),
        ("bytes=500-100", Some(IgnoredRange)),
        ("bytes=0-1,5-6", Some(SeveralRanges)),
        ("bytes=0-1, 100-200, 1000-", Some(SeveralRanges)),
        ("items=0-5", Some(IgnoredRange)),
        ("bytes=abc", Some(IgnoredRange)),
    ];
    for (range, diff) in ranges {
        let mut case = get("/big.bin").with("range", *range);
        case.diff = *diff;
        cases.push(case);
    }
    cases.push(
        get("/big.bin")
            .with("range", "bytes=0-99")
            .head()
            .differs(HeadRange),
    );
    cases.push(
        get("/empty.txt")
            .with("range", "bytes=0-")
            .differs(EmptyFileRange),
    );
    cases.push(
        get("/empty.txt")
            .with("range", "bytes=-5")
            .differs(EmptyFileRange),
    );
    cases.push(
        get("/empty.txt")
            .with("range", "bytes=0-0")
            .differs(EmptyFileRange),
    );
    cases.push(
        get("/a.txt")
            .with("accept-encoding", "gzip")
            .with("range", "bytes=0-9"),
    );
    cases.push(
        get("/a.txt")
            .with("accept-encoding", "gzip")
            .with("range", "bytes=0-1,3-4")
            .differs(SeveralRangesOfVariant),
    );
    for path in ["/a.txt", "/big.bin", "/dir/"] {
        let conditional: &[(&str, &str, Option<Diff>)] = &[
            ("if-none-match", "{etag}", Some(VaryOn304)),
            ("if-none-match", "W/{etag}", Some(VaryOn304)),
            ("if-none-match", "*", Some(VaryOn304)),
            ("if-none-match", "\"nope\"", None),
            ("if-match", "\"nope\"", None),
            ("if-match", "{etag}", None),
            ("if-match", "*", None),
            ("if-modified-since", "{lm}", Some(VaryOn304)),
            ("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT", None),
            ("if-modified-since", "garbage", None),
            ("if-unmodified-since", "Thu, 01 Jan 1970 00:00:00 GMT", None),
            ("if-unmodified-since", "{lm}", None),
        ];
        for (name, value, diff) in conditional {
            let mut case = get(path).with(name, *value);
            case.diff = *diff;
            cases.push(case.clone().head());
            cases.push(case.clone().with("accept-encoding", "gzip"));
            cases.push(case);
        }
        let if_range: &[(&str, Option<Diff>)] = &[
            ("{etag}", None),
            ("{lm}", None),
            ("\"nope\"", Some(StaleIfRange)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(StaleIfRange)),
        ];
        for (value, diff) in if_range {
            let mut case = get(path)
                .with("if-range", *value)
                .with("range", "bytes=0-9");
            case.diff = *diff;
            cases.push(case);
        }
    }
    cases
}

/// For the pairs with a fallback, and those with other options.
pub(super) fn other_matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    let paths = [
        "/",
        "/missing",
        "/../x",
        "/%2e%2e/x",
        "/a.txt",
        "/dir",
        "/dir/",
        "/dir?q=1",
        "/a.txt/",
        "/a.txt/x",
        "/noindex",
        "/noindex/",
        "/%ff",
        "/a%00b",
        "/about",
        "/about.html",
        "/dir/sub",
        "/any/thing",
    ];
    for path in paths {
        cases.push(get(path));
        let head = get(path).head();
        cases.push(if path.contains("%00") {
            head.differs(Diff::Refused)
        } else {
            head
        });
        cases.push(get(path).with("accept-encoding", "gzip"));
    }
    for method in [Method::POST, Method::DELETE] {
        for path in ["/a.txt", "/missing"] {
            cases.push(case(method.clone(), path));
        }
    }
    cases.push(get("/a.txt").with("range", "bytes=3-5"));
    cases.push(
        get("/a.txt")
            .with("if-none-match", "{etag}")
            .differs(Diff::VaryOn304),
    );
    cases
}
