//! `projects`: many projects active at once on one node, against the node's
//! Postgres (`max_connections = 300`, as the embedded cluster is set up).
//!
//! Creates `FERROBASE_BENCH_PROJECTS` projects (1,000 by default), then
//! `FERROBASE_BENCH_CLIENTS` client threads (330 by default: the 110 projects
//! × 3 concurrent requests that once exhausted Postgres) walk over every
//! project, `FERROBASE_BENCH_PER_PROJECT` (3) requests to a project at the same
//! time, for `FERROBASE_BENCH_ROUNDS` (2) rounds. Reports failures by status
//! (the point: no 503), throughput, latency, the node's connection budget,
//! and memory: the server's RSS and the Postgres processes (one per open
//! connection, plus the cluster's own) idle, after creation and at their peak
//! under load (sampled every 250 ms).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::server::Server;
use super::{Ctx, Table};
use crate::{http, secs};

fn knob(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

pub fn run(ctx: &Ctx) -> Result<Table> {
    let projects = knob("FERROBASE_BENCH_PROJECTS", 1000)?.max(1);
    let clients = knob("FERROBASE_BENCH_CLIENTS", 330)?.max(1);
    let per_project = knob("FERROBASE_BENCH_PER_PROJECT", 3)?.max(1);
    let rounds = knob("FERROBASE_BENCH_ROUNDS", 2)?.max(1);
    let mut table = Table::new(format!(
        "projects ({projects} active projects, {clients} clients)"
    ));
    let mut server = Server::new(&ctx.bin)?;
    server.start()?;
    let base = server.base_url();
    let idle = server.memory()?;
    let token = super::platform::login(&server)?;
    let urls = super::platform::create_projects(&base, &token, projects, &mut table)?;
    let created = server.memory()?;

    // Slot s is request s % per_project to project s / per_project: threads
    // t, t+1, … hit the same project at about the same time.
    let slots = projects * per_project;
    let urls = Arc::new(urls);
    let statuses: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    println!(
        "    {clients} clients, {rounds} round(s) of {per_project} requests to each of {projects} projects..."
    );
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let urls = urls.clone();
            let statuses = statuses.clone();
            let latencies = latencies.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for _ in 0..rounds {
                    for s in (t..slots).step_by(clients) {
                        let (url, anon) = &urls[s / per_project];
                        let url = format!("{}/rest/v1/", url.trim_end_matches('/'));
                        let at = Instant::now();
                        let key = match http::get(&url, Some(anon)) {
                            Ok(r) => r.status.to_string(),
                            Err(e) => format!("client error: {e}"),
                        };
                        mine.push(at.elapsed());
                        *counts.entry(key).or_default() += 1;
                    }
                }
                latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
                let mut all = statuses.lock().unwrap_or_else(|e| e.into_inner());
                for (k, n) in counts {
                    *all.entry(k).or_default() += n;
                }
            })
        })
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let peak = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = (0u64, 0usize, 0u64);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(m) = server.memory() {
                    peak.0 = peak.0.max(m.server_rss);
                    peak.1 = peak.1.max(m.pg_processes);
                    peak.2 = peak.2.max(m.pg_pss);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            peak
        });
        for th in threads {
            let _ = th.join();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().unwrap_or_default()
    });
    let took = started.elapsed();
    let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut latencies = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    latencies.sort();
    let total: usize = statuses.values().sum();
    let ok = statuses.get("200").copied().unwrap_or(0);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    table.row(
        format!("{total} requests over {projects} projects"),
        format!(
            "{} ({:.0} req/s)",
            secs(took),
            total as f64 / took.as_secs_f64().max(1e-9)
        ),
    );
    table.row(
        "latency p50 / p99",
        format!("{:.1} ms / {:.1} ms", pct(0.5), pct(0.99)),
    );
    table.row("answered 200", format!("{ok} of {total}"));
    for (status, n) in statuses.iter().filter(|(s, _)| s.as_str() != "200") {
        table.row(format!("answered {status}"), n.to_string());
    }
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    table.row("idle: ferrobase RSS", mib(idle.server_rss));
    table.row(
        format!("after creating {projects}: ferrobase RSS"),
        format!(
            "{} (+{:.1} KiB per project)",
            mib(created.server_rss),
            created.server_rss.saturating_sub(idle.server_rss) as f64 / 1024.0 / projects as f64
        ),
    );
    table.row("under load (peak): ferrobase RSS", mib(peak.0));
    table.row(
        "under load (peak): postgres processes",
        format!(
            "{} (idle cluster: {}; PSS peak {})",
            peak.1,
            idle.pg_processes,
            mib(peak.2)
        ),
    );
    // The node's budget, from its metrics.
    let metrics = http::get(&format!("{base}/metrics"), None)?.text();
    for name in [
        "ferrobase_db_connection_budget",
        "ferrobase_db_budget_reclaimed_total",
        "ferrobase_project_pools_open",
    ] {
        // The exact metric, not one whose name it prefixes (`…_opened_total`).
        let exact = |l: &&str| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        };
        if let Some(line) = metrics.lines().find(exact) {
            table.row(name, line.trim_start_matches(name).trim().to_owned());
        }
    }
    // The figures matter more than a slow stop (closing 1,000 pools and a
    // cluster holding 1,000 databases can outlast the stop grace).
    if let Err(e) = server.stop() {
        println!("    (stopping the server: {e:#})");
    }
    Ok(table)
}
