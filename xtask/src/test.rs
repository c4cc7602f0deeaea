//! `cargo xtask test`: lint, then all tests against a throwaway Postgres.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::pg::Cluster;
use crate::{cargo, peers, proc, secs, workspace_root};

/// What happened to one step, for the summary.
enum Outcome {
    Passed(Duration),
    Failed(Duration),
    Skipped(&'static str),
}

struct Step {
    title: String,
    outcome: Outcome,
}

pub fn run(extra: Vec<String>) -> Result<()> {
    let started = Instant::now();
    let skip_lint = std::env::var("XTASK_SKIP_LINT").is_ok_and(|v| !v.is_empty() && v != "0");

    // Stop at once, with the command to run, when the machine lacks
    // something only the system package manager can add.
    prerequisites()?;

    let mut steps = Vec::new();
    header("peers (tests/peers)");
    let peers_started = Instant::now();
    let peers = peers::ensure();
    steps.push(Step {
        title: "install peers (tests/peers)".to_owned(),
        outcome: if peers.is_ok() {
            Outcome::Passed(peers_started.elapsed())
        } else {
            Outcome::Failed(peers_started.elapsed())
        },
    });
    let result = peers.and_then(|peer_env| {
        header("PostgreSQL");
        let cluster = Cluster::start()?;
        let scratch = Scratch::create()?;
        let result = run_steps(&cluster, &scratch, &peer_env, skip_lint, &extra, &mut steps);
        drop(scratch);
        header("stopping PostgreSQL");
        drop(cluster);
        result
    });

    header("summary");
    for step in &steps {
        let (status, time, note) = match step.outcome {
            Outcome::Passed(d) => ("ok", secs(d), String::new()),
            Outcome::Failed(d) => ("FAILED", secs(d), String::new()),
            Outcome::Skipped(why) => ("skipped", String::new(), format!("  ({why})")),
        };
        println!("  {status:<8} {time:>9}  {}{note}", step.title);
    }
    let verdict = if result.is_ok() { "passed" } else { "FAILED" };
    println!("\n{verdict} in {}", secs(started.elapsed()));
    result
}

/// Checks what `cargo xtask test` cannot install itself: the PostgreSQL
/// server binaries (the throwaway cluster) and libclang (pg_query's
/// bindgen, needed to build the server). Node, npm and python3 are checked
/// by the peers step with their own install hints.
fn prerequisites() -> Result<()> {
    crate::pg::find_bin()?;
    let libclang = std::env::var_os("LIBCLANG_PATH").is_some()
        || [
            "/usr/lib/llvm-*/lib/libclang*.so*",
            "/usr/lib/*/libclang*.so*",
            "/usr/lib64/libclang*.so*",
        ]
        .iter()
        .any(|pattern| glob_exists(pattern));
    if !libclang {
        bail!(
            "libclang is missing (pg_query's build needs it): run `apt-get install -y libclang-dev` \
             (Fedora: `dnf install clang-devel`; macOS: `xcode-select --install`), or set LIBCLANG_PATH"
        );
    }
    Ok(())
}

/// Whether a path matching `pattern` (one `*` per component at most) exists.
fn glob_exists(pattern: &str) -> bool {
    fn walk(dir: std::path::PathBuf, parts: &[&str]) -> bool {
        let Some((first, rest)) = parts.split_first() else {
            return dir.exists();
        };
        if !first.contains('*') {
            return walk(dir.join(first), rest);
        }
        let (prefix, suffix) = first.split_once('*').unwrap_or((first, ""));
        let suffix = suffix.trim_end_matches('*');
        std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(prefix)
                    && (suffix.is_empty() || name.contains(suffix))
                    && walk(e.path(), rest)
            })
    }
    let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    walk(std::path::PathBuf::from("/"), &parts)
}

/// The directory the tests' temporary files go to (`FERROBASE_TEST_TMPDIR`,
/// read by the tests' `support::temp_dir`), one per run, removed when the run
/// ends. The tests make data directories for extra nodes, embedded clusters
/// and backups there, several hundred megabytes per run; before this, every
/// run left them in `/tmp` (one developer machine had 26 GB of them).
/// `XTASK_KEEP_TMP=1` keeps it for a post-mortem. Not `TMPDIR`: a compiler
/// cache daemon (sccache) started by a step would keep using it after the
/// run removed it, and fail the next run's builds.
struct Scratch {
    dir: std::path::PathBuf,
    keep: bool,
}

impl Scratch {
    fn create() -> Result<Scratch> {
        // Short on purpose: cluster sockets live a few levels below it, and
        // a unix socket path must stay under 108 bytes.
        let dir = proc::unique_temp_dir("fbt-run")?;
        let keep = std::env::var("XTASK_KEEP_TMP").is_ok_and(|v| !v.is_empty() && v != "0");
        if !keep {
            // A Ctrl-C or a CI timeout skips Drop: remove it after we exit.
            proc::spawn_watchdog(&format!(
                "[ -d {dir} ] && rm -rf {dir}",
                dir = dir.display()
            ));
        }
        Ok(Scratch { dir, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            println!("xtask: test temp files kept in {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!(
                "xtask: warning: could not remove {}: {e}",
                self.dir.display()
            );
        }
    }
}

fn run_steps(
    cluster: &Cluster,
    scratch: &Scratch,
    peer_env: &[(&'static str, String)],
    skip_lint: bool,
    extra: &[String],
    steps: &mut Vec<Step>,
) -> Result<()> {
    // Each step is a command, or the reason it is skipped; in order.
    let mut plan: Vec<(Command, Option<&'static str>)> = Vec::new();

    let lint_skip = skip_lint.then_some("XTASK_SKIP_LINT");
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    plan.push((fmt, lint_skip));
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    plan.push((clippy, lint_skip));
    // examples/ is its own workspace (one crate per example): same checks.
    let examples = workspace_root().join("examples/Cargo.toml");
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check", "--manifest-path"])
        .arg(&examples);
    plan.push((fmt, lint_skip));
    let mut clippy = cargo();
    clippy
        .args(["clippy", "--all-targets", "--locked", "--manifest-path"])
        .arg(&examples)
        .args(["--", "-D", "warnings"]);
    plan.push((clippy, lint_skip));

    let mut tests = cargo();
    if has_nextest() {
        // --no-tests=warn: a filter matching nothing is not a failure
        // (the same as cargo test).
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "--no-tests=warn",
        ]);
    } else {
        println!("xtask: cargo-nextest not found, using cargo test");
        tests.args(["test", "--workspace", "--no-fail-fast"]);
    }
    tests.args(extra);
    plan.push((tests, None));

    // Doc tests (nextest cannot run them). Plain filters apply to them too;
    // runner-specific flags (`-E ...`, `--no-capture`) would not parse, so
    // then the doc tests are skipped.
    let mut doc = cargo();
    doc.args(["test", "--workspace", "--doc"]);
    let plain_filters = extra.iter().all(|a| !a.starts_with('-'));
    if plain_filters && !extra.is_empty() {
        doc.arg("--").args(extra);
    }
    plan.push((doc, (!plain_filters).then_some("runner flags given")));

    let total = plan.iter().filter(|(_, skip)| skip.is_none()).count();
    let mut number = 0;
    let mut failure = None;
    for (mut cmd, skip) in plan {
        let title = proc::display(&cmd);
        let skip = skip.or(failure.is_some().then_some("not run"));
        if let Some(why) = skip {
            steps.push(Step {
                title,
                outcome: Outcome::Skipped(why),
            });
            continue;
        }
        number += 1;
        header(&format!("[{number}/{total}] {title}"));
        cmd.envs(cluster.env());
        cmd.env("FERROBASE_TEST_TMPDIR", &scratch.dir);
        cmd.envs(peer_env.iter().map(|(k, v)| (*k, v)));
        let step_started = Instant::now();
        let status = cmd.status();
        let elapsed = step_started.elapsed();
        failure = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("`{title}` failed ({s})")),
            Err(e) => Some(format!("could not start `{title}`: {e}")),
        };
        steps.push(Step {
            title,
            outcome: if failure.is_none() {
                Outcome::Passed(elapsed)
            } else {
                Outcome::Failed(elapsed)
            },
        });
    }
    match failure {
        Some(message) => bail!(message),
        None => Ok(()),
    }
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn header(title: &str) {
    println!("\n==> {title}");
}

#[cfg(test)]
mod tests {
    use super::Scratch;

    #[test]
    fn scratch_dir_and_what_tests_leave_in_it_are_removed() {
        let scratch = Scratch::create().expect("scratch dir");
        let dir = scratch.dir.clone();
        let nested = dir.join("fbt-node1-abc/data");
        std::fs::create_dir_all(&nested).expect("nested dir");
        std::fs::write(nested.join("file"), b"x").expect("file");
        assert!(dir.starts_with(std::env::temp_dir()) || dir.starts_with("/tmp"));
        drop(scratch);
        assert!(!dir.exists(), "{} should be gone", dir.display());
    }
}
