//! Admin endpoints of `/auth/v1` (service-role key only): user CRUD, invite,
//! `generate_link`, and — beyond GoTrue — the project's auth settings,
//! mail templates and captured mail.

use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::links::{LinkMail, send_link};
use super::mail::{self, Kind};
use super::users::{self, NewUser, parse_email};
use super::{Body, KeyedCtx, parse_body, redirect, settings};
use super::{hash_password, query_param};

fn user_not_found() -> AuthError {
    AuthError::not_found("user_not_found", "User not found")
}

fn parse_id(id: &str) -> AuthResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| user_not_found())
}

/// Longest accepted `search` text of the users listing.
const MAX_SEARCH_LEN: usize = 256;

/// The `LIKE` pattern matching values that start with `search`
/// (case-insensitive): `%`, `_` and `\` in the text match themselves.
fn prefix_pattern(search: &str) -> String {
    let mut p = String::with_capacity(search.len() + 1);
    for c in search.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// `GET /auth/v1/admin/users?page=&per_page=&search=`.
///
/// `search` (a Ferrobase extension) keeps the users whose email, phone or id
/// starts with the text, case-insensitively; the page and `X-Total-Count`
/// are of the matching users.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/admin/users", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"),
           ("page" = Option<i64>, Query, description = "Page number, from 1"),
           ("per_page" = Option<i64>, Query, description = "Users per page (default 50, at most 1000)"),
           ("search" = Option<String>, Query, description = "Email, phone or id prefix, case-insensitive (at most 256 characters)")),
    responses((status = 200, description = "Users, with X-Total-Count and Link headers"),
              (status = 403, description = "not_admin"), (status = 400, description = "validation_failed: search too long or with a NUL character")))]
pub async fn list_users(
    KeyedCtx(ctx): KeyedCtx,
    RawQuery(query): RawQuery,
) -> AuthResult<(HeaderMap, Json<Value>)> {
    ctx.require_admin()?;
    let page = query_param(&query, "page")
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let per_page = query_param(&query, "per_page")
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(50)
        .min(1000);
    let search = query_param(&query, "search")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if let Some(s) = &search {
        if s.chars().count() > MAX_SEARCH_LEN {
            return Err(AuthError::validation(format!(
                "search must be at most {MAX_SEARCH_LEN} characters"
            )));
        }
        if s.contains('\0') {
            return Err(AuthError::validation(
                "search must not contain NUL characters",
            ));
        }
    }
    // One bound pattern; the text never becomes SQL.
    let pattern = search.as_deref().map(prefix_pattern);
    const FILTER: &str = "($1::text is null or lower(email) like $1 escape '\\' \
        or lower(phone) like $1 escape '\\' or id::text like $1 escape '\\')";
    let c = &**ctx.client;
    let total: i64 = c
        .query_one(
            &format!("select count(*) from auth.users where {FILTER}"),
            &[&pattern],
        )
        .await?
        .get(0);
    let rows = c
        .query(
            &format!(
                "select {} from auth.users where {FILTER} order by created_at, id limit $2 offset $3",
                users::USER_COLUMNS
            ),
            &[&pattern, &per_page, &((page - 1).saturating_mul(per_page))],
        )
        .await?;
    let mut list = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut u = users::User::from_row(row);
        u.identities = users::load_identities(c, u.id).await?;
        u.factors = users::load_factors(c, u.id).await?;
        list.push(u.to_json());
    }
    let last_page = ((total + per_page - 1) / per_page).max(1);
    let base = format!("{}/auth/v1/admin/users", ctx.project_url());
    let search_param = search.as_deref().map_or_else(String::new, |s| {
        format!(
            "&search={}",
            url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
        )
    });
    let mut links = Vec::new();
    if page < last_page {
        links.push(format!(
            "<{base}?page={}&per_page={per_page}{search_param}>; rel=\"next\"",
            page + 1
        ));
    }
    links.push(format!(
        "<{base}?page={last_page}&per_page={per_page}{search_param}>; rel=\"last\""
    ));
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(total));
    if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
        headers.insert("link", v);
    }
    Ok((
        headers,
        Json(json!({ "users": list, "aud": "authenticated" })),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AdminUserParams {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    email_confirm: Option<bool>,
    user_metadata: Option<Value>,
    app_metadata: Option<Value>,
    ban_duration: Option<String>,
    role: Option<String>,
}

fn object_or_empty(v: Option<Value>, what: &str) -> AuthResult<Option<Value>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => Ok(Some(v)),
        Some(_) => Err(AuthError::validation(format!(
            "{what} must be a JSON object"
        ))),
    }
}

/// Parses a Go-style duration (`24h`, `1h30m`, `90s`, `none`) into seconds.
fn parse_ban_duration(s: &str) -> AuthResult<Option<f64>> {
    if s == "none" {
        return Ok(None);
    }
    let bad = || AuthError::validation("invalid format for ban duration");
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0.001
        } else {
            match c {
                'h' => 3600.0,
                'm' => 60.0,
                's' => 1.0,
                _ => return Err(bad()),
            }
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        total += n * unit;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(Some(total))
}

fn check_role(role: &str) -> AuthResult<()> {
    if matches!(role, "authenticated" | "anon" | "service_role") {
        Ok(())
    } else {
        // Tokens are only honoured for the API roles (see tenant::verify_token).
        Err(AuthError::validation(
            "role must be one of authenticated, anon, service_role",
        ))
    }
}

/// `POST /auth/v1/admin/users`: creates a user.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/admin/users", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "The user"), (status = 422, description = "email_exists, weak_password")))]
pub async fn create_user(KeyedCtx(mut ctx): KeyedCtx, body: Body) -> AuthResult<Json<Value>> {
    let p: AdminUserParams = parse_body(&body.0)?;
    ctx.require_admin()?;
    if p.phone.is_some() && p.email.is_none() {
        return Err(AuthError::bad_request(
            "phone_provider_disabled",
            "Phone users are not supported",
        ));
    }
    let email = p.email.as_deref().map(parse_email).transpose()?;
    let hash = match p.password {
        Some(pw) => {
            ctx.settings.check_password(&pw)?;
            Some(hash_password(pw).await?)
        }
        None => None,
    };
    let user_metadata = object_or_empty(p.user_metadata, "user_metadata")?.unwrap_or(json!({}));
    let app_metadata = object_or_empty(p.app_metadata, "app_metadata")?.unwrap_or(json!({}));
    if let Some(role) = &p.role {
        check_role(role)?;
    }
    let ban = p
        .ban_duration
        .as_deref()
        .map(parse_ban_duration)
        .transpose()?
        .flatten();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let user = users::insert(
        &tx,
        NewUser {
            email: email.as_deref(),
            password_hash: hash,
            confirmed: p.email_confirm.unwrap_or(false),
            user_metadata,
            app_metadata,
            provider: "email",
            is_anonymous: false,
            invited: false,
        },
    )
    .await?;
    if let Some(role) = &p.role {
        tx.execute(
            "update auth.users set role = $2 where id = $1",
            &[&user.id, role],
        )
        .await?;
    }
    if let Some(secs) = ban {
        tx.execute(
            "update auth.users set banned_until = now() + make_interval(secs => $2) where id = $1",
            &[&user.id, &secs],
        )
        .await?;
    }
    users::audit(&tx, "user_created_by_admin", Some(user.id), json!({}), None).await?;
    let user = users::by_id(&tx, user.id)
        .await?
        .ok_or_else(user_not_found)?;
    tx.commit().await?;
    Ok(Json(user.to_json()))
}

/// `GET /auth/v1/admin/users/{id}`.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/admin/users/{id}", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user"), (status = 404, description = "user_not_found")))]
pub async fn get_user(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
) -> AuthResult<Json<Value>> {
    let id = path.1;
    ctx.require_admin()?;
    let id = parse_id(&id)?;
    let user = users::by_id(&**ctx.client, id)
        .await?
        .ok_or_else(user_not_found)?;
    Ok(Json(user.to_json()))
}

/// `PUT /auth/v1/admin/users/{id}`: changes any attribute (metadata is merged).
#[utoipa::path(put, path = "/p/{ref}/auth/v1/admin/users/{id}", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user"), (status = 404, description = "user_not_found")))]
pub async fn update_user(
    KeyedCtx(mut ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
    body: Body,
) -> AuthResult<Json<Value>> {
    let id = path.1;
    let p: AdminUserParams = parse_body(&body.0)?;
    ctx.require_admin()?;
    let id = parse_id(&id)?;
    let email = p.email.as_deref().map(parse_email).transpose()?;
    let hash = match p.password {
        Some(pw) => {
            ctx.settings.check_password(&pw)?;
            Some(hash_password(pw).await?)
        }
        None => None,
    };
    let user_metadata = object_or_empty(p.user_metadata, "user_metadata")?;
    let app_metadata = object_or_empty(p.app_metadata, "app_metadata")?;
    if let Some(role) = &p.role {
        check_role(role)?;
    }
    let ban = p
        .ban_duration
        .as_deref()
        .map(parse_ban_duration)
        .transpose()?;
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let user = users::by_id_for_update(&tx, id)
        .await?
        .ok_or_else(user_not_found)?;
    if let Some(email) = &email
        && Some(email) != user.email.as_ref()
    {
        let taken = tx
            .query_opt(
                "select 1 from auth.users where email = $1 and id <> $2",
                &[email, &id],
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
            "update auth.users set email = $2, email_change = null, \
             email_confirmed_at = case when $3 then now() else email_confirmed_at end where id = $1",
            &[&id, email, &p.email_confirm.unwrap_or(false)],
        )
        .await?;
        tx.execute(
            "update auth.identities set identity_data = identity_data || jsonb_build_object('email', $2::text) \
             where user_id = $1 and provider = 'email'",
            &[&id, email],
        )
        .await?;
    }
    if p.email_confirm == Some(true) {
        tx.execute(
            "update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()) where id = $1",
            &[&id],
        )
        .await?;
    }
    if let Some(hash) = &hash {
        tx.execute(
            "update auth.users set encrypted_password = $2 where id = $1",
            &[&id, hash],
        )
        .await?;
    }
    if let Some(m) = &user_metadata {
        let merged = users::merge_metadata(&user.user_metadata, m);
        tx.execute(
            "update auth.users set raw_user_meta_data = $2 where id = $1",
            &[&id, &merged],
        )
        .await?;
    }
    if let Some(m) = &app_metadata {
        let merged = users::merge_metadata(&user.app_metadata, m);
        tx.execute(
            "update auth.users set raw_app_meta_data = $2 where id = $1",
            &[&id, &merged],
        )
        .await?;
    }
    if let Some(role) = &p.role {
        tx.execute(
            "update auth.users set role = $2 where id = $1",
            &[&id, role],
        )
        .await?;
    }
    match ban {
        Some(Some(secs)) => {
            tx.execute(
                "update auth.users set banned_until = now() + make_interval(secs => $2) where id = $1",
                &[&id, &secs],
            )
            .await?;
        }
        Some(None) => {
            tx.execute(
                "update auth.users set banned_until = null where id = $1",
                &[&id],
            )
            .await?;
        }
        None => {}
    }
    tx.execute(
        "update auth.users set updated_at = now() where id = $1",
        &[&id],
    )
    .await?;
    users::audit(&tx, "user_updated_by_admin", Some(id), json!({}), None).await?;
    let user = users::by_id(&tx, id).await?.ok_or_else(user_not_found)?;
    tx.commit().await?;
    Ok(Json(user.to_json()))
}

/// `DELETE /auth/v1/admin/users/{id}`: deletes the user and everything of it.
#[utoipa::path(delete, path = "/p/{ref}/auth/v1/admin/users/{id}", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Deleted"), (status = 404, description = "user_not_found")))]
pub async fn delete_user(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
) -> AuthResult<Json<Value>> {
    let id = path.1;
    ctx.require_admin()?;
    let id = parse_id(&id)?;
    let n = ctx
        .client
        .execute("delete from auth.users where id = $1", &[&id])
        .await?;
    if n == 0 {
        return Err(user_not_found());
    }
    users::audit(&**ctx.client, "user_deleted", Some(id), json!({}), None).await?;
    Ok(Json(json!({})))
}

/// The user an invite or a sign-up link is for: an existing unconfirmed
/// user is reused, a confirmed one is `email_exists`, and a new address gets
/// a new unconfirmed email user (shared by `invite` and `generate_link`).
async fn unconfirmed_or_new(
    tx: &tokio_postgres::Transaction<'_>,
    existing: Option<users::User>,
    email: &str,
    password_hash: Option<String>,
    data: &Value,
    invited: bool,
) -> AuthResult<users::User> {
    match existing {
        Some(u) if u.email_confirmed_at.is_some() => Err(AuthError::unprocessable(
            "email_exists",
            "A user with this email address has already been registered",
        )),
        Some(u) => Ok(u),
        None => Ok(users::insert(
            tx,
            NewUser {
                email: Some(email),
                password_hash,
                confirmed: false,
                user_metadata: data.clone(),
                app_metadata: json!({}),
                provider: "email",
                is_anonymous: false,
                invited,
            },
        )
        .await?),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InviteParams {
    email: Option<String>,
    data: Option<Value>,
}

/// `POST /auth/v1/invite`: creates a user and mails an invitation.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/invite", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "The invited user"), (status = 422, description = "email_exists")))]
pub async fn invite(
    KeyedCtx(mut ctx): KeyedCtx,
    RawQuery(query): RawQuery,
    body: Body,
) -> AuthResult<Json<Value>> {
    let p: InviteParams = parse_body(&body.0)?;
    ctx.require_admin()?;
    let email = parse_email(p.email.as_deref().unwrap_or_default())?;
    let data = object_or_empty(p.data, "data")?.unwrap_or(json!({}));
    let s = ctx.settings.clone();
    let redirect_to = redirect::resolve(&s, query_param(&query, "redirect_to").as_deref());
    let config = ctx.config().clone();
    let project_url = ctx.project_url();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let existing = users::by_email(&tx, &email).await?;
    let user = unconfirmed_or_new(&tx, existing, &email, None, &data, true).await?;
    send_link(
        &tx,
        &config,
        &s,
        &project_url,
        LinkMail {
            user_id: Some(user.id),
            kind: Kind::Invite,
            token_type: "invite",
            verify_type: "invite",
            to: &email,
            email: &email,
            new_email: None,
            redirect_to: &redirect_to,
            data: &data,
            flow: None,
        },
    )
    .await?;
    tx.execute(
        "update auth.users set invited_at = coalesce(invited_at, now()) where id = $1",
        &[&user.id],
    )
    .await?;
    let user = users::by_id(&tx, user.id)
        .await?
        .ok_or_else(user_not_found)?;
    tx.commit().await?;
    Ok(Json(user.to_json()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GenerateLinkParams {
    #[serde(rename = "type")]
    kind: Option<String>,
    email: Option<String>,
    new_email: Option<String>,
    password: Option<String>,
    data: Option<Value>,
    redirect_to: Option<String>,
}

/// `POST /auth/v1/admin/generate_link`: makes a verification link (and code)
/// without sending mail. Types: signup, invite, magiclink, recovery,
/// email_change_current, email_change_new.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/admin/generate_link", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "The user with action_link, email_otp, hashed_token, verification_type, redirect_to")))]
pub async fn generate_link(KeyedCtx(mut ctx): KeyedCtx, body: Body) -> AuthResult<Json<Value>> {
    let p: GenerateLinkParams = parse_body(&body.0)?;
    ctx.require_admin()?;
    let kind = p.kind.clone().unwrap_or_default();
    let email = parse_email(p.email.as_deref().unwrap_or_default())?;
    let data = object_or_empty(p.data, "data")?.unwrap_or(json!({}));
    let s = ctx.settings.clone();
    let redirect_to = redirect::resolve(&s, p.redirect_to.as_deref());
    let project_url = ctx.project_url();
    let hash = match &p.password {
        Some(pw) => {
            s.check_password(pw)?;
            Some(hash_password(pw.clone()).await?)
        }
        None => None,
    };
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let existing = users::by_email(&tx, &email).await?;
    let (user, token_type, verify_type, target) = match kind.as_str() {
        "signup" => {
            if existing.is_none() && hash.is_none() {
                return Err(AuthError::unprocessable(
                    "validation_failed",
                    "Signup requires a valid password",
                ));
            }
            let user = unconfirmed_or_new(&tx, existing, &email, hash, &data, false).await?;
            (user, "confirmation", "signup", email.clone())
        }
        "invite" => {
            let user = unconfirmed_or_new(&tx, existing, &email, None, &data, true).await?;
            (user, "invite", "invite", email.clone())
        }
        "magiclink" | "recovery" => {
            let user = existing.ok_or_else(user_not_found)?;
            let (tt, vt) = if kind == "recovery" {
                ("recovery", "recovery")
            } else if user.email_confirmed_at.is_some() {
                ("magiclink", "magiclink")
            } else {
                ("confirmation", "signup")
            };
            (user, tt, vt, email.clone())
        }
        "email_change_current" | "email_change_new" => {
            let user = existing.ok_or_else(user_not_found)?;
            let new_email = parse_email(p.new_email.as_deref().unwrap_or_default())?;
            tx.execute(
                "update auth.users set email_change = $2, email_change_sent_at = now(), \
                 email_change_confirm_status = 0 where id = $1",
                &[&user.id, &new_email],
            )
            .await?;
            let to = if kind == "email_change_new" {
                new_email
            } else {
                email.clone()
            };
            (
                user,
                if kind == "email_change_new" {
                    "email_change_new"
                } else {
                    "email_change_current"
                },
                "email_change",
                to,
            )
        }
        _ => {
            return Err(AuthError::unprocessable(
                "validation_failed",
                "Invalid link type: use signup, invite, magiclink, recovery, email_change_current or email_change_new",
            ));
        }
    };
    let issued = mail::issue(
        &tx,
        &s,
        Some(user.id),
        token_type,
        &target,
        &redirect_to,
        None,
    )
    .await?;
    let action_link = mail::verify_url(&project_url, &issued.token, verify_type, &redirect_to);
    let user = users::by_id(&tx, user.id)
        .await?
        .ok_or_else(user_not_found)?;
    tx.commit().await?;
    let mut body = user.to_json();
    body["action_link"] = json!(action_link);
    body["email_otp"] = json!(issued.otp);
    body["hashed_token"] = json!(issued.token);
    body["verification_type"] = json!(verify_type);
    body["redirect_to"] = json!(redirect_to);
    Ok(Json(body))
}

/// `GET /auth/v1/admin/config`: the project's effective auth settings.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/admin/config", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = settings::AuthSettings)))]
pub async fn get_config(KeyedCtx(ctx): KeyedCtx) -> AuthResult<Json<settings::AuthSettings>> {
    ctx.require_admin()?;
    Ok(Json(ctx.settings.clone()))
}

/// `PUT /auth/v1/admin/config`: changes settings (a partial object; `null`
/// restores a default). Returns the effective settings.
#[utoipa::path(put, path = "/p/{ref}/auth/v1/admin/config", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = settings::AuthSettings), (status = 400, description = "Invalid settings")))]
pub async fn put_config(
    KeyedCtx(ctx): KeyedCtx,
    body: Body,
) -> AuthResult<Json<settings::AuthSettings>> {
    let patch: Value = parse_body(&body.0)?;
    ctx.require_admin()?;
    let s = settings::update(&ctx.client, ctx.config(), &patch).await?;
    Ok(Json(s))
}

/// `GET /auth/v1/admin/mail?to=&limit=`: recorded (captured or sent) mail, newest first.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/admin/mail", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"),
           ("to" = Option<String>, Query, description = "Only mail to this address"),
           ("limit" = Option<i64>, Query, description = "At most this many (default 50)")),
    responses((status = 200, description = "Mail")))]
pub async fn list_mail(
    KeyedCtx(ctx): KeyedCtx,
    RawQuery(query): RawQuery,
) -> AuthResult<Json<Value>> {
    ctx.require_admin()?;
    let to = query_param(&query, "to").map(|t| t.trim().to_lowercase());
    let limit = query_param(&query, "limit")
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let rows = ctx
        .client
        .query(
            "select id, kind, to_address, subject, body_html, body_text, status, error, created_at \
             from auth.mail where ($1::text is null or to_address = $1) order by id desc limit $2",
            &[&to, &limit],
        )
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, i64>(0),
                "kind": r.get::<_, String>(1),
                "to": r.get::<_, String>(2),
                "subject": r.get::<_, String>(3),
                "html": r.get::<_, String>(4),
                "text": r.get::<_, String>(5),
                "status": r.get::<_, String>(6),
                "error": r.get::<_, Option<String>>(7),
                "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>(8),
            })
        })
        .collect();
    Ok(Json(json!({ "mail": list })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TemplateParams {
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
}

/// `PUT /auth/v1/admin/templates/{kind}`: overrides a mail template
/// (MiniJinja; `null` fields fall back to the default).
#[utoipa::path(put, path = "/p/{ref}/auth/v1/admin/templates/{kind}", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"),
           ("kind" = String, Path, description = "confirmation, recovery, magic_link, invite, email_change")),
    responses((status = 200, description = "The stored template"), (status = 400, description = "Template does not compile")))]
pub async fn put_template(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
    body: Body,
) -> AuthResult<Json<Value>> {
    let kind = path.1;
    let p: TemplateParams = parse_body(&body.0)?;
    ctx.require_admin()?;
    let kind = Kind::parse(&kind)
        .ok_or_else(|| AuthError::not_found("template_not_found", "No such template"))?;
    for source in [&p.subject, &p.html, &p.text].into_iter().flatten() {
        mail::validate_template(source)
            .map_err(|e| AuthError::validation(format!("The template does not compile: {e}")))?;
    }
    ctx.client
        .execute(
            "insert into auth.mail_templates (kind, subject, body_html, body_text) values ($1, $2, $3, $4) \
             on conflict (kind) do update set subject = excluded.subject, body_html = excluded.body_html, \
             body_text = excluded.body_text, updated_at = now()",
            &[&kind.name(), &p.subject, &p.html, &p.text],
        )
        .await?;
    Ok(Json(
        json!({ "kind": kind.name(), "subject": p.subject, "html": p.html, "text": p.text }),
    ))
}

/// `GET /auth/v1/admin/templates/{kind}`: the project's override (fields null when default).
#[utoipa::path(get, path = "/p/{ref}/auth/v1/admin/templates/{kind}", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("kind" = String, Path, description = "Template")),
    responses((status = 200, description = "The template override")))]
pub async fn get_template(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
) -> AuthResult<Json<Value>> {
    let kind = path.1;
    ctx.require_admin()?;
    let kind = Kind::parse(&kind)
        .ok_or_else(|| AuthError::not_found("template_not_found", "No such template"))?;
    let row = ctx
        .client
        .query_opt(
            "select subject, body_html, body_text from auth.mail_templates where kind = $1",
            &[&kind.name()],
        )
        .await?;
    let (subject, html, text): (Option<String>, Option<String>, Option<String>) = match row {
        Some(r) => (r.get(0), r.get(1), r.get(2)),
        None => (None, None, None),
    };
    Ok(Json(
        json!({ "kind": kind.name(), "subject": subject, "html": html, "text": text }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_durations() {
        assert_eq!(parse_ban_duration("none").unwrap(), None);
        assert_eq!(parse_ban_duration("24h").unwrap(), Some(86400.0));
        assert_eq!(parse_ban_duration("1h30m").unwrap(), Some(5400.0));
        assert_eq!(parse_ban_duration("90s").unwrap(), Some(90.0));
        assert!(parse_ban_duration("").is_err());
        assert!(parse_ban_duration("10").is_err());
        assert!(parse_ban_duration("5d").is_err());
    }
}

/// `GET /auth/v1/admin/users/{id}/sessions`: the user's live sessions.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/admin/users/{id}/sessions", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Sessions"), (status = 404, description = "user_not_found")))]
pub async fn list_sessions(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
) -> AuthResult<Json<Value>> {
    ctx.require_admin()?;
    let id = parse_id(&path.1)?;
    let rows = ctx
        .client
        .query(
            "select id, aal, amr, user_agent, ip, created_at, updated_at, refreshed_at from auth.sessions \
             where user_id = $1 and (not_after is null or not_after > now()) order by created_at",
            &[&id],
        )
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, Uuid>(0),
                "aal": r.get::<_, String>(1),
                "amr": r.get::<_, Value>(2),
                "user_agent": r.get::<_, Option<String>>(3),
                "ip": r.get::<_, Option<String>>(4),
                "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>(5),
                "updated_at": r.get::<_, chrono::DateTime<chrono::Utc>>(6),
                "refreshed_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(7),
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": list })))
}

/// `DELETE /auth/v1/admin/users/{id}/sessions`: signs the user out everywhere.
#[utoipa::path(delete, path = "/p/{ref}/auth/v1/admin/users/{id}/sessions", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Revoked")))]
pub async fn revoke_sessions(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
) -> AuthResult<Json<Value>> {
    ctx.require_admin()?;
    let id = parse_id(&path.1)?;
    let n = ctx
        .client
        .execute("delete from auth.sessions where user_id = $1", &[&id])
        .await?;
    Ok(Json(json!({ "revoked": n })))
}

/// `DELETE /auth/v1/admin/users/{id}/sessions/{session_id}`: ends one session.
#[utoipa::path(delete, path = "/p/{ref}/auth/v1/admin/users/{id}/sessions/{session_id}", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "User id"),
           ("session_id" = String, Path, description = "Session id")),
    responses((status = 200, description = "Revoked"), (status = 404, description = "session_not_found")))]
pub async fn revoke_session(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String, String)>,
) -> AuthResult<Json<Value>> {
    ctx.require_admin()?;
    let id = parse_id(&path.1)?;
    let not_found = || AuthError::not_found("session_not_found", "Session not found");
    let sid = Uuid::parse_str(&path.2).map_err(|_| not_found())?;
    let n = ctx
        .client
        .execute(
            "delete from auth.sessions where id = $1 and user_id = $2",
            &[&sid, &id],
        )
        .await?;
    if n == 0 {
        return Err(not_found());
    }
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SmtpParams {
    url: Option<String>,
    from: Option<String>,
}

/// `PUT /auth/v1/admin/smtp {url, from}`: the project's own SMTP server
/// (`url: null` removes it). The URL is stored encrypted and never returned.
#[utoipa::path(put, path = "/p/{ref}/auth/v1/admin/smtp", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Whether SMTP is configured"), (status = 400, description = "Invalid URL or sender")))]
pub async fn put_smtp(KeyedCtx(ctx): KeyedCtx, body: Body) -> AuthResult<Json<Value>> {
    let p: SmtpParams = parse_body(&body.0)?;
    ctx.require_admin()?;
    let enc = match &p.url {
        Some(url) => {
            super::smtp::validate(url, p.from.as_deref()).map_err(AuthError::validation)?;
            Some(
                ctx.app
                    .platform
                    .secrets()
                    .encrypt_str(&settings::smtp_context(ctx.tenant.project.id), url),
            )
        }
        None => None,
    };
    ctx.client
        .execute(
            "insert into auth.config (id, smtp_url_enc, smtp_from) values (true, $1, $2) \
             on conflict (id) do update set smtp_url_enc = excluded.smtp_url_enc, \
             smtp_from = excluded.smtp_from, updated_at = now()",
            &[&enc, &p.from],
        )
        .await?;
    Ok(Json(json!({ "configured": enc.is_some(), "from": p.from })))
}
