//! The email flows that send a link or code: password recovery, OTP and
//! magic links, resend; and [`send_link`], which admin invites share.

use axum::Json;
use axum::extract::RawQuery;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::limits::{self, Action};
use super::mail::{self, Kind};
use super::pkce;
use super::query_param;
use super::users::{self, NewUser, parse_email};
use super::{AuthCtx, Body, KeyedCtx, parse_body, redirect};

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
