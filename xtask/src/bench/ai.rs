//! `ai`: what the AI gateway adds to a streamed chat completion (issue 15's
//! benchmark).
//!
//! A fake OpenAI-compatible upstream runs here (a threaded HTTP/1.1 server
//! on 127.0.0.1, keep-alive, `TCP_NODELAY`) that answers
//! `POST /v1/chat/completions` with `stream: true` the way OpenAI documents
//! it: `CHUNKS` `chat.completion.chunk` events `CHUNK_DELAY_MS` apart, a
//! final usage chunk (`choices: []`, `usage`), then `data: [DONE]`. The
//! gateway's platform default upstream (`FERROBASE_AI_BASE_URL`) points at it.
//!
//! - latency: `SAMPLES` streamed completions, each sent once straight to the
//!   upstream and once through the gateway (`{project}/ai/v1/chat/completions`
//!   with the service-role key, no quotas), alternating so both sides see the
//!   same machine; one keep-alive connection per side, as the official clients
//!   hold one. Time to first token is request written → first `data:` event
//!   read; per-chunk time is first event → `[DONE]` divided by the events in
//!   between. p50/p99 of each side and of the paired differences (gateway
//!   minus direct, per request).
//! - memory: `STREAMS` concurrent slow streams through the gateway
//!   (`SLOW_CHUNKS` events `SLOW_DELAY_MS` apart each); the server's `VmRSS`
//!   before, sampled every 100 ms while they are open (peak, and when all
//!   were open), and after they ended.
//!
//! Goal from the issue: ≤ 2 ms added TTFT p50. Figures are noisy on a
//! shared 2-core machine: compare the two sides of one run.
//!
//! Environment (`FERROBASE_BENCH_AI_…`): `SAMPLES` (default 300, 100 when
//! `CI=true`), `CHUNKS` (default 50), `CHUNK_DELAY_MS` (default 0),
//! `STREAMS` (default 1000, 200 in CI), `SLOW_CHUNKS` (default 40),
//! `SLOW_DELAY_MS` (default 500).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::load::{env_num, login, str_field};
use super::server::Server;
use super::{Ctx, Table};
use crate::{http, proc};

/// Model name that makes the fake upstream stream slowly (memory phase).
const SLOW_MODEL: &str = "bench-slow";
/// Stack of the harness's many small threads (two per slow stream).
const STACK: usize = 128 * 1024;

/// How the fake upstream streams.
#[derive(Clone, Copy)]
struct Pace {
    chunks: usize,
    delay: Duration,
    slow_chunks: usize,
    slow_delay: Duration,
}

pub fn run(ctx: &Ctx) -> Result<Table> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let samples = env_num("FERROBASE_BENCH_AI_SAMPLES", if ci { 100 } else { 300 })?.max(10);
    let pace = Pace {
        chunks: usize::try_from(env_num("FERROBASE_BENCH_AI_CHUNKS", 50)?.max(2))?,
        delay: Duration::from_millis(env_num("FERROBASE_BENCH_AI_CHUNK_DELAY_MS", 0)?),
        slow_chunks: usize::try_from(env_num("FERROBASE_BENCH_AI_SLOW_CHUNKS", 40)?.max(2))?,
        slow_delay: Duration::from_millis(env_num("FERROBASE_BENCH_AI_SLOW_DELAY_MS", 500)?),
    };
    let streams = usize::try_from(
        env_num("FERROBASE_BENCH_AI_STREAMS", if ci { 200 } else { 1000 })?.max(1),
    )?;
    let mut table = Table::new(format!(
        "ai (streamed chat, {} chunks {} ms apart, {samples} samples per side; {streams} slow streams)",
        pace.chunks,
        pace.delay.as_millis()
    ));

    let upstream = FakeUpstream::start(pace)?;
    let mut server = Server::new(&ctx.bin)?;
    server.env = vec![
        (
            "FERROBASE_AI_BASE_URL".into(),
            format!("{}/v1", upstream.url),
        ),
        ("FERROBASE_AI_API_KEY".into(), "sk-bench-upstream".into()),
        // The slow streams are silent for SLOW_DELAY_MS between events.
        (
            "FERROBASE_AI_STREAM_IDLE_TIMEOUT_MS".into(),
            (pace.slow_delay.as_millis() * 4 + 10_000).to_string(),
        ),
    ];
    server.start()?;
    let pid = server.pid().context("server not running")?;
    let admin = login(&server)?;
    let project = http::post(
        &format!("{}/platform/v1/projects", server.base_url()),
        Some(&admin),
        &json!({"ref": "bench-ai"}),
    )?
    .expect(201, "create project")?
    .json()?;
    let url = str_field(&project, "url")?;
    let service = str_field(&project, "service_role_key")?;
    let gateway_addr = authority(&server.base_url())?;
    let gateway_path = format!("{}/ai/v1/chat/completions", path_of(&url)?);
    let direct_addr = authority(&upstream.url)?;
    let direct_path = "/v1/chat/completions".to_owned();

    // Latency, paired.
    let body = |model: &str| {
        json!({
            "model": model,
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "Say hello in fifty words."}],
        })
        .to_string()
    };
    let fast = body("bench-model");
    let mut direct = Conn::new(&direct_addr, None);
    let mut gateway = Conn::new(&gateway_addr, Some(service.clone()));
    let warmup = 20;
    let (mut d_ttft, mut g_ttft, mut d_chunk, mut g_chunk) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut diff_ttft, mut diff_chunk) = (Vec::new(), Vec::new());
    let mut events = 0;
    for i in 0..(warmup + samples) {
        let d = direct.stream(&direct_path, &fast)?;
        let g = gateway.stream(&gateway_path, &fast)?;
        if d.events != g.events {
            bail!(
                "direct stream had {} events, the gateway's {}",
                d.events,
                g.events
            );
        }
        events = g.events;
        if i < warmup {
            continue;
        }
        d_ttft.push(ms(d.ttft));
        g_ttft.push(ms(g.ttft));
        d_chunk.push(d.per_chunk_ms());
        g_chunk.push(g.per_chunk_ms());
        diff_ttft.push(ms(g.ttft) - ms(d.ttft));
        diff_chunk.push(g.per_chunk_ms() - d.per_chunk_ms());
    }
    drop((direct, gateway));
    let [d_ttft, g_ttft, d_chunk, g_chunk, diff_ttft, diff_chunk] =
        [d_ttft, g_ttft, d_chunk, g_chunk, diff_ttft, diff_chunk].map(Pcts::of);
    println!("    TTFT direct   {}", d_ttft.fmt(2));
    println!("    TTFT gateway  {}", g_ttft.fmt(2));
    println!("    chunk direct  {} (per event)", d_chunk.fmt(3));
    println!("    chunk gateway {} (per event)", g_chunk.fmt(3));

    table.row(
        "events per stream (incl. usage + [DONE])",
        events.to_string(),
    );
    table.row("time to first token, direct", d_ttft.fmt(2));
    table.row("time to first token, through the gateway", g_ttft.fmt(2));
    table.row(
        "TTFT added by the gateway (paired; goal p50 <= 2 ms)",
        diff_ttft.fmt(2),
    );
    table.row(
        "TTFT ratio gateway / direct (p50)",
        format!("{:.1}x", g_ttft.p50 / d_ttft.p50.max(1e-9)),
    );
    table.row("per-chunk time, direct", d_chunk.fmt(3));
    table.row("per-chunk time, through the gateway", g_chunk.fmt(3));
    table.row(
        "per-chunk time added by the gateway (paired)",
        diff_chunk.fmt(3),
    );
    table.row(
        "whole stream ratio gateway / direct (p50)",
        format!(
            "{:.1}x",
            (g_ttft.p50 + g_chunk.p50 * (events - 1) as f64)
                / (d_ttft.p50 + d_chunk.p50 * (events - 1) as f64).max(1e-9)
        ),
    );

    // Memory with many concurrent slow streams.
    std::thread::sleep(Duration::from_secs(2));
    let before = proc::rss(pid).context("reading VmRSS")?;
    let slow = Arc::new(body(SLOW_MODEL));
    let opened = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (addr, path, key, slow) = (
            gateway_addr.clone(),
            gateway_path.clone(),
            service.clone(),
            slow.clone(),
        );
        let (opened, finished, failed, first_error) = (
            opened.clone(),
            finished.clone(),
            failed.clone(),
            first_error.clone(),
        );
        let h = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(move || {
                let mut conn = Conn::new(&addr, Some(key));
                let result = conn.stream_with(&path, &slow, || {
                    opened.fetch_add(1, Ordering::SeqCst);
                });
                match result {
                    Ok(_) => finished.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        if let Ok(mut slot) = first_error.lock() {
                            slot.get_or_insert_with(|| format!("{e:#}"));
                        }
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            })
            .context("spawning a stream client thread")?;
        handles.push(h);
    }
    let mut peak = before;
    let mut all_open_rss = None;
    let mut all_open_after = None;
    let deadline =
        started + pace.slow_delay * u32::try_from(pace.slow_chunks)? * 3 + Duration::from_secs(120);
    while finished.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst) < streams {
        if Instant::now() > deadline {
            bail!("the slow streams did not end in time");
        }
        if let Some(r) = proc::rss(pid) {
            peak = peak.max(r);
            if all_open_rss.is_none()
                && opened.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst) >= streams
            {
                all_open_rss = Some(r);
                all_open_after = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for h in handles {
        let _ = h.join();
    }
    let ended = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let after = proc::rss(pid).context("reading VmRSS")?;
    let (ok, bad) = (
        finished.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
    );
    if let Some(e) = first_error.lock().ok().and_then(|s| s.clone()) {
        println!("    first stream error: {e}");
    }
    println!(
        "    {streams} slow streams: {ok} completed, {bad} failed, all open after {}, all ended after {}",
        all_open_after.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        format_args!("{:.1} s", ended.as_secs_f64())
    );
    table.row(
        format!("{streams} slow streams: completed / failed"),
        format!("{ok} / {bad}"),
    );
    table.row("server RSS before the streams", proc::mib(before));
    table.row(
        format!("server RSS with all {streams} open"),
        all_open_rss.map_or("-".into(), |r| {
            format!(
                "{} (+{:.1} KiB per stream)",
                proc::mib(r),
                r.saturating_sub(before) as f64 / 1024.0 / streams as f64
            )
        }),
    );
    table.row("server RSS peak while streaming", proc::mib(peak));
    table.row("server RSS 3 s after they ended", proc::mib(after));
    server.stop()?;
    upstream.stop();
    Ok(table)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `127.0.0.1:port` of an `http://` URL.
fn authority(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    Ok(rest.split('/').next().unwrap_or(rest).to_owned())
}

/// The path of an `http://` URL, without a trailing `/` (empty when none).
fn path_of(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    Ok(rest
        .find('/')
        .map_or_else(String::new, |i| rest[i..].trim_end_matches('/').to_owned()))
}

/// p50 and p99 of a sample.
struct Pcts {
    p50: f64,
    p99: f64,
}

impl Pcts {
    fn of(mut v: Vec<f64>) -> Pcts {
        v.sort_by(f64::total_cmp);
        let at = |q: usize| v.get((v.len() * q / 100).min(v.len().saturating_sub(1)));
        Pcts {
            p50: at(50).copied().unwrap_or(f64::NAN),
            p99: at(99).copied().unwrap_or(f64::NAN),
        }
    }

    fn fmt(&self, digits: usize) -> String {
        format!("p50 {:.digits$} ms  p99 {:.digits$} ms", self.p50, self.p99)
    }
}

/// Timing of one streamed completion, as the client saw it.
struct Timing {
    ttft: Duration,
    total: Duration,
    /// `data:` events, `[DONE]` included.
    events: usize,
}

impl Timing {
    fn per_chunk_ms(&self) -> f64 {
        ms(self.total.saturating_sub(self.ttft)) / (self.events.max(2) - 1) as f64
    }
}

/// A keep-alive HTTP/1.1 client connection that reads SSE bodies as they come.
struct Conn {
    addr: String,
    bearer: Option<String>,
    io: Option<(TcpStream, BufReader<TcpStream>)>,
}

impl Conn {
    fn new(addr: &str, bearer: Option<String>) -> Conn {
        Conn {
            addr: addr.to_owned(),
            bearer,
            io: None,
        }
    }

    fn stream(&mut self, path: &str, body: &str) -> Result<Timing> {
        self.stream_with(path, body, || {})
    }

    /// Sends one streaming request; `on_first` runs when the first event arrived.
    fn stream_with(&mut self, path: &str, body: &str, on_first: impl FnOnce()) -> Result<Timing> {
        if self.io.is_none() {
            let s =
                TcpStream::connect(&self.addr).with_context(|| format!("connect {}", self.addr))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(120)))?;
            let r = BufReader::with_capacity(64 * 1024, s.try_clone()?);
            self.io = Some((s, r));
        }
        let result = self.exchange(path, body, on_first);
        if !result.as_ref().is_ok_and(|(_, keep)| *keep) {
            self.io = None;
        }
        result.map(|(t, _)| t)
    }

    fn exchange(
        &mut self,
        path: &str,
        body: &str,
        on_first: impl FnOnce(),
    ) -> Result<(Timing, bool)> {
        let (w, r) = self.io.as_mut().context("not connected")?;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: text/event-stream\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(b) = &self.bearer {
            head.push_str(&format!("Authorization: Bearer {b}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        let sent = Instant::now();
        w.write_all(head.as_bytes())?;
        let (status, chunked, length, close) = read_head(r)?;
        if status != 200 {
            let mut text = vec![0u8; length.unwrap_or(0).min(4096)];
            let _ = r.read_exact(&mut text);
            bail!(
                "HTTP {status} from {}{path}: {}",
                self.addr,
                String::from_utf8_lossy(&text)
            );
        }
        if !chunked {
            bail!("expected a chunked event stream");
        }
        let mut on_first = Some(on_first);
        let mut pending: Vec<u8> = Vec::new();
        let mut ttft = None;
        let mut events = 0;
        let mut done = false;
        loop {
            let size = read_chunk_size(r)?;
            if size == 0 {
                let mut crlf = String::new();
                r.read_line(&mut crlf)?;
                break;
            }
            let start = pending.len();
            pending.resize(start + size, 0);
            r.read_exact(&mut pending[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let ev: Vec<u8> = pending.drain(..end + 2).collect();
                if ev.starts_with(b"data: ") {
                    events += 1;
                    if ttft.is_none() {
                        ttft = Some(sent.elapsed());
                        if let Some(f) = on_first.take() {
                            f();
                        }
                    }
                    if ev.starts_with(b"data: [DONE]") {
                        done = true;
                    } else if ev.windows(8).any(|w| w == b"\"error\":") {
                        bail!("error event: {}", String::from_utf8_lossy(&ev));
                    }
                }
            }
        }
        let total = sent.elapsed();
        if !done {
            bail!("the stream ended without [DONE]");
        }
        Ok((
            Timing {
                ttft: ttft.context("no event")?,
                total,
                events,
            },
            !close,
        ))
    }
}

/// Status, chunked?, content length, `Connection: close`?
fn read_head(r: &mut BufReader<TcpStream>) -> Result<(u16, bool, Option<usize>, bool)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed before a response");
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("malformed status line {line:?}"))?;
    let (mut chunked, mut length, mut close) = (false, None, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("connection closed in the response head");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.contains("close");
        }
    }
    Ok((status, chunked, length, close))
}

fn read_chunk_size(r: &mut BufReader<TcpStream>) -> Result<usize> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed inside a chunked body");
    }
    let hex = line.trim().split(';').next().unwrap_or_default();
    usize::from_str_radix(hex, 16).with_context(|| format!("bad chunk size {line:?}"))
}

/// The fake OpenAI-compatible upstream.
struct FakeUpstream {
    url: String,
    listener: TcpListener,
}

impl FakeUpstream {
    fn start(pace: Pace) -> Result<FakeUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let accept = listener.try_clone()?;
        std::thread::Builder::new()
            .name("fake-openai".into())
            .spawn(move || {
                for conn in accept.incoming() {
                    let Ok(conn) = conn else {
                        continue;
                    };
                    let spawned = std::thread::Builder::new()
                        .stack_size(STACK)
                        .spawn(move || {
                            // A connection ends on EOF or any error.
                            let _ = serve_conn(conn, pace);
                        });
                    if spawned.is_err() {
                        eprintln!("xtask: fake upstream could not spawn a thread");
                    }
                }
            })?;
        Ok(FakeUpstream { url, listener })
    }

    /// Stops accepting (the accept thread ends with the process).
    fn stop(self) {
        let _ = self.listener.set_nonblocking(true);
    }
}

fn serve_conn(conn: TcpStream, pace: Pace) -> Result<()> {
    conn.set_nodelay(true)?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0u8; length];
        r.read_exact(&mut body)?;
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !path.ends_with("/chat/completions") || request["stream"] != Value::Bool(true) {
            let text = r#"{"error":{"message":"the bench upstream streams chat completions only","type":"invalid_request_error","code":null}}"#;
            write!(
                w,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )?;
            continue;
        }
        let model = request["model"]
            .as_str()
            .unwrap_or("bench-model")
            .to_owned();
        let (n, delay) = if model == SLOW_MODEL {
            (pace.slow_chunks, pace.slow_delay)
        } else {
            (pace.chunks, pace.delay)
        };
        w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )?;
        let send = |w: &mut TcpStream, v: &Value| -> Result<()> {
            let data = format!("data: {v}\n\n");
            write!(w, "{:x}\r\n{data}\r\n", data.len())?;
            Ok(())
        };
        for i in 0..n {
            if i > 0 && !delay.is_zero() {
                std::thread::sleep(delay);
            }
            let delta = if i == 0 {
                json!({"role": "assistant", "content": "Hello"})
            } else {
                json!({"content": " word"})
            };
            let finish = if i + 1 == n {
                json!("stop")
            } else {
                Value::Null
            };
            send(
                &mut w,
                &json!({
                    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_764_460_800,
                    "model": model, "system_fingerprint": null,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                }),
            )?;
        }
        send(
            &mut w,
            &json!({
                "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_764_460_800,
                "model": model, "choices": [],
                "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n},
            }),
        )?;
        w.write_all(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let p = Pcts::of((1..=100).rev().map(f64::from).collect());
        assert_eq!((p.p50, p.p99), (51.0, 100.0));
        assert!(Pcts::of(Vec::new()).p50.is_nan());
    }

    #[test]
    fn the_fake_upstream_streams_like_openai() {
        let pace = Pace {
            chunks: 5,
            delay: Duration::ZERO,
            slow_chunks: 2,
            slow_delay: Duration::ZERO,
        };
        let up = FakeUpstream::start(pace).unwrap();
        let mut conn = Conn::new(&authority(&up.url).unwrap(), None);
        let body = json!({"model": "m", "stream": true, "messages": []}).to_string();
        for _ in 0..2 {
            let t = conn.stream("/v1/chat/completions", &body).unwrap();
            // 5 chunks, the usage chunk and [DONE], on one kept-alive connection.
            assert_eq!(t.events, 7);
            assert!(t.total >= t.ttft);
        }
        assert!(conn.io.is_some());
        up.stop();
    }
}
