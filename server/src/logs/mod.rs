//! Operational logs for platform admins: the recent requests this node
//! served and the platform audit log.
//!
//! - [`requests`]: a bounded in-memory ring of the last requests of this
//!   node (request id, method, path without its query string, status,
//!   latency, project), fed by the server's request-log layer through
//!   [`requests::begin`] and [`requests::Pending::finish`]. It never
//!   holds bodies, headers or query strings, so no token, key or signed-URL
//!   secret can end up in it. Each node has its own ring: behind a load
//!   balancer the page shows the node that answered it.
//! - [`audit`]: reads the control plane's `audit_log` table, which
//!   platform-admin mutations write through [`crate::platform::Platform::audit`].
//! - [`handlers`]: `GET /platform/v1/logs/requests` and
//!   `GET /platform/v1/logs/audit` (platform admin token).

pub mod audit;
pub mod handlers;
pub mod requests;

pub use requests::{RequestEntry, RequestLog};
