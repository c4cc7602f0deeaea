//! Webhooks: signed HTTP callbacks for a project's events, durable across
//! node failures.
//!
//! - Events: every row of `realtime.messages` (channel messages and
//!   database changes) is matched against the endpoints' `events` globs by a
//!   statement-level trigger, which writes one delivery per matching
//!   endpoint in the event's own transaction (`migrations/project/V7`).
//!   Other capabilities emit their own events with [`emit`] (or the SQL
//!   function `webhooks.emit(type, data)`) inside their transaction.
//! - [`worker`]: every node claims due deliveries with `FOR UPDATE SKIP
//!   LOCKED`, signs them ([`sign`], Standard Webhooks), POSTs them through
//!   the SSRF guard ([`crate::outbound`]), retries on a schedule, honours
//!   `Retry-After`, disables endpoints that answer 410 or keep failing, and
//!   logs every attempt.
//! - [`store`]: endpoints, deliveries, replay, the control-plane index of
//!   projects with endpoints. [`handlers`]: `/admin/v1/webhooks`.
//!
//! Body of a delivery: `{type, timestamp, data}` with `type`
//! `realtime.message` (`data` = `{messageId, channel, event, payload}`),
//! `db.insert` / `db.update` / `db.delete` (`data` = the change), or an
//! emitted type such as `auth.user.created`.

pub mod handlers;
pub mod sign;
pub mod store;
pub mod worker;

use axum::Router;
use axum::routing::{get, post};

pub use crate::config::RetrySchedule;
pub use store::emit;

use crate::state::AppState;

/// Routes of the webhooks admin API, relative to a project.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/webhooks",
            get(handlers::list_endpoints).post(handlers::create_endpoint),
        )
        .route(
            "/admin/v1/webhooks/{id}",
            get(handlers::get_endpoint)
                .patch(handlers::update_endpoint)
                .delete(handlers::delete_endpoint),
        )
        .route(
            "/admin/v1/webhooks/{id}/rotate-secret",
            post(handlers::rotate_secret),
        )
        .route(
            "/admin/v1/webhooks/{id}/deliveries",
            get(handlers::list_deliveries),
        )
        .route(
            "/admin/v1/webhooks/{id}/deliveries/{delivery}",
            get(handlers::get_delivery),
        )
        .route(
            "/admin/v1/webhooks/{id}/deliveries/{delivery}/replay",
            post(handlers::replay_delivery),
        )
        .route(
            "/admin/v1/webhooks/{id}/replay",
            post(handlers::replay_failed),
        )
}
