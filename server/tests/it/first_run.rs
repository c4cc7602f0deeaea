//! The first run as a newcomer does it (issue 10): `ferrobase` as root with
//! its data dir below a private (0700) directory, the banner's commands run
//! as printed, readable logs, CLI URLs matching the running server, `doctor`,
//! and the embedded Postgres restarted after it is killed under load.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{ferrobase, free_port, interrupt, stdout_of};
use crate::support::temp_dir;

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// Starts `ferrobase` on the embedded default with `data` and waits until
/// ready; stderr goes to `log` (a file) so the test can read the logs.
async fn start(data: &Path, port: u16, log: &Path, format: &str) -> tokio::process::Child {
    let stderr = std::fs::File::create(log).expect("log file");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferrobase"))
        .env("FERROBASE_DATA_DIR", data)
        .env("FERROBASE_LISTEN", format!("127.0.0.1:{port}"))
        .env("FERROBASE_LOG_FORMAT", format)
        .env("FERROBASE_PG_SUPERVISE_INTERVAL_MS", "300")
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        .env_remove("FERROBASE_ENCRYPTION_KEY")
        .env_remove("FERROBASE_ADMIN_PASSWORD")
        .env_remove("FERROBASE_PUBLIC_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ferrobase");
    wait_ready(port, Some(&mut child), Duration::from_secs(90)).await;
    child
}

async fn wait_ready(port: u16, mut child: Option<&mut tokio::process::Child>, limit: Duration) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + limit;
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/health/ready"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return;
        }
        if let Some(c) = child.as_deref_mut() {
            assert!(c.try_wait().unwrap().is_none(), "ferrobase exited early");
        }
        assert!(Instant::now() < deadline, "not ready within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shell commands of the banner's "Try it" section, joined over their
/// line continuations.
fn banner_commands(banner: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in banner.lines() {
        let line = line.trim();
        if current.is_empty() && !line.starts_with("curl ") {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

#[tokio::test]
async fn root_in_a_private_home_gets_a_working_server_and_a_guided_banner() {
    // A private "home" (0700) with the data dir inside, as root's home is.
    let home = temp_dir("fbt-home");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = home.join("app").join("ferrobase-data");
    let log = home.join("server.log");
    let port = free_port();

    let mut server = start(&data, port, &log, "pretty").await;

    // The CLI, run beside the server without FERROBASE_PUBLIC_URL, prints
    // the running server's URL (not the default port's).
    let data_s = data.to_string_lossy().into_owned();
    let (ok, out, err) = ferrobase(
        &[("FERROBASE_DATA_DIR", data_s.as_str())],
        &["project", "show", "default", "--json"],
    )
    .await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(out.trim()).expect("project show --json is JSON");
    assert_eq!(shown["url"], format!("http://127.0.0.1:{port}/p/default"));

    assert!(interrupt(&mut server).await.success());
    let banner = stdout_of(&mut server).await;
    let logs = std::fs::read_to_string(&log).unwrap();

    if running_as_root() {
        let location = std::fs::read_to_string(data.join("postgres-location.txt"))
            .expect("the data dir says where the cluster went");
        assert!(
            location.contains("/var/lib/ferrobase/clusters/"),
            "{location}"
        );
        assert!(
            banner.contains("/var/lib/ferrobase/clusters/"),
            "the banner says where the cluster is: {banner}"
        );
        let cluster = location
            .split_whitespace()
            .find(|w| w.starts_with("/var/lib/ferrobase/clusters/"))
            .unwrap()
            .to_owned();
        let _ = std::fs::remove_dir_all(cluster);
    } else {
        assert!(data.join("postgres/PG_VERSION").is_file());
    }

    // The banner is the last thing on the terminal and complete.
    for needle in [
        "Ferrobase is ready",
        "API docs",
        "anon key",
        "Optional parts",
        "email",
    ] {
        assert!(banner.contains(needle), "banner lacks {needle}: {banner}");
    }
    // Readable logs: no JSON objects, no third-party chatter at info.
    assert!(
        !logs.lines().any(|l| l.trim_start().starts_with('{')),
        "terminal logs are not JSON: {logs}"
    );
    assert!(
        !logs.contains("refinery") && !logs.contains("NOTICE"),
        "third-party crates stay at warn: {logs}"
    );
    assert!(logs.contains("listening"), "{logs}");
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test]
async fn banner_commands_work_as_printed_and_json_logs_stay_json() {
    let dir = temp_dir("fbt-banner");
    let data = dir.join("data");
    let log = dir.join("server.log");
    let port = free_port();
    let mut server = start(&data, port, &log, "json").await;

    // Start a second time to read a banner while the server is up: the
    // banner of the first start is printed before we can read stdout, so
    // read it after a clean stop and replay its commands on a restart.
    assert!(interrupt(&mut server).await.success());
    let banner = stdout_of(&mut server).await;
    let commands = banner_commands(&banner);
    assert_eq!(commands.len(), 2, "two curl commands in {banner}");
    let mut server = start(&data, port, &log, "json").await;
    let create = tokio::process::Command::new("sh")
        .args([
            "-c",
            &format!("{} --fail --silent --show-error", commands[0]),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    let read = tokio::process::Command::new("sh")
        .args([
            "-c",
            &format!("{} --fail --silent --show-error", commands[1]),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let rows: Value = serde_json::from_slice(&read.stdout).expect("JSON rows");
    assert_eq!(rows[0]["body"], "hello", "{rows}");

    assert!(interrupt(&mut server).await.success());
    let logs = std::fs::read_to_string(&log).unwrap();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON log line: {line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn killed_postgres_is_restarted_under_load() {
    let dir = temp_dir("fbt-supervise");
    let data = dir.join("data");
    let log = dir.join("server.log");
    let port = free_port();
    let mut server = start(&data, port, &log, "json").await;
    let data_s = data.to_string_lossy().into_owned();
    let (ok, out, err) = ferrobase(
        &[("FERROBASE_DATA_DIR", data_s.as_str())],
        &["project", "show", "default", "--json"],
    )
    .await;
    assert!(ok, "{err}");
    let project: Value = serde_json::from_str(out.trim()).unwrap();
    let url = format!("{}/auth/v1/settings", project["url"].as_str().unwrap());
    let anon = project["anon_key"].as_str().unwrap().to_owned();

    // Load: a stream of requests that touch the project database.
    let http = reqwest::Client::new();
    let load = {
        let (http, url, anon) = (http.clone(), url.clone(), anon.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                if let Ok(r) = http.get(&url).header("apikey", &anon).send().await {
                    statuses.push(r.status().as_u16());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // kill -9 the postmaster.
    let pid_text = std::fs::read_to_string(data.join("postgres/postmaster.pid"))
        .or_else(|_| {
            let location = std::fs::read_to_string(data.join("postgres-location.txt"))?;
            let cluster = location
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .unwrap_or_default()
                .to_owned();
            std::fs::read_to_string(Path::new(&cluster).join("postgres/postmaster.pid"))
        })
        .expect("postmaster.pid");
    let pid = pid_text.lines().next().unwrap().trim().to_owned();
    let killed = tokio::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());

    let statuses = load.await.unwrap();
    assert!(statuses.contains(&200), "served before the kill");
    // Back by itself: ready, and the project answers again.
    wait_ready(port, Some(&mut server), Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http.get(&url).header("apikey", &anon).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "project not served again: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(interrupt(&mut server).await.success());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("the embedded Postgres stopped; restarting it"),
        "the restart is logged with why: {logs}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn doctor_reports_and_fails_with_what_to_do() {
    let dir = temp_dir("fbt-doctor");
    let data = dir.to_string_lossy().into_owned();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("FERROBASE_DATA_DIR", data.as_str()),
        ("FERROBASE_LISTEN", listen.as_str()),
    ];
    let (ok, out, err) = ferrobase(&env, &["doctor", "--json"]).await;
    assert!(ok, "doctor passes on this machine: {out} {err}");
    let checks: Vec<Value> = serde_json::from_str(out.trim()).expect("JSON report");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for name in ["postgres", "data dir", "port", "deno", "disk", "secrets"] {
        assert!(names.contains(&name), "{name} checked: {names:?}");
    }
    let pg = checks.iter().find(|c| c["name"] == "postgres").unwrap();
    assert_eq!(pg["status"], "ok", "{pg}");
    assert!(
        pg["detail"].as_str().unwrap().contains("PostgreSQL"),
        "{pg}"
    );

    // Missing binaries and a taken port: non-zero exit, each with a fix.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let (ok, out, _) = ferrobase(
        &[
            ("FERROBASE_DATA_DIR", data.as_str()),
            ("FERROBASE_LISTEN", taken_addr.as_str()),
            ("FERROBASE_PG_BIN", "/nonexistent/bin"),
        ],
        &["doctor"],
    )
    .await;
    assert!(!ok, "doctor fails: {out}");
    assert!(out.contains("FAIL  postgres"), "{out}");
    assert!(out.contains("FERROBASE_PG_BIN"), "says what to do: {out}");
    assert!(out.contains("FAIL  port"), "{out}");
    assert!(out.contains("FERROBASE_LISTEN"), "{out}");
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}
