//! reqwest 0.13 over rustls with the ring provider, for mmap-body's tests
//! in `tests/` here: [`reqwest_tls_client`].
//!
//! A crate and a workspace of its own, outside mmap-body's: with any of
//! reqwest 0.13's rustls features but `rustls` (which brings aws-lc-rs),
//! building a `reqwest::Client` panics unless a rustls provider was
//! installed for the whole process first, and features unify across a
//! workspace, so in mmap-body's workspace every plain `reqwest::Client` of
//! its tests, examples and bench would panic.
//!
//! # How the provider is chosen
//!
//! No process-wide provider is installed (`CryptoProvider::install_default`
//! is never called here, and the tests check that none is). Each client is
//! handed a whole rustls `ClientConfig` built with ring,
//! [`TestCert::client_config`], through
//! `ClientBuilder::tls_backend_preconfigured`: reqwest then uses that
//! config as it is and never looks for a default provider (it only does
//! when it builds a config of its own). That is the only reqwest client
//! this crate makes; `reqwest::Client::new()` would still panic here.

#![deny(missing_docs)]

use mmap_body_devkit::tls::TestCert;

/// A reqwest client over rustls (ring) trusting `cert` alone, without
/// proxies: HTTP/2 through ALPN `h2`, with the windows of
/// `mmap_body_devkit::tls::tls_client`, when `http2` is set; HTTP/1.1 only
/// (ALPN `http/1.1`) otherwise.
///
/// Its TLS config is [`TestCert::client_config`], handed over whole (see
/// the crate docs): no process-wide rustls provider is needed.
pub fn reqwest_tls_client(http2: bool, cert: &TestCert) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(cert.client_config(http2));
    let builder = if http2 {
        builder
            .http2_initial_stream_window_size(8 << 20)
            .http2_initial_connection_window_size(16 << 20)
    } else {
        builder.http1_only()
    };
    builder.build().expect("the reqwest TLS client")
}

/// Whether a process-wide rustls provider was installed (the tests check
/// that none ever is).
pub fn process_provider_installed() -> bool {
    rustls::crypto::CryptoProvider::get_default().is_some()
}
