//! Where the upload resource is: its `Location`, resolved against the
//! request's URI, and whether it is on the request's origin (RFC 6454:
//! scheme, host and port). A server names the upload resource, so a server
//! could name any host: by default the client goes to its own origin only,
//! as curl and Fetch keep credentials to the origin across a redirect.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Uri;

use super::dialect::protocol_error;
use crate::error::BoxError;

/// What a request to another origin never carries.
const CREDENTIALS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// The upload resource the creation's `location` names, resolved against
/// the request's URI `base`. On another origin it is an error unless
/// `cross_origin` allows it.
pub(super) fn upload_resource(
    base: &Uri,
    location: &HeaderValue,
    cross_origin: bool,
) -> Result<Uri, BoxError> {
    let uri = resolve(base, location)?;
    if !cross_origin && !same_origin(base, &uri) {
        return Err(protocol_error(format!(
            "the server put the upload resource on another origin ({}) than the request's ({}): \
             not followed, so that neither the body nor the request's credentials go there \
             (ResumeLayer::allow_cross_origin(true) follows it, without Authorization, Cookie \
             and Proxy-Authorization)",
            origin(&uri),
            origin(base),
        )));
    }
    Ok(uri)
}

/// Removes the credentials from the headers of a request to `to`, when it
/// is not on the origin of the request `from`.
pub(super) fn strip_credentials(from: &Uri, to: &Uri, headers: &mut HeaderMap) {
    if !same_origin(from, to) {
        for name in CREDENTIALS {
            headers.remove(name);
        }
    }
}

/// Whether `a` and `b` have the same origin: scheme, host and port, a
/// missing port being the scheme's default (RFC 6454 §4).
fn same_origin(a: &Uri, b: &Uri) -> bool {
    let scheme = |u: &Uri| u.scheme_str().map(str::to_ascii_lowercase);
    let host = |u: &Uri| u.host().map(str::to_ascii_lowercase);
    scheme(a) == scheme(b) && host(a) == host(b) && port(a) == port(b)
}

fn port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        _ => None,
    })
}

/// `scheme://host:port`, for messages.
fn origin(uri: &Uri) -> String {
    format!(
        "{}://{}:{}",
        uri.scheme_str().unwrap_or(""),
        uri.host().unwrap_or("").to_ascii_lowercase(),
        port(uri).map_or(String::new(), |p| p.to_string())
    )
}

/// `location` resolved against the request's URI (RFC 9110 §10.2.2 allows
/// a relative reference).
fn resolve(base: &Uri, location: &HeaderValue) -> Result<Uri, BoxError> {
    let text = location.to_str()?;
    match text.parse::<Uri>() {
        Ok(uri) if uri.scheme().is_some() => return Ok(uri),
        // A path, absolute or relative (`uploads/1` is not a `Uri`).
        _ => {}
    }
    let path = if text.starts_with('/') {
        text.to_owned()
    } else {
        let base_path = base.path();
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{text}")
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(path.parse()?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port() {
        let base = Uri::from_static("http://Example.com/files");
        let cases = [
            ("/uploads/1", true),
            ("uploads/1", true),
            ("http://example.com:80/u", true),
            ("HTTP://EXAMPLE.COM/u", true),
            ("http://user:pw@example.com/u", true),
            ("https://example.com/u", false),
            ("http://example.com:8080/u", false),
            ("http://example.org/u", false),
            ("http://127.0.0.2/u", false),
            ("http://example.com.evil/u", false),
        ];
        for (location, same) in cases {
            let value = HeaderValue::from_static(location);
            let followed = upload_resource(&base, &value, false);
            assert_eq!(followed.is_ok(), same, "{location}: {followed:?}");
            assert!(upload_resource(&base, &value, true).is_ok(), "{location}");
        }
        let https = Uri::from_static("https://h/files");
        assert!(same_origin(&https, &Uri::from_static("https://h:443/u")));
        let err = upload_resource(&base, &HeaderValue::from_static("http://evil:81/u"), false);
        let text = err.unwrap_err().to_string();
        assert!(
            text.contains("http://evil:81") && text.contains("http://example.com:80"),
            "{text}"
        );
    }

    #[test]
    fn credentials_stay_on_their_origin() {
        let mut headers = HeaderMap::new();
        for name in [
            "authorization",
            "cookie",
            "proxy-authorization",
            "x-request-id",
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("v"));
        }
        let from = Uri::from_static("http://a/files");
        let mut same = headers.clone();
        strip_credentials(&from, &Uri::from_static("http://a:80/u/1"), &mut same);
        assert_eq!(same.len(), 4);
        strip_credentials(&from, &Uri::from_static("http://b/u/1"), &mut headers);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-request-id"]);
    }
}
