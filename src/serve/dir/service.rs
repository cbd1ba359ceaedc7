//! `Service` for [`ServeDir`]: the method, the path, then the file's
//! answer: at once on the worker when the file is open already (the cache
//! checks it with a `stat`), else on tokio's blocking pool, where files are
//! opened, checked and mapped.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use tower_service::Service;

use super::answer::{answer, method_not_allowed, Outcome};
use super::future::{call, ResponseFuture};
use super::lookup::find;
use super::ServeDir;
use crate::error::BoxError;
use crate::serve::ServeBody;

impl<ReqBody, F, FResBody> Service<Request<ReqBody>> for ServeDir<F>
where
    F: Service<Request<ReqBody>, Response = Response<FResBody>, Error = Infallible> + Clone,
    F::Future: Send + 'static,
    FResBody: http_body::Body<Data = Bytes> + Send + 'static,
    FResBody::Error: Into<BoxError>,
{
    type Response = Response<ServeBody>;
    type Error = Infallible;
    type Future = ResponseFuture<ReqBody, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match &mut self.fallback {
            Some(fallback) => fallback.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            if self.call_fallback_on_method_not_allowed {
                if let Some(fallback) = &mut self.fallback {
                    return ResponseFuture::fallback(call(fallback, request));
                }
            }
            return ResponseFuture::ready(method_not_allowed());
        }
        let (parts, body) = request.into_parts();
        // The fallback gets the request as it came (the ready fallback; a
        // clone, not yet ready, stays in its place); this service keeps
        // the method, URI and headers.
        let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
        let fallback = self.fallback.as_mut().map(|fallback| {
            let ready = std::mem::replace(fallback, fallback.clone());
            let mut request = Request::new(body);
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() = headers.clone();
            *request.extensions_mut() = parts.extensions;
            (ready, request)
        });
        let Some(path) = self.config.path_of(uri.path()) else {
            return ResponseFuture::settle(Outcome::NotFound, fallback);
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime, no blocking pool: all of it here.
            let found = find(&self.config, &self.cache, path, &uri, &headers, true)
                .unwrap_or_else(|| Err(io::Error::other("no file opened")));
            let outcome = answer(found, &method, &headers, &self.config);
            return ResponseFuture::settle(outcome, fallback);
        };
        if self.config.check_on_worker {
            let found = find(
                &self.config,
                &self.cache,
                path.clone(),
                &uri,
                &headers,
                false,
            );
            if let Some(found) = found {
                let outcome = answer(found, &method, &headers, &self.config);
                return ResponseFuture::settle(outcome, fallback);
            }
        }
        let (config, cache) = (Arc::clone(&self.config), Arc::clone(&self.cache));
        let task = runtime.spawn_blocking(move || {
            let found = find(&config, &cache, path, &uri, &headers, true);
            let found = found.unwrap_or_else(|| Err(io::Error::other("no file opened")));
            answer(found, &method, &headers, &config)
        });
        ResponseFuture::blocking(task, fallback)
    }
}
