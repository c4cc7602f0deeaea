//! Three nodes on one control plane, driven round-robin as a load balancer
//! would: login lockout, per-IP rate limits, refresh tokens, schema cache
//! invalidation and data written on one node and read on the others all hold
//! across nodes. (Realtime, webhooks and schedules across nodes have their own
//! tests: `realtime::peers::two_nodes_share_messages_presence_and_changes`,
//! `webhooks::two_nodes_never_make_the_same_attempt`,
//! `functions::schedules::schedules_run_once_per_tick_across_two_nodes`; all
//! of it across three OS processes of the real binary: [`processes`].)

mod processes;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, temp_dir};

struct Cluster {
    nodes: Vec<TestApp>,
    next: std::sync::atomic::AtomicUsize,
    project_ref: String,
    anon: String,
    service: String,
    db_url: String,
}

impl Cluster {
    /// The next node's base URL for the project, round-robin.
    fn base(&self) -> String {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.nodes.len();
        format!("{}/p/{}", self.nodes[i].url, self.project_ref)
    }

    fn http(&self) -> &reqwest::Client {
        &self.nodes[0].http
    }

    async fn password(&self, email: &str, password: &str, ip: &str) -> reqwest::Response {
        self.http()
            .post(format!("{}/auth/v1/token?grant_type=password", self.base()))
            .header("apikey", &self.anon)
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("token request")
    }
}

async fn three_nodes(r: &str) -> Cluster {
    let a = TestApp::spawn_with(|c| c.trust_forwarded_for = true).await;
    let p = a.create_project(r).await;
    let mut nodes = vec![a];
    for i in 1..3 {
        let mut config = nodes[0].config.clone();
        config.data_dir = temp_dir(&format!("fbt-node{i}"));
        nodes.push(TestApp::start(config).await);
    }
    Cluster {
        nodes,
        next: Default::default(),
        project_ref: r.to_owned(),
        anon: p.anon,
        service: p.service,
        db_url: p.db_url,
    }
}

/// Lockout and the per-IP sign-in limit, counted across nodes (or
/// processes): `sign_in(email, password, ip)` signs in on the next node.
/// `email` exists with `password`; the project allows 3 failures before a
/// lockout and 10 sign-ins per address and window.
async fn sign_ins_share_lockout_and_rate_limit<F, Fut>(sign_in: F, email: &str, password: &str)
where
    F: Fn(String, String, String) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let attempt = |e: &str, p: &str, ip: &str| sign_in(e.to_owned(), p.to_owned(), ip.to_owned());
    // Three failures spread over three nodes lock the account on all.
    for _ in 0..3 {
        assert_eq!(attempt(email, "wrong", "198.51.100.2").await.status(), 400);
    }
    for _ in 0..3 {
        let resp = attempt(email, password, "198.51.100.3").await;
        assert_eq!(resp.status(), 429, "locked on every node");
    }
    // Ten sign-ins per window from one address, whichever node answers.
    let mut statuses = Vec::new();
    for i in 0..12 {
        let resp = attempt(&format!("nobody{i}@example.com"), "x", "203.0.113.9").await;
        statuses.push(resp.status().as_u16());
    }
    assert!(
        statuses[..10].iter().all(|s| *s == 400) && statuses[10..].iter().all(|s| *s == 429),
        "the 11th attempt is limited across nodes: {statuses:?}"
    );
}

#[tokio::test]
async fn three_nodes_share_lockout_rate_limits_sessions_and_schema() {
    let c = three_nodes("three-nodes").await;
    let config = c
        .http()
        .put(format!("{}/auth/v1/admin/config", c.base()))
        .header("apikey", &c.service)
        .bearer_auth(&c.service)
        .json(
            &json!({"mailer_autoconfirm": true, "lockout_max_attempts": 3,
                      "lockout_duration_secs": 60, "rate_limit_sign_in_sign_ups": 10,
                      "rate_limit_window_secs": 60}),
        )
        .send()
        .await
        .expect("config");
    assert_eq!(config.status(), 200);

    // Sign up on one node, sign in on the next, refresh on the third.
    let signup = c
        .http()
        .post(format!("{}/auth/v1/signup", c.base()))
        .header("apikey", &c.anon)
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"email": "multi@example.com", "password": "right-password"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 200);
    let session: Value = c
        .password("multi@example.com", "right-password", "198.51.100.1")
        .await
        .json()
        .await
        .expect("session");
    let refresh = session["refresh_token"].as_str().expect("refresh token");
    let refreshed = c
        .http()
        .post(format!(
            "{}/auth/v1/token?grant_type=refresh_token",
            c.base()
        ))
        .header("apikey", &c.anon)
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), 200);

    let nodes = &c;
    sign_ins_share_lockout_and_rate_limit(
        |email, password, ip| async move { nodes.password(&email, &password, &ip).await },
        "multi@example.com",
        "right-password",
    )
    .await;

    // Schema cache: every node has served the project, then a table appears;
    // every node serves it (DDL bumps the version each node checks).
    for _ in 0..3 {
        let resp = c
            .http()
            .get(format!("{}/rest/v1/", c.base()))
            .header("apikey", &c.anon)
            .send()
            .await
            .expect("openapi");
        assert_eq!(resp.status(), 200);
    }
    let owner: tokio_postgres::Config = c.db_url.parse().expect("db_url");
    ferrobase_server::db::connect(&owner)
        .await
        .expect("owner")
        .batch_execute(
            "create table things (id serial primary key, name text);
             grant select, insert on things to anon; grant usage on sequence things_id_seq to anon;",
        )
        .await
        .expect("ddl");
    let write = c
        .http()
        .post(format!("{}/rest/v1/things", c.base()))
        .header("apikey", &c.anon)
        .json(&json!({"name": "written on one node"}))
        .send()
        .await
        .expect("insert");
    assert_eq!(write.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while seen < 3 && Instant::now() < deadline {
        let rows: Value = c
            .http()
            .get(format!("{}/rest/v1/things?select=name", c.base()))
            .header("apikey", &c.anon)
            .send()
            .await
            .expect("read")
            .json()
            .await
            .expect("json");
        if rows == json!([{"name": "written on one node"}]) {
            seen += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(seen, 3, "all three nodes serve the new table and its row");

    // The admin API of any node sees the project created on the first.
    let resp = c.nodes[2]
        .admin(Method::GET, "/platform/v1/projects/three-nodes")
        .send()
        .await
        .expect("get project on node 3");
    assert_eq!(resp.status(), 200);
}
