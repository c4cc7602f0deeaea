//! `ferrobase doctor`: checks the machine for what the platform needs and
//! says, for each problem, the one thing to do about it.
//!
//! Checks: the Postgres server binaries and their version (or the
//! `DATABASE_URL` server answering), the data dir (writable; reachable by the
//! `postgres` user when we are root), the listen port, Deno for edge
//! functions, free disk space, and the production secrets.

use std::path::Path;
use std::process::Stdio;

use serde::Serialize;

use crate::config::{Config, Environment};
use crate::db::embedded::{RELOCATED_BASE, find_bin_dir, postgres_can_enter};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but something optional is off or worth knowing.
    Warn,
    /// Ferrobase cannot run like this.
    Fail,
}

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check, prints the report and fails when a check failed.
pub async fn run(config: &Config, json: bool) -> anyhow::Result<()> {
    let checks = checks(config).await;
    if json {
        println!("{}", serde_json::to_string(&checks)?);
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{mark}  {:<10} {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("      {:<10} → {fix}", "");
            }
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed; see above");
    }
    Ok(())
}

/// All checks, in the order they are printed.
pub async fn checks(config: &Config) -> Vec<Check> {
    let mut out = vec![postgres(config).await, data_dir(config).await];
    out.push(port(config).await);
    out.push(deno().await);
    out.push(disk(&config.data_dir).await);
    out.push(secrets(config));
    out
}

async fn postgres(config: &Config) -> Check {
    if let Some(url) = &config.database_url {
        let Ok(cfg) = url.parse::<tokio_postgres::Config>() else {
            return Check::fail(
                "postgres",
                "DATABASE_URL is not a valid connection string",
                "use the form postgres://user:password@host:5432/dbname",
            );
        };
        return match crate::db::connect(&cfg).await {
            Ok(client) => {
                let version = client
                    .query_one("show server_version", &[])
                    .await
                    .map(|r| r.get::<_, String>(0))
                    .unwrap_or_default();
                Check::ok(
                    "postgres",
                    format!("DATABASE_URL answers (PostgreSQL {version})"),
                )
            }
            Err(e) => Check::fail(
                "postgres",
                format!("DATABASE_URL does not answer: {e}"),
                "start that server, fix DATABASE_URL, or unset it to use the embedded cluster",
            ),
        };
    }
    let Ok(bin) = find_bin_dir(config.pg_bin.as_deref()) else {
        return Check::fail(
            "postgres",
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found",
            "install them (Debian/Ubuntu: apt-get install postgresql) or set FERROBASE_PG_BIN",
        );
    };
    let version = tokio::process::Command::new(bin.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let major = version
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    match major {
        Some(m) if m >= 14 => Check::ok("postgres", format!("{version} in {}", bin.display())),
        Some(_) => Check::fail(
            "postgres",
            format!("{version} in {} is too old", bin.display()),
            "install PostgreSQL 14 or newer and point FERROBASE_PG_BIN at it",
        ),
        None => Check::fail(
            "postgres",
            format!("{} does not run", bin.join("postgres").display()),
            "reinstall the PostgreSQL server package",
        ),
    }
}

async fn data_dir(config: &Config) -> Check {
    let dir = &config.data_dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Check::fail(
            "data dir",
            format!("cannot create {}: {e}", dir.display()),
            "set FERROBASE_DATA_DIR to a directory you can write",
        );
    }
    let probe = dir.join(".doctor-probe");
    if let Err(e) = std::fs::write(&probe, b"") {
        return Check::fail(
            "data dir",
            format!("cannot write in {}: {e}", dir.display()),
            "set FERROBASE_DATA_DIR to a directory you can write",
        );
    }
    let _ = std::fs::remove_file(&probe);
    let shown = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    let as_root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if config.database_url.is_none() && as_root && !postgres_can_enter(&shown).await {
        return Check::warn(
            "data dir",
            format!(
                "{}: the postgres user cannot enter it, so the cluster will live under {RELOCATED_BASE}",
                shown.display()
            ),
            "nothing to do; or set FERROBASE_DATA_DIR to a directory outside a private home",
        );
    }
    Check::ok("data dir", format!("{} is writable", shown.display()))
}

async fn port(config: &Config) -> Check {
    let addr = config.listen;
    match tokio::net::TcpListener::bind(addr).await {
        Ok(_) => Check::ok("port", format!("{addr} is free")),
        Err(e) => {
            let ours = reqwest::Client::new()
                .get(format!("http://{addr}/health"))
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ours {
                Check::warn(
                    "port",
                    format!("{addr} is in use by a running Ferrobase server"),
                    "stop it first, or set FERROBASE_LISTEN to another address",
                )
            } else {
                Check::fail(
                    "port",
                    format!("{addr} cannot be used: {e}"),
                    "stop what uses it, or set FERROBASE_LISTEN to another address",
                )
            }
        }
    }
}

async fn deno() -> Check {
    let configured = std::env::var_os("FERROBASE_DENO_BIN").map(std::path::PathBuf::from);
    let found = configured.clone().or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("deno"))
                .find(|p| p.is_file())
        })
    });
    let Some(bin) = found else {
        return Check::warn(
            "deno",
            "not found: edge functions will be off",
            "pip install deno (or npm i -g deno), or set FERROBASE_DENO_BIN",
        );
    };
    match tokio::process::Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
    {
        Ok(o) if o.status.success() => {
            let first = String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            Check::ok("deno", format!("{first} at {}", bin.display()))
        }
        _ => Check::warn(
            "deno",
            format!("{} does not run: edge functions will be off", bin.display()),
            "reinstall Deno, or set FERROBASE_DENO_BIN to a working binary",
        ),
    }
}

async fn disk(dir: &Path) -> Check {
    let out = tokio::process::Command::new("df")
        .args(["-Pk"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .await;
    let free_kib = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines()
            .nth(1)?
            .split_whitespace()
            .nth(3)?
            .parse::<u64>()
            .ok()
    });
    match free_kib {
        Some(kib) if kib < 1024 * 1024 => Check::warn(
            "disk",
            format!("only {} MiB free under {}", kib / 1024, dir.display()),
            "free some space or move FERROBASE_DATA_DIR to a larger disk",
        ),
        Some(kib) => Check::ok("disk", format!("{:.1} GiB free", kib as f64 / 1048576.0)),
        None => Check::warn(
            "disk",
            "could not read free space (df)",
            "check free space by hand",
        ),
    }
}

fn secrets(config: &Config) -> Check {
    if config.env != Environment::Production {
        return Check::ok(
            "secrets",
            "development: missing secrets are generated into the data dir",
        );
    }
    let mut missing = Vec::new();
    if config.encryption_key.is_none() {
        missing.push("FERROBASE_ENCRYPTION_KEY");
    }
    if config.admin_password.is_none() {
        missing.push("FERROBASE_ADMIN_PASSWORD");
    }
    if missing.is_empty() {
        Check::ok("secrets", "production secrets are set")
    } else {
        Check::fail(
            "secrets",
            format!("production needs {}", missing.join(" and ")),
            "set them (the key: 32 random bytes as base64, e.g. `openssl rand -base64 32`)",
        )
    }
}
