//! The official clients, unchanged, against `/auth/v1`: `@supabase/auth-js`
//! (Node) and `supabase-auth` (Python) sign up, sign in, refresh, update the
//! user and sign out. The Python peer is found like aiosmtpd
//! (`FERROBASE_PEERS_PYTHON`, `.peers/venv`, `python3`).
//!
//! The peer is found in `FERROBASE_PEERS_NODE_MODULES`, or the repo's
//! `.peers/node_modules` (installed by `cargo xtask` with the other peers,
//! PEERS.md); without it the test says SKIPPED (or fails when
//! `FERROBASE_REQUIRE_PEERS` is set).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::Auth;

fn node_modules() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        std::env::var_os("FERROBASE_PEERS_NODE_MODULES").map(PathBuf::from),
        Some(repo.join(".peers/node_modules")),
    ]
    .into_iter()
    .flatten()
    .find(|dir| dir.join("@supabase/auth-js/package.json").exists())
}

#[tokio::test]
async fn supabase_auth_js_works_unchanged() {
    let Some(modules) = node_modules() else {
        super::missing_peer("@supabase/auth-js");
        return;
    };
    let a = Auth::new("auth-js", json!({"mailer_autoconfirm": true})).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/auth/peers/auth_js.cjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("AUTH_URL", format!("{}/auth/v1", a.p.url))
        .env("ANON_KEY", &a.p.anon)
        .env("SERVICE_KEY", &a.p.service)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "auth-js failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn python_supabase_auth_works_unchanged() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = [
        std::env::var_os("FERROBASE_PEERS_PYTHON").map(PathBuf::from),
        Some(repo.join(".peers/venv/bin/python")),
        Some(PathBuf::from("python3")),
    ]
    .into_iter()
    .flatten()
    .find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import supabase_auth"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let Some(python) = python else {
        super::missing_peer("supabase-auth (Python)");
        return;
    };
    let a = Auth::new("auth-py", json!({"mailer_autoconfirm": true})).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/auth/peers/python_client.py");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .env("AUTH_URL", format!("{}/auth/v1", a.p.url))
        .env("ANON_KEY", &a.p.anon)
        .env("SERVICE_KEY", &a.p.service)
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "supabase-auth failed:\n{stdout}\n{stderr}"
    );
}
