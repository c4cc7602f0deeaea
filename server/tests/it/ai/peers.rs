//! The official `openai` clients (Python, and npm through
//! `tests/peers/openai_js.mjs`) against the gateway, and the `fakellm` server
//! (PyPI) as an upstream. They come from `tests/peers/requirements.txt` and
//! `package.json`, installed by `cargo xtask test`; without them the Python
//! tests are skipped (or fail under `FERROBASE_REQUIRE_PEERS`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::{Ai, Mode, Stub};
use crate::auth::{missing_peer, python_with};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/ai/peers/openai_check.py")
}

async fn run_check(python: PathBuf, ai: &Ai, token: &str, mode: &str) {
    let mut cmd = Command::new(python);
    cmd.arg(script())
        .env("FB_AI_URL", format!("{}/ai/v1", ai.p.url))
        .env("FB_TOKEN", token)
        .env("FB_ANON", &ai.p.anon)
        .env("FB_MODE", mode)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run python"))
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("openai OK"),
        "openai client failed:\n{text}"
    );
}

#[tokio::test]
async fn the_openai_python_client_works_unchanged() {
    let Some(python) = python_with("openai") else {
        return missing_peer("Python openai (pip)");
    };
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-py", Some(&up)).await;
    ai.settings(json!({"models": ["stub-model", "stub-embed", "stub-image"], "aliases": {"fast": "stub-model"}}))
        .await;
    let (token, _) = ai.user("py@example.com").await;
    run_check(python, &ai, &token, "stub").await;
    // Every call was metered for that user, the stream included.
    let u = ai.wait_usage(6).await;
    assert_eq!(u["totals"]["estimated_requests"], 0, "{u}");
}

#[tokio::test]
async fn the_openai_npm_client_works_unchanged() {
    let up = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-js", Some(&up)).await;
    ai.settings(json!({"models": ["stub-model", "stub-embed", "stub-image"], "aliases": {"fast": "stub-model"}}))
        .await;
    let (token, _) = ai.user("js@example.com").await;
    let spec = json!({"url": format!("{}/ai/v1", ai.p.url), "token": token, "anon": ai.p.anon});
    crate::realtime::run_script(
        crate::realtime::env_path("FERROBASE_PEERS_NODE"),
        "openai_js.mjs",
        &spec,
    )
    .await;
    // Every call was metered for that user, the stream included.
    let u = ai.wait_usage(5).await;
    assert_eq!(u["totals"]["estimated_requests"], 0, "{u}");
}

/// A free loopback port (there is a small window before the peer binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills the child when dropped (a failing test must not leave it running).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn fakellm_as_an_upstream_with_fallback_and_estimated_stream_usage() {
    let Some(python) = python_with("fakellm") else {
        return missing_peer("fakellm (pip)");
    };
    let dir = crate::support::temp_dir("fb-fakellm");
    let config = dir.join("fakellm.yaml");
    std::fs::write(
        &config,
        "version: 1\nrules:\n  - name: limited\n    when:\n      messages_contain: \"limit-me\"\n    respond:\n      status: 429\n      error: \"Rate limit exceeded (mock)\"\n  - name: hello\n    when:\n      messages_contain: \"hello\"\n    respond:\n      content: \"Hi from fakellm behind the gateway\"\n",
    )
    .unwrap();
    let port = free_port();
    let _server = Child(
        Command::new(&python)
            .args([
                "-m",
                "fakellm.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .arg("--config")
            .arg(&config)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fakellm"),
    );
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http
            .get(format!("http://127.0.0.1:{port}/_fakellm/stats"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "fakellm did not start");
    let stub = Stub::start(Mode::Ok).await;
    let ai = Ai::new("ai-fakellm", None).await;
    let resp = ai
        .admin(reqwest::Method::POST, "/providers")
        .json(
            &json!({"name": "fakellm", "base_url": format!("http://127.0.0.1:{port}/v1"),
            "api_key": "sk-fakellm-000000000", "priority": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    ai.provider("stub", &stub, "sk-stub-0000000000000", 2).await;
    let (token, _) = ai.user("fake@example.com").await;
    run_check(python, &ai, &token, "fakellm").await;
    assert_eq!(stub.hits(), 1, "only the rate-limited call fell back");
    ai.wait_usage(3).await;
    let rows = ai.rows().await;
    // Rows are written when each call ends (a stream's after its estimate): compare as a set.
    let mut upstreams: Vec<&str> = rows.iter().filter_map(|r| r["upstream"].as_str()).collect();
    upstreams.sort_unstable();
    assert_eq!(upstreams, ["fakellm", "fakellm", "stub"]);
    // fakellm's stream carries no usage chunk: counted by the gateway; its JSON answer reports usage.
    let estimated: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["estimated"] == true).collect();
    assert_eq!(estimated.len(), 1, "{rows:?}");
    assert_eq!(estimated[0]["upstream"], "fakellm");
    // "Hi from fakellm behind the gateway" is 8 tokens in o200k_base.
    assert_eq!(estimated[0]["completion_tokens"], 8, "{}", estimated[0]);
}
