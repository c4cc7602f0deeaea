//! The official clients, unchanged, against `/auth/v1`: `@supabase/auth-js`
//! (Node) and `supabase-auth` (Python) sign up, sign in, refresh, update the
//! user and sign out.
//!
//! The peers are found where `cargo xtask test` installs them (see
//! `super::node_modules_with`, `super::python_with`); without them the tests
//! say SKIPPED (or fail when `FERROBASE_REQUIRE_PEERS` is set).

use std::path::Path;

use serde_json::json;

use super::Auth;

#[tokio::test]
async fn supabase_auth_js_works_unchanged() {
    let Some(modules) = super::node_modules_with("@supabase/auth-js") else {
        super::missing_peer("@supabase/auth-js");
        return;
    };
    let a = Auth::new("auth-js", json!({"mailer_autoconfirm": true})).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/auth/peers/auth_js.cjs");
    let out = tokio::process::Command::new(super::node_bin())
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
    let python = super::python_with("supabase_auth");
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
