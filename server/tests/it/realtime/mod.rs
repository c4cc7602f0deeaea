//! The realtime hub (issue 12) over real sockets: the unmodified
//! `socket.io-client` (Node) and `python-socketio` clients run scripted
//! sessions (`tests/peers/realtime_js.mjs`, `tests/peers/realtime_py.py`);
//! an RLS matrix for subscribe/publish/history and change events; two server
//! processes on one database; the admin and HTTP publish APIs; bad input.

mod admin;
mod limits;
mod peers;
mod sdk;
mod security;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use ferrobase_server::config::RealtimeConfig;

use crate::rest::{Fx, USER_1, USER_2};
use crate::support::TestApp;

/// Tables and policies every realtime test project gets.
pub const SQL: &str = "
create table todos (
  id bigserial primary key,
  owner uuid not null default auth.uid(),
  title text not null,
  done boolean not null default false
);
alter table todos enable row level security;
create policy own_all on todos for all to authenticated
  using (owner = auth.uid()) with check (owner = auth.uid());
-- room:{user id} is private to that user; announce:* is readable by users, writable by nobody.
create policy rt_read on realtime.messages for select to authenticated
  using (realtime.topic() = 'room:' || auth.uid()::text or realtime.topic() like 'announce:%');
create policy rt_write on realtime.messages for insert to authenticated
  with check (realtime.topic() = 'room:' || auth.uid()::text);
";

/// A server with a realtime-ready project: channels `public:%` (public),
/// `room:%` and `announce:%` (private), `off:%` (disabled), and change
/// events on `public.todos`.
pub async fn fixture(r: &str) -> Fx {
    fixture_with(r, |_| {}).await
}

/// [`fixture`] on a server whose realtime settings `adjust` changes first.
pub async fn fixture_with(r: &str, adjust: impl FnOnce(&mut RealtimeConfig)) -> Fx {
    let t = TestApp::spawn_with(|c| adjust(&mut c.realtime)).await;
    let p = t.create_project(r).await;
    t.owner_sql(&p, SQL).await;
    let fx = Fx {
        t,
        p,
        project_ref: r.to_owned(),
    };
    for body in [
        json!({"pattern": "public:%", "public": true}),
        json!({"pattern": "room:%"}),
        json!({"pattern": "announce:%"}),
        json!({"pattern": "off:%", "public": true, "enabled": false}),
    ] {
        let resp = admin_req(&fx, reqwest::Method::POST, "/admin/v1/realtime/channels")
            .json(&body)
            .send()
            .await
            .expect("create channel");
        assert_eq!(resp.status(), 201, "create channel {body}");
    }
    let resp = admin_req(
        &fx,
        reqwest::Method::PUT,
        "/admin/v1/realtime/changes/public/todos",
    )
    .json(&json!({}))
    .send()
    .await
    .expect("enable changes");
    assert_eq!(resp.status(), 200, "enable changes");
    fx
}

/// A request to `{project}{path}` with the service-role key.
pub fn admin_req(fx: &Fx, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    fx.t.http
        .request(method, format!("{}{path}", fx.p.url))
        .header("apikey", &fx.p.service)
        .bearer_auth(&fx.p.service)
}

/// A token of this project with `claims` and an explicit expiry.
pub async fn token_exp(fx: &Fx, mut claims: Value, exp: u64) -> String {
    let project = ferrobase_server::platform::projects::load(&fx.t.app.platform, &fx.project_ref)
        .await
        .expect("load project")
        .expect("project exists");
    claims["ref"] = json!(fx.project_ref);
    claims["exp"] = json!(exp);
    project.keys[0].sign(&claims).expect("sign")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The spec every peer script reads: URLs and tokens of the fixture.
pub async fn spec(fx: &Fx, scenario: &str) -> Value {
    let other =
        fx.t.create_project(&format!("{}-other", fx.project_ref))
            .await;
    json!({
        "scenario": scenario,
        "url": fx.p.url,
        "anon": fx.p.anon,
        "service": fx.p.service,
        "userA": fx.user_token(USER_1).await,
        "userB": fx.user_token(USER_2).await,
        "userASub": USER_1,
        "userBSub": USER_2,
        "forged": format!("{}x", &fx.p.anon[..fx.p.anon.len() - 1]),
        "otherProjectKey": other.anon,
        "expired": token_exp(fx, json!({"role": "authenticated", "sub": USER_1}), now() - 60).await,
    })
}

/// `$name`, or a panic telling how to get it.
pub fn env_path(name: &str) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{name} is not set: run the tests with `cargo xtask test`, which installs the peer clients")
    })
}

/// Runs a peer script with the spec and fails the test with its output
/// unless it prints `checks passed`.
pub async fn run_script(program: PathBuf, script: &str, spec: &Value) {
    let script = env_path("FERROBASE_PEERS_DIR").join(script);
    let out = tokio::process::Command::new(&program)
        .arg(&script)
        .arg(spec.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .unwrap_or_else(|_| panic!("{} timed out", script.display()))
        .unwrap_or_else(|e| panic!("could not start {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("checks passed"),
        "{} {} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        program.display(),
        script.display(),
        out.status
    );
}
