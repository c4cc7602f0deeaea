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
//! The postmaster is started with `pg_ctl` and so outlives a crashed server:
//! the next start finds it running and adopts it. A stale `postmaster.pid`
//! left by a dead postmaster is removed and the start retried.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use tokio::process::Command;

/// The socket port number (it only names the socket file; no TCP listener).
const PORT: u16 = 5432;
/// Name of the cluster superuser.
pub const SUPERUSER: &str = "ferrobase";

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
        let this = Self {
            bin,
            pgdata: root.join("postgres"),
            run_dir: root.join("run"),
            password: password.to_owned(),
            run_as,
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
        result?;
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
