//! Pieces shared by the load suites: the load generator (`hey` or `wrk`,
//! installed with apt when missing) and its output, result formatting, env
//! knobs, admin login.
//!
//! `FERROBASE_BENCH_LOADGEN` picks the generator: `hey` (the default, as in
//! every figure recorded before session 5) or `wrk`. `wrk` spends far less
//! CPU per request: on this 2-core machine `hey -c 50` tops out near 40k
//! req/s against `deno serve`'s JSON hello, where `wrk -t2 -c50` measures
//! 110k, so `hey` understates fast endpoints (`/health`, a function's
//! ceiling) and compresses ratios against them.

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

/// One workload, as sent by the load generator.
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

/// The load generator of this run (see the module doc).
pub(super) enum LoadGen {
    Hey(PathBuf),
    Wrk(PathBuf),
}

impl LoadGen {
    /// The generator `FERROBASE_BENCH_LOADGEN` names (`hey` by default).
    pub(super) fn from_env() -> Result<LoadGen> {
        match std::env::var("FERROBASE_BENCH_LOADGEN").as_deref() {
            Ok("wrk") => Ok(LoadGen::Wrk(ensure_tool("wrk")?)),
            Ok("hey" | "") | Err(_) => Ok(LoadGen::Hey(ensure_tool("hey")?)),
            Ok(other) => bail!("FERROBASE_BENCH_LOADGEN={other:?}: use `hey` or `wrk`"),
        }
    }

    /// `hey` or `wrk`, for table titles.
    pub(super) fn name(&self) -> &'static str {
        match self {
            LoadGen::Hey(_) => "hey",
            LoadGen::Wrk(_) => "wrk",
        }
    }

    /// Runs `w` with `conns` connections for `duration` seconds.
    pub(super) fn run(&self, w: &Workload, conns: u64, duration: u64) -> Result<Load> {
        match self {
            LoadGen::Hey(hey) => run_hey(hey, w, conns, duration),
            LoadGen::Wrk(wrk) => run_wrk(wrk, w, conns, duration),
        }
    }
}

/// `program` on PATH, installed with apt (its Debian package has its name)
/// when missing.
fn ensure_tool(program: &str) -> Result<PathBuf> {
    if let Some(p) = on_path(program) {
        return Ok(p);
    }
    println!("    installing {program} (apt-get install -y {program})...");
    let _ = proc::run_quiet(Command::new("apt-get").arg("update"));
    proc::run_quiet(Command::new("apt-get").args(["install", "-y", program]))
        .with_context(|| format!("`{program}` is missing and apt-get could not install it"))?;
    on_path(program).with_context(|| format!("{program} installed but not on PATH"))
}

pub(super) fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn run_hey(hey: &Path, w: &Workload, conns: u64, duration: u64) -> Result<Load> {
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

fn run_wrk(wrk: &Path, w: &Workload, conns: u64, duration: u64) -> Result<Load> {
    let conns = conns.max(1);
    let mut cmd = Command::new(wrk);
    cmd.args([
        "-t",
        &conns.min(2).to_string(),
        "-c",
        &conns.to_string(),
        "-d",
        &format!("{duration}s"),
        "--latency",
    ]);
    for (k, v) in &w.headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    // Method and body go through a Lua script (wrk has no flags for them).
    let script_dir = if w.method != "GET" || w.body.is_some() {
        let dir = proc::unique_temp_dir("fbwrk")?;
        let script = dir.join("request.lua");
        std::fs::write(&script, wrk_script(w.method, w.body.as_deref()))?;
        cmd.arg("-s").arg(&script);
        Some(dir)
    } else {
        None
    };
    cmd.arg(&w.url);
    let out = proc::run_quiet(&mut cmd);
    if let Some(dir) = script_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    let out = out?;
    parse_wrk(&out).with_context(|| format!("parsing wrk output for {}:\n{out}", w.name))
}

/// A wrk Lua script setting the method and body (a long bracket string whose
/// level the body cannot close).
fn wrk_script(method: &str, body: Option<&str>) -> String {
    let mut script = format!("wrk.method = \"{method}\"\n");
    if let Some(body) = body {
        let mut level = String::from("=");
        while body.contains(&format!("]{level}]")) {
            level.push('=');
        }
        script.push_str(&format!("wrk.body = [{level}[{body}]{level}]\n"));
    }
    script
}

/// Requests/sec, the 50% and 99% lines of `--latency`, and failures
/// (non-2xx/3xx responses and socket errors).
fn parse_wrk(out: &str) -> Result<Load> {
    let mut load = Load {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        p99_is_max: false,
        errors: 0,
    };
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            load.rps = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix("50%") {
            load.p50_ms = duration_to_ms(v.trim())?;
        } else if let Some(v) = line.strip_prefix("99%") {
            load.p99_ms = duration_to_ms(v.trim())?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            load.errors += v.trim().parse::<u64>()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 5"
            for part in v.split(',') {
                load.errors += part
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()?;
            }
        }
    }
    if load.rps == 0.0 || load.p50_ms.is_nan() || load.p99_ms.is_nan() {
        bail!("no Requests/sec or latency distribution lines");
    }
    Ok(load)
}

/// A wrk duration (`382.00us`, `1.03ms`, `2.10s`, `1.50m`) in milliseconds.
fn duration_to_ms(v: &str) -> Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {v:?}"))?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse()?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        other => bail!("unknown unit {other:?} in {v:?}"),
    })
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

    #[test]
    fn parses_wrk_latency_summary() {
        let out = "Running 6s test @ http://127.0.0.1:1/\n  2 threads and 50 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.10ms    2.00ms  37.87ms   98.00%\n  Latency Distribution\n     50%  441.00us\n     75%  600.00us\n     90%    1.00ms\n     99%   37.87ms\n  612000 requests in 6.00s, 90.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 5\n  Non-2xx or 3xx responses: 3\nRequests/sec: 102138.32\nTransfer/sec:     15.00MB\n";
        let l = parse_wrk(out).unwrap();
        assert_eq!(l.rps, 102138.32);
        assert!((l.p50_ms - 0.441).abs() < 1e-9 && (l.p99_ms - 37.87).abs() < 1e-9);
        assert_eq!(l.errors, 10);
        assert!(
            parse_wrk("Requests/sec: 5.0\n").is_err(),
            "latency lines are required"
        );
        assert!((duration_to_ms("1.50m").unwrap() - 90_000.0).abs() < 1e-9);
        assert!(duration_to_ms("3 parsecs").is_err());
    }

    #[test]
    fn wrk_script_bodies_cannot_close_their_string() {
        assert_eq!(wrk_script("GET", None), "wrk.method = \"GET\"\n");
        let s = wrk_script("POST", Some(r#"{"a":"]=]"}"#));
        assert!(s.contains(r#"wrk.body = [==[{"a":"]=]"}]==]"#), "{s}");
    }
}
