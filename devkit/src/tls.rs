//! The servers and clients of [`server`](crate::server) over TLS, on
//! 127.0.0.1 only: a test certificate made at run time ([`TestCert`]),
//! [`serve_tls`], [`hashing_server_tls`] and [`pausing_server_tls`], a
//! hyper-util client ([`tls_client`], through [`TlsConnector`]) trusting
//! that certificate alone.
//!
//! rustls with the ring provider everywhere, never aws-lc-rs. The server
//! offers ALPN `h2` and `http/1.1` and speaks what was negotiated; the
//! client offers one of them: `h2` when asked for HTTP/2, `http/1.1`
//! otherwise.
//!
//! No reqwest client here: any of reqwest 0.13's rustls features but
//! `rustls` (aws-lc-rs) makes every `reqwest::Client` of the build panic
//! unless a rustls provider was installed for the whole process first, and
//! features unify, so the plain clients of the other tests would panic.
//! reqwest over TLS is tested in `interop/reqwest-tls/`, a workspace of its
//! own, with a client handed [`TestCert::client_config`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::server::{auto_builder, hash_request, pausing, Pausing};
use crate::BoxError;

/// The ALPN id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The one crypto provider of these configs: ring.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (an IP SAN),
/// made at run time with rcgen, and its key.
#[derive(Debug)]
pub struct TestCert {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// Its private key, PKCS#8 DER.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// The certificate, PEM (for programs that read files: nginx).
    pub cert_pem: String,
    /// The key, PKCS#8 PEM.
    pub key_pem: String,
}

impl TestCert {
    /// A new certificate and key (a fresh key pair each call).
    pub fn generate() -> TestCert {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("generate the test certificate");
        TestCert {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
        }
    }

    /// A root store holding this certificate and nothing else.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("a valid trust anchor");
        roots
    }

    /// A server config presenting this certificate, offering ALPN `h2` and
    /// `http/1.1` (in that order of preference).
    pub fn server_config(&self) -> ServerConfig {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .expect("the test certificate and its key");
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        config
    }

    /// A client config trusting this certificate alone and offering ALPN
    /// `h2` when `http2` is set, `http/1.1` otherwise.
    pub fn client_config(&self, http2: bool) -> ClientConfig {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = vec![if http2 { ALPN_H2 } else { ALPN_HTTP1 }.to_vec()];
        config
    }
}

/// Serves `handler` over TLS on 127.0.0.1 with `cert`, as
/// [`serve`](crate::server::serve) does in the clear: ALPN `h2` or
/// `http/1.1`, each connection served by [`auto_builder`] restricted to
/// the protocol negotiated (without ALPN, it tells them apart by the
/// preface).
pub async fn serve_tls<F, Fut, B>(handler: F, cert: &TestCert) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config()));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let builder = match stream.get_ref().1.alpn_protocol() {
                    Some(ALPN_H2) => auto_builder().http2_only(),
                    Some(ALPN_HTTP1) => auto_builder().http1_only(),
                    _ => auto_builder(),
                };
                let service = hyper::service::service_fn(handler);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// [`hashing_server`](crate::server::hashing_server) over TLS: every
/// request body is read, hashed and described in the answer (see
/// [`hash_request`]); with the certificate it presents.
pub async fn hashing_server_tls() -> (SocketAddr, TestCert) {
    let cert = TestCert::generate();
    let addr = serve_tls(|req| async move { Ok(hash_request(req).await) }, &cert).await;
    (addr, cert)
}

/// [`pausing_server`](crate::server::pausing_server) over TLS (the same
/// handler): reads `pause_at` bytes of its first upload, says so, waits to
/// be told to go on, and logs every upload; with the certificate it
/// presents.
pub async fn pausing_server_tls(pause_at: u64) -> (Pausing, TestCert) {
    let cert = TestCert::generate();
    let (handler, pausing) = pausing(pause_at);
    let addr = serve_tls(move |req| handler.clone().handle(req), &cert).await;
    (pausing(addr), cert)
}

/// hyper-util's connector for [`tls_client`]: for an `https` URI whose host
/// is `localhost` or `127.0.0.1` (any other is refused), connects to
/// 127.0.0.1 at its port and does the TLS handshake with the URI's host as
/// the server name.
#[derive(Clone)]
pub struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector trusting `cert` alone, offering ALPN `h2` when `http2`
    /// is set, `http/1.1` otherwise.
    pub fn new(http2: bool, cert: &TestCert) -> TlsConnector {
        TlsConnector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cert.client_config(http2))),
        }
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            if uri.scheme_str() != Some("https") {
                return Err(format!("{uri}: the TLS test connector needs https").into());
            }
            let host = uri.host().unwrap_or_default();
            if host != "localhost" && host != "127.0.0.1" {
                return Err(format!("{uri}: the TLS test connector only reaches 127.0.0.1").into());
            }
            let name = ServerName::try_from(host.to_owned())?;
            let tcp =
                TcpStream::connect((Ipv4Addr::LOCALHOST, uri.port_u16().unwrap_or(443))).await?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TokioIo::new(TlsStream(stream)))
        })
    }
}

/// A client TLS stream over TCP that tells hyper-util whether ALPN chose
/// `h2` (see [`TlsConnector`]).
#[derive(Debug)]
pub struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl TlsStream {
    /// The protocol ALPN chose, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.0.get_ref().1.alpn_protocol()
    }
}

impl Connection for TlsStream {
    fn connected(&self) -> Connected {
        let connected = self.0.get_ref().0.connected();
        if self.alpn_protocol() == Some(ALPN_H2) {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A hyper-util legacy client over TLS trusting `cert` alone (see
/// [`TlsConnector`]), for `https://127.0.0.1:<port>/` or
/// `https://localhost:<port>/`: HTTP/1.1 (ALPN `http/1.1`), or HTTP/2 (ALPN
/// `h2`) with the windows of [`client(true)`](crate::server::client) when
/// `http2` is set.
pub fn tls_client<B>(http2: bool, cert: &TestCert) -> Client<TlsConnector, B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    crate::server::client_builder(http2).build(TlsConnector::new(http2, cert))
}
