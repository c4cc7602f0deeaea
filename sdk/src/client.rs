//! [`Client`]: the handle on one project's APIs (`{project}/rest/v1`,
//! `{project}/auth/v1`, ...).
//!
//! A `Client` is an `Arc` around the shared parts (the reqwest connection
//! pool, the project URL and the API key) plus two small per-handle settings:
//! the signed-in user's access token and the schema. Cloning is cheap, and
//! changing the token or schema on one clone never affects another, so a
//! server can keep one anon `Client` and derive a per-request user client
//! with [`Client::with_access_token`] without locks.

use std::fmt;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::http::{self, join_segments, parse_base_url};
use crate::query::{FilterBuilder, QueryBuilder};

/// Client for one Ferrobase project.
///
/// Every request carries `apikey: <key>` and
/// `Authorization: Bearer <access token, or the key when signed out>`.
///
/// ```no_run
/// # async fn demo() -> ferrobase::Result<()> {
/// let client = ferrobase::Client::new("http://127.0.0.1:8080/p/myref", "<anon key>")?;
/// let rows: Vec<serde_json::Value> = client.from("todos").select("*").fetch().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// The signed-in user's JWT; per handle, see the module docs.
    access_token: Option<Arc<str>>,
    /// Schema sent as `Accept-Profile`/`Content-Profile`; `None` = server default.
    schema: Option<Arc<str>>,
}

/// The parts every clone shares.
struct Inner {
    /// One connection pool for all requests of all clones.
    http: reqwest::Client,
    /// Normalised to end with `/`.
    project_url: Url,
    /// The project's anon or service-role key.
    key: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key or the token.
        f.debug_struct("Client")
            .field("project_url", &self.inner.project_url.as_str())
            .field("signed_in", &self.access_token.is_some())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Creates a client for the project at `project_url` (for example
    /// `http://127.0.0.1:8080/p/myref` or `https://myref.example.com`),
    /// authenticating with the project's anon or service-role `key`.
    ///
    /// A trailing slash on the URL is optional. Fails with
    /// [`Error::InvalidUrl`] for a non-http(s) URL or one with a query string,
    /// and with [`Error::Encode`] for a key that cannot be sent in a header.
    pub fn new(project_url: impl AsRef<str>, key: impl Into<String>) -> Result<Client> {
        Client::with_http_client(http::default_http_client()?, project_url, key)
    }

    /// Like [`Client::new`], but sends through an existing reqwest client
    /// (to share its connection pool, or to set timeouts and proxies).
    pub fn with_http_client(
        http: reqwest::Client,
        project_url: impl AsRef<str>,
        key: impl Into<String>,
    ) -> Result<Client> {
        let project_url = parse_base_url(project_url.as_ref())?;
        let key = key.into();
        header_value(&key, "API key")?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                project_url,
                key,
            }),
            access_token: None,
            schema: None,
        })
    }

    /// Returns a clone that sends `token` (a user's access JWT) as the bearer
    /// token instead of the key. The `apikey` header still carries the key.
    #[must_use]
    pub fn with_access_token(mut self, token: impl Into<String>) -> Client {
        self.access_token = Some(Arc::from(token.into()));
        self
    }

    /// Sets (`Some`) or clears (`None`) this handle's access token.
    /// Other clones are unaffected.
    pub fn set_access_token(&mut self, token: Option<String>) {
        self.access_token = token.map(Arc::from);
    }

    /// The access token set with [`Client::with_access_token`], if any.
    pub fn access_token(&self) -> Option<&str> {
        self.access_token.as_deref()
    }

    /// The API key this client was created with.
    pub fn api_key(&self) -> &str {
        &self.inner.key
    }

    /// The project base URL, normalised to end with `/`
    /// (`http://127.0.0.1:8080/p/myref/`).
    pub fn project_url(&self) -> &Url {
        &self.inner.project_url
    }

    /// The underlying reqwest client (shared by all clones).
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Returns a clone whose data-API requests target the Postgres schema
    /// `name` (sent as `Accept-Profile` on GET/HEAD and `Content-Profile`
    /// otherwise). The schema must be one the project exposes.
    #[must_use]
    pub fn schema(&self, name: impl Into<String>) -> Client {
        let mut client = self.clone();
        client.schema = Some(Arc::from(name.into()));
        client
    }

    /// The schema selected with [`Client::schema`], if any.
    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Starts a query on the table or view `table` (`{project}/rest/v1/{table}`).
    pub fn from(&self, table: impl Into<String>) -> QueryBuilder {
        QueryBuilder::new(self.clone(), table.into())
    }

    /// Calls the Postgres function `function` with named arguments `args`
    /// (`POST {project}/rest/v1/rpc/{function}`). Pass `serde_json::json!({})`
    /// for a function without arguments. The result can be filtered and
    /// ordered like a table when the function returns a set.
    pub fn rpc(&self, function: impl Into<String>, args: impl Serialize) -> FilterBuilder {
        FilterBuilder::rpc(self.clone(), function.into(), args)
    }

    /// Fetches the public keys that verify this project's user access tokens
    /// (`GET {project}/auth/v1/.well-known/jwks.json`).
    pub async fn jwks(&self) -> Result<Jwks> {
        let request = self
            .request(Method::GET, "auth/v1/.well-known/jwks.json")?
            .build()?;
        let response = self.execute(request).await?.error_for_status()?;
        http::decode_json(&response.body)
    }

    /// Starts a request to any path under the project URL, with the `apikey`
    /// and `Authorization` headers already set: an escape hatch for endpoints
    /// this SDK does not wrap yet. `path` is relative (`"auth/v1/settings"`);
    /// each `/`-separated segment is percent-encoded.
    pub fn request(&self, method: Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let url = join_segments(
            &self.inner.project_url,
            path.split('/').filter(|s| !s.is_empty()),
        );
        Ok(self
            .inner
            .http
            .request(method, url)
            .headers(self.auth_headers()?))
    }

    /// URL of `segments` under the project URL.
    pub(crate) fn endpoint<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        join_segments(&self.inner.project_url, segments)
    }

    /// `apikey` and `Authorization` headers, marked sensitive so that they
    /// are redacted from `Debug` output.
    pub(crate) fn auth_headers(&self) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("apikey"),
            header_value(&self.inner.key, "API key")?,
        );
        let bearer = self.access_token.as_deref().unwrap_or(&self.inner.key);
        headers.insert(
            AUTHORIZATION,
            header_value(&format!("Bearer {bearer}"), "access token")?,
        );
        Ok(headers)
    }

    pub(crate) async fn execute(&self, request: reqwest::Request) -> Result<http::RawResponse> {
        http::send(&self.inner.http, request).await
    }
}

/// A sensitive header value, or [`Error::Encode`] naming `what` (never the
/// value itself, which is a secret).
pub(crate) fn header_value(value: &str, what: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| Error::Encode(format!("the {what} is not a valid HTTP header value")))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A JSON Web Key Set, as served at `/auth/v1/.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys currently valid for verifying access tokens.
    pub keys: Vec<Jwk>,
}

/// One public key of a [`Jwks`] (RFC 7517).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type, e.g. `EC`, `RSA` or `OKP`.
    pub kty: String,
    /// Key id, matched against the `kid` header of a JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm, e.g. `ES256`, `RS256` or `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use, normally `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// The key material and any other members (`crv`, `x`, `y`, `n`, `e`, ...).
    #[serde(flatten)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("http://127.0.0.1:8080/p/myref", "anon-key").unwrap()
    }

    fn header<'a>(req: &'a reqwest::Request, name: &str) -> Option<&'a str> {
        req.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn project_url_is_normalised() {
        let with = Client::new("http://127.0.0.1:8080/p/myref/", "k").unwrap();
        let without = Client::new("http://127.0.0.1:8080/p/myref", "k").unwrap();
        assert_eq!(with.project_url(), without.project_url());
        assert_eq!(
            with.project_url().as_str(),
            "http://127.0.0.1:8080/p/myref/"
        );
        let req = with.from("todos").select("*").build_request().unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:8080/p/myref/rest/v1/todos?select=*"
        );
    }

    #[test]
    fn invalid_inputs_are_rejected() {
        assert!(matches!(
            Client::new("localhost:8080", "k"),
            Err(Error::InvalidUrl(_))
        ));
        assert!(matches!(
            Client::new("http://h/p/x", "bad\nkey"),
            Err(Error::Encode(_))
        ));
    }

    #[test]
    fn sends_key_as_bearer_when_signed_out() {
        let req = client().request(Method::GET, "auth/v1/settings").unwrap();
        let req = req.build().unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:8080/p/myref/auth/v1/settings"
        );
        assert_eq!(header(&req, "apikey"), Some("anon-key"));
        assert_eq!(header(&req, "authorization"), Some("Bearer anon-key"));
        assert!(req.headers()["authorization"].is_sensitive());
    }

    #[test]
    fn access_token_is_per_handle() {
        let anon = client();
        let mut user = anon.clone().with_access_token("user-jwt");
        let req = user.from("t").select("*").build_request().unwrap();
        assert_eq!(header(&req, "apikey"), Some("anon-key"));
        assert_eq!(header(&req, "authorization"), Some("Bearer user-jwt"));
        assert_eq!(user.access_token(), Some("user-jwt"));
        // The original handle is still signed out.
        assert_eq!(anon.access_token(), None);
        let req = anon.from("t").select("*").build_request().unwrap();
        assert_eq!(header(&req, "authorization"), Some("Bearer anon-key"));

        user.set_access_token(None);
        let req = user.from("t").select("*").build_request().unwrap();
        assert_eq!(header(&req, "authorization"), Some("Bearer anon-key"));
    }

    #[test]
    fn invalid_token_fails_at_build_time() {
        let client = client().with_access_token("a\r\nb");
        assert!(matches!(
            client.from("t").select("*").build_request(),
            Err(Error::Encode(_))
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", client().with_access_token("secret-jwt"));
        assert!(!shown.contains("anon-key"), "{shown}");
        assert!(!shown.contains("secret-jwt"), "{shown}");
        assert!(shown.contains("/p/myref/"), "{shown}");
    }

    #[test]
    fn jwk_keeps_unknown_members() {
        let jwks: Jwks = serde_json::from_str(
            r#"{"keys":[{"kty":"EC","kid":"k1","alg":"ES256","use":"sig","crv":"P-256","x":"xx","y":"yy"}]}"#,
        )
        .unwrap();
        let key = &jwks.keys[0];
        assert_eq!(key.kty, "EC");
        assert_eq!(key.kid.as_deref(), Some("k1"));
        assert_eq!(key.use_.as_deref(), Some("sig"));
        assert_eq!(key.params["crv"], "P-256");
        let back = serde_json::to_value(&jwks).unwrap();
        assert_eq!(back["keys"][0]["use"], "sig");
        assert_eq!(back["keys"][0]["x"], "xx");
    }
}
