//! The layer of every `/auth/v1` route:
//! - renders errors in the shape of the API version the request asked for
//!   (`X-Supabase-Api-Version`), and echoes that version;
//! - after any request that may have written users, identities, factors or
//!   sessions (all but `GET /user` and `GET /settings`), drops the project's
//!   cached `GET /user` answers on this node ([`crate::tenant::read_cache`]),
//!   once the handler has committed and before the client gets its answer.
//!
//! A plain `tower` service (no boxed future, no copy of the route per request).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;

use super::error::{asks_dated_version, dated_response};
use crate::tenant::Tenant;

/// See the module doc.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthLayer;

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner }
    }
}

/// The service of [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
}

/// Whether a request only reads users and sessions (so it leaves the cache
/// of `GET /user` answers alone).
fn reads_only(method: &Method, path: &str) -> bool {
    *method == Method::GET
        && (path.ends_with("/auth/v1/user") || path.ends_with("/auth/v1/settings"))
}

impl<S> tower::Service<Request> for AuthService<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let dated = asks_dated_version(req.headers());
        let writer = (!reads_only(req.method(), req.uri().path()))
            .then(|| req.extensions().get::<Arc<Tenant>>().cloned())
            .flatten();
        AuthFuture {
            inner: self.inner.call(req),
            dated,
            writer: Invalidate(writer),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`AuthService`].
    pub struct AuthFuture<F> {
        #[pin]
        inner: F,
        dated: bool,
        writer: Invalidate,
    }
}

/// Drops the project's cached `GET /user` answers when the request is done,
/// also when its future is dropped unfinished (the client went away after
/// the handler may have committed).
struct Invalidate(Option<Arc<Tenant>>);

impl Invalidate {
    fn now(&mut self) {
        if let Some(tenant) = self.0.take() {
            tenant.users.invalidate();
        }
    }
}

impl Drop for Invalidate {
    fn drop(&mut self) {
        self.now();
    }
}

impl<F, E> Future for AuthFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        // Whatever the outcome (an error may follow a commit), the handler is
        // done with the database.
        this.writer.now();
        Poll::Ready(out.map(|r| if *this.dated { dated_response(r) } else { r }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_user_and_settings_reads_keep_the_cache() {
        assert!(reads_only(&Method::GET, "/auth/v1/user"));
        assert!(reads_only(&Method::GET, "/p/abc/auth/v1/settings"));
        assert!(!reads_only(&Method::PUT, "/auth/v1/user"));
        assert!(!reads_only(&Method::POST, "/auth/v1/logout"));
        // GET routes that write: email verification, the OAuth callback.
        assert!(!reads_only(&Method::GET, "/auth/v1/verify"));
        assert!(!reads_only(&Method::GET, "/auth/v1/callback"));
        assert!(!reads_only(&Method::GET, "/auth/v1/admin/users"));
    }
}
