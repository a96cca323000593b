//! 5. The container sandbox: cold starts through a `--sandbox container` server, and, on the
//! backend directly (the `nimbus-sandbox` crate), freeze→thaw cost and the memory each idle
//! frozen sandbox costs beyond its own processes.
use crate::lambda::{self, Package};
use crate::scenarios;
use crate::server::{Server, TempDir};
use crate::stats::{Report, Samples, Target, fig};
use nimbus_sandbox::{ContainerSandbox, FsView, Instance, Limits, Sandbox, SandboxSpec};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

pub async fn run(
    r: &mut Report,
    nimbus: &Path,
    packages: &[Package],
    cold_samples: usize,
    freeze_samples: usize,
    idle_sandboxes: usize,
    results_dir: &Path,
) -> anyhow::Result<Value> {
    let dir = TempDir::new("sandbox")?;
    let probe = match ContainerSandbox::probe(&dir.0.join("probe")) {
        Ok(p) => p,
        Err(why) => anyhow::bail!("the container backend cannot run here: {why}"),
    };
    let mut out = serde_json::Map::new();

    let log = results_dir.join("server-container.log");
    let (server, _) = Server::start(nimbus, &dir.0.join("data"), &log, "container").await?;
    server.wait_childless(Duration::from_secs(5)).await;
    let cold = scenarios::cold_starts(
        r,
        server.addr,
        packages,
        cold_samples,
        "container_cold_start",
        &[("provided.al2023", 15.0), ("python3.12", 40.0)],
    )
    .await;
    server.stop().await?;
    out.insert("cold_start".into(), cold.unwrap_or_else(|e| json!({ "error": format!("{e:#}") })));

    let freeze = tokio::task::block_in_place(|| freeze_thaw(r, &probe, freeze_samples));
    out.insert("freeze_thaw".into(), freeze.unwrap_or_else(|e| json!({ "error": format!("{e:#}") })));
    let idle = idle_frozen(&probe, idle_sandboxes).await;
    out.insert("idle_frozen".into(), idle.unwrap_or_else(|e| json!({ "error": format!("{e:#}") })));
    Ok(Value::Object(out))
}

fn sleeper() -> SandboxSpec {
    SandboxSpec {
        program: "/bin/sleep".into(),
        args: vec!["3600".into()],
        cwd: "/".into(),
        env: vec![],
        output: None,
        limits: Limits { memory_mb: Some(128), pids_max: Some(16), ..Default::default() },
        fs: FsView { tmp_mb: 512, ..Default::default() },
        isolate_network: false,
        ..Default::default()
    }
}

/// Pause (cgroup freeze) and resume (thaw) of a running sandbox, each timed.
fn freeze_thaw(r: &mut Report, sb: &ContainerSandbox, n: usize) -> anyhow::Result<Value> {
    let instance = sb.start(sleeper())?;
    let (mut freeze, mut thaw) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        instance.pause()?;
        freeze.push(t.elapsed());
        let t = Instant::now();
        instance.resume()?;
        thaw.push(t.elapsed());
    }
    instance.destroy();
    let (f, t) = (Samples::from_durations(&freeze, as_us), Samples::from_durations(&thaw, as_us));
    let round_trip = f.pct(50.0) + t.pct(50.0);
    Ok(json!({
        "what": format!("{n} pause+resume pairs of one sandbox (cgroup freezer write, as the server does between invokes)"),
        "freeze": { "p50": fig(f.pct(50.0), "us"), "p99": fig(f.pct(99.0), "us") },
        "thaw": { "p50": fig(t.pct(50.0), "us"), "p99": fig(t.pct(99.0), "us") },
        "freeze_plus_thaw_p50": r.checked("sandbox.freeze_thaw.p50", round_trip / 1000.0, "ms", Target::AtMost(1.0)),
    }))
}

fn as_us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn mem_available_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Proportional set size: shared pages (libc, the sleep binary) split among their users,
/// so the sum over all sandboxes counts them once.
fn pss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `n` sandboxes started and frozen: host memory they take, minus their processes' own RSS.
async fn idle_frozen(sb: &ContainerSandbox, n: usize) -> anyhow::Result<Value> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = mem_available_kb();
    let t = Instant::now();
    let mut instances: Vec<Box<dyn Instance>> = Vec::with_capacity(n);
    for _ in 0..n {
        let i = sb.start(sleeper())?;
        i.pause()?;
        instances.push(i);
    }
    let started = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = mem_available_kb();
    let own_rss: u64 = instances.iter().map(|i| pss_kb(i.id())).sum();
    let used = before.saturating_sub(after);
    let overhead = used.saturating_sub(own_rss) as f64 / n as f64;
    for i in &instances {
        i.destroy();
    }
    for i in &instances {
        let _ = tokio::time::timeout(Duration::from_secs(5), i.wait()).await;
    }
    Ok(json!({
        "what": format!("{n} container sandboxes (each /bin/sleep with its own namespaces, cgroup, tmpfs /tmp and mounts) started and frozen; host MemAvailable drop minus the sleeps' own memory (sum of PSS)"),
        "sandboxes": n,
        "start_and_freeze_all": fig(started.as_secs_f64() * 1000.0, "ms"),
        "host_memory_used": fig(used as f64 / 1024.0, "MiB"),
        "processes_own_pss": fig(own_rss as f64 / 1024.0, "MiB"),
        "overhead_per_sandbox": fig(overhead, "KiB"),
    }))
}

pub fn packages(rust_echo: &Path) -> anyhow::Result<Vec<Package>> {
    Ok(vec![lambda::provided(rust_echo)?, lambda::python()?])
}
