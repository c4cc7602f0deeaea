//! Integration tests of the Ferrobase server, over real sockets and a real
//! Postgres cluster (started by `cargo xtask test`). One binary, one module
//! per capability.

mod support;

mod admin_sql;
mod auth;
mod cli;
mod deploy;
mod embedded;
mod errors;
mod examples;
mod hardening;
mod platform;
mod resilience;
mod rest;
mod schema_admin;
mod sdk;
mod storage;
mod tenancy;
