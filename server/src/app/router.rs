//! The API's table of contents: every route in one place.

use std::convert::Infallible;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{delete, get, post};
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::middleware::{
    FastRequestId, REQUEST_ID, RequestLogLayer, buffer_body, cors, log_response, span_for,
};
use super::{health, metrics, openapi};
use crate::backup::handlers as backups;
use crate::error::ApiError;
use crate::platform::handlers as platform;
use crate::state::AppState;
use crate::telemetry::TrackLayer;
use crate::tenant;

/// Routes of one project, mounted at `/p/{ref}`.
fn project_routes(app: &AppState) -> Router<AppState> {
    Router::new()
        .route("/auth/v1/.well-known/jwks.json", get(tenant::jwks))
        .merge(crate::rest::handlers::routes())
        .merge(crate::auth::routes())
        .merge(crate::admin::routes())
        .merge(crate::ai::routes())
        .merge(crate::realtime::http::routes())
        .merge(crate::webhooks::routes())
        // Whole bodies are read before any handler takes a connection.
        .route_layer(from_fn_with_state(app.clone(), buffer_body))
        .merge(crate::storage::routes(app))
        .merge(crate::functions::routes())
        .merge(crate::realtime::http::socket_io(app))
        .route_layer(from_fn_with_state(app.clone(), tenant::resolve_project))
}

/// The full router with its middleware, as one service (host rewriting is
/// applied around it by [`crate::app::serve`], because it must happen before
/// routing).
///
/// Only the metrics layer is mounted on each route (it needs the route's
/// template); the others wrap the router once. `Router::layer` boxes the
/// route's service at every layer and clones that chain of boxes on every
/// request, so the middleware every request passes costs less outside.
pub fn build(
    app: AppState,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    let config = app.platform.config();
    let router = Router::new()
        .route("/health", get(health::root))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::spec))
        .route("/docs", get(openapi::page))
        .route("/platform/v1/auth/login", post(platform::login))
        .route(
            "/platform/v1/projects",
            get(platform::list_projects).post(platform::create_project),
        )
        .route(
            "/platform/v1/projects/{ref}",
            get(platform::get_project)
                .patch(platform::update_project)
                .delete(platform::delete_project),
        )
        .route(
            "/platform/v1/projects/{ref}/keys/rotate",
            post(platform::rotate_keys),
        )
        .route(
            "/platform/v1/clusters",
            get(platform::list_clusters).post(platform::add_cluster),
        )
        .route(
            "/platform/v1/clusters/{name}",
            delete(platform::remove_cluster).patch(platform::update_cluster),
        )
        .route(
            "/platform/v1/logs/requests",
            get(crate::logs::handlers::requests),
        )
        .route(
            "/platform/v1/logs/audit",
            get(crate::logs::handlers::audit_log),
        )
        .route(
            "/platform/v1/backups/schedules",
            get(backups::list_schedules).post(backups::create_schedule),
        )
        .route(
            "/platform/v1/backups/schedules/{name}",
            axum::routing::delete(backups::delete_schedule),
        )
        .route("/platform/v1/backups", get(backups::list_runs))
        .route_layer(from_fn_with_state(app.clone(), buffer_body))
        .nest("/p/{ref}", project_routes(&app))
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TrackLayer)
        .with_state(app.clone());
    // Outermost first: request id, tracing, request id on the response,
    // CORS, request log, body limit; then the router, whose routes record
    // the metrics.
    ServiceBuilder::new()
        .map_response(into_response)
        .layer(SetRequestIdLayer::new(REQUEST_ID, FastRequestId))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span_for)
                .on_response(log_response),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(cors(app.clone()))
        .layer(RequestLogLayer(app.request_log.clone()))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .service(router)
}

/// A response with any body as axum's [`Response`].
fn into_response<B>(res: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    res.map(axum::body::Body::new)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(
        "not_found",
        format!("No route for {method} {}.", uri.path()),
    )
    .with_hint("See /docs for the API reference.")
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}.", uri.path()),
    )
}
