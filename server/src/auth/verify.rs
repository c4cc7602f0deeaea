//! `GET`/`POST /auth/v1/verify`: checks a mailed code or link token
//! (sign-up, recovery, magic link, invite, email change) and opens a session.

use axum::Json;
use axum::extract::RawQuery;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{AuthError, AuthResult};
use super::limits::{self, Action};
use super::mail::{self};
use super::pkce;
use super::query_param;
use super::session::{self};
use super::users::{self, parse_email};
use super::{AuthCtx, Body, KeyedCtx, parse_body, redirect};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VerifyParams {
    #[serde(rename = "type")]
    kind: Option<String>,
    token: Option<String>,
    token_hash: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    redirect_to: Option<String>,
}

/// The token types a verify `type` accepts.
fn token_types(kind: &str) -> AuthResult<&'static [&'static str]> {
    Ok(match kind {
        "signup" => &["confirmation"],
        "email" => &["confirmation", "magiclink"],
        "magiclink" => &["magiclink", "confirmation"],
        "recovery" => &["recovery"],
        "invite" => &["invite"],
        "email_change" => &["email_change_current", "email_change_new"],
        _ => {
            return Err(AuthError::bad_request(
                "validation_failed",
                "Verify requires a verification type",
            ));
        }
    })
}

/// The outcome of a verification.
enum Verified {
    /// Signed in.
    Session(Box<Value>, String),
    /// First half of a secure email change accepted.
    Partial(String),
    /// PKCE flow: an auth code for the app to exchange.
    Code(String, String),
}

const PARTIAL_EMAIL_CHANGE: &str =
    "Confirmation link accepted. Please proceed to confirm link sent to the other email";

async fn do_verify(
    ctx: &mut AuthCtx,
    kind: &str,
    link_token: Option<&str>,
    otp: Option<(&str, &str)>,
    want_code: bool,
) -> AuthResult<Verified> {
    let types = token_types(kind)?;
    let s = ctx.settings.clone();
    let config = ctx.config().clone();
    let tenant = ctx.tenant.clone();
    let origin = ctx.origin.clone();
    limits::check(
        &**ctx.client,
        &s,
        Action::Verify,
        origin.ip.as_deref(),
        otp.map(|(email, _)| email),
    )
    .await?;
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let consumed = match (link_token, otp) {
        (Some(t), _) => mail::consume_link(&tx, t, types).await?,
        (None, Some((email, code))) => mail::consume_otp(&tx, email, code, types).await?,
        (None, None) => {
            return Err(AuthError::bad_request(
                "validation_failed",
                "Verify requires either a token or a token hash",
            ));
        }
    };
    let redirect_to = consumed.redirect_to.clone().unwrap_or_default();
    let user_id = consumed.user_id.ok_or_else(token_expired)?;
    let user = users::by_id_for_update(&tx, user_id)
        .await?
        .ok_or_else(token_expired)?;
    if user.is_banned() {
        return Err(AuthError::bad_request("user_banned", "User is banned"));
    }
    let method = match consumed.token_type.as_str() {
        "confirmation" | "invite" | "magiclink" => {
            tx.execute(
                "update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()), \
                 updated_at = now() where id = $1",
                &[&user.id],
            )
            .await?;
            tx.execute(
                "update auth.identities set identity_data = identity_data || '{\"email_verified\": true}' \
                 where user_id = $1 and provider = 'email'",
                &[&user.id],
            )
            .await?;
            match consumed.token_type.as_str() {
                "invite" => "invite",
                "magiclink" => "magiclink",
                _ => "otp",
            }
        }
        "recovery" => {
            tx.execute(
                "update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()), \
                 recovery_sent_at = null, updated_at = now() where id = $1",
                &[&user.id],
            )
            .await?;
            "recovery"
        }
        _ => match confirm_email_change(&tx, &user, &consumed.token_type, &s).await? {
            EmailChange::Partial => {
                tx.commit().await?;
                return Ok(Verified::Partial(redirect_to));
            }
            EmailChange::Done => "email_change",
        },
    };
    // An anonymous user with a confirmed email becomes a permanent email user.
    if user.is_anonymous {
        tx.execute(
            "update auth.users set is_anonymous = false, raw_app_meta_data = raw_app_meta_data || \
             '{\"provider\": \"email\", \"providers\": [\"email\"]}' where id = $1 and email is not null",
            &[&user.id],
        )
        .await?;
        tx.execute(
            "insert into auth.identities (provider_id, user_id, identity_data, provider) \
             select u.id::text, u.id, jsonb_build_object('sub', u.id::text, 'email', u.email, \
             'email_verified', true, 'phone_verified', false), 'email' \
             from auth.users u where u.id = $1 and u.email is not null \
             on conflict (provider_id, provider) do nothing",
            &[&user.id],
        )
        .await?;
    }
    let mut user = users::by_id(&tx, user.id)
        .await?
        .ok_or_else(token_expired)?;
    if want_code && let Some(flow) = consumed.flow_state_id {
        let code = pkce::issue_code(&tx, flow, user.id).await?;
        tx.commit().await?;
        return Ok(Verified::Code(code, redirect_to));
    }
    users::audit(
        &tx,
        "user_verified",
        Some(user.id),
        json!({ "type": kind }),
        origin.ip.as_deref(),
    )
    .await?;
    let session = session::start(&tx, &config, &tenant, &s, &mut user, method, &origin).await?;
    tx.commit().await?;
    Ok(Verified::Session(Box::new(session), redirect_to))
}

/// Where an email change stands after one of its tokens was confirmed.
enum EmailChange {
    /// Secure email change: the other address must confirm too.
    Partial,
    /// The address was changed.
    Done,
}

/// Confirms one half (or, without secure email change, the whole) of the
/// user's pending email change.
async fn confirm_email_change(
    tx: &tokio_postgres::Transaction<'_>,
    user: &users::User,
    token_type: &str,
    settings: &super::settings::AuthSettings,
) -> AuthResult<EmailChange> {
    // Email change: the pending change must still be the one mailed.
    let Some(new_email) = user.email_change.clone() else {
        return Err(token_expired());
    };
    let pending = tx
        .query_one(
            "select email_change_confirm_status from auth.users where id = $1",
            &[&user.id],
        )
        .await?;
    let status: i16 = pending.get(0);
    // With secure email change both halves must be confirmed: the
    // change completes only when the other half was confirmed before
    // (status 1) and none of its tokens is still pending. A `/resend`
    // issues fresh tokens for both halves (and resets the status), so
    // the new address alone can never finish the change by confirming
    // twice.
    let other_type = if token_type == "email_change_new" {
        "email_change_current"
    } else {
        "email_change_new"
    };
    let other_pending = tx
        .query_opt(
            "select 1 from auth.one_time_tokens where user_id = $1 and token_type = $2",
            &[&user.id, &other_type],
        )
        .await?
        .is_some();
    let both_needed = settings.secure_email_change_enabled
        && user.email.as_deref().is_some_and(|e| !e.is_empty());
    if both_needed && (status == 0 || other_pending) {
        tx.execute(
            "update auth.users set email_change_confirm_status = 1 where id = $1",
            &[&user.id],
        )
        .await?;
        return Ok(EmailChange::Partial);
    }
    let taken = tx
        .query_opt(
            "select 1 from auth.users where email = $1 and id <> $2",
            &[&new_email, &user.id],
        )
        .await?
        .is_some();
    if taken {
        return Err(AuthError::unprocessable(
            "email_exists",
            "A user with this email address has already been registered",
        ));
    }
    tx.execute(
        "update auth.users set email = email_change, email_change = null, \
         email_change_sent_at = null, email_change_confirm_status = 0, \
         email_confirmed_at = now(), updated_at = now() where id = $1",
        &[&user.id],
    )
    .await?;
    tx.execute(
        "delete from auth.one_time_tokens where user_id = $1 \
         and token_type in ('email_change_current', 'email_change_new')",
        &[&user.id],
    )
    .await?;
    tx.execute(
        "update auth.identities set identity_data = identity_data || jsonb_build_object('email', $2::text) \
         where user_id = $1 and provider = 'email'",
        &[&user.id, &new_email],
    )
    .await?;
    Ok(EmailChange::Done)
}

/// The error of an unknown, used or expired token.
fn token_expired() -> AuthError {
    AuthError::forbidden("otp_expired", "Token has expired or is invalid")
}

/// `POST /auth/v1/verify`: verifies a code (`token` + `email`) or a link token
/// (`token_hash`) and returns a session.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/verify", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Session"), (status = 403, description = "otp_expired")))]
pub async fn verify_post(KeyedCtx(mut ctx): KeyedCtx, body: Body) -> AuthResult<Json<Value>> {
    let p: VerifyParams = parse_body(&body.0)?;
    let kind = p.kind.clone().unwrap_or_default();
    if p.phone.is_some() && p.email.is_none() {
        return Err(AuthError::bad_request(
            "phone_provider_disabled",
            "Phone logins are disabled",
        ));
    }
    let outcome = match (&p.token_hash, &p.token, &p.email) {
        (Some(h), _, _) => do_verify(&mut ctx, &kind, Some(h), None, false).await?,
        (None, Some(t), Some(e)) => {
            let email = parse_email(e)?;
            do_verify(&mut ctx, &kind, None, Some((&email, t)), false).await?
        }
        (None, Some(t), None) => do_verify(&mut ctx, &kind, Some(t), None, false).await?,
        _ => {
            return Err(AuthError::bad_request(
                "validation_failed",
                "Verify requires either a token or a token hash",
            ));
        }
    };
    let _ = p.redirect_to;
    match outcome {
        Verified::Session(session, _) => Ok(Json(*session)),
        Verified::Partial(_) => Ok(Json(json!({ "msg": PARTIAL_EMAIL_CHANGE, "code": 200 }))),
        Verified::Code(..) => Err(AuthError::internal(&"POST /verify never issues a code")),
    }
}

/// `GET /auth/v1/verify?token=…&type=…&redirect_to=…`: the link in mail.
/// Redirects (303) to the app with the session in the URL fragment, or with
/// `error`, `error_code` and `error_description` when the link is not valid.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/verify", tag = "auth",
    params(("ref" = String, Path, description = "Project ref"),
           ("token" = String, Query, description = "Link token"),
           ("type" = String, Query, description = "signup, magiclink, recovery, invite, email_change"),
           ("redirect_to" = Option<String>, Query, description = "Where to go afterwards")),
    responses((status = 303, description = "Redirect to the app")))]
pub async fn verify_get(mut ctx: AuthCtx, RawQuery(query): RawQuery) -> Response {
    let kind = query_param(&query, "type").unwrap_or_default();
    let token = query_param(&query, "token").unwrap_or_default();
    let requested = query_param(&query, "redirect_to");
    let fallback = redirect::resolve(&ctx.settings, requested.as_deref());
    let outcome = if token.is_empty() {
        Err(AuthError::forbidden(
            "otp_expired",
            "Email link is invalid or has expired",
        ))
    } else {
        do_verify(&mut ctx, &kind, Some(&token), None, true).await
    };
    let target = |stored: &str| {
        if stored.is_empty() {
            fallback.clone()
        } else {
            redirect::resolve(&ctx.settings, Some(stored))
        }
    };
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let location = match outcome {
        Ok(Verified::Session(session, stored)) => {
            let f = |k: &str| match &session[k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!(
                "{}#access_token={}&expires_at={}&expires_in={}&refresh_token={}&token_type=bearer&type={}",
                target(&stored),
                f("access_token"),
                f("expires_at"),
                f("expires_in"),
                f("refresh_token"),
                enc(&kind)
            )
        }
        Ok(Verified::Code(code, stored)) => pkce::with_code(&target(&stored), &code),
        Ok(Verified::Partial(stored)) => {
            format!("{}#message={}", target(&stored), enc(PARTIAL_EMAIL_CHANGE))
        }
        Err(e) if e.status.is_server_error() => return e.into_response(),
        Err(e) => {
            let description = if e.code == "otp_expired" {
                "Email link is invalid or has expired".to_owned()
            } else {
                e.msg.clone()
            };
            let error = if e.status == StatusCode::TOO_MANY_REQUESTS {
                "server_error"
            } else {
                "access_denied"
            };
            format!(
                "{fallback}#error={error}&error_code={}&error_description={}",
                e.code,
                enc(&description)
            )
        }
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}
