#![doc = include_str!("../README.md")]
//!
//! # Layout
//!
//! - [`Client`] (`client.rs`): one project's APIs, authenticated with its
//!   anon or service-role key and optionally a user's access token.
//! - [`QueryBuilder`], [`FilterBuilder`], [`MaybeSingle`] (`query.rs`): the
//!   PostgREST-compatible data API under `{project}/rest/v1`.
//! - [`AuthClient`] (`auth.rs`): the project's users under
//!   `{project}/auth/v1` (sign up / in / out, sessions with automatic
//!   refresh in a pluggable [`SessionStore`], admin calls via [`AuthAdmin`]).
//! - [`StorageClient`] (`storage.rs`): buckets and objects under
//!   `{project}/storage/v1` ([`Client::storage`]).
//! - [`FunctionsClient`] (`functions.rs`): invoke edge functions under
//!   `{project}/functions/v1` and manage them (deploy, versions, logs,
//!   secrets, schedules) ([`Client::functions`]).
//! - [`AiClient`] (`ai.rs`): the OpenAI-compatible AI gateway under
//!   `{project}/ai/v1` ([`Client::ai`]): chat (streaming as a `Stream`),
//!   embeddings, images, models; [`AiAdmin`] for providers, settings, usage.
//! - [`Realtime`] (`realtime.rs`): the Socket.IO realtime hub (channels,
//!   presence, database changes, reconnection with catch-up) and
//!   [`RealtimeAdmin`] for channels and change capture.
//! - [`AdminClient`] (`admin.rs`): the platform API under
//!   `{server}/platform/v1` (log in, create and delete projects).
//! - [`Error`] (`error.rs`): the one error type, decoded from the server's
//!   `{code, message, details, hint}` envelope.

mod admin;
mod ai;
mod auth;
mod client;
mod error;
mod functions;
mod http;
mod query;
mod realtime;
mod schema;
mod storage;
pub mod webhooks;

pub use admin::{AdminClient, PlatformAdmin, Project, ProjectDetails, server_ready};
pub use ai::{AiAdmin, AiClient, ChatStream, Usage as AiUsage, UsageFigures, UsageQuery};
pub use auth::{
    AdminUserAttributes, AuthAdmin, AuthClient, GeneratedLink, MemoryStore, OAuthStart, Session,
    SessionStore, SignOutScope, SignUp, User, UserUpdate, pkce_pair,
};
pub use client::{Client, Jwk, Jwks};
pub use error::{Error, Result};
pub use functions::FunctionsClient;
pub use query::{Count, FilterBuilder, MaybeSingle, Order, QueryBuilder, Response, TextSearch};
pub use realtime::{
    Change, ChannelDef, Member, Message, Meta, Realtime, RealtimeAdmin, RealtimeEvent,
    RealtimeOptions, ServerError, Subscription,
};
pub use schema::{SchemaAdmin, SqlColumn, SqlOptions, SqlResult};
pub use storage::{
    Bucket, BucketApi, BucketOptions, FileObject, FileOptions, ListOptions, SignedUpload,
    SignedUrl, StorageClient, StorageUsage, Uploaded,
};

/// Re-exported so callers can name [`Method`](reqwest::Method) for
/// [`Client::request`] and configure their own `reqwest::Client` without a
/// separate, possibly mismatched, dependency.
pub use reqwest;
