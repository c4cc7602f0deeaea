//! [`AdminClient`]: the platform API (`{server}/platform/v1`) for platform
//! admins, to log in and to create, list, inspect and delete projects; plus
//! the unauthenticated readiness probe [`server_ready`].

use std::fmt;
use std::sync::Arc;

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::client::{Client, header_value};
use crate::error::{Error, Result};
use crate::http::{self, join_segments, parse_base_url};

/// A project as listed by the platform API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// The project's unique reference (`ref` on the wire), used in its URL.
    #[serde(rename = "ref")]
    pub project_ref: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// The project's base URL, e.g. `http://127.0.0.1:8080/p/myref`; what
    /// [`Client::new`] takes.
    pub url: String,
}

/// A project with its secrets, returned when creating or fetching one.
///
/// `Debug` output redacts the keys and the database URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectDetails {
    /// The public fields (`ref`, `name`, `created_at`, `url`).
    #[serde(flatten)]
    pub project: Project,
    /// JWT for anonymous (public) access, subject to RLS.
    pub anon_key: String,
    /// JWT that bypasses RLS; keep it server-side.
    pub service_role_key: String,
    /// Postgres connection string of the project database.
    pub db_url: String,
}

impl fmt::Debug for ProjectDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectDetails")
            .field("project", &self.project)
            .field("anon_key", &"<redacted>")
            .field("service_role_key", &"<redacted>")
            .field("db_url", &"<redacted>")
            .finish()
    }
}

/// The platform admin an [`AdminClient`] logged in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformAdmin {
    /// The admin's id (a UUID).
    pub id: String,
    /// The admin's email address.
    pub email: String,
}

/// Body of a successful `POST /platform/v1/auth/login`.
#[derive(Deserialize)]
struct LoginResponse {
    access_token: String,
    admin: PlatformAdmin,
}

#[derive(Serialize)]
struct CreateProject<'a> {
    #[serde(rename = "ref")]
    project_ref: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// Client for the platform API, authenticated as a platform admin.
///
/// Cheap to clone (`Arc` inside). The token is not refreshed: log in again
/// when it expires (after `expires_in` seconds, one hour by default).
///
/// ```no_run
/// # async fn demo() -> ferrobase::Result<()> {
/// use ferrobase::AdminClient;
/// let admin = AdminClient::login("http://127.0.0.1:8080", "admin@example.com", "secret").await?;
/// let project = admin.create_project("todo-app", Some("Todo app")).await?;
/// let client = admin.project_client(&project, false)?; // anon key
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AdminClient {
    inner: Arc<AdminInner>,
}

struct AdminInner {
    http: reqwest::Client,
    /// Normalised to end with `/`.
    server_url: Url,
    token: String,
    /// Known when the client came from a login.
    admin: Option<PlatformAdmin>,
}

impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("server_url", &self.inner.server_url.as_str())
            .field("admin", &self.inner.admin)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// Logs in with email and password
    /// (`POST {server}/platform/v1/auth/login`). Wrong credentials give an
    /// [`Error::Api`] with status 401 and code `invalid_credentials`.
    pub async fn login(
        server_url: impl AsRef<str>,
        email: &str,
        password: &str,
    ) -> Result<AdminClient> {
        let http = http::default_http_client()?;
        AdminClient::login_with_http_client(http, server_url, email, password).await
    }

    /// [`AdminClient::login`] through an existing reqwest client.
    pub async fn login_with_http_client(
        http: reqwest::Client,
        server_url: impl AsRef<str>,
        email: &str,
        password: &str,
    ) -> Result<AdminClient> {
        let server_url = parse_base_url(server_url.as_ref())?;
        let request = login_request(&http, &server_url, email, password)?;
        let response = http::send(&http, request).await?.error_for_status()?;
        let login: LoginResponse = http::decode_json(&response.body)?;
        header_value(&login.access_token, "admin access token")?;
        Ok(AdminClient {
            inner: Arc::new(AdminInner {
                http,
                server_url,
                token: login.access_token,
                admin: Some(login.admin),
            }),
        })
    }

    /// Uses an access token obtained earlier (for example from a previous
    /// login). Nothing is sent until the first call.
    pub fn with_token(
        server_url: impl AsRef<str>,
        token: impl Into<String>,
    ) -> Result<AdminClient> {
        AdminClient::with_token_and_http_client(http::default_http_client()?, server_url, token)
    }

    /// [`AdminClient::with_token`] through an existing reqwest client.
    pub fn with_token_and_http_client(
        http: reqwest::Client,
        server_url: impl AsRef<str>,
        token: impl Into<String>,
    ) -> Result<AdminClient> {
        let server_url = parse_base_url(server_url.as_ref())?;
        let token = token.into();
        header_value(&token, "admin access token")?;
        Ok(AdminClient {
            inner: Arc::new(AdminInner {
                http,
                server_url,
                token,
                admin: None,
            }),
        })
    }

    /// The server root URL, normalised to end with `/`.
    pub fn server_url(&self) -> &Url {
        &self.inner.server_url
    }

    /// The admin access token (a bearer JWT).
    pub fn access_token(&self) -> &str {
        &self.inner.token
    }

    /// The admin this client logged in as; `None` when built with
    /// [`AdminClient::with_token`].
    pub fn admin(&self) -> Option<&PlatformAdmin> {
        self.inner.admin.as_ref()
    }

    /// Lists all projects (`GET /platform/v1/projects`).
    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let request = self.request(Method::GET, &["projects"])?.build()?;
        self.send_json(request).await
    }

    /// Creates a project (`POST /platform/v1/projects`) and returns it with
    /// its keys. Errors: 409 `project_exists`, 400 `invalid_ref`.
    pub async fn create_project(
        &self,
        project_ref: &str,
        name: Option<&str>,
    ) -> Result<ProjectDetails> {
        let request = self.create_project_request(project_ref, name)?;
        self.send_json(request).await
    }

    /// Fetches one project with its keys (`GET /platform/v1/projects/{ref}`).
    /// Error: 404 `project_not_found`.
    pub async fn get_project(&self, project_ref: &str) -> Result<ProjectDetails> {
        let request = self
            .request(Method::GET, &["projects", project_ref])?
            .build()?;
        self.send_json(request).await
    }

    /// Changes a project's display name and/or the schemas its data API
    /// serves (the first is the default), via `PATCH /platform/v1/projects/{ref}`.
    /// Error: 400 `invalid_settings` for a platform-owned or malformed schema.
    pub async fn update_project(
        &self,
        project_ref: &str,
        name: Option<&str>,
        exposed_schemas: Option<&[&str]>,
    ) -> Result<ProjectDetails> {
        let mut body = serde_json::Map::new();
        if let Some(name) = name {
            body.insert("name".into(), name.into());
        }
        if let Some(schemas) = exposed_schemas {
            body.insert("exposed_schemas".into(), schemas.to_vec().into());
        }
        let request = self
            .request(Method::PATCH, &["projects", project_ref])?
            .json(&body)
            .build()?;
        self.send_json(request).await
    }

    /// Deletes a project and its database
    /// (`DELETE /platform/v1/projects/{ref}`).
    pub async fn delete_project(&self, project_ref: &str) -> Result<()> {
        let request = self
            .request(Method::DELETE, &["projects", project_ref])?
            .build()?;
        http::send(&self.inner.http, request)
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// A [`Client`] for `project`, at its `url`, using its anon key, or its
    /// service-role key (which bypasses RLS) when `use_service_role` is true.
    /// It shares this client's connection pool.
    pub fn project_client(
        &self,
        project: &ProjectDetails,
        use_service_role: bool,
    ) -> Result<Client> {
        let key = if use_service_role {
            &project.service_role_key
        } else {
            &project.anon_key
        };
        Client::with_http_client(self.inner.http.clone(), &project.project.url, key.as_str())
    }

    /// Whether the server is ready to serve (`GET /health/ready`); see
    /// [`server_ready`].
    pub async fn ready(&self) -> Result<bool> {
        ready_with(&self.inner.http, &self.inner.server_url).await
    }

    /// A request to `platform/v1/{segments}` with the bearer token.
    fn request(&self, method: Method, segments: &[&str]) -> Result<reqwest::RequestBuilder> {
        let url = platform_url(&self.inner.server_url, segments);
        Ok(self.inner.http.request(method, url).header(
            AUTHORIZATION,
            header_value(
                &format!("Bearer {}", self.inner.token),
                "admin access token",
            )?,
        ))
    }

    fn create_project_request(
        &self,
        project_ref: &str,
        name: Option<&str>,
    ) -> Result<reqwest::Request> {
        Ok(self
            .request(Method::POST, &["projects"])?
            .json(&CreateProject { project_ref, name })
            .build()?)
    }

    async fn send_json<T: DeserializeOwned>(&self, request: reqwest::Request) -> Result<T> {
        let response = http::send(&self.inner.http, request)
            .await?
            .error_for_status()?;
        http::decode_json(&response.body)
    }
}

fn platform_url(server_url: &Url, segments: &[&str]) -> Url {
    join_segments(
        server_url,
        ["platform", "v1"]
            .into_iter()
            .chain(segments.iter().copied()),
    )
}

fn login_request(
    http: &reqwest::Client,
    server_url: &Url,
    email: &str,
    password: &str,
) -> Result<reqwest::Request> {
    Ok(http
        .post(platform_url(server_url, &["auth", "login"]))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .build()?)
}

/// Whether the server at `server_url` (its root, e.g.
/// `http://127.0.0.1:8080`) is ready: `GET /health/ready` answering 200
/// gives `Ok(true)`, 503 gives `Ok(false)`, any other status an
/// [`Error::Api`], and no answer at all an [`Error::Http`]. Handy for
/// waiting on a freshly started server.
pub async fn server_ready(server_url: impl AsRef<str>) -> Result<bool> {
    let server_url = parse_base_url(server_url.as_ref())?;
    ready_with(&http::default_http_client()?, &server_url).await
}

async fn ready_with(http: &reqwest::Client, server_url: &Url) -> Result<bool> {
    let request = http
        .get(join_segments(server_url, ["health", "ready"]))
        .build()?;
    let response = http::send(http, request).await?;
    match response.status {
        s if s.is_success() => Ok(true),
        StatusCode::SERVICE_UNAVAILABLE => Ok(false),
        _ => Err(Error::from_response(response.status, &response.body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> AdminClient {
        AdminClient::with_token("http://127.0.0.1:8080/", "admin-jwt").unwrap()
    }

    fn header(req: &reqwest::Request, name: &str) -> Option<String> {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn body(req: &reqwest::Request) -> serde_json::Value {
        serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap()
    }

    fn details() -> ProjectDetails {
        serde_json::from_str(
            r#"{"ref":"myref","name":"My app","created_at":"2025-01-01T00:00:00Z",
                "url":"http://127.0.0.1:8080/p/myref","anon_key":"anon","service_role_key":"service",
                "db_url":"postgres://u:p@h/db"}"#,
        )
        .unwrap()
    }

    #[test]
    fn login_request_shape() {
        let http = reqwest::Client::new();
        let url = parse_base_url("http://127.0.0.1:8080").unwrap();
        let req = login_request(&http, &url, "a@b.c", "pw").unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:8080/platform/v1/auth/login"
        );
        assert_eq!(
            body(&req),
            serde_json::json!({"email": "a@b.c", "password": "pw"})
        );
        assert_eq!(header(&req, "authorization"), None);
    }

    #[test]
    fn platform_requests_carry_the_bearer_token() {
        let admin = admin();
        let req = admin
            .request(Method::GET, &["projects"])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:8080/platform/v1/projects"
        );
        assert_eq!(
            header(&req, "authorization").as_deref(),
            Some("Bearer admin-jwt")
        );
        assert!(req.headers()[AUTHORIZATION].is_sensitive());

        let req = admin
            .request(Method::DELETE, &["projects", "a/b"])
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(req.url().path(), "/platform/v1/projects/a%2Fb");
    }

    #[test]
    fn create_project_body() {
        let req = admin()
            .create_project_request("myref", Some("My app"))
            .unwrap();
        assert_eq!(
            body(&req),
            serde_json::json!({"ref": "myref", "name": "My app"})
        );
        let req = admin().create_project_request("myref", None).unwrap();
        assert_eq!(body(&req), serde_json::json!({"ref": "myref"}));
    }

    #[test]
    fn project_types_decode() {
        let project = details();
        assert_eq!(project.project.project_ref, "myref");
        assert_eq!(project.project.name, "My app");
        assert_eq!(project.anon_key, "anon");
        let list: Vec<Project> = serde_json::from_str(
            r#"[{"ref":"a","name":"A","created_at":"2025-01-01T00:00:00Z","url":"http://h/p/a"}]"#,
        )
        .unwrap();
        assert_eq!(list[0].project_ref, "a");
        // Round-trips with `ref` on the wire.
        let back = serde_json::to_value(&project).unwrap();
        assert_eq!(back["ref"], "myref");
        assert_eq!(back["anon_key"], "anon");
    }

    #[test]
    fn project_details_debug_redacts_secrets() {
        let shown = format!("{:?}", details());
        assert!(shown.contains("myref"), "{shown}");
        for secret in ["anon\"", "service\"", "postgres://"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let shown = format!("{:?}", admin());
        assert!(!shown.contains("admin-jwt"), "{shown}");
    }

    #[test]
    fn project_client_picks_the_key() {
        let admin = admin();
        let project = details();
        let anon = admin.project_client(&project, false).unwrap();
        assert_eq!(anon.api_key(), "anon");
        assert_eq!(
            anon.project_url().as_str(),
            "http://127.0.0.1:8080/p/myref/"
        );
        let service = admin.project_client(&project, true).unwrap();
        assert_eq!(service.api_key(), "service");
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            AdminClient::with_token("nope", "t"),
            Err(Error::InvalidUrl(_))
        ));
        assert!(matches!(
            AdminClient::with_token("http://h", "t\n"),
            Err(Error::Encode(_))
        ));
    }
}
