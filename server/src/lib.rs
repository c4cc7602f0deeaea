//! Ferrobase server: a multi-tenant backend-as-a-service.
//!
//! One module per capability; see `ARCHITECTURE.md` at the repository root
//! for the map and the main request flows.
//!
//! - [`config`]: typed settings from environment variables.
//! - [`platform`]: the control plane (projects, admins, start-up).
//! - [`tenant`]: which project a request is for and who is calling.
//! - [`rest`]: the PostgREST-compatible data API.
//! - [`auth`]: the GoTrue-compatible auth API.
//! - [`realtime`]: the Socket.IO realtime hub (channels, presence, change events).
//! - [`admin`]: schema management and guarded admin SQL (`/admin/v1`).
//! - [`storage`]: Supabase Storage-compatible buckets and objects, TUS uploads.
//! - [`functions`]: Deno edge functions (deploy, invoke, secrets, logs, schedules).
//! - [`ai`]: the OpenAI-compatible AI gateway (providers, fallback, metering, quotas).
//! - [`webhooks`]: signed, retried, logged HTTP callbacks for project events.
//! - [`db`]: the embedded cluster, pools, role-switched transactions.
//! - [`crypto`]: secret encryption, signing keys, passwords.
//! - [`outbound`]: the SSRF guard for every outgoing HTTP request.
//! - [`dashboard`]: the embedded admin web UI at `/dashboard`.
//! - [`error`]: the HTTP error envelope and JSON extractor; [`telemetry`]: metrics recorder.
//! - [`throttle`]: per-node bounds on image transforms and admin SQL.
//! - [`state`]: the shared state handlers receive.
//! - [`app`]: router, middleware, health, metrics, OpenAPI and the server loop.
//! - [`cli`]: the `ferrobase` command.

pub mod admin;
pub mod ai;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod functions;
pub mod outbound;
pub mod platform;
pub mod realtime;
pub mod rest;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod tenant;
pub mod throttle;
pub mod webhooks;

pub use app::serve;
pub use config::Config;
pub use platform::Platform;
pub use state::{App, AppState};
