//! `realtime`: Socket.IO broadcast fan-out and idle-socket memory, side by
//! side with a Node `socket.io` 4.8 server doing the same broadcast
//! (`tests/peers/realtime_bench_server.mjs`), both driven by the same Node
//! `socket.io-client` load script (`tests/peers/realtime_bench.mjs`).
//!
//! (a) fan-out: 1,000 subscribers on one channel, one publisher keeping a
//! window of publishes in flight, 64-byte payloads: deliveries per second
//! and p50/p99 delivery latency. Ferrobase stores every message in Postgres
//! and delivers it from there (the Node server keeps nothing).
//! (b) RSS of each server with 10,000 idle sockets connected.
//!
//! Sizes: `FERROBASE_BENCH_RT_SUBSCRIBERS` (1000), `FERROBASE_BENCH_RT_MESSAGES`
//! (200), `FERROBASE_BENCH_RT_IDLE` (10000).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::server::Server;
use super::{Ctx, Table};
use crate::proc::mib;
use crate::{http, workspace_root};

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

struct Target {
    name: &'static str,
    origin: String,
    path: String,
    token: String,
    pid: u32,
}

pub fn run(ctx: &Ctx) -> Result<Table> {
    let subscribers = env_usize("FERROBASE_BENCH_RT_SUBSCRIBERS", 1000)?;
    let messages = env_usize("FERROBASE_BENCH_RT_MESSAGES", 200)?;
    let idle = env_usize("FERROBASE_BENCH_RT_IDLE", 10_000)?;
    let peers = crate::peers::ensure()?;
    let peers_dir = workspace_root().join("tests/peers");
    let node = peers
        .iter()
        .find(|(k, _)| *k == "FERROBASE_PEERS_NODE")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "node".to_owned());

    let mut server = Server::new(&ctx.bin)?;
    server.start()?;
    let base = server.base_url();
    let login = http::post(
        &format!("{base}/platform/v1/auth/login"),
        None,
        &json!({"email": server.admin_email, "password": server.admin_password}),
    )?
    .expect(200, "admin login")?
    .json()?;
    let admin = login["access_token"]
        .as_str()
        .context("admin token")?
        .to_owned();
    let project = http::post(
        &format!("{base}/platform/v1/projects"),
        Some(&admin),
        &json!({"ref": "rtbench"}),
    )?
    .expect(201, "create project")?
    .json()?;
    let anon = project["anon_key"].as_str().context("anon key")?.to_owned();
    http::post(
        &format!("{base}/p/rtbench/admin/v1/realtime/channels"),
        Some(&admin),
        &json!({"pattern": "bench:%", "public": true, "retention_hours": 1}),
    )?
    .expect(201, "create channel")?;
    let ours = Target {
        name: "ferrobase",
        origin: base.clone(),
        path: "/p/rtbench/realtime/v1/socket.io".into(),
        token: anon,
        pid: server.pid().context("server pid")?,
    };

    let port = free_port()?;
    let mut reference = NodeServer::start(&node, &peers_dir, port)?;
    let theirs = Target {
        name: "node socket.io 4.8",
        origin: format!("http://127.0.0.1:{port}"),
        path: "/socket.io".into(),
        token: String::new(),
        pid: reference.0.id(),
    };

    let mut table = Table::new(format!(
        "realtime ({subscribers} subscribers x {messages} messages of 64 B; {idle} idle sockets; shared 2-core VM, noisy)"
    ));
    let mut rates = Vec::new();
    for t in [&ours, &theirs] {
        println!("    fan-out on {}...", t.name);
        let r = fanout(&node, &peers_dir, t, subscribers, messages)?;
        let rate = r["deliveries_per_sec"].as_f64().unwrap_or(0.0);
        table.row(
            format!("{}: deliveries/s", t.name),
            format!(
                "{rate:.0} ({} of {} delivered)",
                r["deliveries"], r["expected"]
            ),
        );
        table.row(
            format!("{}: latency p50 / p99", t.name),
            format!(
                "{:.1} ms / {:.1} ms",
                r["p50_ms"].as_f64().unwrap_or(f64::NAN),
                r["p99_ms"].as_f64().unwrap_or(f64::NAN)
            ),
        );
        rates.push(rate);
    }
    if rates[1] > 0.0 {
        table.row(
            "fan-out ratio ferrobase / node",
            format!("{:.2}x", rates[0] / rates[1]),
        );
    }
    let mut rss = Vec::new();
    for t in [&ours, &theirs] {
        println!("    {idle} idle sockets on {}...", t.name);
        let (before, after) = idle_rss(&node, &peers_dir, t, idle)?;
        table.row(
            format!("{}: RSS idle -> with {idle} sockets", t.name),
            format!(
                "{} -> {} (+{})",
                mib(before),
                mib(after),
                mib(after.saturating_sub(before))
            ),
        );
        rss.push(after);
    }
    if rss[1] > 0 {
        table.row(
            "RSS ratio ferrobase / node (with sockets)",
            format!("{:.2}x", rss[0] as f64 / rss[1] as f64),
        );
    }
    reference.stop();
    server.stop()?;
    Ok(table)
}

fn spec(t: &Target, extra: Value) -> Value {
    let mut s = json!({"origin": t.origin, "path": t.path, "token": t.token});
    if let (Some(o), Value::Object(e)) = (s.as_object_mut(), extra) {
        o.extend(e);
    }
    s
}

fn fanout(
    node: &str,
    dir: &std::path::Path,
    t: &Target,
    subscribers: usize,
    messages: usize,
) -> Result<Value> {
    let s = spec(
        t,
        json!({"mode": "fanout", "channel": "bench:fanout", "subscribers": subscribers,
               "messages": messages, "window": 32}),
    );
    let out = Command::new(node)
        .arg(dir.join("realtime_bench.mjs"))
        .arg(s.to_string())
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .context("running realtime_bench.mjs")?;
    if !out.status.success() {
        bail!(
            "realtime_bench.mjs failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("bench output {text:?}"))
}

fn idle_rss(node: &str, dir: &std::path::Path, t: &Target, sockets: usize) -> Result<(u64, u64)> {
    std::thread::sleep(Duration::from_secs(2));
    let before = crate::proc::rss(t.pid).context("server RSS")?;
    let s = spec(t, json!({"mode": "idle", "sockets": sockets}));
    let mut child = Command::new(node)
        .arg("--max-old-space-size=4096")
        .arg(dir.join("realtime_bench.mjs"))
        .arg(s.to_string())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting idle sockets")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().transpose()?.unwrap_or_default();
    if ready.trim() != "ready" {
        let _ = child.kill();
        bail!("idle sockets did not connect: {ready:?}");
    }
    std::thread::sleep(Duration::from_secs(3));
    let after = crate::proc::rss(t.pid).context("server RSS")?;
    drop(child.stdin.take());
    let _ = child.wait();
    Ok((before, after))
}

struct NodeServer(Child);

impl NodeServer {
    fn start(node: &str, dir: &std::path::Path, port: u16) -> Result<NodeServer> {
        let mut child = Command::new(node)
            .arg(dir.join("realtime_bench_server.mjs"))
            .arg(port.to_string())
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the Node socket.io server")?;
        let stdout = child.stdout.take().context("stdout")?;
        let line = BufReader::new(stdout).lines().next().transpose()?;
        if !line.is_some_and(|l| l.starts_with("listening")) {
            let _ = child.kill();
            bail!("the Node socket.io server did not start");
        }
        Ok(NodeServer(child))
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
