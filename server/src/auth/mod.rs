//! Auth: a Supabase Auth (GoTrue)-compatible API under `/p/{ref}/auth/v1`.
//!
//! The official clients (`@supabase/auth-js`, `supabase-auth`) work against it
//! unchanged: same paths, parameters, JSON shapes and error codes. Everything
//! lives in the project's own database (schema `auth`, migration V3), reached
//! as the project owner; the API roles cannot touch it.
//!
//! Layout:
//! - one file per user-facing action: [`signup`], [`token`] (grants), [`account`]
//!   (the signed-in user, logout, public settings), [`links`] (recover, OTP,
//!   magic link, resend), [`verify`];
//! - [`admin`]: `/admin/users` CRUD, invite, `generate_link`, settings, mail;
//! - [`session`]: access tokens, sessions, rotating refresh tokens;
//! - [`users`]: the user model and its queries;
//! - [`limits`]: rate limits and lockout (state in Postgres);
//! - [`mail`], [`smtp`]: one-time tokens, templates, delivery;
//! - [`mfa`]: TOTP factors and `aal2` sessions;
//! - [`oauth`]: OAuth 2 / OpenID Connect providers (authorize, callback);
//! - [`pkce`]: PKCE flow state and auth codes;
//! - [`redirect`]: the redirect allow-list; [`settings`]: per-project settings;
//! - [`error`]: GoTrue's error shapes; [`layer`]: the layer of every route
//!   (error shape by API version, dropping cached `GET /user` answers after writes).

pub mod account;
pub mod admin;
pub mod error;
pub mod layer;
pub mod limits;
pub mod links;
pub mod mail;
pub mod mfa;
pub mod oauth;
pub mod pkce;
pub mod redirect;
pub mod session;
pub mod settings;
pub mod signup;
pub mod smtp;
pub mod token;
pub mod users;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post, put};
use serde_json::Value;
use uuid::Uuid;

use crate::state::AppState;
use crate::tenant::{Tenant, verify_token};
use error::{AuthError, AuthResult};
use session::{Origin, SessionInfo};
use settings::AuthSettings;
use users::User;

/// The routes of `/auth/v1`, merged into the project routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/v1/signup", post(signup::signup))
        .route("/auth/v1/token", post(token::token))
        .route(
            "/auth/v1/user",
            get(account::get_user).put(account::update_user),
        )
        .route("/auth/v1/logout", post(account::logout))
        .route("/auth/v1/settings", get(account::settings))
        .route("/auth/v1/recover", post(links::recover))
        .route("/auth/v1/otp", post(links::otp))
        .route("/auth/v1/magiclink", post(links::magiclink))
        .route(
            "/auth/v1/verify",
            get(verify::verify_get).post(verify::verify_post),
        )
        .route("/auth/v1/resend", post(links::resend))
        .route("/auth/v1/factors", post(mfa::enroll))
        .route(
            "/auth/v1/factors/{id}",
            axum::routing::delete(mfa::unenroll),
        )
        .route("/auth/v1/factors/{id}/challenge", post(mfa::challenge))
        .route("/auth/v1/factors/{id}/verify", post(mfa::verify))
        .route("/auth/v1/authorize", get(oauth::authorize))
        .route(
            "/auth/v1/callback",
            get(oauth::callback_get).post(oauth::callback_post),
        )
        .route("/auth/v1/admin/providers", get(oauth::list_providers))
        .route(
            "/auth/v1/admin/providers/{name}",
            put(oauth::put_provider).delete(oauth::delete_provider),
        )
        .route(
            "/auth/v1/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route(
            "/auth/v1/admin/users/{id}",
            get(admin::get_user)
                .put(admin::update_user)
                .delete(admin::delete_user),
        )
        .route(
            "/auth/v1/admin/users/{id}/sessions",
            get(admin::list_sessions).delete(admin::revoke_sessions),
        )
        .route(
            "/auth/v1/admin/users/{id}/sessions/{session_id}",
            axum::routing::delete(admin::revoke_session),
        )
        .route(
            "/auth/v1/user/identities/{identity_id}",
            axum::routing::delete(account::unlink_identity),
        )
        .route("/auth/v1/invite", post(admin::invite))
        .route("/auth/v1/admin/generate_link", post(admin::generate_link))
        .route(
            "/auth/v1/admin/config",
            get(admin::get_config).put(admin::put_config),
        )
        .route("/auth/v1/admin/mail", get(admin::list_mail))
        .route("/auth/v1/admin/smtp", put(admin::put_smtp))
        .route(
            "/auth/v1/admin/templates/{kind}",
            put(admin::put_template).get(admin::get_template),
        )
        .layer(layer::AuthLayer)
}

/// What every auth handler needs: the project, a connection to its database
/// (as the owner), its effective settings and where the request came from.
pub struct AuthCtx {
    /// Shared state.
    pub app: AppState,
    /// The project.
    pub tenant: Arc<Tenant>,
    /// A pooled connection to the project database.
    pub client: deadpool_postgres::Object,
    /// Effective auth settings.
    pub settings: AuthSettings,
    /// Client IP and user agent.
    pub origin: Origin,
    /// Request headers.
    pub headers: HeaderMap,
}

/// Like [`AuthCtx`] but also requires a valid project API key (`apikey`
/// header, or the anon / service-role key as bearer token), as Supabase's
/// gateway does for every auth route but the browser-facing ones.
pub struct KeyedCtx(pub AuthCtx);

impl FromRequestParts<AppState> for AuthCtx {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AuthResult<Self> {
        let tenant = routed_tenant(parts)?;
        let client = app.project_pool(&tenant).get().await?;
        let config = app.platform.config();
        let settings =
            settings::load(&client, config, app.platform.secrets(), tenant.project.id).await?;
        let ip = client_ip(parts, config.trust_forwarded_for);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect());
        Ok(AuthCtx {
            app: app.clone(),
            tenant,
            client,
            settings,
            origin: Origin { ip, user_agent },
            headers: parts.headers.clone(),
        })
    }
}

impl FromRequestParts<AppState> for KeyedCtx {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> AuthResult<Self> {
        let tenant = routed_tenant(parts)?;
        check_api_key(&tenant, &parts.headers)?;
        AuthCtx::from_request_parts(parts, app).await.map(KeyedCtx)
    }
}

/// The project `resolve_project` put on the request.
fn routed_tenant(parts: &Parts) -> AuthResult<Arc<Tenant>> {
    parts
        .extensions
        .get::<Arc<Tenant>>()
        .cloned()
        .ok_or_else(|| AuthError::internal(&"auth route without resolve_project"))
}

fn check_api_key(tenant: &Tenant, headers: &HeaderMap) -> AuthResult<()> {
    let key = match headers.get("apikey") {
        Some(v) => v.to_str().ok().map(str::trim),
        None => bearer(headers),
    };
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(AuthError::unauthorized(
            "no_api_key",
            "No API key found in request",
        ));
    };
    crate::tenant::verify_shared(tenant, key, "API key")
        .map(drop)
        .map_err(|_| AuthError::unauthorized("invalid_api_key", "Invalid API key"))
}

/// Verifies the bearer access token of `headers` and loads its user and
/// session from `client` in one round trip (403 `bad_jwt` /
/// `user_not_found` / `session_not_found` as GoTrue).
pub async fn require_user(
    tenant: &Tenant,
    client: &deadpool_postgres::Object,
    headers: &HeaderMap,
) -> AuthResult<Authenticated> {
    let bearer = bearer_user(tenant, headers)?;
    let found = users::with_session(client, bearer.sub, bearer.session_id).await?;
    let (user, session) = found_user(found)?;
    Ok(Authenticated {
        user,
        session,
        claims: bearer.claims.claims.clone(),
    })
}

/// A verified bearer access token and who it names.
pub struct BearerUser {
    /// The verified token.
    pub claims: Arc<crate::tenant::Verified>,
    /// `sub`.
    pub sub: Uuid,
    /// `session_id`, when present.
    pub session_id: Option<Uuid>,
}

/// Verifies the bearer access token of `headers` (401 `no_authorization`,
/// 403 `bad_jwt` as GoTrue); no database access.
pub fn bearer_user(tenant: &Tenant, headers: &HeaderMap) -> AuthResult<BearerUser> {
    let token = bearer(headers).ok_or_else(|| {
        AuthError::unauthorized("no_authorization", "This endpoint requires a Bearer token")
    })?;
    let claims = crate::tenant::verify_shared(tenant, token, "access token").map_err(|e| {
        AuthError::forbidden(
            "bad_jwt",
            format!(
                "invalid JWT: unable to parse or verify signature, {}",
                e.message
            ),
        )
    })?;
    let Some(sub) = claims.claims["sub"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
    else {
        return Err(AuthError::forbidden(
            "bad_jwt",
            "invalid claim: missing sub claim",
        ));
    };
    let session_id = claims.claims["session_id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok());
    Ok(BearerUser {
        claims,
        sub,
        session_id,
    })
}

/// The user and live session a token named, or GoTrue's 403
/// `user_not_found` / `session_not_found`.
pub fn found_user(found: users::Found) -> AuthResult<(User, SessionInfo)> {
    let user = found.user.ok_or_else(|| {
        AuthError::forbidden(
            "user_not_found",
            "User from sub claim in JWT does not exist",
        )
    })?;
    let session = found.session.ok_or_else(|| {
        AuthError::forbidden(
            "session_not_found",
            "Session from session_id claim in JWT does not exist",
        )
    })?;
    Ok((user, session))
}

/// The project and the verified bearer access token, with a valid project
/// API key checked as for [`KeyedCtx`]; no database connection and no auth
/// settings: for `GET /auth/v1/user`, which often answers from memory.
pub struct KeyedUser(pub Arc<Tenant>, pub BearerUser);

impl FromRequestParts<AppState> for KeyedUser {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> AuthResult<Self> {
        let tenant = routed_tenant(parts)?;
        check_api_key(&tenant, &parts.headers)?;
        let bearer = bearer_user(&tenant, &parts.headers)?;
        Ok(KeyedUser(tenant, bearer))
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    crate::crypto::bearer_token(headers).ok().flatten()
}

/// The client IP of a request (socket peer, or the first `X-Forwarded-For`
/// hop when `FERROBASE_TRUST_FORWARDED_FOR` is on), as an extractor; used by
/// limits outside auth too (platform admin login).
pub struct ClientIp(pub Option<String>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(
            parts,
            app.platform.config().trust_forwarded_for,
        )))
    }
}

/// The client IP: the socket peer when the server records it, or the first
/// `X-Forwarded-For` hop when configured to trust it.
fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> Option<String> {
    if trust_forwarded_for
        && let Some(first) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
        && let Ok(ip) = first.parse::<std::net::IpAddr>()
    {
        return Some(ip.to_string());
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
}

/// A signed-in user, from the bearer access token.
pub struct Authenticated {
    /// The user.
    pub user: User,
    /// Its current session.
    pub session: SessionInfo,
    /// The verified claims.
    pub claims: Value,
}

impl AuthCtx {
    /// The server config.
    pub fn config(&self) -> &crate::Config {
        self.app.platform.config()
    }

    /// The project's base URL.
    pub fn project_url(&self) -> String {
        self.config().project_url(&self.tenant.project.project_ref)
    }

    /// Verifies the bearer access token and loads its user and session
    /// (403 `bad_jwt` / `user_not_found` / `session_not_found` as GoTrue).
    pub async fn require_user(&self) -> AuthResult<Authenticated> {
        require_user(&self.tenant, &self.client, &self.headers).await
    }

    /// Requires the service-role key as bearer token (admin endpoints).
    pub fn require_admin(&self) -> AuthResult<()> {
        let token = bearer(&self.headers).ok_or_else(|| {
            AuthError::unauthorized("no_authorization", "This endpoint requires a Bearer token")
        })?;
        let claims = verify_token(&self.tenant, token, "access token").map_err(|e| {
            AuthError::forbidden(
                "bad_jwt",
                format!(
                    "invalid JWT: unable to parse or verify signature, {}",
                    e.message
                ),
            )
        })?;
        if claims["role"] != "service_role" {
            return Err(AuthError::forbidden("not_admin", "User not allowed"));
        }
        Ok(())
    }
}

/// Parses a JSON request body; an empty body is `{}`. Bad JSON is 400 `bad_json`.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> AuthResult<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        AuthError::bad_request(
            "bad_json",
            format!("Could not parse request body as JSON: {e}"),
        )
    })
}

/// The raw body of a request; read failures (too large …) in GoTrue's shape.
pub struct Body(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = AuthError;

    async fn from_request(req: axum::extract::Request, state: &S) -> AuthResult<Self> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(body_error)
    }
}

fn body_error(e: axum::extract::rejection::BytesRejection) -> AuthError {
    {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            AuthError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "The request body is too large",
            )
        } else {
            AuthError::bad_request("bad_json", e.body_text())
        }
    }
}

/// A query parameter of a raw query string.
pub fn query_param(raw: &Option<String>, name: &str) -> Option<String> {
    let raw = raw.as_deref()?;
    url::form_urlencoded::parse(raw.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Hashes a password off the async runtime (argon2id is deliberately slow).
pub async fn hash_password(password: String) -> AuthResult<String> {
    tokio::task::spawn_blocking(move || crate::crypto::password::hash(&password))
        .await
        .map_err(|e| AuthError::internal(&e))
}

/// Verifies a password off the async runtime; with no hash, spends the same
/// time on a dummy hash so timing does not reveal whether the user exists.
async fn verify_password(password: String, phc: Option<String>) -> AuthResult<bool> {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => crate::crypto::password::verify(&password, &phc),
        None => {
            crate::crypto::password::dummy_verify(&password);
            false
        }
    })
    .await
    .map_err(|e| AuthError::internal(&e))
}
