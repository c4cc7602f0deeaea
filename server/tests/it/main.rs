//! Integration tests of the Ferrobase server, over real sockets and a real
//! Postgres cluster (started by `cargo xtask test`). One binary, one module
//! per capability.

mod support;

mod admin_sql;
mod ai;
mod architecture;
mod auth;
mod backup;
mod cli;
mod clusters;
mod dashboard;
mod deploy;
mod drain;
mod embedded;
mod errors;
mod examples;
mod first_run;
mod functions;
mod hardening;
mod logs;
mod nodes;
mod outbound;
mod platform;
mod project_settings;
mod realtime;
mod resilience;
mod rest;
mod scale;
mod schema_admin;
mod sdk;
mod storage;
mod tenancy;
mod typegen;
mod webhooks;
