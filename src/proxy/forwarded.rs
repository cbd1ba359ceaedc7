//! `Forwarded` (RFC 7239 §4): the element this proxy adds.

use std::net::IpAddr;

use http::HeaderValue;

/// A `Forwarded` element (RFC 7239 §4): `for=192.0.2.1`,
/// `for="[2001:db8::1]"`, and `;host="..."` when the client named one that
/// needs no escaping.
pub(super) fn forwarded_element(peer: IpAddr, host: Option<&HeaderValue>) -> HeaderValue {
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
