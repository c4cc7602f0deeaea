//! `functions`: what the edge-functions path costs (issue 14's benchmark).
//!
//! The same JSON hello handler runs twice on the same machine: deployed as a
//! Ferrobase function (`POST {project}/functions/v1/hello`, `verify_jwt` off
//! so only the function path is measured, warm process) and directly under
//! `deno serve` (the ceiling). For each, `hey` measures one client (latency:
//! the p50 difference is the overhead Ferrobase adds per warm invocation)
//! and `CONNS` clients (throughput). Cold start: the first invocation after
//! a deploy (a new version starts a new Deno process), median of `COLD` runs.
//!
//! For scale, when nginx is installed, a third row puts nginx (one process)
//! in front of the same handler over a unix socket, the shape of Ferrobase's
//! own hop: what a lean proxy that does nothing else keeps of direct
//! `deno serve` on this machine.
//!
//! Goals from the issue: ≤ 1 ms p50 added on a warm invoke, ≥ 50 % of
//! direct `deno serve` throughput. Figures are noisy on a shared 2-core
//! machine: compare the two columns of one run, not runs with each other.
//!
//! Environment: `FERROBASE_BENCH_FUNCTIONS_DURATION` (seconds, default 10,
//! 3 when `CI=true`), `FERROBASE_BENCH_FUNCTIONS_CONNS` (default 50),
//! `FERROBASE_BENCH_FUNCTIONS_COLD` (default 5), `FERROBASE_BENCH_DENO`
//! (default: `.peers/venv/bin/deno`, then `deno` on PATH),
//! `FERROBASE_BENCH_NGINX` (default: `nginx` on PATH or `/usr/sbin/nginx`;
//! without one the proxy row is skipped).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::load::{Load, LoadGen, Workload, env_num, fmt_load, login, on_path, str_field};
use super::server::{Server, free_port};
use super::{Ctx, Table};
use crate::{http, proc, workspace_root};

const HANDLER: &str = "export default { fetch: () => Response.json({ hello: \"world\" }) };";

fn deno() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("FERROBASE_BENCH_DENO").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let venv = workspace_root().join(".peers/venv/bin/deno");
    if venv.is_file() {
        return Ok(venv);
    }
    on_path("deno").context("deno not found: run `cargo xtask test` once (installs it into .peers/venv) or set FERROBASE_BENCH_DENO")
}

pub fn run(ctx: &Ctx) -> Result<Table> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let duration = env_num(
        "FERROBASE_BENCH_FUNCTIONS_DURATION",
        if ci { 3 } else { 10 },
    )?;
    let conns = env_num("FERROBASE_BENCH_FUNCTIONS_CONNS", 50)?.max(1);
    let cold_runs = env_num("FERROBASE_BENCH_FUNCTIONS_COLD", 5)?.max(1);
    let loadgen = LoadGen::from_env()?;
    let deno = deno()?;
    let mut table = Table::new(format!(
        "functions (JSON hello, 1 and {conns} clients x {duration} s, {})",
        loadgen.name()
    ));

    // Ferrobase.
    let mut server = Server::new(&ctx.bin)?;
    server
        .env
        .push(("FERROBASE_DENO_BIN".into(), deno.display().to_string()));
    server.start()?;
    let admin = login(&server)?;
    let project = http::post(
        &format!("{}/platform/v1/projects", server.base_url()),
        Some(&admin),
        &json!({"ref": "bench-functions"}),
    )?
    .expect(201, "create project")?
    .json()?;
    let url = str_field(&project, "url")?;
    let service = str_field(&project, "service_role_key")?;
    let deploy = |code: &str| -> Result<()> {
        http::request(
            "PUT",
            &format!("{url}/admin/v1/functions/hello"),
            Some(&service),
            Some(&json!({"code": code, "verify_jwt": false, "concurrency": 10_000})),
        )?;
        Ok(())
    };
    let invoke_url = format!("{url}/functions/v1/hello");
    let mut colds = Vec::new();
    for i in 0..cold_runs {
        deploy(&format!("{HANDLER} // {i}"))?;
        let started = Instant::now();
        http::post(&invoke_url, None, &json!({}))?.expect(200, "first invocation")?;
        colds.push(started.elapsed());
    }
    colds.sort();
    let cold = colds[colds.len() / 2];
    println!(
        "    cold start (median of {cold_runs})  {:.1} ms",
        cold.as_secs_f64() * 1000.0
    );
    let through_ferrobase = hello_post("ferrobase function", invoke_url);
    let f1 = loadgen.run(&through_ferrobase, 1, duration)?;
    let fc = loadgen.run(&through_ferrobase, conns, duration)?;
    println!("    ferrobase  1 client    {}", fmt_load(&f1));
    println!("    ferrobase  {conns} clients  {}", fmt_load(&fc));
    server.stop()?;

    // The ceiling: the same handler under `deno serve`.
    let work = proc::unique_temp_dir("fbbench-fn")?;
    let file = work.join("hello.ts");
    std::fs::write(&file, HANDLER)?;
    let port = free_port()?;
    let mut direct = Command::new(&deno);
    direct
        .args([
            "serve",
            "--no-prompt",
            "--quiet",
            &format!("--port={port}"),
            "--host=127.0.0.1",
        ])
        .arg(&file)
        .env("NO_COLOR", "1");
    quiet(&mut direct);
    let mut direct = direct.spawn().context("starting deno serve")?;
    let direct_url = format!("http://127.0.0.1:{port}/");
    if !answers_within(&direct_url, START_TIMEOUT) {
        let _ = direct.kill();
        bail!("deno serve did not start");
    }
    let w = hello_post("deno serve", direct_url);
    let d1 = loadgen.run(&w, 1, duration);
    let dc = loadgen.run(&w, conns, duration);
    let _ = direct.kill();
    let _ = direct.wait();
    let _ = std::fs::remove_dir_all(&work);
    let (d1, dc): (Load, Load) = (d1?, dc?);
    println!("    deno serve 1 client    {}", fmt_load(&d1));
    println!("    deno serve {conns} clients  {}", fmt_load(&dc));
    let proxied = through_nginx(&deno, &loadgen, conns, duration)?;

    table.row(
        "cold start (first invoke after deploy)",
        format!("{:.1} ms", cold.as_secs_f64() * 1000.0),
    );
    table.row("warm invoke, 1 client (ferrobase)", fmt_load(&f1));
    table.row("warm invoke, 1 client (deno serve)", fmt_load(&d1));
    table.row(
        "p50 added by ferrobase (goal <= 1 ms)",
        format!("{:.2} ms", f1.p50_ms - d1.p50_ms),
    );
    table.row(
        "warm p50 ratio ferrobase / deno serve (1 client)",
        // `hey` reports latency in 0.1 ms steps: a direct p50 of 0.0 ms
        // has no meaningful ratio.
        if d1.p50_ms < 0.05 {
            "n/a (deno serve p50 is below the load generator's resolution)".to_owned()
        } else {
            format!("{:.1}x", f1.p50_ms / d1.p50_ms)
        },
    );
    table.row(format!("{conns} clients (ferrobase)"), fmt_load(&fc));
    table.row(format!("{conns} clients (deno serve)"), fmt_load(&dc));
    table.row(
        "throughput vs deno serve (goal >= 50%)",
        format!("{:.0}%", 100.0 * fc.rps / dc.rps.max(1e-9)),
    );
    if let Some(nc) = proxied {
        table.row(
            format!("{conns} clients (nginx -> deno, unix socket)"),
            fmt_load(&nc),
        );
        table.row(
            "throughput, nginx proxy vs deno serve (a lean proxy's ceiling)",
            format!("{:.0}%", 100.0 * nc.rps / dc.rps.max(1e-9)),
        );
    }
    Ok(table)
}

/// How long a server under test may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The workload every row runs: `POST {}` to the JSON hello at `url`.
fn hello_post(name: &'static str, url: String) -> Workload {
    Workload {
        name,
        method: "POST",
        url,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Some("{}".into()),
    }
}

/// Whether `url` answers the hello with 200 within `timeout` (polled).
fn answers_within(url: &str, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if http::post(url, None, &json!({})).is_ok_and(|r| r.status == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Detaches a child's standard streams (the load generator prints, not it).
fn quiet(c: &mut Command) {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

/// The nginx binary to use, if any.
fn nginx() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERROBASE_BENCH_NGINX").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    on_path("nginx").or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
}

/// Throughput of the JSON hello through nginx (one process, keep-alive
/// upstream) to `Deno.serve` on a unix socket; `None` (and a line saying
/// why) when nginx is missing or does not start.
fn through_nginx(
    deno: &Path,
    loadgen: &LoadGen,
    conns: u64,
    duration: u64,
) -> Result<Option<Load>> {
    let Some(nginx) = nginx() else {
        println!(
            "    nginx not found: proxy row skipped (apt-get install nginx-light, or set FERROBASE_BENCH_NGINX)"
        );
        return Ok(None);
    };
    let work = proc::unique_temp_dir("fbbench-nginx")?;
    let sock = work.join("deno.sock");
    let quoted = |p: &Path| serde_json::to_string(&p.display().to_string());
    std::fs::write(
        work.join("unix.ts"),
        format!(
            "Deno.serve({{ path: {}, onListen() {{}} }}, () => Response.json({{ hello: \"world\" }}));",
            quoted(&sock)?
        ),
    )?;
    let port = free_port()?;
    let w = work.display();
    std::fs::write(
        work.join("nginx.conf"),
        format!(
            "daemon off;\nmaster_process off;\npid {w}/nginx.pid;\nerror_log {w}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {w}/body;\n  proxy_temp_path {w}/proxy;\n\
             \x20 upstream deno {{ server unix:{}; keepalive 64; }}\n\
             \x20 server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://deno; \
             proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n}}\n",
            sock.display()
        ),
    )?;
    let mut upstream = Command::new(deno);
    upstream
        .args([
            "run",
            "--allow-net",
            "--allow-read",
            "--allow-write",
            "--quiet",
        ])
        .arg(work.join("unix.ts"))
        .env("NO_COLOR", "1");
    quiet(&mut upstream);
    let mut upstream = upstream.spawn().context("starting deno on a unix socket")?;
    let mut proxy = Command::new(&nginx);
    proxy
        .arg("-p")
        .arg(&work)
        .arg("-c")
        .arg(work.join("nginx.conf"))
        .arg("-e")
        .arg(work.join("error.log"));
    quiet(&mut proxy);
    let mut proxy = proxy.spawn().context("starting nginx")?;
    let url = format!("http://127.0.0.1:{port}/");
    let load = if answers_within(&url, START_TIMEOUT) {
        Some(loadgen.run(&hello_post("nginx -> deno", url), conns, duration))
    } else {
        let log = std::fs::read_to_string(work.join("error.log")).unwrap_or_default();
        let last = log.lines().last().unwrap_or("(nginx logged nothing)");
        println!("    nginx -> deno did not answer within 30 s: proxy row skipped ({last})");
        None
    };
    for child in [&mut proxy, &mut upstream] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&work);
    let load = load.transpose()?;
    if let Some(l) = &load {
        println!("    nginx -> deno {conns} clients  {}", fmt_load(l));
    }
    Ok(load)
}
