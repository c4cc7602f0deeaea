//! Storage (`/storage/v1`): the same end-to-end suite on local disk and on a
//! real S3-compatible server (moto), the RLS matrix, bad input, TUS, the
//! per-project quota.
//!
//! moto is found at `$FERROBASE_PEERS_VENV/bin/moto_server`, else as
//! `moto_server` on PATH; without it the S3 tests are skipped with a loud
//! message (install: `pip install "moto[server]"`).

mod bad_input;
mod peers;
mod quota;
mod rls;
mod sdk;
mod suite;
mod tus;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{TestApp, TestProject};

/// Where the bytes go in a test.
pub enum Backend {
    /// `{data_dir}/storage`.
    Local,
    /// A moto server.
    S3(Moto),
}

/// A running moto S3 server (killed on drop).
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The S3 bucket created for the test.
    pub bucket: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> Option<PathBuf> {
    if let Ok(venv) = std::env::var("FERROBASE_PEERS_VENV") {
        let p = PathBuf::from(venv).join("bin/moto_server");
        if p.exists() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.exists())
}

impl Moto {
    /// Starts moto and creates a bucket; `None` (after a loud message) when moto is not installed.
    pub async fn start() -> Option<Moto> {
        let Some(bin) = moto_binary() else {
            // Under `cargo xtask test` moto is installed: missing is a failure.
            assert!(
                std::env::var_os("FERROBASE_REQUIRE_PEERS").is_none(),
                "moto_server is missing from the peers installed by cargo xtask test"
            );
            eprintln!(
                "\n!!!!!!!! SKIPPED: S3 storage tests need moto_server \
                 ($FERROBASE_PEERS_VENV/bin/moto_server or on PATH; pip install \"moto[server]\") !!!!!!!!\n"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto {
            child,
            endpoint: endpoint.clone(),
            bucket: format!("fb-{}", ferrobase_server::crypto::random_hex(4)),
        };
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(&endpoint).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let resp = http
            .put(format!("{endpoint}/{}", moto.bucket))
            .send()
            .await
            .expect("create S3 bucket");
        assert!(
            resp.status().is_success(),
            "moto create bucket: {}",
            resp.status()
        );
        Some(moto)
    }

    /// Kills the server (to test failures); `Drop` reaps it.
    pub fn kill(&self) {
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
    }
}

/// A server with one project and some user tokens.
pub struct Env {
    pub t: TestApp,
    pub p: TestProject,
    pub project_id: Uuid,
    pub backend: Backend,
    pub http: reqwest::Client,
}

impl Env {
    /// A fresh server and project on `backend`.
    pub async fn new(backend: Backend) -> Env {
        Self::with(backend, |_| {}).await
    }

    /// Like [`Env::new`], adjusting the config.
    pub async fn with(backend: Backend, adjust: impl FnOnce(&mut ferrobase_server::Config)) -> Env {
        let t = TestApp::spawn_with(|c| {
            if let Backend::S3(m) = &backend {
                c.storage.storage_url = Some(format!("s3://{}", m.bucket));
                c.storage.s3_endpoint = Some(m.endpoint.clone());
                c.storage.s3_region = Some("us-east-1".into());
                c.storage.s3_access_key_id = Some("testing".into());
                c.storage.s3_secret_access_key = Some("testing".into());
                c.storage.s3_force_path_style = true;
            }
            adjust(c);
        })
        .await;
        let r = format!("st-{}", ferrobase_server::crypto::random_hex(3));
        let p = t.create_project(&r).await;
        let loaded = ferrobase_server::platform::projects::load(&t.app.platform, &r)
            .await
            .expect("load project")
            .expect("project exists");
        Env {
            project_id: loaded.id,
            http: t.http.clone(),
            t,
            p,
            backend,
        }
    }

    /// `{project url}/storage/v1{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/storage/v1{path}", self.p.url)
    }

    /// A request with `key` as apikey and bearer.
    pub fn req(&self, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header("apikey", key)
            .bearer_auth(key)
    }

    /// A request with the service key.
    pub fn service(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.req(method, path, &self.p.service)
    }

    /// A user access token (role authenticated, `sub` = `uid`).
    pub async fn user_token(&self, uid: Uuid) -> String {
        let r = self.p.url.rsplit('/').next().expect("ref");
        let loaded = ferrobase_server::platform::projects::load(&self.t.app.platform, r)
            .await
            .expect("load")
            .expect("exists");
        loaded.keys[0]
            .sign(&json!({
                "ref": r, "role": "authenticated", "sub": uid.to_string(),
                "exp": chrono::Utc::now().timestamp() + 3600,
            }))
            .expect("sign")
    }

    /// Signs arbitrary claims with the project key.
    pub async fn sign(&self, claims: &Value) -> String {
        let r = self.p.url.rsplit('/').next().expect("ref");
        let loaded = ferrobase_server::platform::projects::load(&self.t.app.platform, r)
            .await
            .expect("load")
            .expect("exists");
        loaded.keys[0].sign(claims).expect("sign")
    }

    /// The project ref.
    pub fn project_ref(&self) -> String {
        self.p.url.rsplit('/').next().expect("ref").to_owned()
    }

    /// Creates a bucket with the service key.
    pub async fn bucket(&self, body: Value) {
        let resp = self
            .service(Method::POST, "/bucket")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "create bucket {body}: {}",
            resp.text().await.unwrap()
        );
    }

    /// Uploads `bytes` with `key`; returns the status.
    pub async fn put(&self, key: &str, bucket: &str, name: &str, bytes: &[u8], mime: &str) -> u16 {
        self.req(Method::POST, &format!("/object/{bucket}/{name}"), key)
            .header("content-type", mime)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Number of object rows (as the owner).
    pub async fn rows(&self) -> i64 {
        let cfg: tokio_postgres::Config = self.p.db_url.parse().unwrap();
        let client = ferrobase_server::db::connect(&cfg).await.unwrap();
        client
            .query_one("select count(*) from storage.objects", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Runs owner SQL.
    pub async fn sql(&self, sql: &str) {
        self.t.owner_sql(&self.p, sql).await;
    }

    /// Every key the backend holds for this project.
    pub async fn keys(&self) -> Vec<String> {
        match &self.backend {
            Backend::Local => {
                let root = self.t.config.data_dir.join("storage");
                let mut out = Vec::new();
                let mut stack = vec![root.join(self.project_id.to_string())];
                while let Some(dir) = stack.pop() {
                    let Ok(entries) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        let path = e.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else {
                            out.push(path.strip_prefix(&root).unwrap().display().to_string());
                        }
                    }
                }
                out.sort();
                out
            }
            Backend::S3(m) => {
                let xml = self
                    .http
                    .get(format!(
                        "{}/{}?list-type=2&prefix={}/",
                        m.endpoint, m.bucket, self.project_id
                    ))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let mut out: Vec<String> = xml
                    .split("<Key>")
                    .skip(1)
                    .filter_map(|s| s.split("</Key>").next())
                    .map(str::to_owned)
                    .collect();
                out.sort();
                out
            }
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 2_463_534_242 ^ u32::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}
