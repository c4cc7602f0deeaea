//! The local provider: Deno processes supervised by this server.
//!
//! **Isolation boundary: one OS process per function version, each with its
//! own restricted Deno permissions.** A process runs `functions/host.ts`
//! (embedded in the binary) with:
//! - `--allow-read` of its own version directory only (its code), so it can
//!   read neither another function's or project's code nor the server's
//!   files (data dir, `secrets.json`, the Postgres cluster); static and
//!   dynamic imports outside that directory are refused too;
//! - `--allow-write` and `--allow-net=unix:` of its own socket only (and
//!   `--allow-read` of it, which listening on a unix socket needs);
//! - `--allow-env` of its own variables only, in an environment that is
//!   cleared first (`FERROBASE_URL`, the project's keys, its secrets);
//! - `--allow-net` limited to the project API host (this server) plus
//!   `FERROBASE_FUNCTIONS_ALLOW_NET`;
//! - no `--allow-run`, `--allow-ffi`, `--allow-sys`; `--no-remote` (only
//!   `npm:` and local imports), `--no-prompt`; `--no-lock` (Deno writes a
//!   lock file itself, unchecked by permissions, where a `deno.json` says);
//! - `--v8-flags=--max-old-space-size` = the function's memory limit.
//! - `--config` of the function's own `deno.json`, or else of an empty config
//!   in its function directory, so Deno's on-disk `localStorage` (kept per
//!   config file) is the function's own, never shared through the host script.
//!
//! A process is started on the first invocation and kept warm (reused by
//! every invocation of that version; replaced when the version, settings or
//! secrets change; stopped after `FERROBASE_FUNCTIONS_IDLE_SECS` unused). The
//! server proxies each invocation over HTTP/1.1 on the process's unix socket
//! (connections are pooled). A timeout kills the process (an infinite loop
//! blocks its event loop, so it could not answer anyone else). When the
//! deadline passes while the caller is still sending the body, the process
//! is probed: one that does not answer is stuck and killed the same way (504),
//! one that does keeps serving (the slow caller gets a 408). A crash or an
//! out-of-memory abort ends only that process; the next invocation starts a
//! fresh one. Other functions and projects never share a process.
//!
//! Each node writes a version's files (`{data_dir}/functions/projects/
//! {project}/{slug}/v{version}-{checksum}`) when it deploys or first runs
//! it. Files of versions that no longer exist (pruned by a deploy,
//! `FERROBASE_FUNCTIONS_MAX_VERSIONS`) and of functions deleted on another
//! node are swept: at once for the deployed function on the node that
//! deploys, every `FERROBASE_FUNCTIONS_SWEEP_INTERVAL_MS` for all of them on
//! every node; a directory a process still runs is kept for a later pass.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use hyper::body::Body as _;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use uuid::Uuid;

use super::bundle::Bundle;
use super::logs::{LogLine, LogSink};
use super::runtime::{BodyError, BodyProgress, Deployment, InvokeError, RequestBody, Runtime};
use crate::platform::Platform;

/// The host script, embedded so the binary is self-contained.
const HOST_SCRIPT: &str = include_str!("../../../functions/host.ts");
/// How long a process has to answer the liveness probe sent when an
/// invocation's deadline passes while its caller is still sending the body.
const PROBE_WITHIN: Duration = Duration::from_secs(1);
/// Lines of stderr kept to explain a crash.
const TAIL_LINES: usize = 30;
/// Environment variables passed through to Deno itself (TLS and proxies for
/// `npm:` downloads); the function cannot read them (not in `--allow-env`).
const PASS_THROUGH_ENV: &[&str] = &[
    "DENO_CERT",
    "DENO_TLS_CA_STORE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "NPM_CONFIG_REGISTRY",
];

/// Slots by project, then function slug (looked up without allocating).
type SlotMap = HashMap<Uuid, HashMap<String, Arc<Slot>>>;

/// The process of one function on this node.
#[derive(Default)]
struct Slot {
    /// The warm process, read by every invocation (never held across an await).
    current: Mutex<Option<Arc<Worker>>>,
    /// Held while a process starts, so one invocation starts it and the
    /// others wait for it.
    starting: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The warm process if it is alive and runs `fingerprint`.
    fn warm(&self, fingerprint: &str) -> Option<Arc<Worker>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|w| w.alive.load(Ordering::Acquire) && w.fingerprint == fingerprint)
            .cloned()
    }

    /// Replaces the process (the old one is dropped outside the lock).
    fn set(&self, worker: Option<Arc<Worker>>) -> Option<Arc<Worker>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, worker)
    }
}

/// Deno processes of this node, by (project, function).
pub struct LocalRuntime {
    platform: Platform,
    logs: LogSink,
    /// The deno binary, or why there is none.
    deno: Result<PathBuf, String>,
    /// `{data_dir}/functions`: version directories and the Deno cache.
    root: PathBuf,
    /// The host script on disk.
    host: PathBuf,
    /// Short directory for the unix sockets (paths are limited to 108 bytes).
    sockets: PathBuf,
    /// `--allow-net` hosts (`None`: every host).
    allow_net: Option<String>,
    cold_start: Duration,
    slots: Arc<Mutex<SlotMap>>,
}

/// Finds deno: `FERROBASE_DENO_BIN`, else `deno` on `PATH`.
pub fn find_deno(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = configured {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(format!("FERROBASE_DENO_BIN={} does not exist", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("deno"))
        .find(|p| p.is_file())
        .ok_or_else(|| "deno was not found on PATH (and FERROBASE_DENO_BIN is not set)".to_owned())
}

impl LocalRuntime {
    /// Prepares the runtime (finds deno, writes the host script) and starts
    /// the idle reaper. Never fails: without deno, invocations answer 503.
    pub fn new(platform: Platform, logs: LogSink) -> Self {
        let config = platform.config();
        let root = config.data_dir.join("functions");
        let mut deno = find_deno(config.functions.deno_bin.as_deref());
        let host = root.join(format!(
            "host-{}.ts",
            &super::bundle::sha256_hex(HOST_SCRIPT.as_bytes())[..12]
        ));
        let sockets =
            std::env::temp_dir().join(format!("ferrobase-fn-{}", crate::crypto::random_hex(4)));
        let prepared = std::fs::create_dir_all(&root)
            .and_then(|()| std::fs::write(&host, HOST_SCRIPT))
            .and_then(|()| std::fs::create_dir_all(&sockets))
            .and_then(|()| restrict_dir(&sockets));
        if let Err(e) = prepared
            && deno.is_ok()
        {
            deno = Err(format!("could not prepare {}: {e}", root.display()));
        }
        let allow_net = allow_net(
            &config.public_url(),
            config.functions.functions_allow_net.as_deref(),
        );
        let slots: Arc<Mutex<SlotMap>> = Arc::default();
        let idle = Duration::from_secs(config.functions.functions_idle_secs.max(1));
        let cold_start = Duration::from_millis(config.functions.functions_cold_start_timeout_ms);
        tokio::spawn(reap_idle(Arc::downgrade(&slots), idle));
        tokio::spawn(sweep_files(
            platform.clone(),
            root.clone(),
            Arc::downgrade(&slots),
            Duration::from_millis(config.functions.functions_sweep_interval_ms.max(50)),
        ));
        Self {
            platform,
            logs,
            deno,
            root,
            host,
            sockets,
            allow_net,
            cold_start,
            slots,
        }
    }

    fn version_dir(&self, d: &Deployment) -> PathBuf {
        self.root
            .join("projects")
            .join(d.project_id.to_string())
            .join(&d.slug)
            .join(format!(
                "v{}-{}",
                d.version,
                &d.checksum[..d.checksum.len().min(16)]
            ))
    }

    /// Writes the version's files unless they are there already (the
    /// directory name carries the checksum, so existing files are the same).
    async fn materialize(
        &self,
        d: &Deployment,
        bundle: Option<&Bundle>,
    ) -> Result<PathBuf, String> {
        let dir = self.version_dir(d);
        if dir.is_dir() {
            return Ok(dir);
        }
        let loaded;
        let bundle = match bundle {
            Some(b) => b,
            None => {
                loaded = super::store::version_bundle(&self.platform, d.function_id, d.version)
                    .await
                    .map_err(|e| e.to_string())?;
                &loaded
            }
        };
        let files: Vec<(String, String)> = bundle
            .files
            .iter()
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect();
        let target = dir.clone();
        tokio::task::spawn_blocking(move || write_version(&target, &files))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("could not write the function's files: {e}"))?;
        Ok(dir)
    }

    fn slot(&self, d: &Deployment) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let per_project = slots.entry(d.project_id).or_default();
        if let Some(slot) = per_project.get(d.slug.as_str()) {
            return slot.clone();
        }
        per_project.entry(d.slug.clone()).or_default().clone()
    }

    /// The warm process for `d`, started (and waited for) when there is none
    /// or it serves another fingerprint or has died.
    async fn worker(&self, d: &Deployment) -> Result<Arc<Worker>, InvokeError> {
        let slot = self.slot(d);
        if let Some(w) = slot.warm(&d.fingerprint) {
            return Ok(w);
        }
        let _starting = slot.starting.lock().await;
        // Started by the invocation this one waited for.
        if let Some(w) = slot.warm(&d.fingerprint) {
            return Ok(w);
        }
        // A replaced process finishes its in-flight invocations, then its
        // last `Arc` drops and kills it.
        drop(slot.set(None));
        let w = Arc::new(self.spawn(d).await?);
        drop(slot.set(Some(w.clone())));
        Ok(w)
    }

    /// Forgets `w` if it is still the process of `d` (after a timeout or crash).
    fn forget(&self, d: &Deployment, w: &Arc<Worker>) {
        let slot = self.slot(d);
        let old = {
            let mut current = slot.current.lock().unwrap_or_else(|e| e.into_inner());
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, w)) {
                current.take()
            } else {
                None
            }
        };
        drop(old);
    }

    async fn spawn(&self, d: &Deployment) -> Result<Worker, InvokeError> {
        let deno = self
            .deno
            .as_ref()
            .map_err(|m| InvokeError::Unavailable(format!("Edge functions are disabled: {m}.")))?;
        let dir = self
            .materialize(d, None)
            .await
            .map_err(InvokeError::BootFailed)?;
        let socket = self
            .sockets
            .join(format!("{}.sock", crate::crypto::random_hex(8)));
        let entry = url::Url::from_file_path(dir.join(&d.entrypoint))
            .map_err(|()| InvokeError::BootFailed("bad entrypoint path".into()))?;
        let mut cmd = tokio::process::Command::new(deno);
        cmd.arg("run")
            .arg("--no-prompt")
            .arg("--no-remote")
            // The lock file is written by Deno itself, outside the permission
            // sandbox, wherever a deno.json's `lock` says: never use one.
            .arg("--no-lock")
            .arg(format!(
                "--allow-read={},{}",
                dir.display(),
                socket.display()
            ))
            .arg(format!("--allow-write={}", socket.display()))
            .arg(match &self.allow_net {
                Some(hosts) => format!("--allow-net=unix:{},{hosts}", socket.display()),
                None => "--allow-net".to_owned(),
            })
            .arg("--deny-net=169.254.169.254,metadata.google.internal")
            .arg(format!(
                "--v8-flags=--max-old-space-size={}",
                d.settings.memory_mb
            ));
        if !d.env.is_empty() {
            let names: Vec<&str> = d.env.iter().map(|(k, _)| k.as_str()).collect();
            cmd.arg(format!("--allow-env={}", names.join(",")));
        }
        match d.import_map.as_deref() {
            Some(m) if super::bundle::is_deno_config(m) => {
                cmd.arg(format!("--config={}", dir.join(m).display()));
            }
            other => {
                let scope = storage_scope(&dir)
                    .await
                    .map_err(|e| InvokeError::BootFailed(format!("storage scope: {e}")))?;
                cmd.arg(format!("--config={}", scope.display()));
                if let Some(m) = other {
                    cmd.arg(format!("--import-map={}", dir.join(m).display()));
                }
            }
        }
        cmd.arg(&self.host).arg(&socket).arg(entry.as_str());
        cmd.env_clear()
            .envs(d.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DENO_DIR", self.root.join("deno-cache"))
            .env("DENO_NO_UPDATE_CHECK", "1")
            .env("NO_COLOR", "1");
        for name in PASS_THROUGH_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        if std::env::var_os("DENO_TLS_CA_STORE").is_none() {
            cmd.env("DENO_TLS_CA_STORE", "system");
        }
        cmd.current_dir(&dir)
            // The lifeline: see `supervise`.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| InvokeError::BootFailed(format!("could not run deno: {e}")))?;
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let source = Source {
            logs: self.logs.clone(),
            project_id: d.project_id,
            slug: d.slug.clone(),
            version: d.version,
            tail: tail.clone(),
        };
        let stdout = child.stdout.take().map(|out| {
            let source = source.clone();
            tokio::spawn(read_stdout(out, source, ready_tx))
        });
        let stderr = child
            .stderr
            .take()
            .map(|err| tokio::spawn(read_stderr(err, source)));
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = watch::channel(false);
        let alive = Arc::new(AtomicBool::new(true));
        let lifeline = child.stdin.take();
        tokio::spawn(supervise(
            child,
            lifeline,
            kill_rx,
            alive.clone(),
            exit_tx,
            stdout,
            stderr,
        ));
        let worker = Worker {
            dir,
            socket,
            fingerprint: d.fingerprint.clone(),
            permits: Arc::new(Semaphore::new(
                usize::try_from(d.settings.concurrency).unwrap_or(1).max(1),
            )),
            alive,
            kill: Mutex::new(Some(kill_tx)),
            tail,
            exited: exit_rx,
            last_used: Mutex::new(Instant::now()),
            pool: Mutex::new(Vec::new()),
            max_idle: usize::try_from(d.settings.concurrency)
                .unwrap_or(1)
                .clamp(1, MAX_IDLE_CONNECTIONS),
        };
        let mut exited = worker.exited.clone();
        tokio::select! {
            ready = ready_rx => {
                if ready.is_ok() {
                    return Ok(worker);
                }
                let _ = exited.wait_for(|e| *e).await;
                Err(InvokeError::BootFailed(worker.explain()))
            }
            () = tokio::time::sleep(self.cold_start) => {
                worker.kill();
                Err(InvokeError::BootFailed(format!(
                    "the function did not start within {} ms",
                    self.cold_start.as_millis()
                )))
            }
        }
    }
}

/// Where a process's output goes.
#[derive(Clone)]
struct Source {
    logs: LogSink,
    project_id: Uuid,
    slug: String,
    version: i32,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Source {
    fn emit(&self, invocation_id: Option<Uuid>, level: &str, message: String) {
        if invocation_id.is_none() && level == "error" {
            let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() >= TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(message.clone());
        }
        self.logs.log(LogLine {
            project_id: self.project_id,
            slug: self.slug.clone(),
            version: Some(self.version),
            invocation_id,
            level: level.to_owned(),
            message,
            at: chrono::Utc::now(),
        });
    }
}

/// Most idle connections kept per process.
const MAX_IDLE_CONNECTIONS: usize = 512;

/// Longest log line kept, in bytes (a longer one is cut, with a marker).
const MAX_LINE: usize = 64 * 1024;
/// Longest stdout line read whole: the host's own lines carry a message of
/// up to 16 Ki characters, JSON-escaped, which may take more than
/// [`MAX_LINE`].
const MAX_STDOUT_LINE: usize = 4 * MAX_LINE;

/// Reads the next line (without its line end) into `buf`, keeping at most
/// `max` bytes of it; returns how many more it had, or `None` at the end of
/// the output. Bytes are taken as they come (UTF-8 or not), and a line never
/// takes more than `max` bytes of memory, however long it is.
async fn read_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<usize>> {
    buf.clear();
    let mut cut = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok((!buf.is_empty() || cut > 0).then_some(cut));
        }
        let end = available.iter().position(|&b| b == b'\n');
        let line = &available[..end.unwrap_or(available.len())];
        let keep = line.len().min(max.saturating_sub(buf.len()));
        buf.extend_from_slice(&line[..keep]);
        cut += line.len() - keep;
        let used = end.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if end.is_some() {
            if buf.last() == Some(&b'\r') && cut == 0 {
                buf.pop();
            }
            return Ok(Some(cut));
        }
    }
}

/// A line of output as a log message: invalid UTF-8 replaced, cut at
/// [`MAX_LINE`] bytes with a marker saying how many more there were
/// (`cut` of them already left unread).
fn message(bytes: &[u8], cut: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= MAX_LINE && cut == 0 {
        return text.into_owned();
    }
    let mut keep = MAX_LINE.min(text.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(
        "{}… [truncated {} bytes]",
        &text[..keep],
        text.len() - keep + cut
    )
}

async fn read_stdout(out: tokio::process::ChildStdout, source: Source, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut reader = BufReader::new(out);
    let mut line = Vec::new();
    while let Ok(Some(cut)) = read_line(&mut reader, &mut line, MAX_STDOUT_LINE).await {
        match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(v) if v["ready"] == true => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            Ok(v) if v["l"].is_string() => {
                let invocation = v["i"].as_str().and_then(|s| Uuid::parse_str(s).ok());
                let level = v["l"]
                    .as_str()
                    .filter(|l| matches!(*l, "log" | "info" | "warn" | "error" | "debug"))
                    .unwrap_or("log");
                let text = v["m"].as_str().unwrap_or_default();
                source.emit(invocation, level, message(text.as_bytes(), 0));
            }
            // Raw writes to stdout (Deno.stdout.write) that are not ours.
            _ => source.emit(None, "log", message(&line, cut)),
        }
    }
}

async fn read_stderr(err: tokio::process::ChildStderr, source: Source) {
    let mut reader = BufReader::new(err);
    let mut line = Vec::new();
    while let Ok(Some(cut)) = read_line(&mut reader, &mut line, MAX_LINE).await {
        source.emit(None, "error", message(&line, cut));
    }
}

/// Owns the child: waits for it to exit (or kills it when asked or when the
/// [`Worker`] is dropped), then marks it dead once its output is drained.
/// Waits for the host to exit (or kills it on `kill`). `lifeline`, the host's
/// stdin, is held open until then: the host exits when its stdin reaches
/// end-of-file, which also happens when this server dies without cleaning up
/// (`SIGKILL`, the OOM killer), so no host outlives its server as an orphan.
/// (`Child::wait` closes the child's stdin first, hence its own handle.)
async fn supervise(
    mut child: tokio::process::Child,
    lifeline: Option<tokio::process::ChildStdin>,
    kill: oneshot::Receiver<()>,
    alive: Arc<AtomicBool>,
    exited: watch::Sender<bool>,
    stdout: Option<tokio::task::JoinHandle<()>>,
    stderr: Option<tokio::task::JoinHandle<()>>,
) {
    tokio::select! {
        _ = child.wait() => {}
        _ = kill => {
            let _ = child.kill().await;
        }
    }
    drop(lifeline);
    alive.store(false, Ordering::Release);
    for task in [stdout, stderr].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
    }
    let _ = exited.send(true);
}

/// One warm Deno process.
struct Worker {
    /// The version directory it runs (never swept while it runs).
    dir: PathBuf,
    socket: PathBuf,
    fingerprint: String,
    permits: Arc<Semaphore>,
    alive: Arc<AtomicBool>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    exited: watch::Receiver<bool>,
    last_used: Mutex<Instant>,
    /// Idle HTTP/1.1 connections to the socket.
    pool: Mutex<Vec<SendRequest<Body>>>,
    /// Idle connections kept: as many as invocations may run at once (so a
    /// steady load reuses them all), within [`MAX_IDLE_CONNECTIONS`].
    max_idle: usize,
}

impl Worker {
    fn kill(&self) {
        self.alive.store(false, Ordering::Release);
        if let Some(tx) = self.kill.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// The last error lines of the process, to say why it failed.
    fn explain(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let text: Vec<&str> = tail
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(String::as_str)
            .collect();
        if text.is_empty() {
            "the process exited".to_owned()
        } else {
            let joined = text.join("\n");
            joined.chars().take(2000).collect()
        }
    }

    fn out_of_memory(&self) -> bool {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter()
            .any(|l| l.contains("out of memory") || l.contains("heap limit"))
    }

    /// A pooled connection that is ready, or a new one.
    ///
    /// A connection goes back to the pool as soon as the response body
    /// ended; its task may not have noticed yet, so it is waited for (it
    /// is ready within microseconds) rather than dropped: dropping it made
    /// most invocations under load open and close a socket of their own.
    async fn connection(&self) -> Result<SendRequest<Body>, String> {
        loop {
            let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut sender) = pooled else { break };
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Whether the process answers the host's liveness probe within
    /// `within` (on a connection of its own): a function stuck in a loop
    /// blocks its event loop, so it does not.
    async fn responsive(&self, within: Duration) -> bool {
        let probe = async {
            let stream = tokio::net::UnixStream::connect(&self.socket).await.ok()?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            let req = axum::http::Request::builder()
                .uri("/")
                .header("x-ferrobase-probe", "1")
                .body(Body::empty())
                .ok()?;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                resp = sender.send_request(req) => resp.ok(),
                _ = &mut conn => None,
            }
        };
        matches!(
            tokio::time::timeout(within, probe).await,
            Ok(Some(resp)) if resp.status() == axum::http::StatusCode::NO_CONTENT
        )
    }

    fn give_back(&self, sender: SendRequest<Body>) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < self.max_idle && !sender.is_closed() {
            pool.push(sender);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Stops processes unused for `idle`.
async fn reap_idle(slots: std::sync::Weak<Mutex<SlotMap>>, idle: Duration) {
    let mut tick = tokio::time::interval(
        (idle / 2).clamp(Duration::from_millis(200), Duration::from_secs(30)),
    );
    loop {
        tick.tick().await;
        let Some(slots) = slots.upgrade() else { return };
        let all: Vec<Arc<Slot>> = slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flat_map(|per_project| per_project.values().cloned())
            .collect();
        for slot in all {
            let Ok(_starting) = slot.starting.try_lock() else {
                continue;
            };
            let idle_worker = {
                let mut current = slot.current.lock().unwrap_or_else(|e| e.into_inner());
                if current.as_ref().is_some_and(|w| {
                    w.idle_for() > idle && w.permits.available_permits() > 0 && !in_use(w)
                }) {
                    current.take()
                } else {
                    None
                }
            };
            drop(idle_worker);
        }
    }
}

/// Runs [`sweep`] over every function of this node every `every`, until
/// the runtime is dropped.
async fn sweep_files(
    platform: Platform,
    root: PathBuf,
    slots: std::sync::Weak<Mutex<SlotMap>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(slots) = slots.upgrade() else { return };
        if let Err(error) = sweep(&platform, &root, &slots, None).await {
            tracing::warn!(%error, "could not delete the files of deleted function versions");
        }
    }
}

/// Version directories on this node, by function: (project, slug, names).
type OnDisk = Vec<(Uuid, String, Vec<String>)>;

/// Whether `name` is a version directory's: `v{version}-{checksum prefix}`.
fn is_version_dir(name: &str) -> bool {
    name.strip_prefix('v')
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(n, sum)| n.parse::<i32>().is_ok() && !sum.is_empty())
}

/// The version directories under `{root}/projects` (of one function, `only`).
fn list_versions(root: &Path, only: Option<(Uuid, &str)>) -> OnDisk {
    let projects = root.join("projects");
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    };
    let mut found = Vec::new();
    let functions: Vec<(Uuid, String)> = match only {
        Some((project, slug)) => vec![(project, slug.to_owned())],
        None => names(&projects)
            .into_iter()
            .filter_map(|p| Uuid::parse_str(&p).ok())
            .flat_map(|project| {
                names(&projects.join(project.to_string()))
                    .into_iter()
                    .filter(|slug| !slug.starts_with('.'))
                    .map(move |slug| (project, slug))
            })
            .collect(),
    };
    for (project, slug) in functions {
        let dir = projects.join(project.to_string()).join(&slug);
        if !dir.is_dir() {
            continue;
        }
        let versions: Vec<String> = names(&dir)
            .into_iter()
            .filter(|n| is_version_dir(n))
            .collect();
        found.push((project, slug, versions));
    }
    found
}

/// Deletes what this node holds of versions and functions that no longer
/// exist: version directories of versions a deploy pruned (on any node), and
/// everything of a function deleted on another node (the node that deletes
/// a function removes its files itself). A directory that a process of this
/// node still runs is kept for a later pass. `only`: one function.
async fn sweep(
    platform: &Platform,
    root: &Path,
    slots: &Mutex<SlotMap>,
    only: Option<(Uuid, &str)>,
) -> Result<usize, super::FunctionsError> {
    let listing_root = root.to_owned();
    let only_owned = only.map(|(p, s)| (p, s.to_owned()));
    let on_disk = tokio::task::spawn_blocking(move || {
        list_versions(
            &listing_root,
            only_owned.as_ref().map(|(p, s)| (*p, s.as_str())),
        )
    })
    .await
    .unwrap_or_default();
    if on_disk.is_empty() {
        return Ok(0);
    }
    let projects: Vec<Uuid> = on_disk.iter().map(|(p, _, _)| *p).collect();
    let slugs: Vec<&str> = on_disk.iter().map(|(_, s, _)| s.as_str()).collect();
    let rows = platform
        .control()
        .get()
        .await?
        .query(
            "select d.project_id, d.slug, f.id is not null, \
               coalesce((select array_agg('v' || v.version || '-' || left(v.checksum, 16)) \
                         from function_versions v where v.function_id = f.id), '{}') \
             from unnest($1::uuid[], $2::text[]) as d(project_id, slug) \
             left join functions f on f.project_id = d.project_id and f.slug = d.slug",
            &[&projects, &slugs],
        )
        .await?;
    let mut existing: HashMap<(Uuid, String), (bool, HashSet<String>)> = HashMap::new();
    for row in rows {
        let versions: Vec<String> = row.get(3);
        existing.insert(
            (row.get(0), row.get(1)),
            (row.get(2), versions.into_iter().collect()),
        );
    }
    // Read after the query: a process started meanwhile keeps its files.
    let running: HashSet<PathBuf> = slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .flat_map(|per_project| per_project.values())
        .filter_map(|slot| {
            let current = slot.current.lock().unwrap_or_else(|e| e.into_inner());
            current.as_ref().map(|w| w.dir.clone())
        })
        .collect();
    let root = root.to_owned();
    let removed = tokio::task::spawn_blocking(move || {
        let mut removed = 0;
        for (project, slug, versions) in on_disk {
            let Some((function_exists, kept)) = existing.get(&(project, slug.clone())) else {
                continue;
            };
            let project_dir = root.join("projects").join(project.to_string());
            let function_dir = project_dir.join(&slug);
            let mut left = 0;
            for name in versions {
                let dir = function_dir.join(&name);
                if kept.contains(&name) || running.contains(&dir) {
                    left += 1;
                } else if std::fs::remove_dir_all(&dir).is_ok() {
                    removed += 1;
                }
            }
            if !function_exists && left == 0 {
                // Gone everywhere: its storage scope and the emptied directories too.
                let _ = std::fs::remove_file(function_dir.join(STORAGE_SCOPE));
                let _ = std::fs::remove_dir(&function_dir);
                let _ = std::fs::remove_dir(&project_dir);
            }
        }
        removed
    })
    .await
    .unwrap_or_default();
    if removed > 0 {
        tracing::debug!(removed, "deleted the files of deleted function versions");
    }
    Ok(removed)
}

/// Whether any invocation holds a permit.
fn in_use(w: &Arc<Worker>) -> bool {
    // Each invocation holds a clone of the Arc while it runs.
    Arc::strong_count(w) > 1
}

fn restrict_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn write_version(dir: &Path, files: &[(String, String)]) -> std::io::Result<()> {
    let parent = dir
        .parent()
        .ok_or_else(|| std::io::Error::other("version dir has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}", crate::crypto::random_hex(6)));
    for (path, content) in files {
        let target = tmp.join(path);
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(target, content)?;
    }
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another invocation wrote the same version first.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Name of the empty Deno config written next to a function's versions.
const STORAGE_SCOPE: &str = "storage-scope.json";

/// The config file a function without its own `deno.json` runs with, in its
/// function directory (next to its versions), written once.
///
/// Deno keeps `localStorage` on disk under the process's origin: the
/// `--location`, else the config file, else the main module. The main
/// module is the host script every function runs, so without a config of
/// its own every function of every project would share one storage. This
/// file makes the origin the function's own (a function that brings a
/// `deno.json` has its version's). It sets no imports and no lock file.
async fn storage_scope(version_dir: &Path) -> std::io::Result<PathBuf> {
    let function_dir = version_dir
        .parent()
        .ok_or_else(|| std::io::Error::other("version dir has no parent"))?;
    let scope = function_dir.join(STORAGE_SCOPE);
    if tokio::fs::try_exists(&scope).await? {
        return Ok(scope);
    }
    // Written aside and renamed, so a process starting meanwhile never reads half of it.
    let tmp = function_dir.join(format!(".tmp-{}", crate::crypto::random_hex(6)));
    tokio::fs::write(&tmp, "{\"lock\": false}\n").await?;
    tokio::fs::rename(&tmp, &scope).await?;
    Ok(scope)
}

/// The `--allow-net` list: this server's host (so `FERROBASE_URL` works)
/// plus the operator's extra hosts; `*` allows every host except the cloud
/// metadata address (`None`).
fn allow_net(public_url: &str, extra: Option<&str>) -> Option<String> {
    let mut hosts = Vec::new();
    if let Ok(u) = url::Url::parse(public_url)
        && let Some(host) = u.host_str()
    {
        let port = u.port_or_known_default().unwrap_or(80);
        hosts.push(format!("{host}:{port}"));
    }
    for h in extra.unwrap_or_default().split(',') {
        let h = h.trim();
        if !h.is_empty() && h != "*" {
            hosts.push(h.to_owned());
        }
    }
    if extra.is_some_and(|e| e.split(',').any(|h| h.trim() == "*")) {
        return None;
    }
    Some(hosts.join(","))
}

/// The response body of one invocation: the function's body as it comes,
/// holding the concurrency permit and the connection until it ends, and
/// failing at the invocation's deadline. Polled directly (no stream adapter);
/// the deadline's timer is only armed if the body is not complete when first
/// asked for (a small response usually is).
struct Streaming {
    incoming: hyper::body::Incoming,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    permit: Option<OwnedSemaphorePermit>,
    sender: Option<SendRequest<Body>>,
    worker: Arc<Worker>,
    /// The request body: a connection still sending one (the function
    /// answered without reading it all) is not reused.
    request: BodyProgress,
    done: bool,
}

impl Streaming {
    fn finish(&mut self) {
        self.done = true;
        if let Some(sender) = self.sender.take()
            && self.request.received()
        {
            self.worker.give_back(sender);
        }
        self.permit = None;
        self.sleep = None;
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        // Read to its end but not asked for the end (an empty body): the
        // connection can still serve the next invocation.
        if !self.done && self.incoming.is_end_stream() {
            self.finish();
        }
    }
}

impl hyper::body::Body for Streaming {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Data only: trailers are not passed on.
                    if let Ok(data) = frame.into_data() {
                        // A body of known length is complete with its last
                        // byte: the server may drop it without asking for
                        // the end, so the connection goes back now.
                        if this.incoming.is_end_stream() {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
                    }
                }
                Poll::Ready(None) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                Poll::Pending => {
                    let deadline = this.deadline;
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        this.done = true;
                        return Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the function exceeded its timeout while streaming",
                        ))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.done {
            hyper::body::SizeHint::with_exact(0)
        } else {
            self.incoming.size_hint()
        }
    }
}

impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    fn unavailable(&self) -> Option<String> {
        self.deno.as_ref().err().cloned()
    }

    fn deploy<'a>(
        &'a self,
        d: &'a Deployment,
        bundle: &'a Bundle,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            self.materialize(d, Some(bundle)).await?;
            // The deploy may have pruned old versions: their files go now
            // on this node (other nodes' go at their next sweep).
            if let Err(error) = sweep(
                &self.platform,
                &self.root,
                &self.slots,
                Some((d.project_id, d.slug.as_str())),
            )
            .await
            {
                tracing::warn!(%error, slug = %d.slug, "could not delete the files of old function versions");
            }
            Ok(None)
        })
    }

    fn invoke(
        &self,
        d: Arc<Deployment>,
        req: axum::http::Request<RequestBody>,
    ) -> BoxFuture<'_, Result<axum::http::Response<Body>, InvokeError>> {
        Box::pin(async move {
            let timeout =
                Duration::from_millis(u64::try_from(d.settings.timeout_ms).unwrap_or(1000));
            let worker = self.worker(&d).await?;
            // The deadline starts once the process is up (cold start has its own limit).
            let deadline = tokio::time::Instant::now() + timeout;
            let request = req.body().progress();
            let req = req.map(|body| Body::new(body.with_deadline(deadline)));
            let permit = worker
                .permits
                .clone()
                .try_acquire_owned()
                .map_err(|_| InvokeError::Busy(d.settings.concurrency))?;
            worker.touch();
            let sent = tokio::time::timeout_at(deadline, async {
                let mut sender = worker.connection().await?;
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((sender, resp))
            })
            .await;
            // The caller's body failed (and took the connection with it), or
            // the deadline passed while waiting for the caller: the function
            // is fine (the body fails at that deadline too, ending the
            // connection).
            let callers_fault = match &sent {
                Err(_) => request.blame(true),
                Ok(Err(_)) => request.blame(false),
                Ok(Ok(_)) => None,
            };
            if let Some(e) = callers_fault {
                // At the deadline with the body still coming, the caller is
                // slow, but the function may be stuck as well (a loop that
                // never reads its body blocks every other invocation): a
                // process that does not answer the probe is killed like
                // any function that does not answer in time.
                if e == BodyError::TimedOut
                    && worker.alive.load(Ordering::Acquire)
                    && !worker.responsive(PROBE_WITHIN).await
                {
                    worker.kill();
                    self.forget(&d, &worker);
                    return Err(InvokeError::Timeout(d.settings.timeout_ms));
                }
                return Err(e.into());
            }
            match sent {
                Err(_) => {
                    // A function that does not answer in time may be stuck in
                    // a loop that blocks every other invocation: kill it.
                    worker.kill();
                    self.forget(&d, &worker);
                    Err(InvokeError::Timeout(d.settings.timeout_ms))
                }
                Ok(Err(e)) => {
                    let mut exited = worker.exited.clone();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), exited.wait_for(|e| *e)).await;
                    self.forget(&d, &worker);
                    if worker.out_of_memory() {
                        Err(InvokeError::OutOfMemory(d.settings.memory_mb))
                    } else if !worker.alive.load(Ordering::Acquire) {
                        Err(InvokeError::Crashed(worker.explain()))
                    } else {
                        worker.kill();
                        Err(InvokeError::Crashed(e))
                    }
                }
                Ok(Ok((sender, resp))) => {
                    let (parts, incoming) = resp.into_parts();
                    let body = Streaming {
                        incoming,
                        deadline,
                        sleep: None,
                        permit: Some(permit),
                        sender: Some(sender),
                        worker,
                        request,
                        done: false,
                    };
                    Ok(axum::http::Response::from_parts(parts, Body::new(body)))
                }
            }
        })
    }

    fn remove<'a>(
        &'a self,
        project_id: Uuid,
        _project_ref: &'a str,
        slug: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let slot = {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                let slot = slots.get_mut(&project_id).and_then(|m| m.remove(slug));
                if slots.get(&project_id).is_some_and(HashMap::is_empty) {
                    slots.remove(&project_id);
                }
                slot
            };
            if let Some(w) = slot.and_then(|slot| slot.set(None)) {
                w.kill();
            }
            let dir = self
                .root
                .join("projects")
                .join(project_id.to_string())
                .join(slug);
            let _ = tokio::fs::remove_dir_all(dir).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_version_directories_are_swept() {
        assert!(is_version_dir("v12-0123456789abcdef"));
        assert!(!is_version_dir("storage-scope.json"));
        assert!(!is_version_dir(".tmp-abc123"));
        assert!(!is_version_dir("vx-01"));
        assert!(!is_version_dir("v3-"));
        assert!(!is_version_dir("v3"));
    }

    #[test]
    fn allow_net_lists_this_server_and_extras() {
        assert_eq!(
            allow_net("http://127.0.0.1:8080", None).as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            allow_net("https://api.example.com", Some("api.stripe.com, x.io:444")).as_deref(),
            Some("api.example.com:443,api.stripe.com,x.io:444")
        );
        assert_eq!(allow_net("http://a:1", Some("*")), None);
    }

    #[tokio::test]
    async fn lines_are_read_within_the_bound_whatever_their_length() {
        let input: Vec<u8> = [
            &b"short\r\n"[..],
            &[b'x'; 10][..],
            b"\n",
            b"\xff\xfeok\n",
            b"no end",
        ]
        .concat();
        let mut reader = BufReader::with_capacity(4, &input[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        while let Some(cut) = read_line(&mut reader, &mut line, 8).await.expect("read") {
            got.push((String::from_utf8_lossy(&line).into_owned(), cut));
        }
        assert_eq!(
            got,
            [
                ("short".to_owned(), 0),
                ("xxxxxxxx".to_owned(), 2),
                ("\u{FFFD}\u{FFFD}ok".to_owned(), 0),
                ("no end".to_owned(), 0),
            ]
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary_with_a_marker() {
        assert_eq!(message(b"fine", 0), "fine");
        assert_eq!(message(b"a\xffb", 0), "a\u{FFFD}b");
        assert_eq!(message(b"cut", 5), "cut… [truncated 5 bytes]");
        let long = "é".repeat(MAX_LINE); // 2 bytes each
        let m = message(long.as_bytes(), 0);
        let kept = "é".repeat(MAX_LINE / 2);
        assert_eq!(m, format!("{kept}… [truncated {MAX_LINE} bytes]"));
        let odd = format!("a{long}");
        let m = message(odd.as_bytes(), 3);
        let kept = format!("a{}", "é".repeat(MAX_LINE / 2 - 1));
        assert_eq!(
            m,
            format!("{kept}… [truncated {} bytes]", odd.len() - kept.len() + 3)
        );
    }
}
