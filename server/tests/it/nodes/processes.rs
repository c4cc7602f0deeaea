//! Three `ferrobase serve` OS processes (the binary the test suite builds) on
//! one control plane, each with its own data dir and port, driven round-robin
//! as a load balancer would. They share nothing but Postgres, so everything
//! below holds only if its state lives there:
//!
//! - auth rate limits and account lockout counted across processes;
//! - an OAuth/PKCE flow started on one process, whose provider callback lands
//!   on another and whose code is exchanged on the third (real
//!   `oidc-provider`);
//! - schema cache invalidation (DDL, then every process serves the table);
//! - realtime broadcast, presence and change events (the unmodified
//!   `socket.io-client`: a subscriber on process A, a publisher on process B);
//! - function schedules: each tick runs once, not once per process (Deno);
//! - webhook deliveries: each made once, not once per process.
//!
//! Intervals are shortened through the same environment variables an
//! operator would set.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::oauth::{Browser, pkce_pair, start_provider};
use crate::support::{fresh_database, temp_dir};

/// One `ferrobase serve` process.
struct Node {
    url: String,
    child: tokio::process::Child,
    log: PathBuf,
}

/// The three processes and the project under test.
struct Cluster {
    nodes: Vec<Node>,
    next: AtomicUsize,
    http: reqwest::Client,
    admin_token: String,
    project_ref: String,
    anon: String,
    service: String,
    db_url: String,
    control: tokio_postgres::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Cluster {
    /// The next process's project base URL, round-robin.
    fn base(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
        self.project_url(i)
    }

    fn project_url(&self, i: usize) -> String {
        format!("{}/p/{}", self.nodes[i].url, self.project_ref)
    }

    /// `METHOD {next node}/p/{ref}{path}` with the service-role key.
    fn service(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base()))
            .header("apikey", &self.service)
            .bearer_auth(&self.service)
    }

    async fn password(&self, email: &str, password: &str, ip: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/auth/v1/token?grant_type=password", self.base()))
            .header("apikey", &self.anon)
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("token request")
    }

    /// Signs `email` up (autoconfirm) and returns `(access token, user id)`.
    async fn user(&self, email: &str, ip: &str) -> (String, String) {
        let resp = self
            .http
            .post(format!("{}/auth/v1/signup", self.base()))
            .header("apikey", &self.anon)
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": "user-password"}))
            .send()
            .await
            .expect("signup");
        assert_eq!(resp.status(), 200, "signup {email}");
        let session: Value = self
            .password(email, "user-password", ip)
            .await
            .json()
            .await
            .expect("session");
        (
            session["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            session["user"]["id"].as_str().expect("user id").to_owned(),
        )
    }

    /// SIGTERM to every process, then waits for each to exit (so they stop
    /// their Deno processes; a SIGKILL on drop would orphan them).
    async fn stop(mut self) {
        for n in &self.nodes {
            if let Some(pid) = n.child.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        for n in &mut self.nodes {
            let exited = tokio::time::timeout(Duration::from_secs(30), n.child.wait()).await;
            assert!(
                exited.is_ok_and(|s| s.is_ok_and(|s| s.success())),
                "a process did not stop cleanly on SIGTERM"
            );
        }
    }

    /// Fails with the tail of every process's log when `ok` is false.
    fn check(&self, ok: bool, what: &str) {
        if !ok {
            for (i, n) in self.nodes.iter().enumerate() {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!(
                    "--- node {i} log (last lines, newest first)\n{}",
                    tail.join("\n")
                );
            }
            panic!("{what}");
        }
    }
}

/// Starts three processes on a fresh control plane, logs in on the first and
/// creates the project on the second.
async fn start(r: &str, deno: Option<PathBuf>) -> Cluster {
    let db_url = fresh_database().await;
    let base = ferrobase_server::Config::for_tests(db_url.clone(), temp_dir("fbt-proc"));
    let ports = [free_port(), free_port(), free_port()];
    // Every process is told the same public URL, as behind a balancer (here
    // the first process's address stands in for the balancer's).
    let public = format!("http://127.0.0.1:{}", ports[0]);
    let mut nodes = Vec::new();
    for port in ports {
        let data = temp_dir("fbt-proc-node");
        let log = data.join("node.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferrobase"));
        cmd.arg("serve")
            .env("DATABASE_URL", &db_url)
            .env("FERROBASE_DATA_DIR", &data)
            .env("FERROBASE_LISTEN", format!("127.0.0.1:{port}"))
            .env("FERROBASE_PUBLIC_URL", &public)
            .env(
                "FERROBASE_ENCRYPTION_KEY",
                ferrobase_server::config::exposed(&base.encryption_key).unwrap_or_default(),
            )
            .env("FERROBASE_ADMIN_EMAIL", &base.admin_email)
            .env(
                "FERROBASE_ADMIN_PASSWORD",
                ferrobase_server::config::exposed(&base.admin_password).unwrap_or_default(),
            )
            .env("FERROBASE_DEFAULT_PROJECT", "")
            .env("FERROBASE_LOG_FORMAT", "json")
            .env("FERROBASE_TRUST_FORWARDED_FOR", "true")
            // The OIDC provider and the webhook receiver run on loopback.
            .env("FERROBASE_OUTBOUND_ALLOW_PRIVATE", "true")
            .env("FERROBASE_WEBHOOK_ALLOW_PRIVATE", "true")
            .env("FERROBASE_WEBHOOK_POLL_MS", "50")
            .env("FERROBASE_WEBHOOK_IDLE_POLL_MS", "100")
            .env("FERROBASE_FUNCTIONS_SCHEDULE_INTERVAL_MS", "100")
            .env("FERROBASE_REALTIME_POLL_MS", "100")
            .env("FERROBASE_POOL_MAX_SIZE", "5")
            .env("FERROBASE_DB_MAX_CONNECTIONS", "40")
            .env_remove("FERROBASE_STORAGE_URL")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        match &deno {
            Some(bin) => cmd.env("FERROBASE_DENO_BIN", bin),
            None => cmd.env_remove("FERROBASE_DENO_BIN"),
        };
        let child = cmd.spawn().expect("spawn ferrobase");
        nodes.push(Node {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
        });
    }
    let http = reqwest::Client::new();
    for (i, node) in nodes.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ready = http
                .get(format!("{}/health/ready", node.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                break;
            }
            let exited = node.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                panic!("node {i} not ready ({exited:?}):\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // An admin token from process 0 is good on process 1 (one platform key).
    let login: Value = http
        .post(format!("{}/platform/v1/auth/login", nodes[0].url))
        .json(&json!({"email": base.admin_email,
                      "password": ferrobase_server::config::exposed(&base.admin_password)}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let admin_token = login["access_token"].as_str().expect("token").to_owned();
    let resp = http
        .post(format!("{}/platform/v1/projects", nodes[1].url))
        .bearer_auth(&admin_token)
        .json(&json!({ "ref": r }))
        .send()
        .await
        .expect("create project");
    assert_eq!(resp.status(), 201, "create project on node 1");
    let p: Value = resp.json().await.expect("project json");
    let control_cfg: tokio_postgres::Config = db_url.parse().expect("control url");
    let control = ferrobase_server::db::connect(&control_cfg)
        .await
        .expect("control plane");
    Cluster {
        nodes,
        next: AtomicUsize::new(0),
        http,
        admin_token,
        project_ref: r.to_owned(),
        anon: p["anon_key"].as_str().expect("anon").to_owned(),
        service: p["service_role_key"].as_str().expect("service").to_owned(),
        db_url: p["db_url"].as_str().expect("db_url").to_owned(),
        control,
    }
}

async fn owner(c: &Cluster) -> tokio_postgres::Client {
    let cfg: tokio_postgres::Config = c.db_url.parse().expect("db_url");
    ferrobase_server::db::connect(&cfg).await.expect("owner")
}

/// Polls `probe` until it returns true or `secs` pass.
async fn eventually<F, Fut>(secs: u64, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn three_processes_share_limits_oauth_schema_realtime_schedules_and_webhooks() {
    let deno = crate::functions::deno();
    let c = start("three-procs", deno.clone()).await;

    auth_limits(&c).await;
    oauth_across_processes(&c).await;
    schema_cache(&c).await;
    realtime(&c).await;
    if deno.is_some() {
        schedules(&c).await;
    }
    webhooks(&c).await;

    // The admin API of every process sees the same project.
    for n in &c.nodes {
        let resp = c
            .http
            .get(format!("{}/platform/v1/projects/{}", n.url, c.project_ref))
            .bearer_auth(&c.admin_token)
            .send()
            .await
            .expect("get project");
        assert_eq!(resp.status(), 200);
    }
    c.stop().await;
}

async fn auth_limits(c: &Cluster) {
    let resp = c
        .service(Method::PUT, "/auth/v1/admin/config")
        .json(
            &json!({"mailer_autoconfirm": true, "lockout_max_attempts": 3,
                      "lockout_duration_secs": 60, "rate_limit_sign_in_sign_ups": 10,
                      "rate_limit_window_secs": 60, "site_url": "http://app.test",
                      "uri_allow_list": ["http://app.test/**"]}),
        )
        .send()
        .await
        .expect("config");
    assert_eq!(resp.status(), 200, "auth config");
    c.user("locked@example.com", "198.51.100.1").await;
    super::sign_ins_share_lockout_and_rate_limit(
        |email, password, ip| async move { c.password(&email, &password, &ip).await },
        "locked@example.com",
        "user-password",
    )
    .await;
}

async fn oauth_across_processes(c: &Cluster) {
    let Some(modules) = crate::auth::node_modules_with("oidc-provider") else {
        crate::auth::missing_peer("oidc-provider");
        return;
    };
    // The provider knows the public callback (the "balancer" address).
    let public_callback = format!("{}/auth/v1/callback", c.project_url(0));
    let idp = start_provider(&modules, &public_callback).await;
    let resp = c
        .service(Method::PUT, "/auth/v1/admin/providers/myidp")
        .json(
            &json!({"kind": "oidc", "issuer": idp.issuer, "client_id": "ferrobase",
                      "client_secret": "ferrobase-secret"}),
        )
        .send()
        .await
        .expect("provider");
    assert_eq!(resp.status(), 200, "configure the provider");

    let mut browser = Browser::new();
    let (verifier, challenge) = pkce_pair();
    // 1. Start on process 0.
    let resp = browser
        .send(
            Method::GET,
            &format!(
                "{}/auth/v1/authorize?provider=myidp&redirect_to=http://app.test/cb\
                 &code_challenge={challenge}&code_challenge_method=s256",
                c.project_url(0)
            ),
            None,
        )
        .await;
    assert_eq!(resp.status(), 302);
    let to_idp = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(to_idp.starts_with(&idp.issuer), "{to_idp}");
    let back = browser.login(&to_idp, "carol", &public_callback).await;
    // 2. The balancer sends the provider's callback to process 1.
    let back_on_1 = back.replacen(&c.nodes[0].url, &c.nodes[1].url, 1);
    assert_ne!(back, back_on_1);
    let resp = browser.send(Method::GET, &back_on_1, None).await;
    assert_eq!(resp.status(), 302, "callback finished on another process");
    let app = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let code = app
        .strip_prefix("http://app.test/cb?code=")
        .unwrap_or_else(|| panic!("no code in {app}"))
        .to_owned();
    // Replaying the callback on process 2 is refused: the state was used.
    let replay = back.replacen(&c.nodes[0].url, &c.nodes[2].url, 1);
    let resp = browser.send(Method::GET, &replay, None).await;
    assert_eq!(resp.status(), 400, "replayed state on a third process");
    // 3. The code is exchanged on process 2, once.
    let exchange = || {
        c.http
            .post(format!(
                "{}/auth/v1/token?grant_type=pkce",
                c.project_url(2)
            ))
            .header("apikey", &c.anon)
            .json(&json!({"auth_code": code, "code_verifier": verifier}))
            .send()
    };
    let resp = exchange().await.expect("exchange");
    assert_eq!(resp.status(), 200, "PKCE exchange on a third process");
    let session: Value = resp.json().await.expect("session");
    assert_eq!(session["user"]["email"], "carol@oidc.test");
    let again = exchange().await.expect("exchange again");
    assert_eq!(again.status(), 404, "a code is good once, on any process");
}

async fn schema_cache(c: &Cluster) {
    // Every process has served (and cached) the schema before the DDL.
    for _ in 0..3 {
        let resp = c
            .http
            .get(format!("{}/rest/v1/", c.base()))
            .header("apikey", &c.anon)
            .send()
            .await
            .expect("openapi");
        assert_eq!(resp.status(), 200);
    }
    owner(c)
        .await
        .batch_execute(crate::realtime::SQL)
        .await
        .expect("ddl");
    owner(c)
        .await
        .batch_execute("grant select on todos to anon")
        .await
        .expect("grant");
    let mut seen = [false; 3];
    for (i, slot) in seen.iter_mut().enumerate() {
        let url = format!("{}/rest/v1/todos?select=title", c.project_url(i));
        *slot = eventually(5, || async {
            c.http
                .get(&url)
                .header("apikey", &c.anon)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
    }
    c.check(
        seen == [true; 3],
        &format!("every process serves the new table: {seen:?}"),
    );
}

async fn realtime(c: &Cluster) {
    for body in [
        json!({"pattern": "public:%", "public": true}),
        json!({"pattern": "room:%"}),
    ] {
        let resp = c
            .service(Method::POST, "/admin/v1/realtime/channels")
            .json(&body)
            .send()
            .await
            .expect("channel");
        assert_eq!(resp.status(), 201, "create channel {body}");
    }
    let resp = c
        .service(Method::PUT, "/admin/v1/realtime/changes/public/todos")
        .json(&json!({}))
        .send()
        .await
        .expect("changes");
    assert_eq!(resp.status(), 200, "enable changes");
    let (user_a, sub_a) = c.user("rt-a@example.com", "198.51.100.20").await;
    let (user_b, sub_b) = c.user("rt-b@example.com", "198.51.100.21").await;
    // socket.io-client: subscriber on process 0; publisher, member and a
    // REST write on process 1 (tests/peers/realtime_js.mjs, scenario `cross`).
    let spec = json!({
        "scenario": "cross",
        "url": c.project_url(0),
        "urlB": c.project_url(1),
        "anon": c.anon,
        "service": c.service,
        "userA": user_a,
        "userB": user_b,
        "userASub": sub_a,
        "userBSub": sub_b,
    });
    crate::realtime::run_script(
        crate::realtime::env_path("FERROBASE_PEERS_NODE"),
        "realtime_js.mjs",
        &spec,
    )
    .await;
}

async fn schedules(c: &Cluster) {
    let resp = c
        .service(Method::POST, "/admin/v1/functions")
        .json(&json!({"slug": "tick", "code":
            "export default { async fetch(req: Request) { await req.text(); return new Response('ok'); } };"}))
        .send()
        .await
        .expect("deploy");
    assert_eq!(
        resp.status(),
        201,
        "deploy: {}",
        resp.text().await.unwrap_or_default()
    );
    let resp = c
        .service(Method::POST, "/admin/v1/functions/tick/schedules")
        .json(&json!({"name": "every-second", "cron": "* * * * * *", "body": {}}))
        .send()
        .await
        .expect("schedule");
    assert_eq!(resp.status(), 201, "schedule");
    // Every process scans every 100 ms; each second's tick must run once.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let resp = c
        .service(
            Method::PUT,
            "/admin/v1/functions/tick/schedules/every-second",
        )
        .json(&json!({"cron": "* * * * * *", "enabled": false}))
        .send()
        .await
        .expect("pause");
    assert_eq!(resp.status(), 200);
    // Runs finish, and their invocation records (written in batches by each
    // process's log writer, a moment after the run) arrive.
    let done = eventually(10, || async {
        c.control
            .query_one(
                "select (select count(*) from function_schedule_runs where finished_at is null) = 0 \
                    and (select count(*) from function_schedule_runs) \
                      = (select count(*) from function_invocations where trigger = 'schedule')",
                &[],
            )
            .await
            .is_ok_and(|r| r.get::<_, bool>(0))
    })
    .await;
    c.check(
        done,
        "scheduled runs finish, each with its invocation record",
    );
    let row = c
        .control
        .query_one(
            "select (select count(*) from function_schedule_runs), \
                    (select count(*) from function_invocations where trigger = 'schedule'), \
                    (select coalesce(max(n), 0) from (select count(*) as n from function_schedule_runs \
                     group by schedule_id, tick_at) t)",
            &[],
        )
        .await
        .expect("runs");
    let (runs, invocations, per_tick): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    c.check(
        runs >= 2 && runs == invocations && per_tick == 1,
        &format!("each tick ran once: {runs} runs, {invocations} invocations, {per_tick} per tick"),
    );
}

/// A webhook receiver counting what arrives, by `webhook-id`.
async fn receiver() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    use axum::http::HeaderMap;
    let got: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let record = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                *record.lock().expect("lock").entry(id).or_default() += 1;
                "ok"
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

async fn webhooks(c: &Cluster) {
    let (url, got) = receiver().await;
    let resp = c
        .service(Method::POST, "/admin/v1/webhooks")
        .json(&json!({"url": url, "events": ["hook"]}))
        .send()
        .await
        .expect("endpoint");
    assert_eq!(resp.status(), 201, "create endpoint");
    let n: i32 = 60;
    owner(c)
        .await
        .execute(
            "insert into realtime.messages (topic, event, payload) \
             select 'hook', 'e', jsonb_build_object('i', i) from generate_series(1, $1) i",
            &[&n],
        )
        .await
        .expect("events");
    let all = eventually(30, || async {
        got.lock().expect("lock").len() == n as usize
    })
    .await;
    // A little longer: a duplicate would arrive right after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = got.lock().expect("lock").clone();
    let dups: Vec<_> = seen.iter().filter(|(_, k)| **k > 1).collect();
    c.check(
        all && dups.is_empty() && !seen.contains_key(""),
        &format!(
            "{n} deliveries made once each: {} distinct, duplicates {dups:?}",
            seen.len()
        ),
    );
    let per_node: Vec<(String, i64)> = owner(c)
        .await
        .query(
            "select node, count(*) from webhooks.attempts group by node",
            &[],
        )
        .await
        .expect("attempts")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let total: i64 = per_node.iter().map(|(_, k)| k).sum();
    assert_eq!(
        total,
        i64::from(n),
        "one attempt per delivery: {per_node:?}"
    );
    eprintln!("webhook attempts per process: {per_node:?}");
}
