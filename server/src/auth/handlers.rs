//! The user-facing endpoints of `/auth/v1`: sign-up, token grants, the
//! current user, logout, settings and the email flows (recover, OTP / magic
//! link, verify, resend). Each handler parses, applies limits, then calls
//! the plain functions in [`super::session`], [`super::users`] and [`super::mail`].

use axum::Json;
use axum::extract::RawQuery;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::limits::{self, Action};
use super::mail::{self, Kind};
use super::pkce;
use super::session::{self, Refreshed};
use super::users::{self, NewUser, parse_email};
use super::{AuthCtx, Body, KeyedCtx, parse_body, redirect};

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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignupParams {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    data: Option<Value>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// `POST /auth/v1/signup`: email + password sign-up. Returns a session when
/// confirmations are off (`mailer_autoconfirm`), else the user and sends a
/// confirmation mail. Signing up again with a confirmed address answers like
/// a new sign-up (no mail) so the response does not reveal the account; a
/// repeated sign-up never changes the existing user (confirmed or not).
#[utoipa::path(post, path = "/p/{ref}/auth/v1/signup", tag = "auth",
    params(("ref" = String, Path, description = "Project ref"),
           ("redirect_to" = Option<String>, Query, description = "Where the confirmation link leads")),
    responses((status = 200, description = "Session (autoconfirm) or user"),
              (status = 400, description = "Invalid email"), (status = 422, description = "Weak password, signups disabled"),
              (status = 429, description = "Rate limited")))]
pub async fn signup(
    KeyedCtx(mut ctx): KeyedCtx,
    RawQuery(query): RawQuery,
    body: Body,
) -> AuthResult<Json<Value>> {
    let p: SignupParams = parse_body(&body.0)?;
    let s = ctx.settings.clone();
    if p.email.is_none() && p.phone.is_some() {
        return Err(AuthError::bad_request(
            "phone_provider_disabled",
            "Phone signups are disabled",
        ));
    }
    let Some(email) = p.email.as_deref() else {
        if p.password.is_none() {
            return anonymous(ctx, p.data).await;
        }
        return Err(AuthError::unprocessable(
            "validation_failed",
            "To signup, please provide your email",
        ));
    };
    if s.disable_signup {
        return Err(AuthError::unprocessable(
            "signup_disabled",
            "Signups not allowed for this instance",
        ));
    }
    if !s.external_email_enabled {
        return Err(AuthError::unprocessable(
            "email_provider_disabled",
            "Email signups are disabled",
        ));
    }
    let email = parse_email(email)?;
    let password = p.password.unwrap_or_default();
    if password.is_empty() {
        return Err(AuthError::unprocessable(
            "validation_failed",
            "Signup requires a valid password",
        ));
    }
    s.check_password(&password)?;
    let data = match p.data {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(AuthError::validation("data must be a JSON object")),
    };
    limits::check(
        &**ctx.client,
        &s,
        Action::Signup,
        ctx.origin.ip.as_deref(),
        Some(&email),
    )
    .await?;
    let challenge = pkce::parse(
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    )?;
    let redirect_to = redirect::resolve(&s, query_param(&query, "redirect_to").as_deref());
    let hash = hash_password(password).await?;
    let config = ctx.config().clone();
    let tenant = ctx.tenant.clone();
    let origin = ctx.origin.clone();
    let project_url = ctx.project_url();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let existing = tx
        .query_opt("select 1 from auth.users where email = $1", &[&email])
        .await?;
    if existing.is_some() {
        // A repeated sign-up never changes an existing user, confirmed or
        // not: its password and metadata stay those of whoever set them (else
        // anyone could reset an invited or admin-created account, or, with
        // autoconfirm, sign in as it). With autoconfirm GoTrue answers 422 (a
        // session would otherwise be the proof); else the answer looks like a
        // new sign-up and nothing is stored or mailed, so it reveals nothing.
        // The owner of the address can take the account over through
        // `/recover`, which proves the address.
        if s.mailer_autoconfirm {
            return Err(AuthError::unprocessable(
                "user_already_exists",
                "User already registered",
            ));
        }
        return Ok(Json(obfuscated_user(&email, &data)));
    }
    let mut user = users::insert(
        &tx,
        NewUser {
            email: Some(&email),
            password_hash: Some(hash),
            confirmed: s.mailer_autoconfirm,
            user_metadata: data.clone(),
            app_metadata: json!({}),
            provider: "email",
            is_anonymous: false,
            invited: false,
        },
    )
    .await?;
    users::audit(
        &tx,
        "user_signedup",
        Some(user.id),
        json!({ "provider": "email" }),
        origin.ip.as_deref(),
    )
    .await?;
    if s.mailer_autoconfirm {
        if user.email_confirmed_at.is_none() {
            tx.execute(
                "update auth.users set email_confirmed_at = now() where id = $1",
                &[&user.id],
            )
            .await?;
            user = users::by_id(&tx, user.id).await?.unwrap_or(user);
        }
        let session =
            session::start(&tx, &config, &tenant, &s, &mut user, "password", &origin).await?;
        tx.commit().await?;
        return Ok(Json(session));
    }
    limits::mail_frequency(&tx, &s, Kind::Confirmation.name(), &email).await?;
    let flow = match &challenge {
        Some(ch) => {
            Some(pkce::create(&tx, ch, "email", "email/signup", s.mailer_otp_exp as f64).await?)
        }
        None => None,
    };
    send_link(
        &tx,
        &config,
        &s,
        &project_url,
        LinkMail {
            user_id: Some(user.id),
            kind: Kind::Confirmation,
            token_type: "confirmation",
            verify_type: "signup",
            to: &email,
            email: &email,
            new_email: None,
            redirect_to: &redirect_to,
            data: &data,
            flow,
        },
    )
    .await?;
    let row = tx
        .query_one(
            "update auth.users set confirmation_sent_at = now() where id = $1 returning confirmation_sent_at",
            &[&user.id],
        )
        .await?;
    user.confirmation_sent_at = row.get(0);
    tx.commit().await?;
    Ok(Json(user.to_json()))
}

/// What GoTrue answers for a sign-up of an already confirmed address when
/// confirmations are on: a user that looks new and is never stored.
fn obfuscated_user(email: &str, data: &Value) -> Value {
    let now = chrono::Utc::now();
    json!({
        "id": Uuid::new_v4(),
        "aud": "authenticated",
        "role": "authenticated",
        "email": email,
        "phone": "",
        "confirmation_sent_at": now,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": data,
        "identities": [],
        "created_at": now,
        "updated_at": now,
        "is_anonymous": false,
    })
}

/// A mail with a verification link.
pub struct LinkMail<'a> {
    /// The user it is for.
    pub user_id: Option<Uuid>,
    /// Template.
    pub kind: Kind,
    /// `auth.one_time_tokens.token_type`.
    pub token_type: &'a str,
    /// `type` in the verify link.
    pub verify_type: &'a str,
    /// Recipient.
    pub to: &'a str,
    /// The user's (current) email.
    pub email: &'a str,
    /// New email (email change).
    pub new_email: Option<&'a str>,
    /// Where the link leads after verification.
    pub redirect_to: &'a str,
    /// User metadata (template `Data`).
    pub data: &'a Value,
    /// The PKCE flow the link finishes, if any.
    pub flow: Option<Uuid>,
}

/// Issues a one-time token and mails its link and code.
pub async fn send_link(
    c: &impl GenericClient,
    config: &crate::Config,
    s: &super::settings::AuthSettings,
    project_url: &str,
    m: LinkMail<'_>,
) -> AuthResult<mail::Issued> {
    let issued = mail::issue(c, s, m.user_id, m.token_type, m.to, m.redirect_to, m.flow).await?;
    let url = mail::verify_url(project_url, &issued.token, m.verify_type, m.redirect_to);
    let vars = mail::vars(
        s,
        &url,
        &issued,
        m.email,
        m.new_email,
        m.redirect_to,
        m.data,
    );
    mail::deliver(c, config, s, m.kind, m.to, vars).await?;
    Ok(issued)
}

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

fn invalid_credentials() -> AuthError {
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

async fn anonymous(mut ctx: AuthCtx, data: Option<Value>) -> AuthResult<Json<Value>> {
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

/// `GET /auth/v1/user`: the signed-in user.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/user", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "User"), (status = 401, description = "No bearer token"),
              (status = 403, description = "Invalid token or session gone")))]
pub async fn get_user(KeyedCtx(ctx): KeyedCtx) -> AuthResult<Json<Value>> {
    let me = ctx.require_user().await?;
    Ok(Json(me.user.to_json()))
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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EmailParams {
    email: Option<String>,
    phone: Option<String>,
    data: Option<Value>,
    create_user: Option<bool>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn require_email(p: &EmailParams) -> AuthResult<String> {
    match p.email.as_deref() {
        Some(e) => parse_email(e),
        None if p.phone.is_some() => Err(AuthError::bad_request(
            "phone_provider_disabled",
            "Phone logins are disabled",
        )),
        None => Err(AuthError::unprocessable(
            "validation_failed",
            "An email address is required",
        )),
    }
}

/// `POST /auth/v1/recover`: mails a password recovery link. Always `{}` so the
/// answer does not reveal whether the address is registered.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/recover", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Mail sent if the user exists"), (status = 429, description = "Rate limited")))]
pub async fn recover(
    KeyedCtx(ctx): KeyedCtx,
    RawQuery(query): RawQuery,
    body: Body,
) -> AuthResult<Json<Value>> {
    let p: EmailParams = parse_body(&body.0)?;
    let email = require_email(&p)?;
    let s = &ctx.settings;
    let c = &**ctx.client;
    limits::check(
        c,
        s,
        Action::Recover,
        ctx.origin.ip.as_deref(),
        Some(&email),
    )
    .await?;
    limits::mail_frequency(c, s, Kind::Recovery.name(), &email).await?;
    let redirect_to = redirect::resolve(s, query_param(&query, "redirect_to").as_deref());
    let challenge = pkce::parse(
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    )?;
    if let Some(user) = users::by_email(c, &email).await? {
        let flow = match &challenge {
            Some(ch) => {
                Some(pkce::create(c, ch, "email", "recovery", s.mailer_otp_exp as f64).await?)
            }
            None => None,
        };
        send_link(
            c,
            ctx.config(),
            s,
            &ctx.project_url(),
            LinkMail {
                user_id: Some(user.id),
                kind: Kind::Recovery,
                token_type: "recovery",
                verify_type: "recovery",
                to: &email,
                email: &email,
                new_email: None,
                redirect_to: &redirect_to,
                data: &user.user_metadata,
                flow,
            },
        )
        .await?;
        c.execute(
            "update auth.users set recovery_sent_at = now() where id = $1",
            &[&user.id],
        )
        .await?;
    }
    Ok(Json(json!({})))
}

/// `POST /auth/v1/otp`: mails a magic link and code (creating the user when
/// `create_user` is true, the default, and sign-ups are allowed).
#[utoipa::path(post, path = "/p/{ref}/auth/v1/otp", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Mail sent"), (status = 429, description = "Rate limited")))]
pub async fn otp(
    KeyedCtx(ctx): KeyedCtx,
    RawQuery(query): RawQuery,
    body: Body,
) -> AuthResult<Json<Value>> {
    let p: EmailParams = parse_body(&body.0)?;
    send_magic(ctx, query, p).await
}

/// `POST /auth/v1/magiclink`: the older name of [`otp`] (always may create the user).
#[utoipa::path(post, path = "/p/{ref}/auth/v1/magiclink", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Mail sent"), (status = 429, description = "Rate limited")))]
pub async fn magiclink(
    KeyedCtx(ctx): KeyedCtx,
    RawQuery(query): RawQuery,
    body: Body,
) -> AuthResult<Json<Value>> {
    let mut p: EmailParams = parse_body(&body.0)?;
    p.create_user = Some(true);
    send_magic(ctx, query, p).await
}

async fn send_magic(
    mut ctx: AuthCtx,
    query: Option<String>,
    p: EmailParams,
) -> AuthResult<Json<Value>> {
    let email = require_email(&p)?;
    let s = ctx.settings.clone();
    if !s.external_email_enabled {
        return Err(AuthError::unprocessable(
            "email_provider_disabled",
            "Email logins are disabled",
        ));
    }
    let data = match &p.data {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(AuthError::validation("data must be a JSON object")),
    };
    limits::check(
        &**ctx.client,
        &s,
        Action::Otp,
        ctx.origin.ip.as_deref(),
        Some(&email),
    )
    .await?;
    limits::mail_frequency(&**ctx.client, &s, Kind::MagicLink.name(), &email).await?;
    let challenge = pkce::parse(
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    )?;
    let redirect_to = redirect::resolve(&s, query_param(&query, "redirect_to").as_deref());
    let config = ctx.config().clone();
    let project_url = ctx.project_url();
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let user = match users::by_email(&tx, &email).await? {
        Some(u) => Some(u),
        None if p.create_user.unwrap_or(true) && !s.disable_signup => Some(
            users::insert(
                &tx,
                NewUser {
                    email: Some(&email),
                    password_hash: None,
                    confirmed: false,
                    user_metadata: data.clone(),
                    app_metadata: json!({}),
                    provider: "email",
                    is_anonymous: false,
                    invited: false,
                },
            )
            .await?,
        ),
        // No such user and none may be created: answer as if mail was sent.
        None => None,
    };
    if let Some(user) = user {
        let (kind, token_type, verify_type) = if user.email_confirmed_at.is_some() {
            (Kind::MagicLink, "magiclink", "magiclink")
        } else {
            (Kind::Confirmation, "confirmation", "signup")
        };
        let flow = match &challenge {
            Some(ch) => {
                Some(pkce::create(&tx, ch, "email", "magiclink", s.mailer_otp_exp as f64).await?)
            }
            None => None,
        };
        send_link(
            &tx,
            &config,
            &s,
            &project_url,
            LinkMail {
                user_id: Some(user.id),
                kind,
                token_type,
                verify_type,
                to: &email,
                email: &email,
                new_email: None,
                redirect_to: &redirect_to,
                data: &user.user_metadata,
                flow,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(json!({})))
}

/// `POST /auth/v1/resend`: sends the signup confirmation or email change
/// mails again. Always `{}` for addresses with nothing pending.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/resend", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Mail sent if pending"), (status = 429, description = "Rate limited")))]
pub async fn resend(
    KeyedCtx(ctx): KeyedCtx,
    RawQuery(query): RawQuery,
    body: Body,
) -> AuthResult<Json<Value>> {
    let p: EmailParams = parse_body(&body.0)?;
    let kind = p.kind.clone().unwrap_or_default();
    if !matches!(kind.as_str(), "signup" | "email_change") {
        return Err(AuthError::bad_request(
            "validation_failed",
            "Missing one of these types: signup, email_change",
        ));
    }
    let email = require_email(&p)?;
    let s = &ctx.settings;
    let c = &**ctx.client;
    limits::check(c, s, Action::Resend, ctx.origin.ip.as_deref(), Some(&email)).await?;
    let redirect_to = redirect::resolve(s, query_param(&query, "redirect_to").as_deref());
    let project_url = ctx.project_url();
    match kind.as_str() {
        "signup" => {
            limits::mail_frequency(c, s, Kind::Confirmation.name(), &email).await?;
            if let Some(user) = users::by_email(c, &email).await?
                && user.email_confirmed_at.is_none()
            {
                send_link(
                    c,
                    ctx.config(),
                    s,
                    &project_url,
                    LinkMail {
                        user_id: Some(user.id),
                        kind: Kind::Confirmation,
                        token_type: "confirmation",
                        verify_type: "signup",
                        to: &email,
                        email: &email,
                        new_email: None,
                        redirect_to: &redirect_to,
                        data: &user.user_metadata,
                        flow: None,
                    },
                )
                .await?;
                c.execute(
                    "update auth.users set confirmation_sent_at = now() where id = $1",
                    &[&user.id],
                )
                .await?;
            }
        }
        _ => {
            // `email` may be the current or the new address.
            let row = c
                .query_opt(
                    "select id from auth.users where email_change is not null and (email = $1 or email_change = $1)",
                    &[&email],
                )
                .await?;
            if let Some(row) = row
                && let Some(user) = users::by_id(c, row.get(0)).await?
                && let Some(new_email) = user.email_change.clone()
            {
                limits::mail_frequency(c, s, Kind::EmailChange.name(), &new_email).await?;
                let current = user.email.clone().unwrap_or_default();
                let link = |to, token_type| LinkMail {
                    user_id: Some(user.id),
                    kind: Kind::EmailChange,
                    token_type,
                    verify_type: "email_change",
                    to,
                    email: &current,
                    new_email: Some(&new_email),
                    redirect_to: &redirect_to,
                    data: &user.user_metadata,
                    flow: None,
                };
                send_link(
                    c,
                    ctx.config(),
                    s,
                    &project_url,
                    link(&new_email, "email_change_new"),
                )
                .await?;
                if s.secure_email_change_enabled && !current.is_empty() {
                    send_link(
                        c,
                        ctx.config(),
                        s,
                        &project_url,
                        link(&current, "email_change_current"),
                    )
                    .await?;
                }
                // Fresh tokens for both halves: both must be confirmed again.
                c.execute(
                    "update auth.users set email_change_confirm_status = 0, \
                     email_change_sent_at = now() where id = $1",
                    &[&user.id],
                )
                .await?;
            }
        }
    }
    Ok(Json(json!({})))
}

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
    let expired = || AuthError::forbidden("otp_expired", "Token has expired or is invalid");
    let user_id = consumed.user_id.ok_or_else(expired)?;
    let user = users::by_id_for_update(&tx, user_id)
        .await?
        .ok_or_else(expired)?;
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
        _ => {
            // Email change: the pending change must still be the one mailed.
            let Some(new_email) = user.email_change.clone() else {
                return Err(expired());
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
            let other_type = if consumed.token_type == "email_change_new" {
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
            let both_needed = s.secure_email_change_enabled
                && user.email.as_deref().is_some_and(|e| !e.is_empty());
            if both_needed && (status == 0 || other_pending) {
                tx.execute(
                    "update auth.users set email_change_confirm_status = 1 where id = $1",
                    &[&user.id],
                )
                .await?;
                tx.commit().await?;
                return Ok(Verified::Partial(redirect_to));
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
            "email_change"
        }
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
    let mut user = users::by_id(&tx, user.id).await?.ok_or_else(expired)?;
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
