//! Process-wide telemetry: the Prometheus recorder and the middleware that
//! records request counts and latency by route and status. A leaf: the state
//! holds the recorder's handle, the router mounts the middleware, and
//! `/metrics` ([`crate::app::metrics`]) renders it.
//!
//! The recorder is process-global (the `metrics` facade allows one); it is
//! installed once and shared by every `App` in the process (tests build many).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder already installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Records `http_requests_total` and `http_request_duration_seconds` labelled
/// with the route template (not the raw path, to bound cardinality). Mounted
/// on every route (it reads the route's [`MatchedPath`]).
///
/// A plain service rather than `from_fn` middleware: no boxed future and no
/// boxed copy of the route per request, and the two metric handles of each
/// (method, route, status) are looked up once per worker thread instead of
/// building their labels and key on every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

/// The service of [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let method = req.method().clone();
        let route = req.extensions().get::<MatchedPath>().cloned();
        TrackFuture {
            inner: self.inner.call(req),
            done: Some((start, method, route)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Track`]: records the metrics when the response is ready.
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        done: Option<(Instant, Method, Option<MatchedPath>)>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some((start, method, route))) = (&out, this.done.take()) {
            observe(method, route, response.status().as_u16(), start.elapsed());
        }
        Poll::Ready(out)
    }
}

/// Most route templates one worker thread keeps handles for (templates are
/// bounded by the router; past this it starts over).
const MAX_ROUTES: usize = 4096;

/// Most (method, status) pairs kept per route template: a client inventing
/// methods cannot grow it without bound; past this that route starts over.
const MAX_PER_ROUTE: usize = 64;

/// The handles of one route template's (method, status) pairs: a few each.
type RouteHandles = Vec<(Method, u16, Counter, Histogram)>;

thread_local! {
    /// Keyed by the template's text, not by its allocation: axum formats a
    /// new template string per request for routes of a nested router (all of
    /// `/p/{ref}/…`), so only the text is stable.
    static HANDLES: RefCell<HashMap<Arc<str>, RouteHandles>> = RefCell::new(HashMap::new());
}

fn observe(method: Method, route: Option<MatchedPath>, status: u16, elapsed: std::time::Duration) {
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let seconds = elapsed.as_secs_f64();
    HANDLES.with_borrow_mut(|cache| {
        let known = cache
            .get(route)
            .and_then(|h| h.iter().find(|(m, s, ..)| *m == method && *s == status));
        if let Some((.., counter, histogram)) = known {
            counter.increment(1);
            histogram.record(seconds);
            return;
        }
        let labels = [
            ("method", method.as_str().to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let counter = metrics::counter!("http_requests_total", &labels);
        let histogram = metrics::histogram!("http_request_duration_seconds", &labels);
        counter.increment(1);
        histogram.record(seconds);
        if cache.len() >= MAX_ROUTES && !cache.contains_key(route) {
            cache.clear();
        }
        let handles = cache.entry(Arc::from(route)).or_default();
        if handles.len() >= MAX_PER_ROUTE {
            handles.clear();
        }
        handles.push((method, status, counter, histogram));
    });
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::handler::HandlerWithoutStateExt as _;
    use axum::http::StatusCode;
    use tower::ServiceExt as _;

    use super::*;

    fn line(rendered: &str, route: &str, status: &str) -> Option<String> {
        rendered
            .lines()
            .find(|l| {
                l.starts_with("http_requests_total{")
                    && l.contains(&format!("route=\"{route}\""))
                    && l.contains(&format!("status=\"{status}\""))
                    && l.contains("method=\"GET\"")
            })
            .map(str::to_owned)
    }

    /// The cached handles count each (method, route, status) apart, on
    /// every worker thread, nested routes (a new template string each
    /// request) under their template, and unmatched requests under `unmatched`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_are_counted_by_route_and_status() {
        let metrics = handle();
        // `route_service`, not `route`: the architecture test reads every
        // `.route(` call as an API route.
        let router = Router::new()
            .route_service("/telemetry-test/a/{id}", (|| async { "a" }).into_service())
            .route_service(
                "/telemetry-test/b",
                (|| async { (StatusCode::IM_A_TEAPOT, "b") }).into_service(),
            )
            // A nested router's template is a new string on every request.
            .nest(
                "/telemetry-test/p/{ref}",
                Router::new().route_service("/c", (|| async { "c" }).into_service()),
            )
            .layer(TrackLayer);
        let mut tasks = Vec::new();
        for i in 0..50 {
            let router = router.clone();
            tasks.push(tokio::spawn(async move {
                let uri = if i >= 40 {
                    format!("/telemetry-test/p/r{i}/c")
                } else if i % 4 == 0 {
                    "/telemetry-test/b".to_owned()
                } else {
                    format!("/telemetry-test/a/{i}")
                };
                let req = axum::http::Request::get(uri).body(Body::empty()).unwrap();
                router.oneshot(req).await.unwrap().status()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rendered = metrics.render();
        let count = |route, status| {
            line(&rendered, route, status).and_then(|l| l.rsplit(' ').next().map(str::to_owned))
        };
        assert_eq!(
            count("/telemetry-test/a/{id}", "200").as_deref(),
            Some("30"),
            "{rendered}"
        );
        assert_eq!(
            count("/telemetry-test/p/{ref}/c", "200").as_deref(),
            Some("10"),
            "{rendered}"
        );
        assert_eq!(
            count("/telemetry-test/b", "418").as_deref(),
            Some("10"),
            "{rendered}"
        );
        assert!(line(&rendered, "/telemetry-test/b", "200").is_none());
        assert!(
            rendered.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/telemetry-test/b\",status=\"418\""),
            "{rendered}"
        );
    }
}
