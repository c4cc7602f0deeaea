//! Real third-party clients the tests run against Ferrobase ("peers", see
//! the table in PEERS.md), installed from pinned manifests into project-local
//! folders:
//!
//! - `tests/peers/package.json` (+ its committed `package-lock.json`) →
//!   `npm ci` into `tests/peers/node_modules` (next to the scripts, so Node
//!   resolves their imports);
//! - `tests/peers/requirements.txt` → a virtualenv `.peers/venv`.
//!
//! Both are gitignored. An install is skipped while its manifests (and the
//! interpreter version) are unchanged: a stamp file beside the install holds
//! what it was installed from. Add a package by editing a manifest (for npm
//! run `npm install --package-lock-only` in `tests/peers` to update the lock).
//!
//! Exported to the tests:
//! - `FERROBASE_PEERS_DIR`: `tests/peers` (scripts, `node_modules`);
//! - `FERROBASE_REQUIRE_PEERS=1`: a test whose peer is missing fails instead of skipping;
//! - `FERROBASE_PEERS_NODE`: the `node` binary;
//! - `FERROBASE_PEERS_VENV`: `.peers/venv`;
//! - `FERROBASE_PEERS_PYTHON`: `.peers/venv/bin/python`.
//!
//! `node`/`npm` and `python3` (with the `venv` module) must be on `PATH`;
//! when one is missing the error says which and how to get it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{proc, secs, workspace_root};

/// Name of the stamp file written into an install after it succeeded.
const STAMP: &str = ".ferrobase-stamp";

/// Installs (or reuses) the peers and returns the environment the tests need.
pub fn ensure() -> Result<Vec<(&'static str, String)>> {
    let root = workspace_root();
    let manifests = root.join("tests/peers");
    // Installed peers are required: their tests fail instead of skipping.
    let mut env = vec![
        ("FERROBASE_PEERS_DIR", manifests.display().to_string()),
        ("FERROBASE_REQUIRE_PEERS", "1".to_owned()),
    ];

    if manifests.join("package.json").is_file() {
        let node = which("node").context(
            "`node` is not on PATH: install Node.js 20 (Debian: apt-get install nodejs npm), \
             needed for the JavaScript peers in tests/peers/package.json",
        )?;
        which("npm").context(
            "`npm` is not on PATH: install npm (Debian: apt-get install npm), \
             needed for the JavaScript peers in tests/peers/package.json",
        )?;
        ensure_node(&manifests)?;
        env.push(("FERROBASE_PEERS_NODE", node.display().to_string()));
    }

    if manifests.join("requirements.txt").is_file() {
        which("python3").context(
            "`python3` is not on PATH: install Python 3 with venv \
             (Debian: apt-get install python3 python3-venv), needed for tests/peers/requirements.txt",
        )?;
        let venv = root.join(".peers/venv");
        ensure_python(&manifests, &venv)?;
        env.push(("FERROBASE_PEERS_VENV", venv.display().to_string()));
        env.push((
            "FERROBASE_PEERS_PYTHON",
            venv.join("bin/python").display().to_string(),
        ));
    }
    Ok(env)
}

/// `npm ci` in `tests/peers` unless the stamp matches.
fn ensure_node(dir: &Path) -> Result<()> {
    let lock = dir.join("package-lock.json");
    if !lock.is_file() {
        bail!(
            "{} is missing: run `npm install --package-lock-only` in {} and commit it",
            lock.display(),
            dir.display()
        );
    }
    let version = proc::run_quiet(Command::new("node").arg("--version"))?;
    let want = stamp_of(&[&dir.join("package.json"), &lock], version.trim())?;
    let modules = dir.join("node_modules");
    if read_stamp(&modules) == Some(want.clone()) {
        return Ok(());
    }
    let started = Instant::now();
    println!(
        "xtask: installing JavaScript peers (npm ci in {})",
        dir.display()
    );
    proc::run_quiet(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir),
    )
    .context("installing tests/peers/package.json")?;
    fs::write(modules.join(STAMP), want)?;
    println!(
        "xtask: JavaScript peers installed in {}",
        secs(started.elapsed())
    );
    Ok(())
}

/// A venv with `requirements.txt` unless the stamp matches.
fn ensure_python(dir: &Path, venv: &Path) -> Result<()> {
    let requirements = dir.join("requirements.txt");
    let version = proc::run_quiet(Command::new("python3").arg("--version"))?;
    let want = stamp_of(&[&requirements], version.trim())?;
    if read_stamp(venv) == Some(want.clone()) && venv.join("bin/python").is_file() {
        return Ok(());
    }
    let started = Instant::now();
    println!("xtask: installing Python peers into {}", venv.display());
    if venv.exists() {
        fs::remove_dir_all(venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    if let Some(parent) = venv.parent() {
        fs::create_dir_all(parent)?;
    }
    proc::run_quiet(Command::new("python3").arg("-m").arg("venv").arg(venv))
        .context("creating the peers venv (Debian: apt-get install python3-venv)")?;
    proc::run_quiet(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
    )
    .context("installing tests/peers/requirements.txt")?;
    fs::write(venv.join(STAMP), want)?;
    println!(
        "xtask: Python peers installed in {}",
        secs(started.elapsed())
    );
    Ok(())
}

/// What an install is made from: the manifests' contents and the tool version.
fn stamp_of(files: &[&Path], version: &str) -> Result<String> {
    let mut stamp = format!("{version}\n");
    for f in files {
        let text = fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        stamp.push_str(&format!("== {}\n{text}\n", f.display()));
    }
    Ok(stamp)
}

fn read_stamp(dir: &Path) -> Option<String> {
    fs::read_to_string(dir.join(STAMP)).ok()
}

/// The full path of `program` on `PATH`.
fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("`{program}` not found"))
}
