//! The `ferrobase` command line against a control plane (DATABASE_URL mode).

use serde_json::Value;

use crate::support::{fresh_database, temp_dir};

pub(crate) async fn ferrobase(env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferrobase"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("FERROBASE_ADMIN_PASSWORD")
        .output()
        .await
        .expect("run ferrobase");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn project_and_admin_commands() {
    let db = fresh_database().await;
    let data = temp_dir("fbt-cli");
    let data = data.to_string_lossy().into_owned();
    let key = ferrobase_server::crypto::SecretBox::generate_key_text();
    let env = [
        ("DATABASE_URL", db.as_str()),
        ("FERROBASE_DATA_DIR", data.as_str()),
        ("FERROBASE_ENCRYPTION_KEY", key.as_str()),
        ("FERROBASE_PUBLIC_URL", "https://api.example.test"),
    ];
    let (ok, out, err) = ferrobase(&env, &["project", "create", "from-cli", "--json"]).await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(created["ref"], "from-cli");
    assert_eq!(created["url"], "https://api.example.test/p/from-cli");
    for field in ["anon_key", "service_role_key", "db_url"] {
        assert!(
            created[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    let cfg: tokio_postgres::Config = created["db_url"].as_str().unwrap().parse().unwrap();
    assert!(
        ferrobase_server::db::connect(&cfg).await.is_ok(),
        "db_url connects"
    );

    let (ok, out, _) = ferrobase(&env, &["project", "list", "--json"]).await;
    assert!(ok);
    let list: Vec<Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list.len(), 1);

    let (ok, _, err) = ferrobase(&env, &["project", "create", "from-cli"]).await;
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = ferrobase(&env, &["project", "create", "Bad_Ref"]).await;
    assert!(!ok && err.contains("lowercase"), "{err}");

    let (ok, out, err) = ferrobase(&env, &["admin", "create", "ops@example.test"]).await;
    assert!(ok, "{err}");
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("generated password printed");
    let (ok, _, _) = ferrobase(
        &env,
        &[
            "admin",
            "reset-password",
            "ops@example.test",
            "--password",
            "a new long password",
        ],
    )
    .await;
    assert!(ok);
    assert_ne!(password, "a new long password");
    let (ok, _, err) = ferrobase(&env, &["admin", "reset-password", "ghost@example.test"]).await;
    assert!(!ok && err.contains("No admin"), "{err}");

    let (ok, _, err) = ferrobase(&env, &["migrate"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = ferrobase(&env, &["project", "delete", "from-cli"]).await;
    assert!(ok, "{err}");
    assert!(ferrobase_server::db::connect(&cfg).await.is_err());
    let _ = std::fs::remove_dir_all(&data);
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts `ferrobase serve` on the embedded default and waits until it is ready.
async fn start_server(data: &str, port: u16) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferrobase"))
        .env("FERROBASE_DATA_DIR", data)
        .env("FERROBASE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FERROBASE_LOG_FORMAT", "json")
        .env_remove("DATABASE_URL")
        .env_remove("FERROBASE_ENCRYPTION_KEY")
        .env_remove("FERROBASE_ADMIN_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ferrobase");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return child;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ferrobase exited early"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "ferrobase not ready in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub(crate) async fn stdout_of(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            s.read_to_string(&mut out),
        )
        .await;
    }
    out
}

fn banner_key(banner: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("anon key"))
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|| panic!("no anon key in banner: {banner}"))
}

pub(crate) async fn interrupt(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("pid").to_string();
    let ok = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(ok.success());
    tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("graceful shutdown within 30 s")
        .unwrap()
}

fn postgres_running(data: &str) -> bool {
    std::path::Path::new(&format!("{data}/postgres/postmaster.pid")).exists()
}

#[tokio::test]
async fn serve_embedded_default_restarts_adopts_after_crash_and_stops_cleanly() {
    let data = temp_dir("fbt-serve");
    let data = data.to_string_lossy().into_owned();
    let port = free_port();

    // First start: cluster created, banner with keys and a generated password.
    let mut server = start_server(&data, port).await;
    // The CLI works against the same data dir while the server runs.
    let (ok, out, err) = ferrobase(
        &[
            ("FERROBASE_DATA_DIR", data.as_str()),
            ("FERROBASE_PUBLIC_URL", &format!("http://127.0.0.1:{port}")),
        ],
        &["project", "create", "side-car", "--json"],
    )
    .await;
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let jwks = reqwest::get(format!(
        "{}/auth/v1/.well-known/jwks.json",
        created["url"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(
        jwks.status(),
        200,
        "the running server serves a project the CLI created"
    );
    assert!(interrupt(&mut server).await.success());
    let first = stdout_of(&mut server).await;
    assert!(first.contains("Password"), "{first}");
    assert!(
        !postgres_running(&data),
        "Ctrl-C stops the Postgres the server started"
    );

    // Second start: same keys; then a crash (SIGKILL) leaves Postgres running.
    let mut server = start_server(&data, port).await;
    server.kill().await.unwrap();
    let second = stdout_of(&mut server).await;
    assert_eq!(
        banner_key(&second),
        banner_key(&first),
        "same keys on restart"
    );
    assert!(
        postgres_running(&data),
        "postgres outlives a crashed server"
    );

    // Third start adopts the orphaned cluster and still stops it at the end.
    let mut server = start_server(&data, port).await;
    assert!(interrupt(&mut server).await.success());
    let third = stdout_of(&mut server).await;
    assert_eq!(banner_key(&third), banner_key(&first));
    assert!(
        !postgres_running(&data),
        "the adopted cluster is stopped too"
    );
    let _ = std::fs::remove_dir_all(&data);
}
