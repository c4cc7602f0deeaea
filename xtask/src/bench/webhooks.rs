//! `webhooks`: how fast events become signed HTTP deliveries (issue 13's
//! benchmark).
//!
//! One `ferrobase serve`, one project, one endpoint pointing at a receiver
//! run here (a plain threaded HTTP/1.1 server on 127.0.0.1 that answers 200
//! at once and notes when each delivery arrived). Events are written the way
//! the realtime hub writes them, as rows of `realtime.messages`, through one
//! `psql` session on the project database, so "commit" is when `psql`
//! reports the `INSERT` done.
//!
//! - throughput: `EVENTS` events committed in one statement; deliveries per
//!   second from that commit to the last arrival;
//! - latency: `SAMPLES` single events, one at a time; commit → arrival
//!   (p50, p99, max), with the node's `LISTEN` wake-up warm, as on a busy
//!   project.
//!
//! Environment: `FERROBASE_BENCH_WEBHOOKS_EVENTS` (default 5000, 1000 when
//! `CI=true`), `FERROBASE_BENCH_WEBHOOKS_SAMPLES` (default 100, 30 in CI),
//! `FERROBASE_BENCH_WEBHOOKS_CONCURRENCY` (the server's
//! `FERROBASE_WEBHOOK_CONCURRENCY`, default 64).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::load::{env_num, login, str_field};
use super::server::Server;
use super::{Ctx, Table};
use crate::http;

pub fn run(ctx: &Ctx) -> Result<Table> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let events = env_num(
        "FERROBASE_BENCH_WEBHOOKS_EVENTS",
        if ci { 1000 } else { 5000 },
    )?
    .max(1);
    let samples = env_num(
        "FERROBASE_BENCH_WEBHOOKS_SAMPLES",
        if ci { 30 } else { 100 },
    )?
    .max(1);
    let concurrency = env_num("FERROBASE_BENCH_WEBHOOKS_CONCURRENCY", 64)?.max(1);
    let mut table = Table::new(format!(
        "webhooks ({events} events at once, {samples} one at a time, {concurrency} in flight per node)"
    ));

    let receiver = Receiver::start()?;
    let mut server = Server::new(&ctx.bin)?;
    server.env = vec![
        ("FERROBASE_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()),
        (
            "FERROBASE_WEBHOOK_CONCURRENCY".into(),
            concurrency.to_string(),
        ),
    ];
    server.start()?;
    let base = server.base_url();
    let admin = login(&server)?;
    let project = http::post(
        &format!("{base}/platform/v1/projects"),
        Some(&admin),
        &json!({"ref": "bench-hooks"}),
    )?
    .expect(201, "create project")?
    .json()?;
    let db_url = str_field(&project, "db_url")?;
    http::post(
        &format!("{base}/p/bench-hooks/admin/v1/webhooks"),
        Some(&admin),
        &json!({"url": format!("{}/hook", receiver.url), "events": ["bench"]}),
    )?
    .expect(201, "create endpoint")?;

    let mut psql = Psql::start(&db_url)?;
    // Warm-up: a first delivery opens the pool, the HTTP connection and the LISTEN wake-up.
    psql.exec("insert into realtime.messages (topic, event) values ('bench', 'warm-up')")?;
    receiver.wait_for(1, Duration::from_secs(30))?;

    // Throughput.
    let before = receiver.count();
    psql.exec(&format!(
        "insert into realtime.messages (topic, event, payload) \
         select 'bench', 'load', jsonb_build_object('i', i) from generate_series(1, {events}) i"
    ))?;
    let committed = Instant::now();
    let total = before + events as usize;
    receiver.wait_for(total, Duration::from_secs(600))?;
    let last = receiver.arrival(total - 1).context("last arrival")?;
    let elapsed = last.saturating_duration_since(committed);
    let rate = events as f64 / elapsed.as_secs_f64().max(1e-6);
    println!(
        "    throughput: {events} deliveries in {:.2} s = {rate:.0}/s",
        elapsed.as_secs_f64()
    );
    table.row(
        "deliveries/s (one endpoint, bulk commit)",
        format!(
            "{rate:>8.0} /s  ({events} in {:.2} s)",
            elapsed.as_secs_f64()
        ),
    );

    // Latency, one event at a time.
    let mut lat = Vec::with_capacity(samples as usize);
    for i in 0..samples {
        let n = receiver.count();
        psql.exec(&format!(
            "insert into realtime.messages (topic, event, payload) values ('bench', 'one', '{{\"i\": {i}}}')"
        ))?;
        let committed = Instant::now();
        receiver.wait_for(n + 1, Duration::from_secs(30))?;
        let arrived = receiver.arrival(n).context("arrival")?;
        lat.push(arrived.saturating_duration_since(committed).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(20));
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "    commit → delivery: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    table.row(
        "commit → delivery (single events)",
        format!(
            "p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
            pct(0.5),
            pct(0.99),
            pct(1.0)
        ),
    );
    psql.stop();
    server.stop()?;
    Ok(table)
}

/// One `psql` session on the project database, fed statement by statement.
struct Psql {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Psql {
    fn start(db_url: &str) -> Result<Psql> {
        let bin = crate::pg::find_bin()?.join("psql");
        let mut child = Command::new(&bin)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", db_url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdin = child.stdin.take().context("psql stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("psql stdout")?);
        Ok(Psql {
            child,
            stdin,
            stdout,
        })
    }

    /// Runs one statement (autocommit) and returns once psql reports it done.
    fn exec(&mut self, sql: &str) -> Result<()> {
        writeln!(self.stdin, "{sql};\n\\echo __done__")?;
        self.stdin.flush()?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("psql exited while running: {sql}");
            }
            if line.trim() == "__done__" {
                return Ok(());
            }
        }
    }

    fn stop(mut self) {
        let _ = writeln!(self.stdin, "\\q");
        let _ = self.child.wait();
    }
}

/// A tiny HTTP/1.1 receiver (keep-alive, one thread per connection) noting
/// when each request arrived.
struct Receiver {
    url: String,
    arrivals: Arc<(Mutex<Vec<Instant>>, Condvar)>,
}

impl Receiver {
    fn start() -> Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let arrivals: Arc<(Mutex<Vec<Instant>>, Condvar)> = Arc::default();
        let shared = arrivals.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Ok(Receiver { url, arrivals })
    }

    fn count(&self) -> usize {
        self.arrivals.0.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn arrival(&self, i: usize) -> Option<Instant> {
        self.arrivals.0.lock().ok()?.get(i).copied()
    }

    fn wait_for(&self, n: usize, timeout: Duration) -> Result<()> {
        let (lock, cv) = &*self.arrivals;
        let deadline = Instant::now() + timeout;
        let mut got = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "only {} of {n} deliveries arrived in {} s",
                    got.len(),
                    timeout.as_secs()
                );
            }
            got = cv
                .wait_timeout(got, left)
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .0;
        }
        Ok(())
    }
}

fn serve(stream: TcpStream, arrivals: &(Mutex<Vec<Instant>>, Condvar)) -> Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        {
            let (lock, cv) = arrivals;
            if let Ok(mut v) = lock.lock() {
                v.push(Instant::now());
            }
            cv.notify_all();
        }
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}
