//! A throwaway PostgreSQL cluster: temporary `initdb`, unix socket only
//! (`listen_addresses=''`, so concurrent runs never fight over a port),
//! scram-sha-256 with a random password, durability off for speed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::proc::{self, sh_quote};

/// Superuser created by `initdb -U`.
pub const USER: &str = "ferrobase";
/// The port only names the socket file (`.s.PGSQL.5432`); nothing listens on TCP.
const PORT: u16 = 5432;

/// The directory holding `initdb` and `pg_ctl`: `$FERROBASE_PG_BIN`, else the
/// one on `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bin() -> Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();

    if let Some(dir) = std::env::var_os("FERROBASE_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !has_tools(&dir) {
            bail!(
                "FERROBASE_PG_BIN={} does not contain initdb and pg_ctl",
                dir.display()
            );
        }
        return Ok(dir);
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                // Debian links /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin;
                // report the real directory (pg_ctl, postgres and psql live there).
                let real = fs::canonicalize(&initdb)
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir);
                if has_tools(&real) {
                    return Ok(real);
                }
            }
        }
    }

    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: set FERROBASE_PG_BIN, \
             put them on PATH, or install them (Debian/Ubuntu: `apt-get install -y postgresql`)"
        ),
    }
}

/// A running throwaway cluster. Dropping it stops the server (immediate mode)
/// and deletes its directory.
pub struct Cluster {
    /// `initdb`/`pg_ctl` directory.
    pub bin: PathBuf,
    /// Temp dir holding everything below; removed on drop.
    root: PathBuf,
    /// `root/data`, the cluster.
    data: PathBuf,
    /// `root/s`, the unix socket directory (kept short: 107-byte path limit).
    sock: PathBuf,
    /// `root/postgres.log`, server log (shown when start-up fails).
    log: PathBuf,
    /// Random password of [`USER`].
    password: String,
    /// Run initdb/pg_ctl as `postgres` through `runuser` (we are root).
    as_postgres: bool,
    /// Whether `pg_ctl start` succeeded (so drop must stop it).
    running: bool,
}

impl Cluster {
    /// Creates, starts and waits for a new cluster.
    pub fn start() -> Result<Cluster> {
        let started = Instant::now();
        let bin = find_bin()?;
        let root = proc::unique_temp_dir("fbpg")?;
        let mut cluster = Cluster {
            bin,
            data: root.join("data"),
            sock: root.join("s"),
            log: root.join("postgres.log"),
            root,
            password: proc::random_hex(16)?,
            as_postgres: proc::is_root(),
            running: false,
        };
        // From here on, drop cleans up whatever we got to.
        proc::spawn_watchdog(&cluster.watchdog_script());
        cluster.init()?;
        cluster.run_start()?;
        cluster.running = true;
        println!(
            "xtask: PostgreSQL ({}) ready in {} at {}",
            cluster.bin.display(),
            crate::secs(started.elapsed()),
            cluster.sock.display()
        );
        Ok(cluster)
    }

    /// tokio-postgres key/value connection string for the superuser.
    pub fn url(&self) -> String {
        format!(
            "host={} port={PORT} user={USER} password={} dbname=postgres",
            self.sock.display(),
            self.password
        )
    }

    /// Environment for child commands: the connection string and the bin dir
    /// (tests that need their own clusters find initdb there).
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("FERROBASE_TEST_DATABASE_URL", self.url()),
            ("FERROBASE_PG_BIN", self.bin.display().to_string()),
        ]
    }

    /// A PostgreSQL tool, run as `postgres` when we are root.
    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // The postgres user may not be allowed into our working directory.
        cmd.current_dir("/");
        cmd
    }

    fn init(&self) -> Result<()> {
        fs::create_dir(&self.sock)?;
        let pwfile = self.root.join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password))?;
        if self.as_postgres {
            proc::run_quiet(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&self.root),
            )
            .context("handing the cluster directory to the postgres user")?;
        }
        // A fixed locale keeps results identical across machines; C.UTF-8
        // still gives Unicode-aware upper()/lower() where glibc has it.
        let locale = if Path::new("/usr/lib/locale/C.utf8").exists() {
            "C.UTF-8"
        } else {
            "C"
        };
        let mut initdb = self.tool("initdb");
        initdb
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--locale={locale}"))
            .arg(format!("--pwfile={}", pwfile.display()));
        let result = proc::run_quiet(&mut initdb).context("initdb failed");
        let _ = fs::remove_file(&pwfile);
        result.map(drop)
    }

    fn run_start(&self) -> Result<()> {
        let options = format!(
            "-k {} -c listen_addresses='' -c max_connections=400 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            sh_quote(&self.sock.display().to_string())
        );
        let mut pg_ctl = self.tool("pg_ctl");
        pg_ctl
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .arg("-o")
            .arg(options);
        if let Err(e) = proc::run_quiet(&mut pg_ctl) {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            bail!("{e:#}\n--- {} ---\n{}", self.log.display(), log.trim_end());
        }
        Ok(())
    }

    /// The stop command, as shell text (also used by the watchdog).
    fn stop_command(&self) -> String {
        let pg_ctl = sh_quote(&self.bin.join("pg_ctl").display().to_string());
        let data = sh_quote(&self.data.display().to_string());
        let prefix = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!("{prefix}{pg_ctl} stop -m immediate -D {data}")
    }

    fn watchdog_script(&self) -> String {
        let root = sh_quote(&self.root.display().to_string());
        format!(
            "[ -d {root} ] || exit 0\ncd /\n[ -f {root}/data/postmaster.pid ] && {stop}\nrm -rf {root}\n",
            stop = self.stop_command()
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let mut stop = self.tool("pg_ctl");
            stop.args(["stop", "-m", "immediate", "-D"]).arg(&self.data);
            if let Err(e) = proc::run_quiet(&mut stop) {
                eprintln!("xtask: warning: stopping PostgreSQL: {e:#}");
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.root) {
            eprintln!(
                "xtask: warning: could not remove {}: {e}",
                self.root.display()
            );
        }
    }
}

/// `cargo xtask cluster [-- CMD ARGS]`.
pub fn cluster_command(args: Vec<String>) -> Result<()> {
    let peer_env = crate::peers::ensure()?;
    let cluster = Cluster::start()?;
    if let Some((program, rest)) = args.split_first() {
        let status = Command::new(program)
            .args(rest)
            .envs(cluster.env())
            .envs(peer_env.iter().map(|(k, v)| (*k, v)))
            .status()
            .with_context(|| format!("could not start `{program}`"));
        drop(cluster);
        // Exit with the command's own code, like `env` or `time` would.
        match status?.code() {
            Some(0) => return Ok(()),
            code => std::process::exit(code.unwrap_or(1)),
        }
    }
    println!();
    for (key, value) in cluster.env() {
        println!("export {key}={}", sh_quote(&value));
    }
    for (key, value) in &peer_env {
        println!("export {key}={}", sh_quote(value));
    }
    println!(
        "\npsql: PGPASSWORD={} {} -h {} -U {USER} postgres",
        cluster.password,
        sh_quote(&cluster.bin.join("psql").display().to_string()),
        sh_quote(&cluster.sock.display().to_string()),
    );
    println!("\nPress Ctrl-C to stop the cluster and delete it.");
    // std cannot catch SIGINT; the watchdog started by `Cluster::start` stops
    // the server and removes the directory once we are gone.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start a real cluster, connect to it with password auth over the
    /// socket, and check that dropping it removes everything.
    #[test]
    fn cluster_starts_accepts_password_and_cleans_up() {
        let cluster = Cluster::start().expect("start cluster");
        let root = cluster.root.clone();
        let psql = cluster.bin.join("psql");
        if psql.is_file() {
            let out = proc::run_quiet(
                Command::new(psql)
                    .args(["-XtA", "-c", "select current_user"])
                    .arg(cluster.url().replace(&cluster.password, "x"))
                    .env("PGPASSWORD", &cluster.password)
                    .env_remove("PGPASSFILE"),
            );
            // psql takes the conninfo password first: the wrong one must fail...
            assert!(out.is_err(), "wrong password accepted: {out:?}");
            let out = proc::run_quiet(
                Command::new(cluster.bin.join("psql"))
                    .args(["-XtA", "-c", "select current_user"])
                    .arg(cluster.url()),
            )
            .expect("psql with the right password");
            assert_eq!(out.trim(), USER);
        }
        drop(cluster);
        assert!(!root.exists(), "{} left behind", root.display());
    }
}
