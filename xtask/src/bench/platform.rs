//! `platform`: what one Ferrobase node costs before any traffic.
//!
//! (a) first start to ready (initdb + migrations), (b) restart to ready
//! (median of 3), (c) idle memory of ferrobase and its Postgres, (d) create
//! N projects, touch each once, let the per-project pools close, and measure
//! memory again: the per-project increment is what a tenant costs at rest.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::server::{Memory, Server};
use super::{Ctx, Table};
use crate::proc::mib;
use crate::{http, secs};

/// Let the process settle (lazy allocations, background tasks) before reading RSS.
const SETTLE: Duration = Duration::from_secs(2);
const RESTARTS: usize = 3;

pub fn run(ctx: &Ctx) -> Result<Table> {
    let projects: usize = match std::env::var("FERROBASE_BENCH_PROJECTS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("FERROBASE_BENCH_PROJECTS={v:?} is not a number"))?,
        Err(_) => 1000,
    };
    let mut table = Table::new(format!("platform ({projects} projects)"));
    let mut server = Server::new(&ctx.bin)?;

    // (a) first start: the server creates its cluster and migrates.
    println!("    first start (empty data dir)...");
    let first = server.start()?;
    println!("    ready after {}", secs(first));
    table.row("first start -> ready (initdb + migrations)", secs(first));

    // (b) restarts with the existing data dir.
    let mut ready = Vec::new();
    let mut stops = Vec::new();
    for i in 1..=RESTARTS {
        stops.push(server.stop()?);
        ready.push(server.start()?);
        println!(
            "    restart {i}/{RESTARTS}: stop {}, start -> ready {}",
            secs(stops[i - 1]),
            secs(ready[i - 1])
        );
    }
    table.row(
        format!("restart -> ready (median of {RESTARTS})"),
        secs(median(ready)),
    );
    table.row(
        format!("graceful stop (median of {RESTARTS})"),
        secs(median(stops)),
    );

    // (c) idle memory.
    std::thread::sleep(SETTLE);
    let idle = server.memory()?;
    print_memory("idle", &idle);
    memory_rows(&mut table, "idle", &idle);

    // (d) N projects.
    if projects > 0 {
        let base = server.base_url();
        let token = login(&server)?;
        let urls = create_projects(&base, &token, projects, &mut table)?;
        touch_projects(&urls, &mut table)?;
        let busy = server.memory()?;
        print_memory("right after touching", &busy);
        memory_rows(&mut table, "after touch (pools open)", &busy);

        let wait = Duration::from_secs(server.pool_idle_timeout_secs + 3);
        println!("    waiting {} for idle pools to close...", secs(wait));
        std::thread::sleep(wait);
        let after = server.memory()?;
        print_memory("pools closed", &after);
        memory_rows(
            &mut table,
            &format!("{projects} projects, pools closed"),
            &after,
        );

        let per = |now: u64, before: u64| {
            let delta = now as f64 - before as f64;
            format!("{:+.1} KiB", delta / 1024.0 / projects as f64)
        };
        table.row(
            "per project: ferrobase RSS",
            per(after.server_rss, idle.server_rss),
        );
        table.row("per project: postgres RSS", per(after.pg_rss, idle.pg_rss));
        table.row("per project: postgres PSS", per(after.pg_pss, idle.pg_pss));
    }

    server.stop()?;
    Ok(table)
}

pub(super) fn login(server: &Server) -> Result<String> {
    let response = http::post(
        &format!("{}/platform/v1/auth/login", server.base_url()),
        None,
        &json!({"email": server.admin_email, "password": server.admin_password}),
    )?
    .expect(200, "admin login")?;
    string_field(&response.json()?, "access_token")
}

/// Creates `bench-0001`..`bench-N`; returns each project's URL and anon key.
pub(super) fn create_projects(
    base: &str,
    token: &str,
    n: usize,
    table: &mut Table,
) -> Result<Vec<(String, String)>> {
    println!("    creating {n} projects...");
    let url = format!("{base}/platform/v1/projects");
    let started = Instant::now();
    let mut urls = Vec::with_capacity(n);
    for i in 1..=n {
        let project_ref = format!("bench-{i:04}");
        let created = http::post(&url, Some(token), &json!({ "ref": project_ref }))?
            .expect(201, &format!("creating project {project_ref}"))?
            .json()?;
        urls.push((
            string_field(&created, "url")?,
            string_field(&created, "anon_key")?,
        ));
        progress("created", i, n, started);
    }
    let took = started.elapsed();
    table.row(format!("create {n} projects"), rate(took, n));
    table.row("create one project (mean)", mean_ms(took, n));
    Ok(urls)
}

/// One data API request per project (the OpenAPI root: it opens the
/// project's pool and loads its schema cache).
fn touch_projects(projects: &[(String, String)], table: &mut Table) -> Result<()> {
    let n = projects.len();
    println!("    touching {n} projects (GET /rest/v1/ with the anon key)...");
    let started = Instant::now();
    for (i, (url, anon)) in projects.iter().enumerate() {
        let url = format!("{}/rest/v1/", url.trim_end_matches('/'));
        http::get(&url, Some(anon))?.expect(200, &url)?;
        progress("touched", i + 1, n, started);
    }
    let took = started.elapsed();
    table.row(format!("first request to {n} projects"), rate(took, n));
    table.row("first request to a project (mean)", mean_ms(took, n));
    Ok(())
}

fn progress(what: &str, done: usize, total: usize, started: Instant) {
    if done.is_multiple_of(100) || done == total {
        let elapsed = started.elapsed();
        println!(
            "    {what} {done:>6}/{total}  {:>9}  {:>8.1}/s",
            secs(elapsed),
            done as f64 / elapsed.as_secs_f64().max(1e-9)
        );
    }
}

fn string_field(value: &Value, field: &str) -> Result<String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no string `{field}` in {value}"))
}

fn print_memory(label: &str, m: &Memory) {
    println!(
        "    memory {label}: ferrobase RSS {}, postgres RSS {} / PSS {} ({} processes)",
        mib(m.server_rss),
        mib(m.pg_rss),
        mib(m.pg_pss),
        m.pg_processes
    );
}

fn memory_rows(table: &mut Table, label: &str, m: &Memory) {
    table.row(format!("{label}: ferrobase RSS"), mib(m.server_rss));
    table.row(
        format!("{label}: postgres RSS sum ({} procs)", m.pg_processes),
        format!("{} (PSS {})", mib(m.pg_rss), mib(m.pg_pss)),
    );
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn rate(took: Duration, n: usize) -> String {
    format!(
        "{} ({:.1}/s)",
        secs(took),
        n as f64 / took.as_secs_f64().max(1e-9)
    )
}

fn mean_ms(took: Duration, n: usize) -> String {
    format!("{:.1} ms", took.as_secs_f64() * 1000.0 / n.max(1) as f64)
}
