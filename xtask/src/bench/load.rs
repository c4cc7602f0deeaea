//! Pieces shared by the load suites: `hey` (installed with apt when
//! missing) and its output, result formatting, env knobs, admin login.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::server::Server;
use crate::{http, proc};

/// One load run.
pub(super) struct Load {
    pub(super) rps: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    /// `hey` prints no 99% line below 100 requests: `p99_ms` is then the slowest.
    pub(super) p99_is_max: bool,
    pub(super) errors: u64,
}

/// One workload as sent by `hey`.
pub(super) struct Workload {
    pub(super) name: &'static str,
    pub(super) method: &'static str,
    pub(super) url: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Option<String>,
}

pub(super) fn fmt_load(l: &Load) -> String {
    let errors = if l.errors > 0 {
        format!(", {} errors", l.errors)
    } else {
        String::new()
    };
    let p99 = if l.p99_is_max { "max" } else { "p99" };
    format!(
        "{:>8.0} req/s  p50 {:>6.2} ms  {p99} {:>6.2} ms{errors}",
        l.rps, l.p50_ms, l.p99_ms
    )
}

pub(super) fn env_num(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

/// `hey` on PATH, installed with apt when missing.
pub(super) fn ensure_hey() -> Result<PathBuf> {
    if let Some(p) = on_path("hey") {
        return Ok(p);
    }
    println!("    installing hey (apt-get install -y hey)...");
    let _ = proc::run_quiet(Command::new("apt-get").arg("update"));
    proc::run_quiet(Command::new("apt-get").args(["install", "-y", "hey"]))
        .context("`hey` is missing and apt-get could not install it")?;
    on_path("hey").context("hey installed but not on PATH")
}

pub(super) fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

pub(super) fn run_hey(hey: &Path, w: &Workload, conns: u64, duration: u64) -> Result<Load> {
    let mut cmd = Command::new(hey);
    cmd.args([
        "-z",
        &format!("{duration}s"),
        "-c",
        &conns.to_string(),
        "-m",
        w.method,
    ]);
    for (k, v) in &w.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(b) = &w.body {
        cmd.args(["-d", b]);
    }
    cmd.arg(&w.url);
    let out = proc::run_quiet(&mut cmd)?;
    parse_hey(&out).with_context(|| format!("parsing hey output for {}:\n{out}", w.name))
}

/// Requests/sec, the 50% and 99% latency lines and non-2xx responses.
pub(super) fn parse_hey(out: &str) -> Result<Load> {
    let mut load = Load {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        p99_is_max: false,
        errors: 0,
    };
    let mut slowest_ms = f64::NAN;
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            load.rps = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix("50% in ") {
            load.p50_ms = secs_to_ms(v)?;
        } else if let Some(v) = line.strip_prefix("99% in ") {
            load.p99_ms = secs_to_ms(v)?;
        } else if let Some(v) = line.strip_prefix("Slowest:") {
            slowest_ms = secs_to_ms(v.trim())?;
        } else if let Some(rest) = line.strip_prefix('[')
            && let Some((code, count)) = rest.split_once(']')
            && !code.starts_with('2')
        {
            load.errors += count
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .parse::<u64>()?;
        } else if line.starts_with("Get ") || line.starts_with("Post ") || line.contains("dial tcp")
        {
            load.errors += 1;
        }
    }
    if load.rps == 0.0 {
        bail!("no Requests/sec line");
    }
    if load.p99_ms.is_nan() {
        load.p99_ms = slowest_ms;
        load.p99_is_max = true;
    }
    Ok(load)
}

pub(super) fn secs_to_ms(v: &str) -> Result<f64> {
    let s: f64 = v.split_whitespace().next().unwrap_or("").parse()?;
    Ok(s * 1000.0)
}

pub(super) fn login(server: &Server) -> Result<String> {
    let r = http::post(
        &format!("{}/platform/v1/auth/login", server.base_url()),
        None,
        &json!({"email": server.admin_email, "password": server.admin_password}),
    )?
    .expect(200, "admin login")?;
    str_field(&r.json()?, "access_token")
}

pub(super) fn str_field(v: &Value, name: &str) -> Result<String> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no `{name}` in {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowest_stands_in_for_a_missing_p99() {
        let out = "Summary:\n  Total:\t2.0 secs\n  Slowest:\t0.9000 secs\n  Requests/sec:\t29.0\n\nLatency distribution:\n  50% in 0.6000 secs\n  95% in 0.8000 secs\n\nStatus code distribution:\n  [200]\t58 responses\n";
        let l = parse_hey(out).unwrap();
        assert!(l.p99_is_max && (l.p99_ms - 900.0).abs() < 1e-9);
        assert!((l.p50_ms - 600.0).abs() < 1e-9 && l.errors == 0);
    }

    #[test]
    fn parses_hey_summary() {
        let out = "Summary:\n  Total:\t5.0 secs\n  Requests/sec:\t1234.5\n\nLatency distribution:\n  10% in 0.0010 secs\n  50% in 0.0030 secs\n  99% in 0.0125 secs\n\nStatus code distribution:\n  [200]\t6000 responses\n  [503]\t3 responses\n";
        let l = parse_hey(out).unwrap();
        assert_eq!(l.rps, 1234.5);
        assert!((l.p50_ms - 3.0).abs() < 1e-9 && (l.p99_ms - 12.5).abs() < 1e-9);
        assert_eq!(l.errors, 3);
    }
}
