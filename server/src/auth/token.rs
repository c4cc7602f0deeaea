//! `POST /auth/v1/token`: the grants (password, refresh token rotation, PKCE
//! code exchange) and anonymous sign-in.

use axum::Json;
use axum::extract::RawQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{AuthError, AuthResult};
use super::limits::{self, Action};
use super::pkce;
use super::session::{self, Refreshed};
use super::users::{self, NewUser};
use super::{AuthCtx, Body, KeyedCtx, parse_body};
use super::{query_param, verify_password};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PasswordGrant {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RefreshGrant {
    refresh_token: Option<String>,
}

pub(super) fn invalid_credentials() -> AuthError {
    AuthError::bad_request("invalid_credentials", "Invalid login credentials")
}

/// `POST /auth/v1/token?grant_type=password|refresh_token|pkce|id_token`: sign in or refresh.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/token", tag = "auth",
    params(("ref" = String, Path, description = "Project ref"),
           ("grant_type" = String, Query, description = "password | refresh_token | pkce | id_token")),
    responses((status = 200, description = "Session"),
              (status = 400, description = "invalid_credentials, refresh_token_not_found, refresh_token_already_used …"),
              (status = 429, description = "Rate limited or locked out")))]
pub async fn token(
    KeyedCtx(ctx): KeyedCtx,
    RawQuery(query): RawQuery,
    body: Body,
) -> AuthResult<Json<Value>> {
    let body = body.0;
    match query_param(&query, "grant_type").as_deref() {
        Some("password") => password_grant(ctx, parse_body(&body)?).await,
        Some("refresh_token") => refresh_grant(ctx, parse_body(&body)?).await,
        Some("pkce") => pkce_grant(ctx, parse_body(&body)?).await,
        Some("id_token") => super::oauth::id_token_grant(ctx, &body).await,
        Some(other) => Err(AuthError::bad_request(
            "validation_failed",
            format!("unsupported_grant_type: {other}"),
        )),
        None => Err(AuthError::bad_request(
            "validation_failed",
            "unsupported_grant_type: grant_type is required",
        )),
    }
}

async fn password_grant(mut ctx: AuthCtx, p: PasswordGrant) -> AuthResult<Json<Value>> {
    let s = ctx.settings.clone();
    let Some(email) = p.email.as_deref() else {
        return Err(if p.phone.is_some() {
            AuthError::bad_request("phone_provider_disabled", "Phone logins are disabled")
        } else {
            AuthError::bad_request("validation_failed", "missing email or phone")
        });
    };
    if !s.external_email_enabled {
        return Err(AuthError::bad_request(
            "email_provider_disabled",
            "Email logins are disabled",
        ));
    }
    // Normalised without strict validation: an odd identifier is simply not found.
    let account: String = email.trim().to_lowercase().chars().take(255).collect();
    let password = p.password.unwrap_or_default();
    let c = &**ctx.client;
    limits::check(
        c,
        &s,
        Action::SignIn,
        ctx.origin.ip.as_deref(),
        Some(&account),
    )
    .await?;
    limits::check_lockout(c, &account).await?;
    let user = users::by_email(c, &account).await?;
    let phc = user.as_ref().and_then(|u| u.encrypted_password.clone());
    let ok = verify_password(password, phc).await?;
    let Some(mut user) = user.filter(|_| ok) else {
        limits::record_failure(c, &s, &account).await?;
        users::audit(
            c,
            "login_failed",
            None,
            json!({ "account": account }),
            ctx.origin.ip.as_deref(),
        )
        .await?;
        return Err(invalid_credentials());
    };
    limits::clear(c, &account).await?;
    if user.email_confirmed_at.is_none() && !s.mailer_autoconfirm {
        return Err(AuthError::bad_request(
            "email_not_confirmed",
            "Email not confirmed",
        ));
    }
    if user.is_banned() {
        return Err(AuthError::bad_request("user_banned", "User is banned"));
    }
    let config = ctx.config().clone();
    let tenant = ctx.tenant.clone();
    let origin = ctx.origin.clone();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let session = session::start(&tx, &config, &tenant, &s, &mut user, "password", &origin).await?;
    tx.commit().await?;
    Ok(Json(session))
}

async fn refresh_grant(mut ctx: AuthCtx, p: RefreshGrant) -> AuthResult<Json<Value>> {
    let Some(token) = p.refresh_token.filter(|t| !t.is_empty()) else {
        return Err(AuthError::bad_request(
            "validation_failed",
            "refresh_token required",
        ));
    };
    if token.len() > 256 {
        return Err(AuthError::bad_request(
            "refresh_token_not_found",
            "Invalid Refresh Token: Refresh Token Not Found",
        ));
    }
    let s = ctx.settings.clone();
    limits::check(
        &**ctx.client,
        &s,
        Action::Refresh,
        ctx.origin.ip.as_deref(),
        None,
    )
    .await?;
    let config = ctx.config().clone();
    let tenant = ctx.tenant.clone();
    let origin = ctx.origin.clone();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    match session::refresh(&tx, &config, &tenant, &s, &token, &origin).await? {
        Refreshed::Session(body) => {
            tx.commit().await?;
            Ok(Json(*body))
        }
        Refreshed::Revoked(err) => {
            tx.commit().await?;
            Err(err)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PkceGrant {
    auth_code: Option<String>,
    code_verifier: Option<String>,
}

async fn pkce_grant(mut ctx: AuthCtx, p: PkceGrant) -> AuthResult<Json<Value>> {
    let (Some(code), Some(verifier)) = (
        p.auth_code.filter(|c| !c.is_empty()),
        p.code_verifier.filter(|v| !v.is_empty()),
    ) else {
        return Err(AuthError::bad_request(
            "validation_failed",
            "invalid request: both auth code and code verifier should be non-empty",
        ));
    };
    let s = ctx.settings.clone();
    limits::check(
        &**ctx.client,
        &s,
        Action::SignIn,
        ctx.origin.ip.as_deref(),
        None,
    )
    .await?;
    let config = ctx.config().clone();
    let tenant = ctx.tenant.clone();
    let origin = ctx.origin.clone();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let flow = match pkce::exchange(&tx, &code, &verifier).await {
        Ok(flow) => flow,
        Err(e) => {
            // The failed attempt consumed the code: keep that.
            tx.commit().await?;
            return Err(e);
        }
    };
    let mut user = users::by_id(&tx, flow.user_id)
        .await?
        .ok_or_else(|| AuthError::not_found("user_not_found", "User not found"))?;
    if user.is_banned() {
        return Err(AuthError::bad_request("user_banned", "User is banned"));
    }
    let method = match flow.authentication_method.as_str() {
        "email/signup" => "otp",
        m => m,
    }
    .to_owned();
    let mut session =
        session::start(&tx, &config, &tenant, &s, &mut user, &method, &origin).await?;
    tx.commit().await?;
    if let Some(t) = flow.provider_access_token {
        session["provider_token"] = json!(t);
    }
    if let Some(t) = flow.provider_refresh_token {
        session["provider_refresh_token"] = json!(t);
    }
    Ok(Json(session))
}

pub(super) async fn anonymous(mut ctx: AuthCtx, data: Option<Value>) -> AuthResult<Json<Value>> {
    let s = ctx.settings.clone();
    if !s.external_anonymous_users_enabled {
        return Err(AuthError::unprocessable(
            "anonymous_provider_disabled",
            "Anonymous sign-ins are disabled",
        ));
    }
    let data = match data {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(AuthError::validation("data must be a JSON object")),
    };
    limits::check(
        &**ctx.client,
        &s,
        Action::Signup,
        ctx.origin.ip.as_deref(),
        None,
    )
    .await?;
    let config = ctx.config().clone();
    let tenant = ctx.tenant.clone();
    let origin = ctx.origin.clone();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let mut user = users::insert(
        &tx,
        NewUser {
            email: None,
            password_hash: None,
            confirmed: false,
            user_metadata: data,
            app_metadata: json!({}),
            provider: "anonymous",
            is_anonymous: true,
            invited: false,
        },
    )
    .await?;
    let session =
        session::start(&tx, &config, &tenant, &s, &mut user, "anonymous", &origin).await?;
    tx.commit().await?;
    Ok(Json(session))
}
