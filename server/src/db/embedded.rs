//! The managed local Postgres cluster behind the embedded default.
//!
//! Layout under the data dir: `postgres/` (PGDATA, also holding `server.log`)
//! and `run/` (the unix socket; no TCP port is opened, so it never clashes
//! with another Postgres on the machine). The superuser `ferrobase` logs in
//! with a password (scram-sha-256): project owner roles must not be able to
//! log in as anyone else, so `trust` is never used.
//!
//! `initdb` and `postgres` refuse to run as root. When we are root, every
//! command runs as the `postgres` system user through `runuser`, and the
//! cluster directories are owned by that user.
//!
//! The postgres user must be able to reach the cluster directories. When the
//! data dir lies below a directory it cannot enter (root's 0700 home, the
//! usual place to try a server in a container), the cluster is kept under
//! [`RELOCATED_BASE`] instead, in a folder named after the data dir, and the
//! banner says where.
//!
//! The postmaster is started with `pg_ctl` and so outlives a crashed server:
//! the next start finds it running and adopts it. A stale `postmaster.pid`
//! left by a dead postmaster is removed and the start retried. While the
//! server runs, [`supervise`] restarts a postmaster that died (OOM killer,
//! crash) with backoff, logging the tail of its log.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use tokio::process::Command;

/// The socket port number (it only names the socket file; no TCP listener).
const PORT: u16 = 5432;
/// Name of the cluster superuser.
pub const SUPERUSER: &str = "ferrobase";
/// Where clusters go when the `postgres` user cannot reach the data dir.
pub const RELOCATED_BASE: &str = "/var/lib/ferrobase/clusters";

/// Why the cluster could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// initdb/pg_ctl/postgres are not installed where we look.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`, \
         Fedora: `dnf install postgresql-server`, macOS: `brew install postgresql`), point \
         FERROBASE_PG_BIN at their directory, or set DATABASE_URL to use an existing server"
    )]
    BinariesNotFound,
    /// Running as root without a `postgres` system user to run the cluster as.
    #[error(
        "Postgres refuses to run as root and there is no `postgres` system user to run it as; \
         run Ferrobase as a regular user, create that user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    /// The socket path would exceed the 107-byte unix limit.
    #[error(
        "the data dir path is too long for a unix socket ({0}); set FERROBASE_DATA_DIR to a shorter path"
    )]
    PathTooLong(String),
    /// initdb failed; the message is one sentence saying what to do.
    #[error(
        "could not create the embedded Postgres cluster in {dir} ({reason}); set \
         FERROBASE_DATA_DIR to a directory the {user} user can write, or set DATABASE_URL \
         to use an existing server"
    )]
    Initdb {
        /// Where the cluster was to be created.
        dir: String,
        /// initdb's last meaningful line.
        reason: String,
        /// The user Postgres runs as.
        user: String,
    },
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// What ran.
        command: String,
        /// Its combined output (the tail).
        output: String,
    },
    /// A filesystem operation failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// A running (or startable) local cluster.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin: PathBuf,
    pgdata: PathBuf,
    run_dir: PathBuf,
    password: String,
    /// Set when we run commands as the `postgres` user (we are root).
    run_as: Option<(u32, u32)>,
    /// Set when the cluster lives under [`RELOCATED_BASE`] rather than the data dir.
    relocated: Option<PathBuf>,
    /// Whether this process started (or adopted) the postmaster and so must stop it.
    owned: std::sync::atomic::AtomicBool,
}

/// Finds the directory holding `initdb` and `pg_ctl`.
pub fn find_bin_dir(configured: Option<&Path>) -> Result<PathBuf, EmbeddedError> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = configured {
        return if has_tools(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(EmbeddedError::BinariesNotFound)
        };
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(EmbeddedError::BinariesNotFound)
}

/// uid and gid of the `postgres` system user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == "postgres").then_some(())?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |e| EmbeddedError::Io(what, e)
}

/// Whether the `postgres` system user can enter `dir` (every ancestor must
/// be searchable by it).
pub async fn postgres_can_enter(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// The folder under [`RELOCATED_BASE`] for the data dir `root`: its last
/// component plus a hash of the full path, so every data dir gets its own.
fn relocated_dir(root: &Path) -> PathBuf {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        root.as_os_str().as_encoded_bytes(),
    );
    let hash: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name: String = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(24)
        .collect();
    Path::new(RELOCATED_BASE).join(format!("{name}-{hash}"))
}

/// Creates `dir` and its parents searchable by everyone (the cluster
/// directories inside it are 0700 and owned by postgres).
fn make_reachable_dirs(dir: &Path) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let mut current = Some(dir);
    while let Some(d) = current {
        if d == Path::new("/var/lib") || d.parent().is_none() {
            break;
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("setting permissions on {}", d.display())))?;
        current = d.parent();
    }
    Ok(())
}

impl EmbeddedPostgres {
    /// Prepares a cluster rooted at `root` (created with `initdb` when absent)
    /// with superuser password `password`. Does not start it.
    pub async fn init(root: &Path, bin: PathBuf, password: &str) -> Result<Self, EmbeddedError> {
        std::fs::create_dir_all(root).map_err(io_err(format!("creating {}", root.display())))?;
        let root = root
            .canonicalize()
            .map_err(io_err(format!("resolving {}", root.display())))?;
        let run_as = if running_as_root() {
            Some(postgres_user().ok_or(EmbeddedError::NoPostgresUser)?)
        } else {
            None
        };
        // A cluster already in the data dir stays there; a new one goes there
        // only if the postgres user can reach it.
        let in_place = root.join("postgres").join("PG_VERSION").is_file()
            || run_as.is_none()
            || postgres_can_enter(&root).await;
        let (cluster_root, relocated) = if in_place {
            (root.clone(), None)
        } else {
            let dir = relocated_dir(&root);
            tracing::info!(
                data_dir = %root.display(),
                cluster = %dir.display(),
                "the postgres user cannot reach the data dir; keeping the cluster elsewhere"
            );
            make_reachable_dirs(&dir)?;
            std::fs::write(
                root.join("postgres-location.txt"),
                format!(
                    "The embedded Postgres cluster of this data dir lives in {}\n\
                     (the postgres user cannot enter {}).\n",
                    dir.display(),
                    root.display()
                ),
            )
            .map_err(io_err("writing postgres-location.txt"))?;
            (dir.clone(), Some(dir))
        };
        let this = Self {
            bin,
            pgdata: cluster_root.join("postgres"),
            run_dir: cluster_root.join("run"),
            password: password.to_owned(),
            run_as,
            relocated,
            owned: std::sync::atomic::AtomicBool::new(false),
        };
        let socket = this.run_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > 107 {
            return Err(EmbeddedError::PathTooLong(socket.display().to_string()));
        }
        this.make_dir(&this.run_dir, 0o755)?;
        if !this.pgdata.join("PG_VERSION").is_file() {
            this.initdb().await?;
        }
        Ok(this)
    }

    /// Where the cluster lives when it is not in the data dir (see [`RELOCATED_BASE`]).
    pub fn relocated(&self) -> Option<&Path> {
        self.relocated.as_deref()
    }

    fn make_dir(&self, dir: &Path, mode: u32) -> Result<(), EmbeddedError> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("setting permissions on {}", dir.display())))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(io_err(format!("chown {}", dir.display())))?;
        }
        Ok(())
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut cmd = if self.run_as.is_some() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
        cmd.kill_on_drop(false);
        cmd
    }

    async fn run(&self, tool: &str, args: &[&str]) -> Result<std::process::Output, EmbeddedError> {
        let mut cmd = self.command(tool);
        cmd.args(args).stdin(std::process::Stdio::null());
        tracing::debug!(tool, ?args, "running postgres tool");
        cmd.output()
            .await
            .map_err(io_err(format!("running {tool}")))
    }

    async fn run_ok(&self, tool: &str, args: &[&str]) -> Result<(), EmbeddedError> {
        let out = self.run(tool, args).await?;
        if out.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let tail: String = text
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(EmbeddedError::Command {
            command: format!("{tool} {}", args.join(" ")),
            output: tail.trim().to_owned(),
        })
    }

    async fn initdb(&self) -> Result<(), EmbeddedError> {
        tracing::info!(pgdata = %self.pgdata.display(), "initialising the embedded Postgres cluster");
        self.make_dir(&self.pgdata, 0o700)?;
        let pwfile = self.run_dir.join("initdb-password.tmp");
        std::fs::write(&pwfile, format!("{}\n", self.password))
            .map_err(io_err("writing the initdb password file"))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
                .map_err(io_err("chown password file"))?;
        }
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        let pwarg = format!("--pwfile={}", pwfile.display());
        let result = self
            .run_ok(
                "initdb",
                &[
                    "-D",
                    &pgdata,
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    &pwarg,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
            )
            .await;
        let _ = std::fs::remove_file(&pwfile);
        if let Err(e) = result {
            tracing::debug!(error = %e, "initdb failed");
            let reason = match &e {
                EmbeddedError::Command { output, .. } => output
                    .lines()
                    .map(str::trim)
                    .rfind(|l| !l.is_empty() && !l.starts_with("initdb: removing"))
                    .unwrap_or("initdb failed")
                    .trim_start_matches("initdb: ")
                    .trim_start_matches("error: ")
                    .to_owned(),
                other => other.to_string(),
            };
            return Err(EmbeddedError::Initdb {
                dir: self.pgdata.display().to_string(),
                reason,
                user: if self.run_as.is_some() {
                    "postgres".into()
                } else {
                    "current".into()
                },
            });
        }
        // Settings live in the cluster's own config, so `pg_ctl start` needs no options.
        let conf = format!(
            "\n# Managed by Ferrobase\nlisten_addresses = ''\nport = {PORT}\n\
             unix_socket_directories = '{}'\nmax_connections = 300\n",
            self.run_dir.display().to_string().replace('\'', "''")
        );
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.pgdata.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(io_err("writing postgresql.conf"))?;
        Ok(())
    }

    /// Whether a postmaster is running on this data dir and accepting
    /// connections. `pg_ctl status` alone trusts the PID in postmaster.pid,
    /// which after a crash may belong to an unrelated process; the socket
    /// answering is the real proof.
    pub async fn is_running(&self) -> bool {
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        let pid_alive = self
            .run("pg_ctl", &["status", "-D", &pgdata])
            .await
            .is_ok_and(|o| o.status.success());
        let socket = self.run_dir.join(format!(".s.PGSQL.{PORT}"));
        pid_alive && tokio::net::UnixStream::connect(&socket).await.is_ok()
    }

    /// Starts the postmaster unless it is already running (then adopts it).
    /// Returns whether this call started it.
    pub async fn start(&self) -> Result<bool, EmbeddedError> {
        use std::sync::atomic::Ordering;
        if self.is_running().await {
            tracing::info!("adopting the already running embedded Postgres");
            return Ok(false);
        }
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        let log = self
            .pgdata
            .join("server.log")
            .to_string_lossy()
            .into_owned();
        let args = ["start", "-w", "-t", "60", "-D", &pgdata, "-l", &log];
        if let Err(first) = self.run_ok("pg_ctl", &args).await {
            // A crash can leave postmaster.pid behind with a PID now used by
            // another process; Postgres then refuses to start. It is not
            // running (checked above), so the lock file is stale.
            let pid_file = self.pgdata.join("postmaster.pid");
            if !pid_file.exists() {
                return Err(first);
            }
            tracing::warn!("removing a stale postmaster.pid and retrying");
            std::fs::remove_file(&pid_file).map_err(io_err("removing stale postmaster.pid"))?;
            self.run_ok("pg_ctl", &args).await?;
        }
        self.owned.store(true, Ordering::SeqCst);
        tracing::info!(socket_dir = %self.run_dir.display(), "embedded Postgres started");
        Ok(true)
    }

    /// Starts a postmaster that died under a running server. Unlike
    /// [`Self::start`] it leaves `postmaster.pid` alone while the PID in it
    /// may still be a postgres process (backends of the dead postmaster exit
    /// on their own; Postgres checks its shared memory itself).
    async fn restart_after_crash(&self) -> Result<(), EmbeddedError> {
        let pid_file = self.pgdata.join("postmaster.pid");
        let stale_pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
            .is_some_and(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map_or(true, |comm| !comm.trim().starts_with("postgres"))
            });
        if stale_pid {
            let _ = std::fs::remove_file(&pid_file);
        }
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        let log = self.log_path().to_string_lossy().into_owned();
        self.run_ok(
            "pg_ctl",
            &["start", "-w", "-t", "60", "-D", &pgdata, "-l", &log],
        )
        .await
    }

    fn log_path(&self) -> PathBuf {
        self.pgdata.join("server.log")
    }

    /// The last `lines` lines of the cluster's log (why it stopped).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(self.log_path()).unwrap_or_default();
        let start = text.len().saturating_sub(8192);
        let text = String::from_utf8_lossy(&text[start..]);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the socket accepts a connection (cheap; no process spawned).
    async fn socket_answers(&self) -> bool {
        let socket = self.run_dir.join(format!(".s.PGSQL.{PORT}"));
        tokio::net::UnixStream::connect(&socket).await.is_ok()
    }

    /// Marks the running cluster as ours to stop (the server adopts a cluster
    /// left running by a crash).
    pub fn take_ownership(&self) {
        self.owned.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops the postmaster if this process started or adopted it.
    pub async fn stop_if_owned(&self) {
        if self.owned.swap(false, std::sync::atomic::Ordering::SeqCst)
            && let Err(e) = self.stop().await
        {
            tracing::warn!(error = %e, "could not stop the embedded Postgres");
        }
    }

    /// Stops the postmaster (fast shutdown: running transactions are rolled back).
    pub async fn stop(&self) -> Result<(), EmbeddedError> {
        let pgdata = self.pgdata.to_string_lossy().into_owned();
        self.run_ok("pg_ctl", &["stop", "-w", "-m", "fast", "-D", &pgdata])
            .await?;
        tracing::info!("embedded Postgres stopped");
        Ok(())
    }

    /// Connection settings for database `dbname` as the superuser.
    pub fn superuser_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&self.run_dir)
            .port(PORT)
            .user(SUPERUSER)
            .password(self.password.as_bytes())
            .dbname(dbname)
            .application_name("ferrobase");
        cfg
    }

    /// The directory holding the unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.run_dir
    }
}

/// Keeps the embedded cluster running while the server runs: checks it every
/// `every`, and when the postmaster has died (OOM killer, crash, `kill -9`)
/// logs the tail of its log and starts it again, retrying with backoff
/// (0.5 s doubling up to 30 s). Requests meanwhile get 503 and
/// `/health/ready` reports unavailable; pools reconnect by themselves.
/// Runs until the task is aborted (before the server stops the cluster).
pub async fn supervise(pg: &EmbeddedPostgres, every: std::time::Duration) {
    use std::time::Duration;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pg.socket_answers().await || pg.is_running().await {
            continue;
        }
        metrics::counter!("ferrobase_embedded_postgres_restarts_total").increment(1);
        tracing::error!(
            log_tail = %pg.log_tail(12),
            "the embedded Postgres stopped; restarting it"
        );
        let mut backoff = Duration::from_millis(500);
        loop {
            match pg.restart_after_crash().await {
                Ok(()) => {
                    tracing::info!("embedded Postgres restarted");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "restarting the embedded Postgres failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}
