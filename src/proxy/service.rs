//! [`ReverseProxy`]: the whole forwarding stack as one tower `Service`, to
//! mount in an axum `Router` in one line.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
#[cfg(feature = "spill")]
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::retry::{Retry, RetryLayer};
use tower::timeout::{Timeout, TimeoutLayer};
use tower::{Layer, Service, ServiceExt};

use super::{
    downstream_response, error_response, upstream_request, Forwarding, InvalidUpstream, PathRules,
    Refused, Upstream,
};
use crate::error::BoxError;
use crate::retry::RetryPolicy;
use crate::{Replay, ReplayBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};

/// The body a [`ReverseProxy`] sends upstream (inside a [`ReplayBody`]) and
/// answers with: any body, boxed.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The client a [`ReverseProxy`] uses unless given another: hyper-util's,
/// HTTP/1.1 (or HTTP/2 with prior knowledge), `TCP_NODELAY`.
pub type HyperClient = Client<HttpConnector, ReplayBody<ProxyBody>>;

type Stack<C> = Replay<Retry<RetryPolicy, Timeout<C>>>;

/// A reverse proxy as a tower `Service`: every request goes to the
/// upstream through [`ReplayLayer`] ([`DEFAULT_MAX_REPLAY_BYTES`], 8 MiB, in memory, optionally spilled
/// to disk), `RetryLayer(`[`RetryPolicy`]`)`, a per-attempt timeout (30 s)
/// and a client, with what [`upstream_request`], [`downstream_response`]
/// and [`error_response`] do: hop-by-hop headers removed, `Via` (and
/// `Forwarded` / `X-Forwarded-For` when asked), the path checked by
/// [`PathRules`], hostile transfer codings and requests without one valid
/// host refused, `502` / `504` when the upstream fails. Upgrades (`Upgrade:`, WebSocket) and
/// `CONNECT` are refused with `501`: not tunnelled.
///
/// Mounted in one line:
///
/// ```no_run
/// use mmap_body::proxy::ReverseProxy;
///
/// # fn app() -> Result<axum::Router, Box<dyn std::error::Error>> {
/// let app = axum::Router::new()
///     .nest_service("/api", ReverseProxy::new("http://127.0.0.1:9000/v1")?);
/// # Ok(app) }
/// ```
///
/// `nest_service` takes `/api` off the path, so `/api/files/a` goes to
/// `http://127.0.0.1:9000/v1/files/a`. Every part is set by
/// [`ReverseProxy::builder`]; the parts stay public for a handler of one's
/// own (see the [module docs](super)).
#[derive(Debug)]
pub struct ReverseProxy<C = HyperClient> {
    stack: Stack<C>,
    upstream: Arc<Upstream>,
    forwarding: Arc<Forwarding>,
    peer: fn(&http::Extensions) -> Option<IpAddr>,
    /// The default client speaks HTTP/2, which has no `Connection` field.
    http2: bool,
}

impl<C: Clone> Clone for ReverseProxy<C> {
    fn clone(&self) -> ReverseProxy<C> {
        ReverseProxy {
            stack: self.stack.clone(),
            upstream: Arc::clone(&self.upstream),
            forwarding: Arc::clone(&self.forwarding),
            peer: self.peer,
            http2: self.http2,
        }
    }
}

/// Builds a [`ReverseProxy`]; see [`ReverseProxy::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    upstream: Upstream,
    max_replay_bytes: usize,
    #[cfg(feature = "spill")]
    spill: Option<(u64, Option<PathBuf>)>,
    policy: RetryPolicy,
    attempt_timeout: Duration,
    forwarding: Forwarding,
    peer: fn(&http::Extensions) -> Option<IpAddr>,
    http2: bool,
}

/// The client's address, when the server put a `SocketAddr` in the
/// request's extensions.
fn socket_addr(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions.get::<std::net::SocketAddr>().map(|a| a.ip())
}

impl ReverseProxy {
    /// A proxy to `upstream` with the defaults of
    /// [`builder`](ReverseProxy::builder), which takes the same argument:
    /// `ReverseProxy::builder(upstream)?.build()`.
    pub fn new<U>(upstream: U) -> Result<ReverseProxy, InvalidUpstream>
    where
        U: TryInto<Upstream>,
        InvalidUpstream: From<U::Error>,
    {
        Ok(ReverseProxy::builder(upstream)?.build())
    }

    /// A builder for a proxy to `upstream`: a string such as
    /// `"http://host:port/prefix"`, an `http::Uri` or an [`Upstream`]
    /// (which cannot fail), as [`new`](ReverseProxy::new) takes.
    ///
    /// Defaults: [`DEFAULT_MAX_REPLAY_BYTES`] (8 MiB) of each body kept in
    /// memory for a retry, no spill, [`RetryPolicy::default`], a 30 s
    /// timeout per attempt, `Via: 1.1 mmap-body`, no `Forwarded`, HTTP/1.1
    /// to the upstream.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mmap_body::proxy::ReverseProxy;
    ///
    /// # fn main() -> Result<(), mmap_body::proxy::InvalidUpstream> {
    /// let proxy = ReverseProxy::builder("http://127.0.0.1:9000/v1")?
    ///     .attempt_timeout(Duration::from_secs(10))
    ///     .build();
    /// # Ok(()) }
    /// ```
    pub fn builder<U>(upstream: U) -> Result<Builder, InvalidUpstream>
    where
        U: TryInto<Upstream>,
        InvalidUpstream: From<U::Error>,
    {
        Ok(Builder {
            upstream: upstream.try_into()?,
            max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
            #[cfg(feature = "spill")]
            spill: None,
            policy: RetryPolicy::default(),
            attempt_timeout: Duration::from_secs(30),
            forwarding: Forwarding::new(),
            peer: socket_addr,
            http2: false,
        })
    }
}

impl Builder {
    /// Bytes of a streamed body kept in memory for a retry (default
    /// [`DEFAULT_MAX_REPLAY_BYTES`], 8 MiB). A `usize`, as a count of bytes
    /// in memory; [`spill_to_disk`](Builder::spill_to_disk)'s limit, on
    /// disk, is a `u64` (see [Byte counts](crate#byte-counts)).
    pub fn max_replay_bytes(mut self, bytes: usize) -> Builder {
        self.max_replay_bytes = bytes;
        self
    }

    /// Past the memory cap, keep up to `max_bytes` of a body in all, on
    /// disk (feature `spill`; see [`ReplayLayer::spill_to_disk`]).
    #[cfg(feature = "spill")]
    pub fn spill_to_disk(mut self, max_bytes: u64) -> Builder {
        let dir = self.spill.and_then(|(_, dir)| dir);
        self.spill = Some((max_bytes, dir));
        self
    }

    /// Where spill files go (default: the OS temp dir).
    #[cfg(feature = "spill")]
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Builder {
        let limit = self.spill.map_or(0, |(limit, _)| limit);
        self.spill = Some((limit, Some(dir.into())));
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Builder {
        self.policy = policy;
        self
    }

    /// The timeout of each attempt (a stalled one is retried).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Builder {
        self.attempt_timeout = timeout;
        self
    }

    /// `Via`, `Forwarded` and `X-Forwarded-For` (see [`Forwarding`]).
    pub fn forwarding(mut self, forwarding: Forwarding) -> Builder {
        self.forwarding = forwarding;
        self
    }

    /// How request paths are checked and normalised.
    pub fn path_rules(mut self, rules: PathRules) -> Builder {
        self.upstream = self.upstream.path_rules(rules);
        self
    }

    /// Where the client's address is found in a request's extensions, for
    /// [`Forwarding::forwarded_for`]. The default reads a
    /// `std::net::SocketAddr`; with axum (served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`):
    /// `|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())`.
    pub fn peer(mut self, peer: fn(&http::Extensions) -> Option<IpAddr>) -> Builder {
        self.peer = peer;
        self
    }

    /// Speak HTTP/2 with prior knowledge to the upstream (with the default
    /// client). The `Connection: te` that goes with a forwarded `TE:
    /// trailers` over HTTP/1.1 is left out, so the upstream gets the
    /// `te: trailers` that HTTP/2 allows (see [`upstream_request`]).
    pub fn http2(mut self, http2: bool) -> Builder {
        self.http2 = http2;
        self
    }

    /// The proxy, with hyper-util's client.
    pub fn build(self) -> ReverseProxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let mut client = Client::builder(TokioExecutor::new());
        client.http2_only(self.http2);
        let client = client.build(connector);
        let http2 = self.http2;
        ReverseProxy {
            http2,
            ..self.build_with(client)
        }
    }

    /// The proxy, sending through `client`: a hyper-util `Client` of one's
    /// own, or a [`ReqwestService`](crate::reqwest) (feature `reqwest`), or
    /// any `Service<Request<ReplayBody<ProxyBody>>>`.
    pub fn build_with<C>(self, client: C) -> ReverseProxy<C> {
        #[cfg_attr(not(feature = "spill"), allow(unused_mut))]
        let mut replay = ReplayLayer::new(self.max_replay_bytes);
        #[cfg(feature = "spill")]
        if let Some((limit, dir)) = self.spill {
            replay = replay.spill_to_disk(limit);
            if let Some(dir) = dir {
                replay = replay.spill_dir(dir);
            }
        }
        let stack = replay.layer(
            RetryLayer::new(self.policy)
                .layer(TimeoutLayer::new(self.attempt_timeout).layer(client)),
        );
        ReverseProxy {
            stack,
            upstream: Arc::new(self.upstream),
            forwarding: Arc::new(self.forwarding),
            peer: self.peer,
            http2: false,
        }
    }
}

fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

fn answer(refused: &(dyn std::error::Error + 'static)) -> Response<ProxyBody> {
    error_response::<String>(refused).map(|text| boxed(Full::new(Bytes::from(text))))
}

pin_project_lite::pin_project! {
    /// The future of a [`ReverseProxy`] call.
    #[derive(Debug)]
    pub struct ProxyFuture<F> {
        #[pin]
        sent: Option<F>,
        ready: Option<Response<ProxyBody>>,
        forwarding: Arc<Forwarding>,
    }
}

impl<F, RB> Future for ProxyFuture<F>
where
    F: Future<Output = Result<Response<RB>, BoxError>>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(res) = this.ready.take() {
            return Poll::Ready(Ok(res));
        }
        let Some(sent) = this.sent.as_pin_mut() else {
            return Poll::Ready(Ok(answer(&Refused::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the proxy's answer was already taken",
            ))));
        };
        sent.poll(cx).map(|result| {
            Ok(match result {
                Ok(res) => match downstream_response(res, this.forwarding) {
                    Ok(res) => res.map(boxed),
                    Err(refused) => answer(&refused),
                },
                Err(err) => answer(&*err),
            })
        })
    }
}

impl<B, C, RB> Service<Request<B>> for ReverseProxy<C>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    C: Service<Request<ReplayBody<ProxyBody>>, Response = Response<RB>> + Clone + Send + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ProxyFuture<tower::util::Oneshot<Stack<C>, Request<ProxyBody>>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call sends through a clone of the stack, made ready there.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let forwarding = Arc::clone(&self.forwarding);
        let refuse = |refused: &Refused| ProxyFuture {
            sent: None,
            ready: Some(answer(refused)),
            forwarding: Arc::clone(&forwarding),
        };
        if req.headers().contains_key(header::UPGRADE) {
            return refuse(&Refused::new(
                StatusCode::NOT_IMPLEMENTED,
                "this proxy does not forward upgrades (WebSocket and others)",
            ));
        }
        let peer = (self.peer)(req.extensions());
        let mut req = match upstream_request(req.map(boxed), &self.upstream, &self.forwarding, peer)
        {
            Ok(req) => req,
            Err(refused) => return refuse(&refused),
        };
        if self.http2 {
            // hyper's HTTP/2 client would drop `te: trailers` with it.
            req.headers_mut().remove(header::CONNECTION);
        }
        ProxyFuture {
            sent: Some(self.stack.clone().oneshot(req)),
            ready: None,
            forwarding,
        }
    }
}
