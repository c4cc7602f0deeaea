//! Small process and OS helpers (no libc: everything goes through `/proc`,
//! `/dev/urandom` and standard commands such as `id`, `kill` and `setsid`).

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// `n` random bytes from the kernel, hex encoded (`2 * n` characters).
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether we run as root (PostgreSQL refuses to, so we switch user).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Quotes one word for `sh` (only when needed, so logs stay readable).
pub fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command line as it would be typed in a shell, for headers and errors.
pub fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    // `$CARGO` is an absolute path; show it as plain `cargo`.
    let program = if program.file_name() == Some(OsStr::new("cargo")) {
        "cargo".to_owned()
    } else {
        program.to_string_lossy().into_owned()
    };
    std::iter::once(program)
        .chain(cmd.get_args().map(|a| sh_quote(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command to completion (output inherited) and fails on a non-zero
/// exit status.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs a command, capturing its output; on failure the output is part of
/// the error.
pub fn run_quiet(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            display(cmd),
            out.status,
            text.trim_end()
        );
    }
    Ok(text)
}

/// Sends a signal with the `kill` command (`sig` like `INT`, `KILL`).
pub fn kill(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes a unique, short directory under the system temp dir (or `/tmp` when
/// `$TMPDIR` is long: unix socket paths are limited to 107 bytes).
/// `create_dir` fails if the name exists, so concurrent runs never share one.
pub fn unique_temp_dir(prefix: &str) -> Result<PathBuf> {
    let mut base = std::env::temp_dir();
    if base.as_os_str().len() > 40 {
        base = PathBuf::from("/tmp");
    }
    for _ in 0..100 {
        let dir = base.join(format!("{prefix}-{}", random_hex(4)?));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!(
        "could not create a unique directory under {}",
        base.display()
    )
}

/// Starts a detached `sh` that waits until this process has exited and then
/// runs `cleanup`. std cannot catch Ctrl-C without libc, and a Ctrl-C (or a
/// CI timeout) kills xtask before its destructors run; this watchdog lives in
/// its own session, so it survives and cleans up. `cleanup` must be a no-op
/// once the normal cleanup has happened (guard it on a directory existing).
pub fn spawn_watchdog(cleanup: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done\n{cleanup}",
        pid = std::process::id()
    );
    let spawned = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        // Never hold our stdout/stderr open: whoever reads our output (CI)
        // would otherwise wait for the watchdog too.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .spawn();
    if let Err(e) = spawned {
        eprintln!("xtask: warning: no cleanup watchdog (setsid: {e}); Ctrl-C may leave temp files");
    }
}

/// One process as seen in `/proc`.
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub cmdline: String,
}

/// Every process we can read in `/proc`.
pub fn processes() -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let Ok(stat) = fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces and parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let cmdline = fs::read(dir.join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push(ProcInfo {
            pid,
            ppid,
            comm,
            cmdline,
        });
    }
    out
}

/// CPU time (user + system) a process has used so far, in clock ticks
/// (`utime` + `stime` of `/proc/PID/stat`; 100 per second on Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after `comm`: state(3) ppid(4) ... utime(14) stime(15).
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field (`VmRSS`, `Pss`, ...) from a `/proc/PID/<file>`, in bytes.
fn proc_kb(pid: u32, file: &str, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Resident set size in bytes (`VmRSS`). Shared pages count in every process.
pub fn rss(pid: u32) -> Option<u64> {
    proc_kb(pid, "status", "VmRSS")
}

/// Proportional set size in bytes: shared pages split between their users,
/// so sums over a process tree (Postgres' shared buffers) are meaningful.
pub fn pss(pid: u32) -> Option<u64> {
    proc_kb(pid, "smaps_rollup", "Pss")
}

/// `1.5 MiB`-style sizes.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
