//! `POST /auth/v1/signup`: email + password sign-up, with the answer that
//! does not reveal whether an address already has an account.

use axum::Json;
use axum::extract::RawQuery;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::limits::{self, Action};
use super::links::{LinkMail, send_link};
use super::mail::Kind;
use super::pkce;
use super::session::{self};
use super::token::anonymous;
use super::users::{self, NewUser, parse_email};
use super::{Body, KeyedCtx, parse_body, redirect};
use super::{hash_password, query_param};

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
