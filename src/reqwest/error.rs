//! [`SendError`]: the error of
//! [`send_through`](super::RequestBuilderExt::send_through).

use std::error::Error as StdError;
use std::fmt;

use crate::error::BoxError;

/// Why [`send_through`](super::RequestBuilderExt::send_through) failed: the
/// builder's error, [`BodyAlreadySet`](super::BodyAlreadySet), or the
/// stack's error, kept whole.
///
/// A concrete `std::error::Error + Send + Sync + 'static`, so `?` turns it
/// into `anyhow::Error`, `Box<dyn Error + Send + Sync>` or `Box<dyn Error>`
/// without a `map_err` (a `Box<dyn Error + Send + Sync>` itself is not an
/// `Error`, and `?` cannot turn it into `anyhow::Error`). It is
/// transparent: its message and source are the wrapped error's, and
/// [`get_ref`](SendError::get_ref) / [`into_inner`](SendError::into_inner)
/// give that error itself. The questions a reqwest user asks of
/// `reqwest::Error` are answered along the whole chain:
///
/// ```no_run
/// # async fn f(stack: mmap_body::Upload<mmap_body::reqwest::ReqwestService>) {
/// use mmap_body::reqwest::RequestBuilderExt;
///
/// let client = reqwest::Client::new();
/// let body = http_body_util::Full::new(bytes::Bytes::from_static(b"{}"));
/// match client.post("http://127.0.0.1:3000/x").send_through(&stack, body).await {
///     Ok(response) => println!("{}", response.status()),
///     Err(e) if e.is_timeout() => println!("timed out: {e}"),
///     Err(e) => match mmap_body::Error::find_in(e.get_ref()) {
///         Some(body) => println!("the body failed: {:?}", body.kind()),
///         None => println!("{e} (url: {:?})", e.url()),
///     },
/// }
/// # }
/// ```
pub struct SendError {
    inner: BoxError,
}

impl SendError {
    pub(super) fn new(inner: impl Into<BoxError>) -> SendError {
        SendError {
            inner: inner.into(),
        }
    }

    /// The error itself: a `reqwest::Error`, a
    /// [`BodyAlreadySet`](super::BodyAlreadySet), or what the stack
    /// returned (this crate's [`Error`](crate::Error) for a body that
    /// failed behind `ReplayLayer`, say).
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }

    /// Unwraps the error.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }

    /// The first `reqwest::Error` in the chain, if any.
    pub fn reqwest(&self) -> Option<&::reqwest::Error> {
        self.chain()
            .find_map(|e| e.downcast_ref::<::reqwest::Error>())
    }

    /// Whether a timeout ended the request: reqwest's (the builder's or the
    /// client's `timeout`), or a timed-out I/O error in the chain.
    pub fn is_timeout(&self) -> bool {
        self.chain().any(|e| {
            e.downcast_ref::<::reqwest::Error>()
                .is_some_and(::reqwest::Error::is_timeout)
                || e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        })
    }

    /// Whether connecting failed (reqwest's `is_connect` in the chain).
    pub fn is_connect(&self) -> bool {
        self.reqwest().is_some_and(::reqwest::Error::is_connect)
    }

    /// Whether the request could not be built: the builder's own error
    /// (`is_builder`), or a builder that already had a body.
    pub fn is_builder(&self) -> bool {
        self.inner.is::<super::BodyAlreadySet>()
            || self.reqwest().is_some_and(::reqwest::Error::is_builder)
    }

    /// The URL of the `reqwest::Error` in the chain, if it has one.
    pub fn url(&self) -> Option<&::reqwest::Url> {
        self.reqwest().and_then(::reqwest::Error::url)
    }

    /// The wrapped error and its sources.
    fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        let mut next: Option<&(dyn StdError + 'static)> = Some(&*self.inner);
        std::iter::from_fn(move || {
            let error = next?;
            next = error.source();
            Some(error)
        })
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl StdError for SendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_an_error_that_boxes_and_keeps_its_chain() {
        fn boxed() -> Result<(), Box<dyn StdError + Send + Sync>> {
            Err(SendError::new(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))?;
            Ok(())
        }
        let err = boxed().unwrap_err();
        let send = err.downcast_ref::<SendError>().unwrap();
        assert!(send.is_timeout());
        assert!(!send.is_connect() && !send.is_builder());
        assert_eq!(send.to_string(), "timed out");
        assert!(send.get_ref().is::<std::io::Error>());
    }
}
