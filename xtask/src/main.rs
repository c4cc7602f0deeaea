//! Repository automation for Ferrobase, run as `cargo xtask <command>` (the
//! alias lives in `.cargo/config.toml`). Plain Rust with std + anyhow +
//! serde_json, so it builds in seconds and needs nothing installed.
//!
//! # Commands
//!
//! - `cargo xtask test [-- ARGS]`: the one test command (CI runs it through
//!   `.ci/run`). Starts a throwaway PostgreSQL cluster (temporary `initdb`,
//!   unix socket only, so parallel runs never clash), exports
//!   `FERROBASE_TEST_DATABASE_URL` (a tokio-postgres key/value string for a
//!   superuser; the test harness creates its own databases from it) and
//!   `FERROBASE_PG_BIN`, then runs, stopping at the first failing step:
//!   1. `cargo fmt --all --check`
//!   2. `cargo clippy --workspace --all-targets -- -D warnings` (then fmt and
//!      clippy again for the separate `examples/` workspace)
//!   3. `cargo nextest run --workspace --no-fail-fast ARGS` (or
//!      `cargo test --workspace --no-fail-fast ARGS` without nextest)
//!   4. `cargo test --workspace --doc` (nextest cannot run doc tests)
//!
//!   Before that, the peers (real third-party clients, `tests/peers/`) are
//!   installed or reused: see `peers.rs` for the manifests and the
//!   `FERROBASE_PEERS_*` variables exported to the tests.
//!
//!   ARGS go to the test runner, e.g. `cargo xtask test -- rest::filters`.
//!   `XTASK_SKIP_LINT=1` skips steps 1-2 for quick local loops. The cluster
//!   is stopped and its directory removed afterwards, also on failure. The
//!   tests put their extra clusters and data dirs in a directory of this run
//!   (`FERROBASE_TEST_TMPDIR`, `fbt-run-*`), removed afterwards too, so they
//!   do not pile up; `XTASK_KEEP_TMP=1` keeps it for a post-mortem.
//!
//! - `cargo xtask bench [SUITE...]`: builds the release server and prints
//!   figures (never asserts timings). Without a suite name every suite runs.
//!   Suites: `platform` (start-up time, idle memory, cost per project; env
//!   `FERROBASE_BENCH_PROJECTS`, default 1000); `rest` (data API under
//!   load side by side with PocketBase and pgbench; see `bench/rest.rs` for
//!   `FERROBASE_BENCH_REST_*`). `FERROBASE_BENCH_BIN=PATH`
//!   benchmarks an existing binary instead of building one.
//!
//! - `cargo xtask dashboard [--no-api]`: regenerates the dashboard's API
//!   types from the server's OpenAPI document and rebuilds `dashboard/dist`
//!   (committed, embedded in the binary). See `dashboard.rs`.
//!
//! - `cargo xtask cluster [-- CMD ARGS]`: starts the same throwaway cluster
//!   as `test`, prints its connection string, and waits for Ctrl-C. With a
//!   command, runs it with the test environment set and exits with its
//!   status, e.g. `cargo xtask cluster -- cargo test -p ferrobase-server foo`.
//!
//! # Finding PostgreSQL
//!
//! `initdb`/`pg_ctl` are taken from `FERROBASE_PG_BIN`, else `PATH`, else
//! the newest `/usr/lib/postgresql/*/bin` (Debian package `postgresql`).
//! As root, they run as the `postgres` user through `runuser`, because
//! PostgreSQL refuses to run as root.

mod bench;
mod dashboard;
mod http;
mod peers;
mod pg;
mod proc;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [-- ARGS]         fmt, clippy, tests and doc tests against a throwaway Postgres
                         (XTASK_SKIP_LINT=1 skips fmt and clippy)
  bench [SUITE...]       build the release server and print benchmark figures
                         (suites: platform, rest; default: all)
  cluster [-- CMD ARGS]  start a throwaway Postgres, print its URL, wait for Ctrl-C
                         (or run CMD with the test environment)
  dashboard [--no-api]   rebuild the admin UI into dashboard/dist (npm; commit the result)
  help                   this text

See xtask/src/main.rs for details.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        Some("test") => test::run(strip_separator(rest)),
        Some("bench") => bench::run(strip_separator(rest)),
        Some("cluster") => pg::cluster_command(strip_separator(rest)),
        Some("dashboard") => dashboard::run(strip_separator(rest)),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        Some(other) => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\nxtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask test -- foo` passes `["--", "foo"]`; accept both spellings.
fn strip_separator(mut args: Vec<String>) -> Vec<String> {
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    args
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.clone(), PathBuf::from)
}

/// The `cargo` that started us (cargo sets `CARGO`), so child builds use the
/// same toolchain.
fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// `$CARGO_TARGET_DIR` (made absolute, relative to where we were started), or
/// `<workspace>/target`.
fn target_dir() -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                Ok(dir)
            } else {
                Ok(std::env::current_dir()?.join(dir))
            }
        }
        Some(_) => bail!("CARGO_TARGET_DIR is set but empty"),
        None => Ok(workspace_root().join("target")),
    }
}

/// Seconds with two decimals, for log lines and tables.
fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}
