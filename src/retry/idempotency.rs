//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): the
//! header, the layer that adds it, and the keys; the policy's side is
//! `RetryPolicy::retry_idempotency_key`.

use std::task::{Context, Poll};

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request};
use tower_layer::Layer;
use tower_service::Service;

/// `Idempotency-Key`, the header of draft-ietf-httpapi-idempotency-key-header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Adds a new [`IDEMPOTENCY_KEY`] to each POST and PATCH that has none.
/// Place it outside `RetryLayer`.
///
/// With a key (draft-ietf-httpapi-idempotency-key-header), a POST or PATCH
/// can reach a server twice without being done twice. A server that
/// speaks the draft remembers each key it has seen. A request whose key it
/// has already completed is answered with the recorded response instead of
/// being processed again; one whose key is still being processed gets
/// `409 Conflict`; one that reuses a key with another payload gets `422`. Payment and storage APIs work this way (Stripe's
/// SDKs retry POSTs that carry a key).
///
/// `IdempotencyKeyLayer` gives each POST and PATCH without a key a new
/// one. Placed outside `RetryLayer`, it runs once for each request, before
/// `tower::retry` clones it, so every attempt of that request carries the
/// same key; [`RetryPolicy`](crate::retry::RetryPolicy) retries a request
/// of any method that carries one ([`retry_idempotency_key`], on by default).
///
/// # Hazards
///
/// - A key makes a retried POST safe only if the server honours it. A
///   server that ignores the header processes each attempt: add keys only
///   for servers that document the draft (or their own `Idempotency-Key`).
///   Requests that carry a key you set yourself are retried the same way;
///   [`retry_idempotency_key(false)`](crate::retry::RetryPolicy::retry_idempotency_key)
///   turns that off.
/// - Inside `RetryLayer` the layer would run for each attempt, after the
///   policy had decided without a key: the POST would not be retried.
///   [`UploadLayer::idempotency_keys`](crate::UploadLayer::idempotency_keys)
///   puts it in its place.
/// - A server that answers `409` (the key still in progress) or `422` has
///   its answer returned: neither is in the policy's default statuses.
///
/// # The keys
///
/// A key is a Structured Field string (RFC 8941), quoted as the draft's
/// examples are, holding a version-4 UUID's layout:
/// `"8e03978e-40d5-43e8-bc93-6894a57f9324"`. Its 122 random-looking bits
/// are SipHash outputs, keyed by the standard library's `RandomState`,
/// over a counter of this process, the process id and the time the first
/// key was made. The standard library seeds `RandomState` from the
/// operating system's secure random source (best effort, as its `HashMap`
/// docs say), so keys of other processes and hosts do not follow from
/// these; the counter makes every key of this process a new input, and
/// the process id one of a forked child. Uniqueness, not secrecy, is what
/// the draft asks of a key (the server scopes keys to a client), and this
/// takes no dependency to give it.
///
/// ```
/// use mmap_body::retry::{IdempotencyKeyLayer, IDEMPOTENCY_KEY};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// // A client that answers with the key it was sent.
/// let client = service_fn(|req: http::Request<String>| async move {
///     let key = req.headers()[IDEMPOTENCY_KEY].to_str()?.to_owned();
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::new(key))
/// });
/// let service = ServiceBuilder::new()
///     .layer(IdempotencyKeyLayer::new()) // outside a `RetryLayer`: once a request
///     .service(client);
/// let response = service
///     .oneshot(http::Request::post("http://api.example/charges").body(String::new())?)
///     .await?;
/// assert!(response.body().starts_with('"') && response.body().len() == 38);
/// # Ok(())
/// # }
/// ```
///
/// [`retry_idempotency_key`]: crate::retry::RetryPolicy::retry_idempotency_key
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKeyLayer {
    _private: (),
}

impl IdempotencyKeyLayer {
    /// A layer that keys POST and PATCH requests.
    pub fn new() -> IdempotencyKeyLayer {
        IdempotencyKeyLayer { _private: () }
    }
}

impl<S> Layer<S> for IdempotencyKeyLayer {
    type Service = IdempotencyKey<S>;

    fn layer(&self, inner: S) -> IdempotencyKey<S> {
        IdempotencyKey::new(inner)
    }
}

/// The service of [`IdempotencyKeyLayer`]: gives each POST and PATCH
/// without an [`IDEMPOTENCY_KEY`] a new one, then calls `inner`.
#[derive(Debug, Clone)]
pub struct IdempotencyKey<S> {
    inner: S,
}

impl<S> IdempotencyKey<S> {
    /// Keys the requests sent to `inner`.
    pub fn new(inner: S) -> IdempotencyKey<S> {
        IdempotencyKey { inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for IdempotencyKey<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        add_key(&mut request);
        self.inner.call(request)
    }
}

/// Gives `request` a new key if it is a POST or PATCH without one.
pub(crate) fn add_key<B>(request: &mut Request<B>) {
    let method = request.method();
    if (method == Method::POST || method == Method::PATCH)
        && !request.headers().contains_key(IDEMPOTENCY_KEY)
    {
        request.headers_mut().insert(IDEMPOTENCY_KEY, new_key());
    }
}

/// Whether `request` carries a key.
pub(crate) fn has_key<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(IDEMPOTENCY_KEY)
}

/// A new key: `"xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"` (see
/// [`IdempotencyKeyLayer`]'s "The keys").
fn new_key() -> HeaderValue {
    let (high, low) = crate::random::unique_128();
    uuid_v4_key(high, low)
}

/// 128 bits in a version-4 UUID's layout (RFC 9562 §5.4: version 4,
/// variant `10`), as a quoted Structured Field string.
fn uuid_v4_key(high: u64, low: u64) -> HeaderValue {
    let high = (high & !0xf000) | 0x4000;
    let low = (low & !(0b11 << 62)) | (0b10 << 62);
    let text = format!(
        "\"{:08x}-{:04x}-{:04x}-{:04x}-{:012x}\"",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    );
    // Quotes, dashes and hex digits are visible ASCII: always a valid value.
    HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("\"\""))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_are_quoted_uuid_v4_strings() {
        let key = new_key();
        let text = key.to_str().unwrap();
        assert_eq!(text.len(), 38, "{text}");
        assert!(text.starts_with('"') && text.ends_with('"'), "{text}");
        let uuid = &text[1..37];
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "version 4: {text}");
        assert!("89ab".contains(&groups[3][..1]), "variant 10: {text}");
        assert!(uuid
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn the_layout_keeps_every_other_bit() {
        let key = uuid_v4_key(0, 0);
        assert_eq!(key, "\"00000000-0000-4000-8000-000000000000\"");
        let key = uuid_v4_key(u64::MAX, u64::MAX);
        assert_eq!(key, "\"ffffffff-ffff-4fff-bfff-ffffffffffff\"");
    }

    #[test]
    fn keys_do_not_repeat_across_threads() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..10_000).map(|_| new_key()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for thread in threads {
            for key in thread.join().unwrap() {
                assert!(seen.insert(key.clone()), "{key:?} twice");
            }
        }
        assert_eq!(seen.len(), 40_000);
    }

    #[test]
    fn only_posts_and_patches_without_a_key_get_one() {
        for (method, keyed) in [
            ("POST", true),
            ("PATCH", true),
            ("PUT", false),
            ("GET", false),
            ("DELETE", false),
        ] {
            let mut request = Request::builder().method(method).body(()).unwrap();
            add_key(&mut request);
            assert_eq!(has_key(&request), keyed, "{method}");
        }
        let mut own = Request::post("/")
            .header(IDEMPOTENCY_KEY, "\"mine\"")
            .body(())
            .unwrap();
        add_key(&mut own);
        assert_eq!(own.headers().get_all(IDEMPOTENCY_KEY).iter().count(), 1);
        assert_eq!(own.headers()[IDEMPOTENCY_KEY], "\"mine\"");
    }
}
