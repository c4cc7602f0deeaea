//! `cargo xtask bench [SUITE...]`: benchmark harness. Prints figures, never
//! asserts timings (the machines we run on are too noisy for that).
//!
//! A suite is a function in [`SUITES`] taking the [`Ctx`]; add one by
//! writing `bench/<name>.rs` and a line in the table. Shared pieces:
//! [`server::Server`] (start/stop a `ferrobase serve` on a temp data dir),
//! [`Table`] (the summary printed at the end).

mod ai;
mod auth;
mod functions;
mod load;
mod platform;
mod pocketbase;
mod projects;
mod realtime;
mod rest;
mod server;
mod storage;
mod webhooks;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, proc, secs, target_dir};

/// Everything a suite gets.
pub struct Ctx {
    /// The release `ferrobase` binary.
    pub bin: PathBuf,
}

type Suite = fn(&Ctx) -> Result<Table>;

/// Every suite, in the order `cargo xtask bench` runs them.
const SUITES: &[(&str, &str, Suite)] = &[
    (
        "platform",
        "start-up time, idle memory, memory and time per project",
        platform::run,
    ),
    (
        "rest",
        "data API under load vs PocketBase, with pgbench as the ceiling",
        rest::run,
    ),
    (
        "auth",
        "sign-ins, refreshes and token checks per second",
        auth::run,
    ),
    (
        "storage",
        "object upload/download throughput vs PocketBase and a raw file copy, peak memory",
        storage::run,
    ),
    (
        "functions",
        "warm invoke overhead and throughput vs `deno serve`, cold start",
        functions::run,
    ),
    (
        "projects",
        "1,000 projects active at once on one node: no 503 under the connection budget",
        projects::run,
    ),
    (
        "realtime",
        "Socket.IO fan-out to 1,000 subscribers and idle-socket memory vs Node socket.io",
        realtime::run,
    ),
    (
        "webhooks",
        "deliveries per second to a local receiver, commit-to-delivery latency",
        webhooks::run,
    ),
    (
        "ai",
        "AI gateway: added time to first token and per chunk vs the upstream direct, RSS with 1,000 streams",
        ai::run,
    ),
];

pub fn run(args: Vec<String>) -> Result<()> {
    let selected: Vec<&(&str, &str, Suite)> = if args.is_empty() {
        SUITES.iter().collect()
    } else {
        args.iter()
            .map(|name| {
                SUITES.iter().find(|s| s.0 == name).with_context(|| {
                    let names: Vec<&str> = SUITES.iter().map(|s| s.0).collect();
                    format!("unknown bench suite `{name}` (have: {})", names.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };

    let ctx = Ctx {
        bin: server_binary()?,
    };
    let mut tables = Vec::new();
    for (name, about, suite) in selected {
        println!("\n==> bench {name}: {about}");
        let started = Instant::now();
        let table = suite(&ctx).with_context(|| format!("bench suite `{name}`"))?;
        println!("    ({name} took {})", secs(started.elapsed()));
        table.print();
        tables.push(table);
    }
    if tables.len() > 1 {
        println!("\n==> all suites");
        for table in &tables {
            table.print();
        }
    }
    Ok(())
}

/// `$FERROBASE_BENCH_BIN`, or a fresh `cargo build --release -p ferrobase-server`.
fn server_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("FERROBASE_BENCH_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("FERROBASE_BENCH_BIN={} is not a file", bin.display());
        }
        println!("==> using FERROBASE_BENCH_BIN={}", bin.display());
        return Ok(bin);
    }
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "ferrobase-server",
        "--bin",
        "ferrobase",
    ]);
    println!("==> {}", proc::display(&build));
    let started = Instant::now();
    proc::run(&mut build)?;
    println!("    (build took {})", secs(started.elapsed()));
    let bin = target_dir()?.join("release").join("ferrobase");
    if !bin.is_file() {
        bail!("built, but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// A two-column result table, printed after each suite.
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Self {
        Table {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.rows.push((name.into(), value.into()));
    }

    fn print(&self) {
        let width = self
            .rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0);
        let value_width = self
            .rows
            .iter()
            .map(|r| r.1.chars().count())
            .max()
            .unwrap_or(0);
        let rule = "-".repeat(width + value_width + 3);
        println!("\n{}\n{rule}", self.title);
        for (name, value) in &self.rows {
            println!("{name:<width$} | {value}");
        }
        println!("{rule}");
    }
}
