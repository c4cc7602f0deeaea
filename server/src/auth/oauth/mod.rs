//! OAuth 2 and OpenID Connect sign-in, with PKCE on both sides.
//!
//! 1. The app opens `GET /auth/v1/authorize?provider=…&redirect_to=…` (with
//!    `code_challenge` for the PKCE flow). A flow row is stored in
//!    `auth.flow_state` with a random `state` (hashed), an OIDC `nonce` and
//!    the provider-side PKCE verifier; the browser goes to the provider.
//! 2. The provider sends the browser to `GET|POST /auth/v1/callback` with
//!    `code` and `state`. The flow is found by `state` (single use), the code
//!    exchanged with the PKCE verifier, the ID token verified (signature,
//!    issuer, audience, expiry, nonce) or the profile endpoint read, and the
//!    user found by identity, linked by verified email, or created.
//! 3. PKCE flow: the browser returns to `redirect_to?code=…`, which the app
//!    exchanges with `POST /token?grant_type=pkce`. Implicit flow: the
//!    session is put in the `redirect_to` fragment.
//!
//! Providers are configured per project with `PUT /auth/v1/admin/providers/{name}`;
//! their client secrets are stored encrypted.

pub mod providers;

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::error::{AuthError, AuthResult};
use super::query_param;
use super::session::{self, hash_token};
use super::users::{self, NewUser};
use super::{AuthCtx, Body, KeyedCtx, parse_body, pkce, redirect};
use providers::{Kind, Profile};

/// How long a started OAuth flow may take, in seconds.
const FLOW_TTL_SECS: f64 = 600.0;

/// The HTTP client for providers: built on the SSRF guard
/// ([`crate::outbound`]: no loopback, private, link-local or metadata
/// addresses, checked after DNS and at connect time, unless
/// `FERROBASE_OUTBOUND_ALLOW_PRIVATE`), no redirects, bounded time. Project
/// admins choose these URLs (issuer, token and userinfo endpoints), so
/// without the guard they could make the server call its own network.
fn http(config: &crate::Config) -> AuthResult<reqwest::Client> {
    crate::outbound::OutboundPolicy::from_config(config)
        .client_builder(crate::outbound::Redirects::None)
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| AuthError::internal(&e))
}

/// A transport failure talking to a provider.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpErr(String);

/// Adapts the shared reqwest client to `openidconnect`'s HTTP interface.
async fn oidc_http(
    client: reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpErr> {
    let (parts, body) = req.into_parts();
    let resp = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpErr(e.to_string()))?;
    let mut b = http::Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        b = b.header(k, v);
    }
    let bytes = resp.bytes().await.map_err(|e| HttpErr(e.to_string()))?;
    b.body(bytes.to_vec()).map_err(|e| HttpErr(e.to_string()))
}

/// A provider as configured for a project.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Name used in `?provider=`.
    pub name: String,
    /// `oidc` or a built-in kind.
    pub kind: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (decrypted).
    pub client_secret: Option<String>,
    /// Issuer (oidc) or tenant (azure).
    pub issuer: Option<String>,
    /// Extra scopes.
    pub scopes: String,
    /// Endpoint overrides and switches.
    pub options: Value,
}

fn secret_context(project: Uuid, name: &str) -> String {
    format!("project:{project}:auth_provider:{name}")
}

async fn load_provider(ctx: &AuthCtx, name: &str) -> AuthResult<ProviderConfig> {
    let unsupported = || {
        AuthError::bad_request(
            "validation_failed",
            "Unsupported provider: provider is not enabled",
        )
    };
    let row = ctx
        .client
        .query_opt(
            "select kind, client_id, client_secret_enc, issuer, scopes, options from auth.providers \
             where name = $1 and enabled",
            &[&name],
        )
        .await?
        .ok_or_else(unsupported)?;
    let secret_enc: Option<String> = row.get(2);
    let client_secret = secret_enc
        .map(|s| {
            ctx.app
                .platform
                .secrets()
                .decrypt_str(&secret_context(ctx.tenant.project.id, name), &s)
                .map_err(|e| AuthError::internal(&e))
        })
        .transpose()?;
    Ok(ProviderConfig {
        name: name.to_owned(),
        kind: row.get(0),
        client_id: row.get(1),
        client_secret,
        issuer: row.get(3),
        scopes: row.get(4),
        options: row.get(5),
    })
}

fn kind_of(p: &ProviderConfig) -> AuthResult<Kind> {
    let mut kind = providers::resolve(&p.kind, p.issuer.as_deref())
        .map_err(|e| AuthError::internal(&format!("provider {}: {e}", p.name)))?;
    if let Kind::OAuth2(ep) = &mut kind {
        let over = |k: &str| p.options[k].as_str().map(str::to_owned);
        if let Some(u) = over("authorize_url") {
            ep.authorize_url = u;
        }
        if let Some(u) = over("token_url") {
            ep.token_url = u;
        }
        if let Some(u) = over("userinfo_url") {
            ep.userinfo_url = u;
        }
    }
    Ok(kind)
}

fn provider_error(what: &str, e: &dyn std::fmt::Display) -> AuthError {
    tracing::warn!(error = %e, "auth: OAuth provider call failed: {what}");
    AuthError::new(
        StatusCode::BAD_GATEWAY,
        "bad_oauth_callback",
        format!("The identity provider could not be reached or refused the request ({what})"),
    )
}

/// Apple's client secret: an ES256 JWT signed with the app's private key
/// (the `.p8` file, PKCS#8 PEM), `iss` = team id, `sub` = client (services) id,
/// `aud` = `https://appleid.apple.com`, valid for five minutes.
pub fn apple_client_secret(
    team_id: &str,
    key_id: &str,
    client_id: &str,
    private_key_pem: &str,
    now: i64,
) -> Result<String, String> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(private_key_pem.as_bytes())
        .map_err(|e| format!("the Apple private key is not a P-256 PKCS#8 PEM: {e}"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key_id.to_owned());
    let claims = json!({
        "iss": team_id,
        "iat": now,
        "exp": now + 300,
        "aud": "https://appleid.apple.com",
        "sub": client_id,
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

/// The client secret to present: the stored one, or Apple's generated JWT.
fn client_secret(p: &ProviderConfig) -> AuthResult<Option<String>> {
    if p.kind != "apple" {
        return Ok(p.client_secret.clone());
    }
    let (Some(team), Some(kid), Some(pem)) = (
        p.options["team_id"].as_str(),
        p.options["key_id"].as_str(),
        p.client_secret.as_deref(),
    ) else {
        return Err(AuthError::internal(
            &"apple provider without team_id, key_id or key",
        ));
    };
    apple_client_secret(team, kid, &p.client_id, pem, chrono::Utc::now().timestamp())
        .map(Some)
        .map_err(|e| AuthError::internal(&e))
}

async fn oidc_client(
    http: &reqwest::Client,
    p: &ProviderConfig,
    issuer: &str,
    callback: &str,
) -> AuthResult<
    openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
> {
    let issuer = IssuerUrl::new(issuer.to_owned())
        .map_err(|e| AuthError::internal(&format!("bad issuer: {e}")))?;
    let call = |req| oidc_http(http.clone(), req);
    let metadata = CoreProviderMetadata::discover_async(issuer, &call)
        .await
        .map_err(|e| provider_error("discovery", &e))?;
    let redirect = RedirectUrl::new(callback.to_owned()).map_err(|e| AuthError::internal(&e))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(p.client_id.clone()),
        client_secret(p)?.map(ClientSecret::new),
    )
    .set_redirect_uri(redirect))
}

/// `GET /auth/v1/authorize?provider=…`: starts an OAuth sign-in (browser route, no API key).
#[utoipa::path(get, path = "/p/{ref}/auth/v1/authorize", tag = "auth",
    params(("ref" = String, Path, description = "Project ref"),
           ("provider" = String, Query, description = "Configured provider name"),
           ("redirect_to" = Option<String>, Query, description = "Where to return (allow-listed)"),
           ("scopes" = Option<String>, Query, description = "Extra scopes, space separated"),
           ("code_challenge" = Option<String>, Query, description = "PKCE challenge (S256)"),
           ("code_challenge_method" = Option<String>, Query, description = "s256 or plain")),
    responses((status = 302, description = "Redirect to the provider"), (status = 400, description = "Provider not enabled")))]
pub async fn authorize(ctx: AuthCtx, RawQuery(query): RawQuery) -> AuthResult<Response> {
    let name = query_param(&query, "provider").unwrap_or_default();
    let p = load_provider(&ctx, &name).await?;
    // Each start stores a flow row: bounded per IP like sign-ins.
    super::limits::check(
        &**ctx.client,
        &ctx.settings,
        super::limits::Action::SignIn,
        ctx.origin.ip.as_deref(),
        None,
    )
    .await?;
    let challenge = pkce::parse(
        query_param(&query, "code_challenge").as_deref(),
        query_param(&query, "code_challenge_method").as_deref(),
    )?;
    let redirect_to =
        redirect::resolve(&ctx.settings, query_param(&query, "redirect_to").as_deref());
    let extra_scopes = query_param(&query, "scopes").unwrap_or_default();
    let callback = format!("{}/auth/v1/callback", ctx.project_url());
    let state = crate::crypto::random_token(32);
    let nonce = crate::crypto::random_token(24);
    let (provider_challenge, provider_verifier) = PkceCodeChallenge::new_random_sha256();
    let scopes: Vec<String> = p
        .scopes
        .split([' ', ','])
        .chain(extra_scopes.split([' ', ',']))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let url = match kind_of(&p)? {
        Kind::Oidc { issuer } => {
            let http = http(ctx.config())?;
            let client = oidc_client(&http, &p, &issuer, &callback).await?;
            let (st, no) = (state.clone(), nonce.clone());
            let mut req = client.authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(st),
                move || Nonce::new(no),
            );
            req = if p.kind == "apple" {
                // Apple: `name email` scopes, which it only sends by form_post; no PKCE.
                req.add_scope(Scope::new("name".into()))
                    .add_scope(Scope::new("email".into()))
                    .add_extra_param("response_mode", "form_post")
            } else {
                req.add_scope(Scope::new("email".into()))
                    .add_scope(Scope::new("profile".into()))
                    .set_pkce_challenge(provider_challenge)
            };
            for s in &scopes {
                req = req.add_scope(Scope::new(s.clone()));
            }
            req.url().0.to_string()
        }
        Kind::OAuth2(ep) => {
            let mut url =
                url::Url::parse(&ep.authorize_url).map_err(|e| AuthError::internal(&e))?;
            let mut all: Vec<&str> = ep.default_scopes.split(' ').collect();
            all.extend(scopes.iter().map(String::as_str));
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("response_type", "code")
                    .append_pair("client_id", &p.client_id)
                    .append_pair("redirect_uri", &callback)
                    .append_pair("scope", &all.join(" "))
                    .append_pair("state", &state);
                if ep.pkce {
                    q.append_pair("code_challenge", provider_challenge.as_str())
                        .append_pair("code_challenge_method", "S256");
                }
            }
            url.to_string()
        }
    };
    ctx.client
        .execute(
            "insert into auth.flow_state (code_challenge, code_challenge_method, provider_type, \
             authentication_method, state_hash, nonce, provider_pkce_verifier, redirect_to, expires_at) \
             values ($1, $2, $3, 'oauth', $4, $5, $6, $7, now() + make_interval(secs => $8))",
            &[
                &challenge.as_ref().map(|c| c.challenge.clone()),
                &challenge.as_ref().map(|c| c.method.clone()),
                &p.name,
                &hash_token(&state),
                &nonce,
                &provider_verifier.secret(),
                &redirect_to,
                &FLOW_TTL_SECS,
            ],
        )
        .await?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/v1/callback`: where providers return the browser.
#[utoipa::path(get, path = "/p/{ref}/auth/v1/callback", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 302, description = "Back to the app"), (status = 400, description = "bad_oauth_state")))]
pub async fn callback_get(ctx: AuthCtx, RawQuery(query): RawQuery) -> Response {
    let p = CallbackParams {
        code: query_param(&query, "code"),
        state: query_param(&query, "state"),
        error: query_param(&query, "error"),
        error_description: query_param(&query, "error_description"),
    };
    callback(ctx, p).await
}

/// `POST /auth/v1/callback`: the `form_post` response mode.
#[utoipa::path(post, path = "/p/{ref}/auth/v1/callback", tag = "auth",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 302, description = "Back to the app"), (status = 400, description = "bad_oauth_state")))]
pub async fn callback_post(ctx: AuthCtx, body: Body) -> Response {
    let form = String::from_utf8_lossy(&body.0).into_owned();
    let q = Some(form);
    let p = CallbackParams {
        code: query_param(&q, "code"),
        state: query_param(&q, "state"),
        error: query_param(&q, "error"),
        error_description: query_param(&q, "error_description"),
    };
    callback(ctx, p).await
}

struct Flow {
    id: Uuid,
    provider: String,
    nonce: Option<String>,
    verifier: Option<String>,
    redirect_to: String,
    pkce: bool,
}

async fn callback(mut ctx: AuthCtx, p: CallbackParams) -> Response {
    let bad_state = || {
        AuthError::bad_request("bad_oauth_state", "OAuth state parameter is invalid")
            .into_response()
    };
    let Some(state) = p.state.filter(|s| !s.is_empty() && s.len() < 200) else {
        return bad_state();
    };
    // Single use: the state is cleared as the flow is read.
    let row = match ctx
        .client
        .query_opt(
            "update auth.flow_state set state_hash = null, updated_at = now() \
             where state_hash = $1 and expires_at > now() and authentication_method = 'oauth' \
             returning id, provider_type, nonce, provider_pkce_verifier, redirect_to, code_challenge is not null",
            &[&hash_token(&state)],
        )
        .await
    {
        Ok(Some(row)) => row,
        Ok(None) => return bad_state(),
        Err(e) => return AuthError::from(e).into_response(),
    };
    let flow = Flow {
        id: row.get(0),
        provider: row.get(1),
        nonce: row.get(2),
        verifier: row.get(3),
        redirect_to: row.get::<_, Option<String>>(4).unwrap_or_default(),
        pkce: row.get(5),
    };
    let target = redirect::resolve(&ctx.settings, Some(&flow.redirect_to));
    let result = match (p.error, p.code) {
        (Some(err), _) => Err(AuthError::forbidden(
            "bad_oauth_callback",
            p.error_description.unwrap_or(err),
        )),
        (None, Some(code)) => finish(&mut ctx, &flow, &code).await,
        (None, None) => Err(AuthError::bad_request(
            "bad_oauth_callback",
            "OAuth callback with missing authorization code",
        )),
    };
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let location = match result {
        Ok(Finished::Code(code)) => pkce::with_code(&target, &code),
        Ok(Finished::Session(s)) => {
            let f = |k: &str| match &s[k] {
                Value::String(v) => enc(v),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            format!(
                "{target}#access_token={}&expires_at={}&expires_in={}&provider_refresh_token={}\
                 &provider_token={}&refresh_token={}&token_type=bearer",
                f("access_token"),
                f("expires_at"),
                f("expires_in"),
                f("provider_refresh_token"),
                f("provider_token"),
                f("refresh_token"),
            )
        }
        Err(e) => {
            let error = if e.status.is_server_error() {
                "server_error"
            } else {
                "access_denied"
            };
            let params = format!(
                "error={error}&error_code={}&error_description={}",
                e.code,
                enc(&e.msg)
            );
            if flow.pkce {
                pkce::with_code(&target, "").replace("code=", &params)
            } else {
                format!("{target}#{params}")
            }
        }
    };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

enum Finished {
    Code(String),
    Session(Box<Value>),
}

struct ProviderTokens {
    access: String,
    refresh: Option<String>,
}

async fn finish(ctx: &mut AuthCtx, flow: &Flow, code: &str) -> AuthResult<Finished> {
    let p = load_provider(ctx, &flow.provider).await?;
    let callback = format!("{}/auth/v1/callback", ctx.project_url());
    let verifier = flow.verifier.clone().unwrap_or_default();
    let http = http(ctx.config())?;
    let (profile, tokens, issuer) = match kind_of(&p)? {
        Kind::Oidc { issuer } => {
            let client = oidc_client(&http, &p, &issuer, &callback).await?;
            let call = |req| oidc_http(http.clone(), req);
            let mut exchange = client
                .exchange_code(AuthorizationCode::new(code.to_owned()))
                .map_err(|e| provider_error("token endpoint", &e))?;
            if p.kind != "apple" {
                exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(verifier));
            }
            let token = exchange.request_async(&call).await.map_err(|e| {
                tracing::warn!(error = ?e, "auth: OAuth code exchange failed");
                AuthError::forbidden(
                    "bad_oauth_callback",
                    "The identity provider refused the authorization code",
                )
            })?;
            let id_token = token.id_token().ok_or_else(|| {
                AuthError::forbidden("bad_oauth_callback", "The provider sent no ID token")
            })?;
            let nonce = Nonce::new(flow.nonce.clone().unwrap_or_default());
            let claims = id_token
                .claims(&client.id_token_verifier(), &nonce)
                .map_err(|e| {
                    tracing::warn!(error = %e, "auth: ID token refused");
                    AuthError::forbidden(
                        "bad_oauth_callback",
                        format!("The ID token was refused: {e}"),
                    )
                })?;
            let mut claims_json =
                serde_json::to_value(claims).map_err(|e| AuthError::internal(&e))?;
            // Providers that keep profile claims out of the ID token serve them at userinfo.
            if claims_json["email"].is_null()
                && let Ok(req) =
                    client.user_info(token.access_token().clone(), Some(claims.subject().clone()))
            {
                let info: Result<openidconnect::core::CoreUserInfoClaims, _> =
                    req.request_async(&call).await;
                if let Ok(info) = info
                    && let Ok(Value::Object(extra)) = serde_json::to_value(&info)
                {
                    for (k, v) in extra {
                        if claims_json.get(&k).is_none_or(Value::is_null) {
                            claims_json[&k] = v;
                        }
                    }
                }
            }
            let profile = providers::map_oidc_claims(&claims_json).ok_or_else(|| {
                AuthError::forbidden("bad_oauth_callback", "The ID token has no subject")
            })?;
            let tokens = ProviderTokens {
                access: token.access_token().secret().clone(),
                refresh: token.refresh_token().map(|r| r.secret().clone()),
            };
            (profile, tokens, Some(issuer))
        }
        Kind::OAuth2(ep) => {
            let (profile, tokens) =
                oauth2_exchange(&http, &p, &ep, code, &verifier, &callback).await?;
            (profile, tokens, None)
        }
    };
    let config = ctx.config().clone();
    let tenant = ctx.tenant.clone();
    let s = ctx.settings.clone();
    let origin = ctx.origin.clone();
    let link_by_email = p.options["link_by_email"].as_bool().unwrap_or(true);
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let mut user =
        resolve_user(&tx, &s, &p.name, &profile, issuer.as_deref(), link_by_email).await?;
    if user.is_banned() {
        return Err(AuthError::forbidden("user_banned", "User is banned"));
    }
    if flow.pkce {
        tx.execute(
            "update auth.flow_state set provider_access_token = $2, provider_refresh_token = $3 where id = $1",
            &[&flow.id, &tokens.access, &tokens.refresh],
        )
        .await?;
        let code = pkce::issue_code(&tx, flow.id, user.id).await?;
        tx.commit().await?;
        return Ok(Finished::Code(code));
    }
    tx.execute("delete from auth.flow_state where id = $1", &[&flow.id])
        .await?;
    let mut session =
        session::start(&tx, &config, &tenant, &s, &mut user, "oauth", &origin).await?;
    tx.commit().await?;
    session["provider_token"] = json!(tokens.access);
    session["provider_refresh_token"] = json!(tokens.refresh);
    Ok(Finished::Session(Box::new(session)))
}

async fn oauth2_exchange(
    http: &reqwest::Client,
    p: &ProviderConfig,
    ep: &providers::OAuth2Endpoints,
    code: &str,
    verifier: &str,
    callback: &str,
) -> AuthResult<(Profile, ProviderTokens)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", callback),
        ("client_id", p.client_id.as_str()),
    ];
    if ep.pkce {
        form.push(("code_verifier", verifier));
    }
    let secret = p.client_secret.clone().unwrap_or_default();
    if !ep.basic_auth {
        form.push(("client_secret", secret.as_str()));
    }
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = http
        .post(&ep.token_url)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body);
    if ep.basic_auth {
        req = req.basic_auth(&p.client_id, Some(&secret));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| provider_error("token endpoint", &e))?;
    let status = resp.status();
    let token: Value = resp
        .json()
        .await
        .map_err(|e| provider_error("token endpoint", &e))?;
    let Some(access) = token["access_token"].as_str().map(str::to_owned) else {
        tracing::warn!(%status, "auth: OAuth token endpoint sent no access token");
        return Err(AuthError::forbidden(
            "bad_oauth_callback",
            "The identity provider refused the authorization code",
        ));
    };
    let get = |url: String| {
        let access = access.clone();
        async move {
            let resp = http
                .get(url)
                .bearer_auth(access)
                .header(header::ACCEPT, "application/json")
                .header(header::USER_AGENT, "ferrobase")
                .send()
                .await
                .map_err(|e| provider_error("profile endpoint", &e))?;
            if !resp.status().is_success() {
                return Err(provider_error("profile endpoint", &resp.status()));
            }
            resp.json::<Value>()
                .await
                .map_err(|e| provider_error("profile endpoint", &e))
        }
    };
    let user = get(ep.userinfo_url.clone()).await?;
    let emails = if p.kind == "github" {
        let url = ep.userinfo_url.trim_end_matches('/').to_owned() + "/emails";
        get(url).await.ok()
    } else {
        None
    };
    let profile = providers::map_profile(&p.kind, &user, emails.as_ref()).ok_or_else(|| {
        AuthError::forbidden(
            "bad_oauth_callback",
            "The provider's profile has no user id",
        )
    })?;
    let tokens = ProviderTokens {
        access,
        refresh: token["refresh_token"].as_str().map(str::to_owned),
    };
    Ok((profile, tokens))
}

/// Finds the user of an external identity: by the identity itself, else by
/// verified email (linking the identity, when allowed), else a new user.
async fn resolve_user(
    c: &impl GenericClient,
    s: &super::settings::AuthSettings,
    provider: &str,
    profile: &Profile,
    issuer: Option<&str>,
    link_by_email: bool,
) -> AuthResult<users::User> {
    let data = profile.identity_data(provider, issuer);
    let existing = c
        .query_opt(
            "update auth.identities set identity_data = $3, last_sign_in_at = now(), updated_at = now() \
             where provider_id = $1 and provider = $2 returning user_id",
            &[&profile.provider_id, &provider, &data],
        )
        .await?;
    if let Some(row) = existing {
        let id: Uuid = row.get(0);
        return users::by_id(c, id)
            .await?
            .ok_or_else(|| AuthError::internal(&"identity without user"));
    }
    let email = profile
        .email
        .as_deref()
        .map(users::parse_email)
        .transpose()
        .ok()
        .flatten();
    if let Some(email) = &email
        && let Some(user) = users::by_email(c, email).await?
    {
        if !(link_by_email && profile.email_verified) {
            return Err(AuthError::unprocessable(
                "email_exists",
                "A user with this email address has already been registered",
            ));
        }
        link(c, &user, provider, profile, &data).await?;
        return users::by_id(c, user.id)
            .await?
            .ok_or_else(|| AuthError::internal(&"user vanished"));
    }
    if s.disable_signup {
        return Err(AuthError::unprocessable(
            "signup_disabled",
            "Signups not allowed for this instance",
        ));
    }
    let user = users::insert(
        c,
        NewUser {
            email: email.as_deref(),
            password_hash: None,
            confirmed: profile.email_verified,
            user_metadata: data.clone(),
            app_metadata: json!({}),
            provider,
            is_anonymous: false,
            invited: false,
        },
    )
    .await?;
    c.execute(
        "insert into auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at) \
         values ($1, $2, $3, $4, now())",
        &[&profile.provider_id, &user.id, &data, &provider],
    )
    .await?;
    users::by_id(c, user.id)
        .await?
        .ok_or_else(|| AuthError::internal(&"user vanished"))
}

/// Links an external identity to `user` (found by the provider's verified
/// email), confirming the account's email.
///
/// If the account was not confirmed yet, whoever created it never proved the
/// address: it may be an attacker who registered the victim's email first
/// (pre-account takeover). The provider has now proved the address, so the
/// account is handed to its owner: its password is cleared, its sessions and
/// pending one-time tokens are ended (the new session starts after this).
/// Refusing to link would be the other choice; this one keeps GoTrue's
/// "sign in with Google after signing up" flow working. See docs/SECURITY.md.
async fn link(
    c: &impl GenericClient,
    user: &users::User,
    provider: &str,
    profile: &Profile,
    data: &Value,
) -> AuthResult<()> {
    if user.email_confirmed_at.is_none() {
        c.execute(
            "update auth.users set encrypted_password = null, updated_at = now() where id = $1",
            &[&user.id],
        )
        .await?;
        c.execute("delete from auth.sessions where user_id = $1", &[&user.id])
            .await?;
        c.execute(
            "delete from auth.one_time_tokens where user_id = $1",
            &[&user.id],
        )
        .await?;
        users::audit(
            c,
            "unconfirmed_account_claimed",
            Some(user.id),
            json!({"provider": provider}),
            None,
        )
        .await?;
    }
    c.execute(
        "insert into auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at) \
         values ($1, $2, $3, $4, now())",
        &[&profile.provider_id, &user.id, data, &provider],
    )
    .await?;
    c.execute(
        "update auth.users set raw_app_meta_data = jsonb_set(raw_app_meta_data, '{providers}', \
           (select coalesce(jsonb_agg(distinct p), '[]') from ( \
              select jsonb_array_elements_text(coalesce(raw_app_meta_data -> 'providers', '[]')) p \
              union select $2) x)), \
         email_confirmed_at = coalesce(email_confirmed_at, now()), updated_at = now() where id = $1",
        &[&user.id, &provider],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ProviderParams {
    kind: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    issuer: Option<String>,
    scopes: Option<String>,
    enabled: Option<bool>,
    options: Option<Value>,
}

fn check_name(name: &str) -> AuthResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AuthError::validation(
            "Provider names are 1-40 of a-z, 0-9, '_' and '-'",
        ))
    }
}

/// `PUT /auth/v1/admin/providers/{name}`: configures a provider (the secret
/// is encrypted before it is stored; omitted fields keep their value).
#[utoipa::path(put, path = "/p/{ref}/auth/v1/admin/providers/{name}", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("name" = String, Path, description = "Provider name")),
    responses((status = 200, description = "The provider (secret omitted)"), (status = 400, description = "Invalid")))]
pub async fn put_provider(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
    body: Body,
) -> AuthResult<Json<Value>> {
    let name = path.1;
    let p: ProviderParams = parse_body(&body.0)?;
    ctx.require_admin()?;
    check_name(&name)?;
    let current = ctx
        .client
        .query_opt(
            "select kind, client_id, issuer, scopes, enabled, options from auth.providers where name = $1",
            &[&name],
        )
        .await?;
    let cur = |i: usize| {
        current
            .as_ref()
            .map(|r| r.get::<_, Option<String>>(i))
            .unwrap_or_default()
    };
    let kind = p.kind.or_else(|| cur(0)).unwrap_or_else(|| name.clone());
    let client_id = p
        .client_id
        .or_else(|| cur(1))
        .ok_or_else(|| AuthError::validation("client_id is required"))?;
    let issuer = p.issuer.or_else(|| cur(2));
    providers::resolve(&kind, issuer.as_deref()).map_err(AuthError::validation)?;
    if kind == "apple" {
        let opts = p.options.as_ref();
        let has = |k: &str| {
            opts.map(|o| o[k].is_string()).unwrap_or_else(|| {
                current
                    .as_ref()
                    .is_some_and(|r| r.get::<_, Value>(5)[k].is_string())
            })
        };
        if !has("team_id") || !has("key_id") {
            return Err(AuthError::validation(
                "apple needs options.team_id and options.key_id, and the .p8 key as client_secret",
            ));
        }
        if let Some(pem) = &p.client_secret {
            apple_client_secret("t", "k", "c", pem, 0).map_err(AuthError::validation)?;
        }
    }
    let scopes = p.scopes.or_else(|| cur(3)).unwrap_or_default();
    let enabled = p
        .enabled
        .or_else(|| current.as_ref().map(|r| r.get(4)))
        .unwrap_or(true);
    let options = match p.options {
        Some(o @ Value::Object(_)) => o,
        Some(_) => return Err(AuthError::validation("options must be a JSON object")),
        None => current.as_ref().map_or(json!({}), |r| r.get(5)),
    };
    let secret_enc = p.client_secret.map(|s| {
        ctx.app
            .platform
            .secrets()
            .encrypt_str(&secret_context(ctx.tenant.project.id, &name), &s)
    });
    ctx.client
        .execute(
            "insert into auth.providers (name, kind, client_id, client_secret_enc, issuer, scopes, enabled, options) \
             values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (name) do update set kind = excluded.kind, \
             client_id = excluded.client_id, client_secret_enc = coalesce(excluded.client_secret_enc, auth.providers.client_secret_enc), \
             issuer = excluded.issuer, scopes = excluded.scopes, enabled = excluded.enabled, options = excluded.options, \
             updated_at = now()",
            &[&name, &kind, &client_id, &secret_enc, &issuer, &scopes, &enabled, &options],
        )
        .await?;
    Ok(Json(json!({
        "name": name, "kind": kind, "client_id": client_id, "issuer": issuer,
        "scopes": scopes, "enabled": enabled, "options": options,
    })))
}

/// `GET /auth/v1/admin/providers`: the configured providers (no secrets).
#[utoipa::path(get, path = "/p/{ref}/auth/v1/admin/providers", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "Providers")))]
pub async fn list_providers(KeyedCtx(ctx): KeyedCtx) -> AuthResult<Json<Value>> {
    ctx.require_admin()?;
    let rows = ctx
        .client
        .query(
            "select name, kind, client_id, issuer, scopes, enabled, options, client_secret_enc is not null \
             from auth.providers order by name",
            &[],
        )
        .await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.get::<_, String>(0), "kind": r.get::<_, String>(1),
                "client_id": r.get::<_, String>(2), "issuer": r.get::<_, Option<String>>(3),
                "scopes": r.get::<_, String>(4), "enabled": r.get::<_, bool>(5),
                "options": r.get::<_, Value>(6), "has_secret": r.get::<_, bool>(7),
            })
        })
        .collect();
    Ok(Json(json!({ "providers": list })))
}

/// `DELETE /auth/v1/admin/providers/{name}`.
#[utoipa::path(delete, path = "/p/{ref}/auth/v1/admin/providers/{name}", tag = "auth-admin",
    params(("ref" = String, Path, description = "Project ref"), ("name" = String, Path, description = "Provider name")),
    responses((status = 200, description = "Deleted"), (status = 404, description = "No such provider")))]
pub async fn delete_provider(
    KeyedCtx(ctx): KeyedCtx,
    Path(path): Path<(String, String)>,
) -> AuthResult<Json<Value>> {
    ctx.require_admin()?;
    let n = ctx
        .client
        .execute("delete from auth.providers where name = $1", &[&path.1])
        .await?;
    if n == 0 {
        return Err(AuthError::not_found(
            "provider_not_found",
            "No such provider",
        ));
    }
    Ok(Json(json!({})))
}

/// The names of the enabled providers (for `GET /settings`).
pub async fn enabled(c: &impl GenericClient) -> AuthResult<Vec<String>> {
    let rows = c
        .query(
            "select name from auth.providers where enabled order by name",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IdTokenParams {
    provider: Option<String>,
    id_token: Option<String>,
    nonce: Option<String>,
    access_token: Option<String>,
}

/// `POST /token?grant_type=id_token`: signs in with an ID token the app got
/// from an OpenID Connect provider itself (native Google / Microsoft sign-in,
/// …). The token must be signed by the provider's keys, issued by it, for the
/// configured client id (or one of `options.additional_client_ids`), unexpired,
/// and carry the SHA-256 (hex) of `nonce` when one is given (the raw nonce is
/// accepted too, as GoTrue does for providers that do not hash it).
pub async fn id_token_grant(mut ctx: AuthCtx, body: &[u8]) -> AuthResult<Json<Value>> {
    let p: IdTokenParams = parse_body(body)?;
    let (Some(provider), Some(raw_token)) = (
        p.provider.filter(|s| !s.is_empty()),
        p.id_token.filter(|s| !s.is_empty()),
    ) else {
        return Err(AuthError::bad_request(
            "validation_failed",
            "id_token and provider are required",
        ));
    };
    let cfg = load_provider(&ctx, &provider).await?;
    let Kind::Oidc { issuer } = kind_of(&cfg)? else {
        return Err(AuthError::bad_request(
            "validation_failed",
            format!("Provider {provider} does not issue ID tokens"),
        ));
    };
    super::limits::check(
        &**ctx.client,
        &ctx.settings,
        super::limits::Action::SignIn,
        ctx.origin.ip.as_deref(),
        None,
    )
    .await?;
    let callback = format!("{}/auth/v1/callback", ctx.project_url());
    let http = http(ctx.config())?;
    let client = oidc_client(&http, &cfg, &issuer, &callback).await?;
    let id_token: openidconnect::core::CoreIdToken = raw_token
        .parse()
        .map_err(|_| AuthError::bad_request("bad_jwt", "The ID token is malformed"))?;
    let extra_audiences: Vec<String> = cfg.options["additional_client_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let verifier = client
        .id_token_verifier()
        .set_other_audience_verifier_fn(move |aud| {
            extra_audiences.iter().any(|a| a == aud.as_str())
        });
    let nonce = p.nonce.clone();
    let nonce_check = move |got: Option<&Nonce>| -> Result<(), String> {
        match (nonce, got) {
            (None, None) => Ok(()),
            (Some(n), Some(got)) => {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, n.as_bytes());
                let hashed: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                if got.secret() == &hashed || got.secret() == &n {
                    Ok(())
                } else {
                    Err("nonces mismatch".into())
                }
            }
            (None, Some(_)) => Err("the ID token has a nonce but none was passed".into()),
            (Some(_), None) => Err("a nonce was passed but the ID token has none".into()),
        }
    };
    let claims = id_token
        .claims(&verifier, nonce_check)
        .map_err(|e| AuthError::bad_request("bad_jwt", format!("The ID token was refused: {e}")))?;
    let claims_json = serde_json::to_value(claims).map_err(|e| AuthError::internal(&e))?;
    let profile = providers::map_oidc_claims(&claims_json)
        .ok_or_else(|| AuthError::bad_request("bad_jwt", "The ID token has no subject"))?;
    let config = ctx.config().clone();
    let tenant = ctx.tenant.clone();
    let s = ctx.settings.clone();
    let origin = ctx.origin.clone();
    let link_by_email = cfg.options["link_by_email"].as_bool().unwrap_or(true);
    let db: &mut tokio_postgres::Client = &mut ctx.client;
    let tx = db.transaction().await?;
    let mut user = resolve_user(&tx, &s, &cfg.name, &profile, Some(&issuer), link_by_email).await?;
    if user.is_banned() {
        return Err(AuthError::bad_request("user_banned", "User is banned"));
    }
    let mut session =
        session::start(&tx, &config, &tenant, &s, &mut user, "id_token", &origin).await?;
    tx.commit().await?;
    if let Some(t) = p.access_token {
        session["provider_token"] = json!(t);
    }
    Ok(Json(session))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn apple_client_secret_is_an_es256_jwt_apple_accepts() {
        let key = crate::crypto::SigningKey::generate().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let now = chrono::Utc::now().timestamp();
        let jwt = apple_client_secret("TEAM123", key.kid(), "com.example.web", &pem, now).unwrap();
        let claims: Value = key.verify(&jwt).unwrap();
        assert_eq!(claims["iss"], "TEAM123");
        assert_eq!(claims["sub"], "com.example.web");
        assert_eq!(claims["aud"], "https://appleid.apple.com");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
        assert!(apple_client_secret("t", "k", "c", "not a key", now).is_err());
    }
}
