//! The signed-in user's own account: `GET`/`PUT /auth/v1/user`, logout,
//! unlinking an identity, and the public `GET /auth/v1/settings`.

use axum::Json;
use axum::extract::RawQuery;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::limits::{self};
use super::links::{LinkMail, send_link};
use super::mail::Kind;
use super::pkce;
use super::users::{self, parse_email};
use super::{Body, KeyedCtx, KeyedUser, parse_body, redirect};
use super::{hash_password, query_param, verify_password};
use crate::state::AppState;

/// `GET /auth/v1/user`: the signed-in user.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/user", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "User"), (status = 401, description = "No bearer token"),
              (status = 403, description = "Invalid token or session gone")))]
pub async fn get_user(
    State(app): State<AppState>,
    KeyedUser(tenant, bearer): KeyedUser,
) -> AuthResult<Response> {
    // The token is verified (and unexpired) on every request; the user and
    // its session may come from this node's short-lived cache, which every
    // auth write here drops (see `tenant::read_cache`).
    let key = (bearer.sub, bearer.session_id.unwrap_or_default());
    if let Some(body) = tenant.users.get(&key) {
        return Ok(json_body(body));
    }
    let epoch = tenant.users.epoch();
    let client = app.project_pool(&tenant).get().await?;
    // Reads no auth settings: one round trip (the user, identities, factors
    // and session statements, pipelined).
    let found = users::with_session(&client, bearer.sub, bearer.session_id).await?;
    drop(client);
    let session_ends = found.session_ends;
    let (user, _) = super::found_user(found)?;
    let body =
        Bytes::from(serde_json::to_vec(&user.to_json()).map_err(|e| AuthError::internal(&e))?);
    if let Some(until) = cache_deadline(app.platform.config().auth_user_cache_ms, session_ends) {
        tenant.users.insert(key, epoch, until, body.clone());
    }
    Ok(json_body(body))
}

/// How long a `GET /user` answer may be kept: the configured time, or less
/// if the session ends sooner; `None` when it must not be kept.
fn cache_deadline(
    ttl_ms: u64,
    session_ends: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<std::time::Instant> {
    let mut keep = std::time::Duration::from_millis(ttl_ms);
    if let Some(ends) = session_ends {
        keep = keep.min((ends - chrono::Utc::now()).to_std().ok()?);
    }
    (!keep.is_zero()).then(|| std::time::Instant::now() + keep)
}

fn json_body(body: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UpdateUser {
    email: Option<String>,
    password: Option<String>,
    data: Option<Value>,
    phone: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// `PUT /auth/v1/user`: change password, user metadata or email (an email
/// change is confirmed on both addresses when `secure_email_change_enabled`).
#[utoipa::path(put, path = "/p/{ref}/auth/v1/user", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Updated user"), (status = 422, description = "Weak or same password, email taken")))]
pub async fn update_user(
    KeyedCtx(mut ctx): KeyedCtx,
    RawQuery(query): RawQuery,
    body: Body,
) -> AuthResult<Json<Value>> {
    let p: UpdateUser = parse_body(&body.0)?;
    let me = ctx.require_user().await?;
    let s = ctx.settings.clone();
    if p.phone.is_some() {
        return Err(AuthError::bad_request(
            "phone_provider_disabled",
            "Phone logins are disabled",
        ));
    }
    let new_hash = match p.password {
        Some(pw) => {
            s.check_password(&pw)?;
            if me.user.encrypted_password.is_some()
                && verify_password(pw.clone(), me.user.encrypted_password.clone()).await?
            {
                return Err(AuthError::unprocessable(
                    "same_password",
                    "New password should be different from the old password.",
                ));
            }
            Some(hash_password(pw).await?)
        }
        None => None,
    };
    let data = match p.data {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return Err(AuthError::validation("data must be a JSON object")),
    };
    let new_email = p
        .email
        .as_deref()
        .map(parse_email)
        .transpose()?
        .filter(|e| Some(e) != me.user.email.as_ref());
    let challenge = pkce::parse(
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    )?;
    let redirect_to = redirect::resolve(&s, query_param(&query, "redirect_to").as_deref());
    let config = ctx.config().clone();
    let project_url = ctx.project_url();
    let ip = ctx.origin.ip.clone();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let id = me.user.id;
    if let Some(hash) = &new_hash {
        tx.execute(
            "update auth.users set encrypted_password = $2, updated_at = now() where id = $1",
            &[&id, hash],
        )
        .await?;
        users::audit(
            &tx,
            "user_updated_password",
            Some(id),
            json!({}),
            ip.as_deref(),
        )
        .await?;
    }
    if let Some(data) = &data {
        let merged = users::merge_metadata(&me.user.user_metadata, data);
        tx.execute(
            "update auth.users set raw_user_meta_data = $2, updated_at = now() where id = $1",
            &[&id, &merged],
        )
        .await?;
    }
    if let Some(new_email) = &new_email {
        let taken = tx
            .query_opt(
                "select 1 from auth.users where email = $1 and id <> $2",
                &[new_email, &id],
            )
            .await?
            .is_some();
        if taken {
            return Err(AuthError::unprocessable(
                "email_exists",
                "A user with this email address has already been registered",
            ));
        }
        limits::mail_frequency(&tx, &s, Kind::EmailChange.name(), new_email).await?;
        let current = me.user.email.clone().unwrap_or_default();
        let meta = data
            .clone()
            .unwrap_or_else(|| me.user.user_metadata.clone());
        let flow = match &challenge {
            Some(ch) => {
                Some(pkce::create(&tx, ch, "email", "email_change", s.mailer_otp_exp as f64).await?)
            }
            None => None,
        };
        let link = |to, token_type| LinkMail {
            user_id: Some(id),
            kind: Kind::EmailChange,
            token_type,
            verify_type: "email_change",
            to,
            email: &current,
            new_email: Some(new_email),
            redirect_to: &redirect_to,
            data: &meta,
            flow,
        };
        send_link(
            &tx,
            &config,
            &s,
            &project_url,
            link(new_email, "email_change_new"),
        )
        .await?;
        if s.secure_email_change_enabled && !current.is_empty() {
            send_link(
                &tx,
                &config,
                &s,
                &project_url,
                link(&current, "email_change_current"),
            )
            .await?;
        }
        tx.execute(
            "update auth.users set email_change = $2, email_change_sent_at = now(), \
             email_change_confirm_status = 0, updated_at = now() where id = $1",
            &[&id, new_email],
        )
        .await?;
    }
    let user = users::by_id(&tx, id)
        .await?
        .ok_or_else(|| AuthError::not_found("user_not_found", "User not found"))?;
    tx.commit().await?;
    Ok(Json(user.to_json()))
}

/// `POST /auth/v1/logout?scope=global|local|others`: ends sessions.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/logout", tag = "auth",
    params(("ref" = String, Path, description = "Project ref"),
           ("scope" = Option<String>, Query, description = "global (default), local or others")),
    responses((status = 204, description = "Signed out")))]
pub async fn logout(KeyedCtx(ctx): KeyedCtx, RawQuery(query): RawQuery) -> AuthResult<StatusCode> {
    let scope = query_param(&query, "scope").unwrap_or_else(|| "global".into());
    if !matches!(scope.as_str(), "global" | "local" | "others") {
        return Err(AuthError::bad_request(
            "validation_failed",
            format!("Unsupported logout scope {scope:?}"),
        ));
    }
    let me = ctx.require_user().await?;
    let c = &**ctx.client;
    match scope.as_str() {
        "local" => {
            c.execute("delete from auth.sessions where id = $1", &[&me.session.id])
                .await?
        }
        "others" => {
            c.execute(
                "delete from auth.sessions where user_id = $1 and id <> $2",
                &[&me.user.id, &me.session.id],
            )
            .await?
        }
        _ => {
            c.execute(
                "delete from auth.sessions where user_id = $1",
                &[&me.user.id],
            )
            .await?
        }
    };
    users::audit(
        c,
        "logout",
        Some(me.user.id),
        json!({ "scope": scope }),
        ctx.origin.ip.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /auth/v1/settings`: which sign-in methods are enabled.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/settings", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Public settings")))]
pub async fn settings(KeyedCtx(ctx): KeyedCtx) -> AuthResult<Json<Value>> {
    let s = &ctx.settings;
    let mut external = json!({
        "anonymous_users": s.external_anonymous_users_enabled,
        "email": s.external_email_enabled,
        "phone": false,
        "apple": false, "azure": false, "discord": false, "facebook": false,
        "github": false, "google": false, "linkedin_oidc": false, "x": false,
    });
    for name in super::oauth::enabled(&**ctx.client).await? {
        external[name] = json!(true);
    }
    Ok(Json(json!({
        "external": external,
        "disable_signup": s.disable_signup,
        "mailer_autoconfirm": s.mailer_autoconfirm,
        "phone_autoconfirm": false,
        "sms_provider": "",
        "saml_enabled": false,
    })))
}

/// `DELETE /auth/v1/user/identities/{identity_id}`: unlinks an identity from
/// the signed-in user (never the last one).
#[utoipa::path(delete, path = "/p/{ref}/auth/v1/user/identities/{identity_id}", tag = "auth",
    params(("ref" = String, Path, description = "Project ref"), ("identity_id" = String, Path, description = "Identity id")),
    responses((status = 200, description = "Unlinked"), (status = 404, description = "identity_not_found"),
              (status = 422, description = "single_identity_not_deletable")))]
pub async fn unlink_identity(
    KeyedCtx(mut ctx): KeyedCtx,
    axum::extract::Path(path): axum::extract::Path<(String, String)>,
) -> AuthResult<Json<Value>> {
    let me = ctx.require_user().await?;
    let not_found = || AuthError::not_found("identity_not_found", "Identity doesn't exist");
    let identity = Uuid::parse_str(&path.1).map_err(|_| not_found())?;
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let rows = tx
        .query(
            "select id, provider from auth.identities where user_id = $1 for update",
            &[&me.user.id],
        )
        .await?;
    let Some(target) = rows.iter().find(|r| r.get::<_, Uuid>(0) == identity) else {
        return Err(not_found());
    };
    if rows.len() < 2 {
        return Err(AuthError::unprocessable(
            "single_identity_not_deletable",
            "User must have at least 1 identity after unlinking",
        ));
    }
    let provider: String = target.get(1);
    tx.execute("delete from auth.identities where id = $1", &[&identity])
        .await?;
    // app_metadata.providers follows the remaining identities.
    tx.execute(
        "update auth.users set raw_app_meta_data = raw_app_meta_data || jsonb_build_object( \
           'providers', (select coalesce(jsonb_agg(distinct provider), '[]') from auth.identities where user_id = $1), \
           'provider', case when raw_app_meta_data ->> 'provider' = $2 \
             then (select provider from auth.identities where user_id = $1 order by created_at limit 1) \
             else raw_app_meta_data ->> 'provider' end), \
         updated_at = now() where id = $1",
        &[&me.user.id, &provider],
    )
    .await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}
