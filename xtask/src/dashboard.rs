//! `cargo xtask dashboard`: rebuilds the admin web UI (`dashboard/`) into
//! `dashboard/dist`, which is committed and embedded in the server binary.
//!
//! 1. `ferrobase openapi` → `dashboard/src/api/openapi.json` (the server's
//!    API contract, snapshotted);
//! 2. `npm ci` in `dashboard/` when `package-lock.json` changed since the
//!    last install (stamp file in `node_modules`);
//! 3. `npm run gen:api` (openapi-typescript → `src/api/schema.d.ts`);
//! 4. `npm run build`: type check, `vite build`, then `scripts/stamp.mjs`
//!    (gzip copies and `dist/.source-hash`, which the test
//!    `dashboard::dist_is_fresh` compares with the sources).
//!
//! `--no-api` skips step 1 (no server build needed). Commit `dashboard/dist`,
//! `src/api/openapi.json` and `src/api/schema.d.ts` afterwards.

use std::fs;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, proc, secs, workspace_root};

/// Runs the rebuild; `args` may hold `--no-api`.
pub fn run(args: Vec<String>) -> Result<()> {
    let started = Instant::now();
    let root = workspace_root();
    let dir = root.join("dashboard");
    let mut api = true;
    for a in &args {
        match a.as_str() {
            "--no-api" => api = false,
            other => bail!("unknown argument `{other}` (usage: cargo xtask dashboard [--no-api])"),
        }
    }
    if api {
        println!("xtask: writing dashboard/src/api/openapi.json (ferrobase openapi)");
        let out = cargo()
            .args(["run", "--quiet", "-p", "ferrobase-server", "--", "openapi"])
            .output()
            .context("running `cargo run -p ferrobase-server -- openapi`")?;
        if !out.status.success() {
            bail!(
                "`ferrobase openapi` failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::write(dir.join("src/api/openapi.json"), &out.stdout)
            .context("writing dashboard/src/api/openapi.json")?;
    }

    let lock = fs::read_to_string(dir.join("package-lock.json"))
        .context("reading dashboard/package-lock.json")?;
    let stamp = dir.join("node_modules/.ferrobase-stamp");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(lock.as_str()) {
        println!("xtask: installing the dashboard's packages (npm ci)");
        proc::run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
        )
        .context("npm ci in dashboard/ (needs Node.js 20 and npm)")?;
        fs::write(&stamp, &lock)?;
    }
    proc::run(
        Command::new("npm")
            .args(["run", "gen:api"])
            .current_dir(&dir),
    )?;
    proc::run(Command::new("npm").args(["run", "build"]).current_dir(&dir))?;
    println!(
        "xtask: dashboard built into dashboard/dist in {} (commit it)",
        secs(started.elapsed())
    );
    Ok(())
}
