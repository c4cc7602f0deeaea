//! The official clients, unchanged: `@supabase/storage-js` and
//! `tus-js-client` (Node) and Python `storage3`.
//!
//! Installed by `cargo xtask test` from `tests/peers/` (found at
//! `$FERROBASE_PEERS_DIR/node_modules` and `$FERROBASE_PEERS_VENV/bin/python`;
//! a missing peer fails the test there). Run outside xtask without them, the
//! test is skipped with a loud message.

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use super::{Backend, Env};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/storage/peers")
        .join(name)
}

fn skip(what: &str) {
    // Under `cargo xtask test` the peers are installed: missing is a failure.
    if std::env::var_os("FERROBASE_REQUIRE_PEERS").is_some() {
        panic!("{what} is missing from the peers installed by cargo xtask test (tests/peers)");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {what} is not installed (see tests/it/storage/peers.rs) !!!!!!!!\n"
    );
}

fn node_modules() -> Option<PathBuf> {
    std::env::var("FERROBASE_PEERS_DIR")
        .map(|d| PathBuf::from(d).join("node_modules"))
        .ok()
        .into_iter()
        .chain([repo_root().join(".peers/node_modules")])
        .find(|p| p.join("@supabase/storage-js").exists() && p.join("tus-js-client").exists())
}

fn python() -> Option<PathBuf> {
    std::env::var("FERROBASE_PEERS_VENV")
        .map(PathBuf::from)
        .ok()
        .into_iter()
        .chain([repo_root().join(".peers/venv")])
        .map(|v| v.join("bin/python"))
        .find(|p| {
            p.exists()
                && Command::new(p)
                    .args(["-c", "import storage3"])
                    .status()
                    .is_ok_and(|s| s.success())
        })
}

fn run(mut cmd: Command, env: &Env) -> String {
    let out = cmd
        .env("FB_URL", &env.p.url)
        .env("FB_SERVICE", &env.p.service)
        .env("FB_ANON", &env.p.anon)
        .output()
        .expect("run peer");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "peer failed:\n{text}");
    text
}

#[tokio::test]
async fn storage_js_and_tus_js_client_work_unchanged() {
    let Some(modules) = node_modules() else {
        return skip("@supabase/storage-js + tus-js-client (npm)");
    };
    let env = Env::new(Backend::Local).await;
    env.bucket(json!({"name": "big"})).await;
    // ESM resolves packages next to the script: run a copy inside node_modules' parent.
    let dir = crate::support::temp_dir("fb-peer-js");
    std::fs::copy(script("storage_js.mjs"), dir.join("check.mjs")).unwrap();
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
    let img = image::RgbaImage::from_fn(80, 40, |x, y| image::Rgba([x as u8, y as u8, 0, 255]));
    image::DynamicImage::ImageRgba8(img)
        .save_with_format(dir.join("pic.png"), image::ImageFormat::Png)
        .unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("check.mjs"))
        .env("FB_PNG", dir.join("pic.png"));
    let out = tokio::task::spawn_blocking(move || run(cmd, &env))
        .await
        .unwrap();
    assert!(out.contains("storage-js + tus-js-client OK"), "{out}");
}

#[tokio::test]
async fn python_storage3_works_unchanged() {
    let Some(python) = python() else {
        return skip("Python storage3 (pip)");
    };
    let env = Env::new(Backend::Local).await;
    let mut cmd = Command::new(python);
    cmd.arg(script("storage3_check.py"));
    let out = tokio::task::spawn_blocking(move || run(cmd, &env))
        .await
        .unwrap();
    assert!(out.contains("storage3 OK"), "{out}");
}
