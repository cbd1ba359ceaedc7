//! Forwarding requests upstream from an axum (or any hyper / tower)
//! handler: hop-by-hop headers, `Via`, the upstream URI, and the answer
//! when the upstream fails.
//!
//! A handler takes the request apart as a proxy must
//! ([`upstream_request`]), sends it through a client stack that can retry
//! its body, and passes the response back ([`downstream_response`]) or
//! answers `502` / `504` ([`error_response`]). Each part refuses what it
//! cannot forward faithfully, so the handler has an answer for the client
//! either way:
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! use axum::extract::{ConnectInfo, Request, State};
//! use axum::body::Body;
//! use axum::response::Response;
//! use hyper_util::client::legacy::{connect::HttpConnector, Client};
//! use hyper_util::rt::TokioExecutor;
//! use mmap_body::proxy::{self, Forwarding, Upstream};
//! use mmap_body::retry::RetryPolicy;
//! use mmap_body::{Replay, ReplayBody, ReplayLayer, DEFAULT_MAX_REPLAY_BYTES};
//! use tower::retry::{Retry, RetryLayer};
//! use tower::timeout::{Timeout, TimeoutLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! type ClientStack = Replay<Retry<RetryPolicy, Timeout<Client<HttpConnector, ReplayBody<Body>>>>>;
//!
//! #[derive(Clone)]
//! struct Proxy {
//!     client: ClientStack,
//!     upstream: Upstream,
//!     forwarding: Forwarding,
//! }
//!
//! async fn forward(
//!     State(proxy): State<Proxy>,
//!     ConnectInfo(peer): ConnectInfo<SocketAddr>,
//!     req: Request,
//! ) -> Response {
//!     let req = match proxy::upstream_request(req, &proxy.upstream, &proxy.forwarding, Some(peer.ip())) {
//!         Ok(req) => req,
//!         Err(refused) => return proxy::error_response(&refused),
//!     };
//!     match proxy.client.oneshot(req).await {
//!         Ok(res) => match proxy::downstream_response(res, &proxy.forwarding) {
//!             Ok(res) => res.map(Body::new),
//!             Err(refused) => proxy::error_response(&refused),
//!         },
//!         Err(err) => {
//!             eprintln!("upstream failed: {err}");
//!             proxy::error_response(&*err)
//!         }
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ServiceBuilder::new()
//!     // Outside the retries: the incoming body becomes replayable, up to
//!     // 8 MiB of it, and each attempt is held to its Content-Length.
//!     .layer(ReplayLayer::new(DEFAULT_MAX_REPLAY_BYTES))
//!     // PUT, GET, DELETE...: sent again after a dropped connection or a 503.
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     // Each attempt, not the whole request: a stalled one is retried.
//!     .layer(TimeoutLayer::new(Duration::from_secs(30)))
//!     .service(Client::builder(TokioExecutor::new()).build_http());
//! let state = Proxy {
//!     client,
//!     upstream: "http://127.0.0.1:9000/storage".parse()?,
//!     // At the edge: the client's own X-Forwarded-For and kin are dropped.
//!     forwarding: Forwarding::new()
//!         .via("edge-1")
//!         .strip_client_forwarding(true)
//!         .forwarded_for(true),
//! };
//! let app = axum::Router::new().fallback(forward).with_state(state);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The body is streamed: each frame goes upstream as it arrives, and the
//! [`ReplayLayer`] keeps reference-counted clones of the frames, up to its
//! cap, for a retry. The client's `Content-Length` is kept, so the upstream
//! sees the same framing, and the [`ReplayLayer`] fails an attempt whose
//! body comes out shorter or longer. Trailers are forwarded both ways (see
//! [`upstream_request`]).
//!
//! [`ReverseProxy`] is this handler and this stack as one `Service`, mounted
//! in one line.
//!
//! # Hazards
//!
//! - **Replaying a request that is not idempotent can apply it twice.** A
//!   POST whose upstream dropped the connection may have been applied
//!   already. [`RetryPolicy`] retries only idempotent methods unless told
//!   to; turn that on only for an upstream that makes repeats harmless (an
//!   idempotency key).
//! - **Hop-by-hop headers smuggle requests.** `Transfer-Encoding` and
//!   `Content-Length` together let two servers disagree on where a request
//!   ends, and the one after the proxy reads the rest as a second request
//!   that no one checked. [`remove_hop_by_hop`] drops `Transfer-Encoding`
//!   (the next hop's client chooses its own framing) and, when it was
//!   there, the `Content-Length` that came with it; a `Connection` header
//!   cannot remove `Content-Length`; the [`ReplayLayer`] refuses a
//!   malformed or repeated one before anything is sent, and fails an
//!   attempt whose body does not match it. A client body that ends early
//!   aborts the upstream request (over HTTP/1.1 the connection is closed
//!   mid-body), so the upstream never takes a short body as complete.
//!   Headers named by `Connection` are removed *before* this proxy adds its
//!   own, so a client cannot name `Via` or `X-Forwarded-For` to strip what
//!   the proxy says about it. `Upgrade` is removed too: WebSocket and other
//!   upgrades are not forwarded, and `CONNECT` is refused.
//! - **Paths with `..` escape a prefix.** `/../admin` forwarded under
//!   `/storage` reaches `/admin` on an upstream that resolves dot segments.
//!   [`Upstream`] resolves them first, after decoding unreserved
//!   characters (`%2e` is `.`), so the path stays under the prefix
//!   ([`DotSegments`]). Spellings an upstream may read otherwise than the
//!   proxy are refused with `400` by default: `%2F` / `%5C` / `\`
//!   (`..%2f..%2fadmin` is one segment here and three to an upstream that
//!   decodes it; [`EscapedSlashes`]), and a `;` on a dot segment (`..;/`,
//!   which Tomcat-style upstreams read as `..`). Each is a [`PathRules`]
//!   switch, as in Envoy.
//! - **Transfer codings hide content codings.** hyper decodes only a final
//!   `chunked`; `Transfer-Encoding: gzip, chunked` leaves gzip bytes that,
//!   forwarded under fresh framing, an upstream stores as the content. Such
//!   requests are refused with `501` (RFC 9112 §6.1), and
//!   [`downstream_response`] refuses such a response (a `502`).
//! - **Two hosts, two readings.** A request with two `Host` lines, or an
//!   HTTP/2 `Host` that disagrees with `:authority`, lets this proxy
//!   (its `Forwarded: host=`) and a server behind it, or a log, each pick
//!   another host; one with no host at all cannot be placed. Such requests
//!   are refused with `400` (RFC 9112 §3.2, RFC 9113 §8.3.1).
//! - **Retries need the bytes, and bytes need room.** A streamed body is
//!   replayable only while it fits the [`ReplayLayer`]'s cap, held in
//!   memory; past it, a failed upstream attempt is the client's `502`. A
//!   large cap is memory each concurrent upload may take; spilling the
//!   recording to disk trades it for disk space, as much as the bodies in
//!   flight, which a flood of large uploads can fill: bound it.
//! - **Forwarding headers can be forged.** `Forwarded`, `X-Forwarded-For`
//!   and their kin are end-to-end headers: by default a client's own
//!   values reach the upstream, as they are or, with
//!   [`Forwarding::forwarded_for`], with the client's address appended; an
//!   upstream must trust only the entries its own proxies added. A proxy
//!   that clients reach directly should remove them
//!   ([`Forwarding::strip_client_forwarding`]). A malformed `Forwarded` is
//!   replaced, never appended into (see [`Forwarding`]).
//!
//! [`ReplayLayer`]: crate::ReplayLayer
//! [`RetryPolicy`]: crate::retry::RetryPolicy

mod error;
mod forwarded;
mod forwarding;
mod framing;
mod headers;
mod host;
mod path;
mod request;
mod response;
mod service;
mod uri;

pub use error::{error_response, error_status, Refused};
pub use forwarding::Forwarding;
pub use headers::remove_hop_by_hop;
pub use path::{DotSegments, EscapedSlashes, PathRules};
pub use request::upstream_request;
pub use response::{check_response, downstream_response};
pub use service::{Builder, HyperClient, ProxyBody, ProxyFuture, ReverseProxy};
pub use uri::{InvalidUpstream, Upstream};
