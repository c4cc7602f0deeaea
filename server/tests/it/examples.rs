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

fn describe(out: &Output) -> String {
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
async fn run_example(name: &str, url: &str, anon: Option<&str>, service: Option<&str>) -> Output {
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
