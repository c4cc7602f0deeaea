//! [`AuthClient`]: users of a project (`{project}/auth/v1`, GoTrue-compatible).
//!
//! Sign up, sign in (password, email OTP / magic link, anonymous, PKCE code
//! exchange), refresh, sign out, get and update the user, plus the
//! service-role [`AuthAdmin`] calls. The current [`Session`] is kept in a
//! pluggable [`SessionStore`] (in memory by default); [`AuthClient::session`]
//! refreshes it automatically when it is about to expire, and
//! [`AuthClient::client`] gives a data-API [`Client`] acting as the user.
//!
//! ```no_run
//! # async fn demo() -> ferrobase::Result<()> {
//! let client = ferrobase::Client::new("http://127.0.0.1:8080/p/myref", "<anon key>")?;
//! let auth = client.auth();
//! auth.sign_in_with_password("ada@example.com", "correct horse").await?;
//! let me = auth.client().await?;          // acts as the signed-in user (RLS applies)
//! let todos: Vec<serde_json::Value> = me.from("todos").select("*").fetch().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::http;

/// Refresh a session this many seconds before it expires.
const REFRESH_MARGIN_SECS: i64 = 60;

/// A user, as the auth API returns it. Fields the SDK does not name are kept
/// in [`User::extra`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// User id (the `sub` of its tokens).
    pub id: String,
    /// Email (empty for anonymous users).
    #[serde(default)]
    pub email: String,
    /// Role of the user's tokens.
    #[serde(default)]
    pub role: String,
    /// When the email was confirmed.
    #[serde(default)]
    pub email_confirmed_at: Option<String>,
    /// A pending email change.
    #[serde(default)]
    pub new_email: Option<String>,
    /// Metadata the user may change.
    #[serde(default)]
    pub user_metadata: Value,
    /// Metadata only admins change (`provider`, `providers`, `roles`, …).
    #[serde(default)]
    pub app_metadata: Value,
    /// Anonymous user.
    #[serde(default)]
    pub is_anonymous: bool,
    /// Everything else (`identities`, timestamps, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A signed-in session. `Debug` redacts the tokens.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Short-lived JWT for the data APIs.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: i64,
    /// Expiry of the access token (Unix seconds).
    pub expires_at: i64,
    /// Opaque, single-use token that yields the next session.
    pub refresh_token: String,
    /// The user.
    pub user: User,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("expires_at", &self.expires_at)
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether the access token expires within `margin_secs`.
    pub fn expires_within(&self, margin_secs: i64) -> bool {
        self.expires_at - now() <= margin_secs
    }
}

/// Where an [`AuthClient`] keeps its session (implement it to persist
/// sessions in a file, a keychain, a cookie …).
pub trait SessionStore: Send + Sync {
    /// The stored session, if any.
    fn load(&self) -> Option<Session>;
    /// Stores `session`, or forgets it (`None`).
    fn save(&self, session: Option<&Session>);
}

/// The default [`SessionStore`]: process memory.
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<Option<Session>>);

impl SessionStore for MemoryStore {
    fn load(&self) -> Option<Session> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn save(&self, session: Option<&Session>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = session.cloned();
    }
}

/// What a sign-up returns: a session when the project confirms emails
/// automatically, otherwise the (unconfirmed) user, who was mailed a link.
#[derive(Debug, Clone)]
pub enum SignUp {
    /// Signed in.
    Session(Box<Session>),
    /// Confirmation pending.
    User(Box<User>),
}

/// Where OAuth sign-in starts, and the PKCE verifier to keep until the
/// redirect comes back with `?code=`.
#[derive(Debug, Clone)]
pub struct OAuthStart {
    /// Open this URL in the browser.
    pub url: String,
    /// Pass it to [`AuthClient::exchange_code_for_session`].
    pub code_verifier: String,
}

/// Changes to the signed-in user ([`AuthClient::update_user`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserUpdate {
    /// New email (confirmed by mail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// New password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// User metadata to merge (`null` values remove keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Which sessions [`AuthClient::sign_out`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignOutScope {
    /// Every session of the user.
    #[default]
    Global,
    /// Only this one.
    Local,
    /// All but this one.
    Others,
}

/// A code verifier and its S256 challenge (RFC 7636).
pub fn pkce_pair() -> (String, String) {
    let mut bytes = [0u8; 48];
    // The system RNG failing leaves no secure way to continue.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The users of one project. Cheap to clone; clones share the session store.
#[derive(Clone)]
pub struct AuthClient {
    client: Client,
    store: Arc<dyn SessionStore>,
}

impl fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthClient")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The auth API of this project, with an in-memory session store.
    pub fn auth(&self) -> AuthClient {
        AuthClient::new(self.clone(), Arc::new(MemoryStore::default()))
    }
}

impl AuthClient {
    /// An auth client keeping its session in `store`.
    pub fn new(client: Client, store: Arc<dyn SessionStore>) -> AuthClient {
        let mut client = client;
        client.set_access_token(None);
        AuthClient { client, store }
    }

    /// The service-role calls (`/auth/v1/admin/…`); the client must have
    /// been created with the service-role key.
    pub fn admin(&self) -> AuthAdmin {
        AuthAdmin {
            client: self.client.clone(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Result<T> {
        let client = match bearer {
            Some(t) => self.client.clone().with_access_token(t),
            None => self.client.clone(),
        };
        let mut req = client.request(method, &format!("auth/v1/{path}"))?;
        if let Some(body) = body {
            req = req.json(&body);
        }
        let mut request = req.build()?;
        if !query.is_empty() {
            request.url_mut().query_pairs_mut().extend_pairs(query);
        }
        let response = client.execute(request).await?.error_for_status()?;
        http::decode_json(&response.body)
    }

    fn keep(&self, session: Session) -> Session {
        self.store.save(Some(&session));
        session
    }

    /// Signs up with email and password (`data`: initial user metadata).
    pub async fn sign_up(
        &self,
        email: &str,
        password: &str,
        data: Option<Value>,
    ) -> Result<SignUp> {
        let body = json!({"email": email, "password": password, "data": data});
        let value: Value = self
            .call(Method::POST, "signup", &[], Some(body), None)
            .await?;
        if value.get("access_token").is_some() {
            let session: Session = decode(value)?;
            Ok(SignUp::Session(Box::new(self.keep(session))))
        } else {
            Ok(SignUp::User(Box::new(decode(value)?)))
        }
    }

    /// Signs in with email and password.
    pub async fn sign_in_with_password(&self, email: &str, password: &str) -> Result<Session> {
        let body = json!({"email": email, "password": password});
        let session: Session = self
            .call(
                Method::POST,
                "token",
                &[("grant_type", "password")],
                Some(body),
                None,
            )
            .await?;
        Ok(self.keep(session))
    }

    /// Signs in as a new anonymous user (when the project allows it).
    pub async fn sign_in_anonymously(&self, data: Option<Value>) -> Result<Session> {
        let session: Session = self
            .call(
                Method::POST,
                "signup",
                &[],
                Some(json!({"data": data})),
                None,
            )
            .await?;
        Ok(self.keep(session))
    }

    /// Mails a magic link and a 6-digit code to `email` (creating the user
    /// when `create_user` and sign-ups are allowed). Finish with
    /// [`AuthClient::verify_otp`].
    pub async fn sign_in_with_otp(&self, email: &str, create_user: bool) -> Result<()> {
        let body = json!({"email": email, "create_user": create_user});
        let _: Value = self
            .call(Method::POST, "otp", &[], Some(body), None)
            .await?;
        Ok(())
    }

    /// Verifies a mailed code: `kind` is `email`, `signup`, `magiclink`,
    /// `recovery`, `invite` or `email_change`.
    pub async fn verify_otp(&self, email: &str, token: &str, kind: &str) -> Result<Session> {
        let body = json!({"email": email, "token": token, "type": kind});
        let session: Session = self
            .call(Method::POST, "verify", &[], Some(body), None)
            .await?;
        Ok(self.keep(session))
    }

    /// Mails a password recovery link to `email` (the answer is the same
    /// whether or not the address is registered).
    pub async fn reset_password_for_email(
        &self,
        email: &str,
        redirect_to: Option<&str>,
    ) -> Result<()> {
        let query: Vec<(&str, &str)> = redirect_to
            .map(|r| ("redirect_to", r))
            .into_iter()
            .collect();
        let _: Value = self
            .call(
                Method::POST,
                "recover",
                &query,
                Some(json!({"email": email})),
                None,
            )
            .await?;
        Ok(())
    }

    /// The URL that starts an OAuth sign-in with `provider` (PKCE), and the
    /// verifier to exchange the returned code with.
    pub fn sign_in_with_oauth(&self, provider: &str, redirect_to: &str) -> Result<OAuthStart> {
        let (verifier, challenge) = pkce_pair();
        let mut url = self.client.endpoint(["auth", "v1", "authorize"]);
        url.query_pairs_mut()
            .append_pair("provider", provider)
            .append_pair("redirect_to", redirect_to)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "s256");
        Ok(OAuthStart {
            url: url.into(),
            code_verifier: verifier,
        })
    }

    /// Exchanges the `code` an auth redirect brought back (PKCE flows: OAuth,
    /// or email links started with a challenge) for a session.
    pub async fn exchange_code_for_session(
        &self,
        code: &str,
        code_verifier: &str,
    ) -> Result<Session> {
        let body = json!({"auth_code": code, "code_verifier": code_verifier});
        let session: Session = self
            .call(
                Method::POST,
                "token",
                &[("grant_type", "pkce")],
                Some(body),
                None,
            )
            .await?;
        Ok(self.keep(session))
    }

    /// Signs in with an ID token from a provider (`google`, `apple`, …, or a
    /// configured OIDC provider).
    pub async fn sign_in_with_id_token(
        &self,
        provider: &str,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<Session> {
        let body = json!({"provider": provider, "id_token": id_token, "nonce": nonce});
        let session: Session = self
            .call(
                Method::POST,
                "token",
                &[("grant_type", "id_token")],
                Some(body),
                None,
            )
            .await?;
        Ok(self.keep(session))
    }

    /// Trades the stored session's refresh token for a new session.
    pub async fn refresh_session(&self) -> Result<Session> {
        let current = self.store.load().ok_or_else(not_signed_in)?;
        let body = json!({"refresh_token": current.refresh_token});
        match self
            .call::<Session>(
                Method::POST,
                "token",
                &[("grant_type", "refresh_token")],
                Some(body),
                None,
            )
            .await
        {
            Ok(session) => Ok(self.keep(session)),
            Err(e) => {
                // A refused refresh token will never work again.
                if matches!(e.status(), Some(400 | 401 | 403)) {
                    self.store.save(None);
                }
                Err(e)
            }
        }
    }

    /// The current session, refreshed first when it expires within a minute;
    /// `None` when signed out.
    pub async fn session(&self) -> Result<Option<Session>> {
        match self.store.load() {
            None => Ok(None),
            Some(s) if s.expires_within(REFRESH_MARGIN_SECS) => {
                self.refresh_session().await.map(Some)
            }
            Some(s) => Ok(Some(s)),
        }
    }

    /// A data-API client acting as the signed-in user.
    pub async fn client(&self) -> Result<Client> {
        let session = self.session().await?.ok_or_else(not_signed_in)?;
        Ok(self.client.clone().with_access_token(session.access_token))
    }

    async fn access_token(&self) -> Result<String> {
        Ok(self
            .session()
            .await?
            .ok_or_else(not_signed_in)?
            .access_token)
    }

    /// The signed-in user, as the server knows it now.
    pub async fn get_user(&self) -> Result<User> {
        let token = self.access_token().await?;
        self.call(Method::GET, "user", &[], None, Some(&token))
            .await
    }

    /// Changes the signed-in user's email, password or metadata.
    pub async fn update_user(&self, update: &UserUpdate) -> Result<User> {
        let token = self.access_token().await?;
        let body = serde_json::to_value(update).map_err(|e| Error::Encode(e.to_string()))?;
        let user: User = self
            .call(Method::PUT, "user", &[], Some(body), Some(&token))
            .await?;
        if let Some(mut s) = self.store.load() {
            s.user = user.clone();
            self.store.save(Some(&s));
        }
        Ok(user)
    }

    /// Signs out (`scope`: which sessions end). The local session is
    /// forgotten even when the server call fails.
    pub async fn sign_out(&self, scope: SignOutScope) -> Result<()> {
        let Some(session) = self.store.load() else {
            return Ok(());
        };
        if scope != SignOutScope::Others {
            self.store.save(None);
        }
        let scope = match scope {
            SignOutScope::Global => "global",
            SignOutScope::Local => "local",
            SignOutScope::Others => "others",
        };
        let client = self.client.clone().with_access_token(session.access_token);
        let mut req = client.request(Method::POST, "auth/v1/logout")?.build()?;
        req.url_mut().query_pairs_mut().append_pair("scope", scope);
        let response = client.execute(req).await?;
        // An expired or already revoked session is signed out as well.
        if response.status.is_success() || matches!(response.status.as_u16(), 401 | 403 | 404) {
            Ok(())
        } else {
            response.error_for_status().map(|_| ())
        }
    }
}

fn not_signed_in() -> Error {
    Error::Api {
        status: 401,
        code: "session_missing".into(),
        message: "Auth session missing: sign in first.".into(),
        details: None,
        hint: None,
    }
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Decode(e.to_string()))
}

/// Attributes of a user created or changed by an admin.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdminUserAttributes {
    /// Email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Mark the email confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_confirm: Option<bool>,
    /// User metadata (merged on update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<Value>,
    /// App metadata, e.g. `{"roles": ["admin"]}` (merged on update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_metadata: Option<Value>,
    /// Ban for a Go-style duration (`24h`, `30m`) or lift it (`none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban_duration: Option<String>,
}

/// A verification link made by [`AuthAdmin::generate_link`].
#[derive(Debug, Clone, Deserialize)]
pub struct GeneratedLink {
    /// The link to send.
    pub action_link: String,
    /// The 6-digit code.
    pub email_otp: String,
    /// The link token (for `verify` with `token_hash`).
    pub hashed_token: String,
    /// `signup`, `magiclink`, `recovery`, `invite` or `email_change`.
    pub verification_type: String,
    /// Where the link leads afterwards.
    pub redirect_to: String,
}

/// Service-role calls on a project's users.
#[derive(Debug, Clone)]
pub struct AuthAdmin {
    client: Client,
}

impl AuthAdmin {
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<T> {
        let mut req = self.client.request(method, &format!("auth/v1/{path}"))?;
        if let Some(body) = body {
            req = req.json(&body);
        }
        let mut request = req.build()?;
        if !query.is_empty() {
            request.url_mut().query_pairs_mut().extend_pairs(query);
        }
        let response = self.client.execute(request).await?.error_for_status()?;
        http::decode_json(&response.body)
    }

    /// One page of users (`page` from 1).
    pub async fn list_users(&self, page: u32, per_page: u32) -> Result<Vec<User>> {
        #[derive(Deserialize)]
        struct Page {
            users: Vec<User>,
        }
        let query = [
            ("page", page.to_string()),
            ("per_page", per_page.to_string()),
        ];
        let page: Page = self.call(Method::GET, "admin/users", &query, None).await?;
        Ok(page.users)
    }

    /// Creates a user.
    pub async fn create_user(&self, attrs: &AdminUserAttributes) -> Result<User> {
        let body = serde_json::to_value(attrs).map_err(|e| Error::Encode(e.to_string()))?;
        self.call(Method::POST, "admin/users", &[], Some(body))
            .await
    }

    /// A user by id.
    pub async fn get_user_by_id(&self, id: &str) -> Result<User> {
        self.call(Method::GET, &format!("admin/users/{id}"), &[], None)
            .await
    }

    /// Changes a user (metadata is merged).
    pub async fn update_user_by_id(&self, id: &str, attrs: &AdminUserAttributes) -> Result<User> {
        let body = serde_json::to_value(attrs).map_err(|e| Error::Encode(e.to_string()))?;
        self.call(Method::PUT, &format!("admin/users/{id}"), &[], Some(body))
            .await
    }

    /// Deletes a user and everything of it.
    pub async fn delete_user(&self, id: &str) -> Result<()> {
        let _: Value = self
            .call(Method::DELETE, &format!("admin/users/{id}"), &[], None)
            .await?;
        Ok(())
    }

    /// Creates a user and mails an invitation.
    pub async fn invite_user_by_email(&self, email: &str, data: Option<Value>) -> Result<User> {
        self.call(
            Method::POST,
            "invite",
            &[],
            Some(json!({"email": email, "data": data})),
        )
        .await
    }

    /// Makes a verification link without sending mail. `kind`: `signup`
    /// (needs `password`), `invite`, `magiclink`, `recovery`.
    pub async fn generate_link(
        &self,
        kind: &str,
        email: &str,
        password: Option<&str>,
        redirect_to: Option<&str>,
    ) -> Result<GeneratedLink> {
        let body =
            json!({"type": kind, "email": email, "password": password, "redirect_to": redirect_to});
        self.call(Method::POST, "admin/generate_link", &[], Some(body))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_pairs_match() {
        let (verifier, challenge) = pkce_pair();
        assert!(verifier.len() >= 43);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        assert_eq!(challenge, URL_SAFE_NO_PAD.encode(digest.as_ref()));
        assert_ne!(pkce_pair().0, verifier);
    }

    #[test]
    fn oauth_url_carries_the_challenge() {
        let auth = Client::new("http://h/p/r", "anon").unwrap().auth();
        let start = auth.sign_in_with_oauth("github", "http://app/cb").unwrap();
        assert!(start.url.starts_with("http://h/p/r/auth/v1/authorize?provider=github&redirect_to=http%3A%2F%2Fapp%2Fcb&code_challenge="));
        assert!(start.url.ends_with("&code_challenge_method=s256"));
    }

    #[test]
    fn memory_store_and_expiry() {
        let store = MemoryStore::default();
        assert!(store.load().is_none());
        let session: Session = serde_json::from_value(json!({
            "access_token": "a", "token_type": "bearer", "expires_in": 3600,
            "expires_at": now() + 30, "refresh_token": "r",
            "user": {"id": "u", "email": "e@x.io", "identities": []}
        }))
        .unwrap();
        assert!(session.expires_within(60));
        assert!(!session.expires_within(10));
        assert_eq!(session.user.extra["identities"], json!([]));
        store.save(Some(&session));
        assert_eq!(store.load(), Some(session.clone()));
        assert!(!format!("{session:?}").contains("\"a\""));
        store.save(None);
        assert!(store.load().is_none());
    }
}
