//! Building, locating, starting and stopping the `nimbus` server under test.
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The workspace this harness lives in (compile-time: the bench is an in-tree tool).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ has a parent").to_path_buf()
}

/// `target/release` next to the running harness (so a custom CARGO_TARGET_DIR works too),
/// also when the harness itself was built in debug mode.
pub fn release_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("harness executable has no directory")?;
    Ok(match dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => dir.to_path_buf(),
        Some("debug") => dir.with_file_name("release"),
        _ => workspace_root().join("target/release"),
    })
}

/// `cargo build --release -p nimbus -p rust-echo`, with cargo's output on our stderr so
/// that stdout stays pure JSON.
pub fn build() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench: cargo build --release -p nimbus -p rust-echo");
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "-p", "nimbus", "-p", "rust-echo"])
        .current_dir(workspace_root())
        .stdout(std::io::stderr())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build --release -p nimbus -p rust-echo failed ({status})");
    }
    Ok(())
}

/// A running server. Dropping it kills the process (SIGKILL); `stop` asks nicely first.
/// Function processes die with it (the process sandbox sets PR_SET_PDEATHSIG).
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The server's own "ready in X ms" figure.
    pub self_reported_ms: f64,
}

/// Spawn-relative timings of one start.
pub struct StartTimings {
    /// Spawn → the "nimbus listening on …" line read from the pipe.
    pub ready_line: Duration,
    /// Spawn → first 200 from GET /_nimbus/health (requested right after the ready line).
    pub health_200: Duration,
}

impl Server {
    /// Starts `nimbus server --listen 127.0.0.1:0 --data-dir DATA --sandbox SANDBOX`,
    /// waits for the ready line and one 200 from /_nimbus/health. Server stderr goes to `log`.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        log: &Path,
        sandbox: &str,
    ) -> anyhow::Result<(Server, StartTimings)> {
        Self::start_with(bin, data_dir, log, sandbox, &[]).await
    }

    /// `start` with extra server flags (e.g. `--registry-listen`).
    pub async fn start_with(
        bin: &Path,
        data_dir: &Path,
        log: &Path,
        sandbox: &str,
        extra: &[String],
    ) -> anyhow::Result<(Server, StartTimings)> {
        Self::try_start(bin, data_dir, log, sandbox, extra).await.map_err(|e| {
            // The server's last words usually say why.
            let text = strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            match tail.is_empty() {
                true => e,
                false => e.context(format!(
                    "server stderr ends with: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )),
            }
        })
    }

    async fn try_start(
        bin: &Path,
        data_dir: &Path,
        log: &Path,
        sandbox: &str,
        extra: &[String],
    ) -> anyhow::Result<(Server, StartTimings)> {
        let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .args(["server", "--listen", "127.0.0.1:0", "--sandbox", sandbox, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        // The ready line follows informational ones (e.g. which sandbox backend and why).
        let line = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match lines.next_line().await? {
                    Some(l) if l.starts_with("nimbus listening on ") => return Ok(Some(l)),
                    Some(_) => continue,
                    None => return Ok::<_, std::io::Error>(None),
                }
            }
        })
        .await
        .context("no ready line within 30 s")??
        .context("server exited before printing its ready line")?;
        let ready_line = t0.elapsed();
        // Keep draining stdout so the server can never block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (addr, self_reported_ms) = parse_ready_line(&line)?;
        let mut server = Server { child, addr, self_reported_ms };
        let mut conn = crate::http::Conn::new(addr);
        let health = crate::http::Template::new(hyper::Method::GET, "/_nimbus/health");
        loop {
            match conn.send(&health).await {
                Ok(r) if r.status == 200 => break,
                _ if t0.elapsed() > Duration::from_secs(30) => bail!("/_nimbus/health not 200 within 30 s"),
                _ => {
                    if let Some(status) = server.child.try_wait()? {
                        bail!("server exited ({status})");
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        let health_200 = t0.elapsed();
        Ok((server, StartTimings { ready_line, health_200 }))
    }

    /// SIGTERM (graceful shutdown), then SIGKILL if it hasn't exited within 5 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_ok() {
                return Ok(());
            }
            eprintln!("bench: server did not exit within 5 s of SIGTERM; killing it");
        }
        self.child.kill().await?;
        Ok(())
    }
}

impl Server {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits (up to `limit`) until the server has no child processes, e.g. the interpreter
    /// probes it runs in the background after startup. Returns how long that took, or
    /// `None` on timeout or where /proc is unavailable.
    pub async fn wait_childless(&self, limit: Duration) -> Option<Duration> {
        let pid = self.pid()?;
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if CpuTimes::children_of(pid)? == 0 {
                return Some(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

/// CPU time (user + system) of a process and of its live direct children, read from
/// /proc (Linux only; `None` elsewhere). Function environments are the server's children.
#[derive(Clone, Copy)]
pub struct CpuTimes {
    pub process: Duration,
    pub children: Duration,
}

impl CpuTimes {
    pub fn of(pid: u32) -> Option<CpuTimes> {
        let (mut process, mut children) = (None, Duration::ZERO);
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(Ok(p)) = entry.file_name().to_str().map(str::parse::<u32>) else { continue };
            let Some((ppid, cpu)) = proc_stat(p) else { continue };
            if p == pid {
                process = Some(cpu);
            } else if ppid == pid {
                children += cpu;
            }
        }
        Some(CpuTimes { process: process?, children })
    }

    /// How many live processes have `pid` as their parent.
    fn children_of(pid: u32) -> Option<usize> {
        let mut n = 0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(Ok(p)) = entry.file_name().to_str().map(str::parse::<u32>) else { continue };
            if proc_stat(p).is_some_and(|(ppid, _)| ppid == pid) {
                n += 1;
            }
        }
        Some(n)
    }

    /// CPU used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            process: self.process.saturating_sub(earlier.process),
            children: self.children.saturating_sub(earlier.children),
        }
    }
}

/// (ppid, utime + stime) from /proc/PID/stat, assuming the usual 100 clock ticks per second.
fn proc_stat(pid: u32) -> Option<(u32, Duration)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((ppid, Duration::from_millis(ticks * 10)))
}

/// Removes terminal colour sequences (`ESC [ … letter`) from the server's log output.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // Skip `[`, parameters, and the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `nimbus listening on http://127.0.0.1:PORT (sandbox: process) ready in X ms`
fn parse_ready_line(line: &str) -> anyhow::Result<(SocketAddr, f64)> {
    let bad = || format!("unexpected ready line {line:?}");
    let rest = line.strip_prefix("nimbus listening on http://").with_context(bad)?;
    let addr = rest.split_whitespace().next().with_context(bad)?.parse().with_context(bad)?;
    let ms = rest
        .split("ready in ")
        .nth(1)
        .and_then(|s| s.trim_end_matches(" ms").trim().parse().ok())
        .unwrap_or(f64::NAN);
    Ok((addr, ms))
}

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("nimbus-bench-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_line() {
        let (addr, ms) = super::parse_ready_line(
            "nimbus listening on http://127.0.0.1:4566 (sandbox: process) ready in 3.2 ms",
        )
        .unwrap();
        assert_eq!(addr.port(), 4566);
        assert_eq!(ms, 3.2);
    }

    #[test]
    fn ansi() {
        assert_eq!(super::strip_ansi("\x1b[2mts\x1b[0m \x1b[33m WARN\x1b[0m x"), "ts  WARN x");
    }
}
