//! The programs in `examples/` (their own Cargo workspace, using the SDK by
//! path), built and run with `cargo run` against a throwaway server, as a
//! user would run them; each checks its own results and exits non-zero on a
//! failed check, and the test also reads what it printed.
//!
//! The examples build into the same `CARGO_TARGET_DIR` as the tests (their
//! workspace copies the server's dev profile and lock versions), so only the
//! crates whose features differ are compiled again.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{TestApp, TestProject};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cargo run -p NAME` in the examples workspace with the project's URL
/// and keys (each given only when `Some`). Runs through tokio so the
/// in-process server keeps answering meanwhile.
pub async fn run_example(
    name: &str,
    url: &str,
    anon: Option<&str>,
    service: Option<&str>,
) -> Output {
    run_example_with(name, url, anon, service, &[]).await
}

/// [`run_example`] with extra environment variables.
async fn run_example_with(
    name: &str,
    url: &str,
    anon: Option<&str>,
    service: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.args(["run", "--quiet", "--locked", "--manifest-path"])
        .arg(repo_root().join("examples/Cargo.toml"))
        .args(["-p", name])
        .env("CARGO_TARGET_DIR", target)
        .env("FERROBASE_URL", url)
        .env_remove("FERROBASE_ANON_KEY")
        .env_remove("FERROBASE_SERVICE_ROLE_KEY")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    if let Some(anon) = anon {
        cmd.env("FERROBASE_ANON_KEY", anon);
    }
    if let Some(service) = service {
        cmd.env("FERROBASE_SERVICE_ROLE_KEY", service);
    }
    cmd.output()
        .await
        .unwrap_or_else(|e| panic!("cargo run -p {name}: {e}"))
}

async fn project(t: &TestApp, r: &str) -> TestProject {
    t.create_project(r).await
}

/// Fails with the example's output unless it succeeded and printed every line.
fn expect_lines(name: &str, out: &Output, lines: &[&str]) {
    assert!(out.status.success(), "{name} example: {}", describe(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in lines {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn todo_example_keeps_each_users_rows_private() {
    let t = TestApp::spawn().await;
    let p = project(&t, "ex-todo").await;
    let out = run_example("todo", &p.url, Some(&p.anon), Some(&p.service)).await;
    assert!(out.status.success(), "todo example: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "alice sees 2 todos, bob sees 1",
        "ok: bob cannot read alice's todo by id",
        "ok: bob cannot complete alice's todo",
        "ok: the anon key alone sees no todos",
        "todo example finished",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }

    // A second run (table kept, new users) works too, and the first run's
    // rows are still there, owned by their users.
    let again = run_example("todo", &p.url, Some(&p.anon), Some(&p.service)).await;
    assert!(again.status.success(), "second run: {}", describe(&again));
    let service = ferrobase::Client::new(&p.url, &p.service).expect("client");
    let rows: Vec<serde_json::Value> = service
        .from("todos")
        .select("id")
        .fetch()
        .await
        .expect("todos as service role");
    assert_eq!(rows.len(), 6, "two runs, three todos each");

    // Without the keys the example stops with a message naming the variable.
    let missing = run_example("todo", &p.url, None, None).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("FERROBASE_ANON_KEY"),
        "{}",
        describe(&missing)
    );
    // With the anon key where the service key belongs, admin SQL is refused.
    let wrong = run_example("todo", &p.url, Some(&p.anon), Some(&p.anon)).await;
    assert!(!wrong.status.success(), "{}", describe(&wrong));
}

#[tokio::test]
async fn file_upload_example_shares_files_by_signed_urls() {
    let t = TestApp::spawn().await;
    let p = project(&t, "ex-files").await;
    let out = run_example("file-upload", &p.url, None, Some(&p.service)).await;
    assert!(
        out.status.success(),
        "file-upload example: {}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "created private bucket documents",
        "ok: the file is not public (the unsigned URL is refused)",
        "ok: the signed URL downloads without a key",
        "ok: a tampered signed URL is refused",
        "ok: the signed upload URL takes the file without a key",
        "file-upload example finished",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    let again = run_example("file-upload", &p.url, None, Some(&p.service)).await;
    assert!(again.status.success(), "second run: {}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("bucket documents already exists"));

    // The anon key cannot create the bucket: the example fails.
    let wrong = run_example("file-upload", &p.url, None, Some(&p.anon)).await;
    assert!(!wrong.status.success(), "{}", describe(&wrong));
}

#[tokio::test]
async fn chat_example_exchanges_messages_with_presence() {
    let t = TestApp::spawn().await;
    let p = project(&t, "ex-chat").await;
    let out = run_example("chat", &p.url, Some(&p.anon), Some(&p.service)).await;
    expect_lines(
        "chat",
        &out,
        &[
            "defined private channel chat:%",
            "ok: bob sees alice and himself in the room",
            "ok: alice sees bob join",
            "bob got: <alice> hi bob!",
            "alice got: <bob> hello alice",
            "ok: the room's history has both messages",
            "ok: alice sees bob leave",
            "ok: the anon key alone cannot join a private room",
            "chat example finished",
        ],
    );
    // A second run reuses the channel definition, in a new room.
    let again = run_example("chat", &p.url, Some(&p.anon), Some(&p.service)).await;
    expect_lines("chat", &again, &["channel chat:% already defined"]);

    // Without the service key nothing is set up: the example stops.
    let wrong = run_example("chat", &p.url, Some(&p.anon), Some(&p.anon)).await;
    assert!(!wrong.status.success(), "{}", describe(&wrong));
}

#[tokio::test]
async fn webhook_receiver_example_verifies_signed_deliveries() {
    let t = TestApp::spawn().await;
    let p = project(&t, "ex-hooks").await;
    let out = run_example("webhook-receiver", &p.url, None, Some(&p.service)).await;
    expect_lines(
        "webhook-receiver",
        &out,
        &[
            "registered webhook endpoint",
            "ok: the signed db.insert delivery verified",
            "receiver: refused a delivery",
            "ok: a forged delivery is refused (401)",
            "ok: the delivery log shows the delivery succeeded",
            "webhook-receiver example finished",
        ],
    );
    // It cleans up after itself: no endpoint is left behind.
    let service = ferrobase::Client::new(&p.url, &p.service).expect("client");
    let left = service.webhooks().list().await.expect("list endpoints");
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left}");
    // Secrets never reach the output.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("whsec_"));

    // The anon key may not register endpoints.
    let wrong = run_example("webhook-receiver", &p.url, None, Some(&p.anon)).await;
    assert!(!wrong.status.success(), "{}", describe(&wrong));
}

#[tokio::test]
async fn ai_chat_example_streams_through_the_gateway() {
    use crate::ai::{Mode, Stub};
    let upstream = Stub::start(Mode::Ok).await;
    // The upstream listens on loopback: let the outbound guard reach it.
    let t = TestApp::spawn_with(|c| c.outbound_allow_private = true).await;
    let p = project(&t, "ex-ai").await;
    let key = "sk-example-upstream-0123456789";
    let env = [
        ("AI_BASE_URL", upstream.url.as_str()),
        ("AI_API_KEY", key),
        ("AI_MODEL", "stub-model"),
    ];
    let out = run_example_with("ai-chat", &p.url, Some(&p.anon), Some(&p.service), &env).await;
    expect_lines(
        "ai-chat",
        &out,
        &[
            "ok: the provider's key is stored, not echoed",
            "provider example-upstream ready; alias assistant -> stub-model",
            "assistant: Hello world",
            "ok: the answer streamed in",
            "usage: 11 prompt + 4 completion tokens",
            "ok: the anon key alone is refused (anon_not_allowed)",
            "ai-chat example finished",
        ],
    );
    // The upstream got the alias resolved and the server-side key.
    let body = upstream.seen.body.lock().expect("lock").clone();
    assert_eq!(body.map(|b| b["model"].clone()), Some("stub-model".into()));
    let auth = upstream
        .seen
        .headers
        .lock()
        .expect("lock")
        .get("authorization")
        .cloned();
    assert_eq!(
        auth.and_then(|v| v.to_str().ok().map(str::to_owned)),
        Some(format!("Bearer {key}"))
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(key));
    // A second run updates the provider instead of failing on the name.
    let again = run_example_with("ai-chat", &p.url, Some(&p.anon), Some(&p.service), &env).await;
    expect_lines("ai-chat", &again, &["ai-chat example finished"]);

    // Without the upstream settings the example says which one is missing.
    let missing = run_example("ai-chat", &p.url, Some(&p.anon), Some(&p.service)).await;
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("AI_BASE_URL"),
        "{}",
        describe(&missing)
    );
}

#[tokio::test]
async fn functions_example_deploys_invokes_and_rolls_back() {
    // SKIPPED without Deno, unless FERROBASE_REQUIRE_PEERS is set.
    let Some(deno) = crate::functions::deno() else {
        return;
    };
    let t = TestApp::spawn_with(|c| c.functions.deno_bin = Some(deno)).await;
    let p = project(&t, "ex-fn").await;
    let out = run_example("functions", &p.url, Some(&p.anon), Some(&p.service)).await;
    expect_lines(
        "functions",
        &out,
        &[
            "ok: the secret is stored, its value not listed",
            "deployed hello (version 1)",
            "hello answered: Bonjour, Ada! (v1)",
            "ok: the function's own error is a typed error (422 name_required)",
            "ok: the new version serves",
            "ok: rolled back to version 1",
            "ok: console.log output is in the function's logs",
            "functions example finished",
        ],
    );
    // Deploying needs the service key.
    let wrong = run_example("functions", &p.url, Some(&p.anon), Some(&p.anon)).await;
    assert!(!wrong.status.success(), "{}", describe(&wrong));
}
