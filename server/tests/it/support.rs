//! The test harness: a real Ferrobase on a real socket, backed by the
//! throwaway Postgres cluster that `cargo xtask test` starts (its superuser
//! connection string is in `FERROBASE_TEST_DATABASE_URL`). Every [`TestApp`]
//! gets its own control-plane database, so tests are isolated and run in
//! parallel; projects get uniquely named databases of their own.

use std::path::PathBuf;
use std::sync::Arc;

use ferrobase_server::db::embedded::{EmbeddedPostgres, find_bin_dir};
use ferrobase_server::{App, AppState, Config, Platform};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Superuser connection string of the shared test cluster.
pub fn cluster_url() -> String {
    std::env::var("FERROBASE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "FERROBASE_TEST_DATABASE_URL is not set: run the tests with `cargo xtask test`, \
             which starts a throwaway Postgres cluster (or `cargo xtask cluster` in another shell)"
        )
    })
}

/// A fresh temporary directory.
pub fn temp_dir(prefix: &str) -> PathBuf {
    // `cargo xtask test` points this at a directory of the run that it
    // removes afterwards, so the extra clusters and data dirs do not pile up.
    let base = std::env::var_os("FERROBASE_TEST_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "{prefix}-{}",
        ferrobase_server::crypto::random_hex(6)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Creates an empty database in the shared cluster and returns its connection string.
pub async fn fresh_database() -> String {
    let base = cluster_url();
    let cfg: tokio_postgres::Config = base.parse().expect("FERROBASE_TEST_DATABASE_URL parses");
    let client = ferrobase_server::db::connect(&cfg)
        .await
        .expect("connect to the test cluster");
    let name = format!("fbt_{}", ferrobase_server::crypto::random_hex(6));
    client
        .batch_execute(&format!("create database {name}"))
        .await
        .expect("create test database");
    format!("{base} dbname={name}")
}

/// A running server.
pub struct TestApp {
    /// Root URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// The application state (for white-box checks such as pools).
    pub app: AppState,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Admin token from `/platform/v1/auth/login`.
    pub admin_token: String,
    /// The config it runs with.
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A project created through the API.
#[derive(Debug, Clone)]
pub struct TestProject {
    /// Base URL.
    pub url: String,
    /// Anon key.
    pub anon: String,
    /// Service-role key.
    pub service: String,
    /// Owner connection string.
    pub db_url: String,
}

impl TestApp {
    /// A server on a fresh control-plane database.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`TestApp::spawn`], adjusting the config first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::for_tests(fresh_database().await, temp_dir("fbt-data"));
        adjust(&mut config);
        Self::start(config).await
    }

    /// A server with exactly this config.
    pub async fn start(mut config: Config) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        config.listen = addr;
        config.public_url = Some(format!("http://{addr}"));
        let platform = Platform::open(config.clone()).await.expect("open platform");
        platform.ensure_defaults().await.expect("defaults");
        let app = App::new(platform);
        let (tx, rx) = oneshot::channel::<()>();
        let serving = ferrobase_server::serve(app.clone(), listener, async {
            let _ = rx.await;
        });
        let server = tokio::spawn(async move {
            if let Err(e) = serving.await {
                eprintln!("server error: {e}");
            }
        });
        let http = reqwest::Client::new();
        let url = format!("http://{addr}");
        let login: Value = http
            .post(format!("{url}/platform/v1/auth/login"))
            .json(&json!({"email": config.admin_email, "password": ferrobase_server::config::exposed(&config.admin_password)}))
            .send()
            .await
            .expect("login request")
            .json()
            .await
            .expect("login json");
        let admin_token = login["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        TestApp {
            url,
            app,
            http,
            admin_token,
            config,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Stops the server (pools closed) and returns its config, e.g. to restart.
    pub async fn stop(mut self) -> Config {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.app.platform.shutdown().await;
        self.config.clone()
    }

    /// `METHOD {url}{path}` with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token)
    }

    /// Creates a project through the platform API.
    pub async fn create_project(&self, r: &str) -> TestProject {
        let resp = self
            .admin(reqwest::Method::POST, "/platform/v1/projects")
            .json(&json!({ "ref": r }))
            .send()
            .await
            .expect("create project");
        assert_eq!(resp.status(), 201, "create project {r}");
        let body: Value = resp.json().await.expect("json");
        TestProject {
            url: body["url"].as_str().expect("url").to_owned(),
            anon: body["anon_key"].as_str().expect("anon_key").to_owned(),
            service: body["service_role_key"]
                .as_str()
                .expect("service key")
                .to_owned(),
            db_url: body["db_url"].as_str().expect("db_url").to_owned(),
        }
    }

    /// The node's Prometheus metrics (`GET /metrics`), as text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Runs SQL in a project database as its owner.
    pub async fn owner_sql(&self, project: &TestProject, sql: &str) {
        let cfg: tokio_postgres::Config = project.db_url.parse().expect("db_url parses");
        let client = ferrobase_server::db::connect(&cfg)
            .await
            .expect("connect as owner");
        client.batch_execute(sql).await.expect("owner sql");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A private embedded cluster (for tests that stop and start Postgres).
pub async fn private_cluster(root: &std::path::Path) -> Arc<EmbeddedPostgres> {
    let bin = find_bin_dir(None).expect("postgres binaries");
    let pg = EmbeddedPostgres::init(root, bin, "test-superuser-password")
        .await
        .expect("init private cluster");
    pg.start().await.expect("start private cluster");
    pg.take_ownership();
    Arc::new(pg)
}

/// Asserts the JSON error envelope and returns it.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "status for expected {code}");
    let body: Value = resp.json().await.expect("error body is JSON");
    assert_eq!(body["code"], code, "error code in {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error message in {body}"
    );
    body
}
