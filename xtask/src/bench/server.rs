//! A `ferrobase serve` under test: its own temp data dir (the server
//! initialises and runs its own Postgres there), a free port, admin
//! credentials, and cleanup that also works when a suite fails half-way.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http;
use crate::proc::{self, sh_quote};

/// How long a graceful (SIGINT) shutdown may take before SIGKILL: the
/// shutdown checkpoint after creating hundreds of databases takes a while.
const STOP_GRACE: Duration = Duration::from_secs(120);
/// First start includes initdb and all migrations; be generous on slow VMs.
const READY_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Server {
    bin: PathBuf,
    /// Temp dir: `data/` (FERROBASE_DATA_DIR), `server.log`, `server.pid`.
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    pub admin_email: String,
    pub admin_password: String,
    /// Seconds after which idle per-project pools close.
    pub pool_idle_timeout_secs: u64,
    /// Extra environment variables for the server (e.g. `FERROBASE_DENO_BIN`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

/// Memory of the server and of its Postgres processes, in bytes.
pub struct Memory {
    pub server_rss: u64,
    pub pg_rss: u64,
    /// Proportional set size: shared buffers split between processes, so
    /// this sum does not count shared memory once per backend.
    pub pg_pss: u64,
    pub pg_processes: usize,
}

impl Server {
    /// Prepares (does not start) a server with an empty data dir.
    pub fn new(bin: &Path) -> Result<Server> {
        let root = proc::unique_temp_dir("fbbench")?;
        let server = Server {
            bin: bin.to_path_buf(),
            data: root.join("data"),
            log: root.join("server.log"),
            port: free_port()?,
            admin_email: "bench@ferrobase.local".to_owned(),
            admin_password: proc::random_hex(12)?,
            pool_idle_timeout_secs: 2,
            env: Vec::new(),
            child: None,
            root,
        };
        proc::spawn_watchdog(&server.watchdog_script());
        Ok(server)
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server and returns the time until `/health/ready` is 200.
    pub fn start(&mut self) -> Result<Duration> {
        if self.child.is_some() {
            bail!("server already running");
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let started = Instant::now();
        let child = Command::new(&self.bin)
            .arg("serve")
            .env("FERROBASE_DATA_DIR", &self.data)
            .env("FERROBASE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("FERROBASE_ADMIN_EMAIL", &self.admin_email)
            .env("FERROBASE_ADMIN_PASSWORD", &self.admin_password)
            .env(
                "FERROBASE_POOL_IDLE_TIMEOUT_SECS",
                self.pool_idle_timeout_secs.to_string(),
            )
            .env("FERROBASE_LOG_FORMAT", "json")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("FERROBASE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // Embedded mode: never let a developer's settings point it elsewhere.
            .env_remove("DATABASE_URL")
            .env_remove("FERROBASE_TEST_DATABASE_URL")
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        fs::write(self.root.join("server.pid"), child.id().to_string())?;
        self.child = Some(child);

        let ready_url = format!("{}/health/ready", self.base_url());
        loop {
            if let Ok(r) = http::get(&ready_url, None)
                && r.status == 200
            {
                return Ok(started.elapsed());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "ferrobase exited before it was ready ({status})\n{}",
                    self.log_tail()
                );
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "not ready after {} s\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGINT, then SIGKILL after [`STOP_GRACE`]. Returns how long it took.
    pub fn stop(&mut self) -> Result<Duration> {
        let Some(mut child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let started = Instant::now();
        proc::kill(child.id(), "INT");
        while started.elapsed() < STOP_GRACE {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    eprintln!("xtask: warning: ferrobase exited with {status} after SIGINT");
                }
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        self.kill_orphan_postgres();
        bail!(
            "ferrobase did not stop within {} s of SIGINT; killed it\n{}",
            STOP_GRACE.as_secs(),
            self.log_tail()
        )
    }

    /// Memory of the server process and every Postgres process serving our
    /// data dir (the postmaster's command line names the data dir; its
    /// backends rename themselves, so they are found as its descendants).
    pub fn memory(&self) -> Result<Memory> {
        let pid = self.pid().context("server not running")?;
        let server_rss = proc::rss(pid).context("reading the server's VmRSS")?;
        let pg = self.postgres_pids();
        Ok(Memory {
            server_rss,
            pg_rss: pg.iter().filter_map(|&p| proc::rss(p)).sum(),
            pg_pss: pg.iter().filter_map(|&p| proc::pss(p)).sum(),
            pg_processes: pg.len(),
        })
    }

    /// Every Postgres process serving our data dir (the postmaster's command
    /// line names the data dir; its backends rename themselves, so they are
    /// found as its descendants).
    fn postgres_pids(&self) -> HashSet<u32> {
        let procs = proc::processes();
        let needle = self.data.to_string_lossy();
        let mut pg: HashSet<u32> = procs
            .iter()
            .filter(|p| p.comm.starts_with("postgres") && p.cmdline.contains(needle.as_ref()))
            .map(|p| p.pid)
            .collect();
        loop {
            let before = pg.len();
            for p in &procs {
                if pg.contains(&p.ppid) {
                    pg.insert(p.pid);
                }
            }
            if pg.len() == before {
                break;
            }
        }
        pg
    }

    /// CPU ticks used so far by the server and by its Postgres processes
    /// (live ones: take both readings while the pools stay open).
    pub fn cpu_ticks(&self) -> Result<(u64, u64)> {
        let pid = self.pid().context("server not running")?;
        let server = proc::cpu_ticks(pid).context("reading the server's CPU time")?;
        let pg = self
            .postgres_pids()
            .into_iter()
            .filter_map(proc::cpu_ticks)
            .sum();
        Ok((server, pg))
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", self.log.display())
    }

    /// Postmasters left behind by a killed server: found through the
    /// `postmaster.pid` files under our data dir, checked against /proc.
    fn kill_orphan_postgres(&self) {
        for pidfile in find_files(&self.data, "postmaster.pid", 4) {
            let Some(pid) = fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let ours = fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains(self.data.to_string_lossy().as_ref())
            });
            if !ours {
                continue;
            }
            // SIGQUIT = immediate shutdown.
            proc::kill(pid, "QUIT");
            let started = Instant::now();
            while Path::new(&format!("/proc/{pid}")).exists()
                && started.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            proc::kill(pid, "KILL");
        }
    }

    /// Run by the watchdog if xtask dies (Ctrl-C): stop the server the same
    /// way, then any postmaster left, then delete everything.
    fn watchdog_script(&self) -> String {
        let root = sh_quote(&self.root.display().to_string());
        let grace = STOP_GRACE.as_secs();
        format!(
            r#"[ -d {root} ] || exit 0
cd /
if [ -f {root}/server.pid ]; then
  pid=$(cat {root}/server.pid)
  kill -INT "$pid" 2>/dev/null
  i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt {grace} ]; do sleep 1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
for f in $(find {root} -maxdepth 5 -name postmaster.pid 2>/dev/null); do
  kill -QUIT "$(head -n1 "$f")" 2>/dev/null
done
sleep 1
rm -rf {root}
"#
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("xtask: warning: {e:#}");
        }
        self.kill_orphan_postgres();
        if let Err(e) = fs::remove_dir_all(&self.root) {
            eprintln!(
                "xtask: warning: could not remove {}: {e}",
                self.root.display()
            );
        }
    }
}

/// A port that was free a moment ago (bind port 0, read it, drop it).
pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Files named `name` under `dir`, at most `depth` levels down.
fn find_files(dir: &Path, name: &str, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth > 0 {
            found.extend(find_files(&path, name, depth - 1));
        } else if kind.is_file() && entry.file_name() == name {
            found.push(path);
        }
    }
    found
}
