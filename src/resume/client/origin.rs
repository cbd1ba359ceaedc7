//! Where the upload resource is: its `Location`, resolved against the
//! request's URI.

use http::header::HeaderValue;
use http::Uri;

use crate::error::BoxError;

/// `location` resolved against the request's URI (RFC 9110 §10.2.2 allows
/// a relative reference).
pub(super) fn resolve(base: &Uri, location: &HeaderValue) -> Result<Uri, BoxError> {
    let text = location.to_str()?;
    let uri: Uri = text.parse()?;
    if uri.scheme().is_some() {
        return Ok(uri);
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
