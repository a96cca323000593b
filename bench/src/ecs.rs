//! ECS and ECR scenarios (issues 6 and 7) against a real server on the container sandbox:
//! RunTask → RUNNING latency, sustained launches, service replacement after a kill,
//! `podman run --rm` as a reference; registry push/pull throughput (one ~500 MB image,
//! 1,000 small blobs), 50 tasks pulling one never-unpacked image, and skopeo copy into the
//! registry vs into a directory.
use crate::http::{Conn, Template};
use crate::oci;
use crate::server::{Server, TempDir};
use crate::stats::{Report, Samples, Target, as_ms, fig};
use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const ECS: &str = "AmazonEC2ContainerServiceV20141113";

fn ecs(op: &str, body: &Value) -> Template {
    Template::new(Method::POST, "/")
        .header("x-amz-target", format!("{ECS}.{op}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(serde_json::to_vec(body).expect("JSON value"))
}

async fn call(conn: &mut Conn, op: &str, body: &Value) -> anyhow::Result<Value> {
    let r = conn.send(&ecs(op, body)).await?.ok().with_context(|| format!("ECS {op}"))?;
    Ok(serde_json::from_slice(&r.body)?)
}

/// A free loopback port (bound and released) for the registry listener.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Setup {
    server: Server,
    registry: SocketAddr,
    _dir: TempDir,
}

async fn start(nimbus: &Path, results_dir: &Path) -> anyhow::Result<Setup> {
    let dir = TempDir::new("ecs")?;
    let registry: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let (server, _) = Server::start_with(
        nimbus,
        &dir.0.join("data"),
        &results_dir.join("server-ecs.log"),
        "container",
        &["--registry-listen".into(), registry.to_string()],
    )
    .await?;
    Ok(Setup { server, registry, _dir: dir })
}

async fn import(conn: &mut Conn, archive: Vec<u8>, tag: &str) -> anyhow::Result<()> {
    let t = Template::new(Method::POST, format!("/_nimbus/images/import?tag={tag}"))
        .header("content-type", "application/x-tar")
        .body(archive);
    conn.send(&t).await?.ok().context("importing the image")?;
    Ok(())
}

async fn register(conn: &mut Conn, family: &str, image: &str, command: &[&str]) -> anyhow::Result<()> {
    call(
        conn,
        "RegisterTaskDefinition",
        &json!({
            "family": family,
            "containerDefinitions": [{
                "name": "app", "image": image, "command": command, "memory": 32, "essential": true,
            }],
        }),
    )
    .await?;
    Ok(())
}

async fn run_task(conn: &mut Conn, cluster: &str, family: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let out = call(conn, "RunTask", &json!({ "cluster": cluster, "taskDefinition": family, "count": count })).await?;
    if let Some(f) = out["failures"].as_array().filter(|f| !f.is_empty()) {
        bail!("RunTask failures: {f:?}");
    }
    Ok(task_arns(&out["tasks"]))
}

fn task_arns(tasks: &Value) -> Vec<String> {
    tasks.as_array().into_iter().flatten().filter_map(|t| t["taskArn"].as_str().map(String::from)).collect()
}

/// Polls DescribeTasks until every task is RUNNING; fails on a STOPPED one.
async fn wait_running(conn: &mut Conn, cluster: &str, arns: &[String], limit: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut pending: Vec<String> = arns.to_vec();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for chunk in pending.chunks(100) {
            let out = call(conn, "DescribeTasks", &json!({ "cluster": cluster, "tasks": chunk })).await?;
            for t in out["tasks"].as_array().into_iter().flatten() {
                match t["lastStatus"].as_str() {
                    Some("RUNNING") => {}
                    Some("STOPPED") => bail!("task stopped: {}", t["stoppedReason"]),
                    _ => still.push(t["taskArn"].as_str().unwrap_or_default().to_string()),
                }
            }
        }
        pending = still;
        if t0.elapsed() > limit {
            bail!("{} tasks not RUNNING after {limit:?}", pending.len());
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    Ok(())
}

async fn stop_all(conn: &mut Conn, cluster: &str, arns: &[String]) {
    for a in arns {
        let _ = call(conn, "StopTask", &json!({ "cluster": cluster, "task": a })).await;
    }
}

/// Pids of host processes whose command line contains `marker`.
fn pids_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(Ok(pid)) = e.file_name().to_str().map(str::parse::<u32>) else { continue };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
        {
            out.push(pid);
        }
    }
    out
}

pub async fn run(r: &mut Report, nimbus: &Path, results_dir: &Path, quick: bool) -> anyhow::Result<Value> {
    let s = start(nimbus, results_dir).await?;
    let mut conn = Conn::new(s.server.addr);
    let image = oci::busybox_image(0, 0)?;
    import(&mut conn, image.oci_archive("bench/busybox:latest")?, "bench/busybox:latest").await?;
    call(&mut conn, "CreateCluster", &json!({ "clusterName": "bench" })).await?;
    register(&mut conn, "sleeper", "bench/busybox:latest", &["sleep", "3600"]).await?;

    // Warm-up: the first task unpacks the image.
    let first = run_task(&mut conn, "bench", "sleeper", 1).await?;
    wait_running(&mut conn, "bench", &first, Duration::from_secs(30)).await?;
    stop_all(&mut conn, "bench", &first).await;

    // 1. RunTask → RUNNING, one at a time.
    let n = if quick { 20 } else { 100 };
    let mut lat = Vec::with_capacity(n);
    let mut started = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let arns = run_task(&mut conn, "bench", "sleeper", 1).await?;
        wait_running(&mut conn, "bench", &arns, Duration::from_secs(30)).await?;
        lat.push(t0.elapsed());
        started.extend(arns);
        if started.len() >= 10 {
            stop_all(&mut conn, "bench", &started).await;
            started.clear();
        }
    }
    stop_all(&mut conn, "bench", &started).await;
    let lat = Samples::from_durations(&lat, as_ms);
    let run_to_running = json!({
        "samples": lat.len(),
        "p50": r.checked("ecs.run_task_to_running.p50", lat.pct(50.0), "ms", Target::AtMost(50.0)),
        "p99": fig(lat.pct(99.0), "ms"),
        "max": fig(lat.max(), "ms"),
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. Sustained launches: RunTask count=10 back to back from 4 clients until `total`
    // tasks were asked for, timed until every one is RUNNING.
    let total = if quick { 100 } else { 300 };
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let addr = s.server.addr;
        clients.push(tokio::spawn(async move {
            let mut c = Conn::new(addr);
            let mut arns = Vec::new();
            for _ in 0..total / 40 {
                arns.extend(run_task(&mut c, "bench", "sleeper", 10).await?);
            }
            anyhow::Ok(arns)
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await??);
    }
    wait_running(&mut conn, "bench", &all, Duration::from_secs(120)).await?;
    let secs = t0.elapsed().as_secs_f64();
    let sustained = json!({
        "tasks": all.len(),
        "seconds": fig(secs, "s"),
        "rate": r.checked("ecs.sustained_launches", all.len() as f64 / secs, "tasks/s", Target::AtLeast(100.0)),
    });
    stop_all(&mut conn, "bench", &all).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 3. Replacement after a kill: a one-task service; kill -9 its process, time until a
    // new task is RUNNING.
    let marker = format!("bench-replace-{}", std::process::id());
    let script = format!("sleep 3600; : {marker}");
    register(&mut conn, "replaced", "bench/busybox:latest", &["sh", "-c", &script]).await?;
    call(
        &mut conn,
        "CreateService",
        &json!({ "cluster": "bench", "serviceName": "replaced", "taskDefinition": "replaced", "desiredCount": 1 }),
    )
    .await?;
    let rounds = if quick { 3 } else { 10 };
    let mut repl = Vec::new();
    for _ in 0..rounds {
        let (old, pid) = loop {
            let out = call(
                &mut conn,
                "ListTasks",
                &json!({ "cluster": "bench", "serviceName": "replaced", "desiredStatus": "RUNNING" }),
            )
            .await?;
            let arns: Vec<String> =
                out["taskArns"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
            let pids = pids_with(&marker);
            if arns.len() == 1 && pids.len() == 1 {
                let d = call(&mut conn, "DescribeTasks", &json!({ "cluster": "bench", "tasks": arns })).await?;
                if d["tasks"][0]["lastStatus"] == "RUNNING" {
                    break (arns[0].clone(), pids[0]);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let t0 = Instant::now();
        nix_kill(pid)?;
        loop {
            let out = call(
                &mut conn,
                "ListTasks",
                &json!({ "cluster": "bench", "serviceName": "replaced", "desiredStatus": "RUNNING" }),
            )
            .await?;
            let arns = task_arns(&json!(
                out["taskArns"].as_array().into_iter().flatten().map(|a| json!({"taskArn": a})).collect::<Vec<_>>()
            ));
            let fresh: Vec<String> = arns.into_iter().filter(|a| *a != old).collect();
            if !fresh.is_empty() {
                let d = call(&mut conn, "DescribeTasks", &json!({ "cluster": "bench", "tasks": fresh })).await?;
                if d["tasks"].as_array().into_iter().flatten().any(|t| t["lastStatus"] == "RUNNING") {
                    break;
                }
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("no replacement RUNNING within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        repl.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let repl = Samples::from_durations(&repl, as_ms);
    let replacement = json!({
        "rounds": repl.len(),
        "p50": fig(repl.pct(50.0), "ms"),
        "max": r.checked("ecs.replacement_after_kill.max", repl.max(), "ms", Target::AtMost(1000.0)),
    });
    call(&mut conn, "DeleteService", &json!({ "cluster": "bench", "service": "replaced", "force": true })).await?;

    let podman = podman_reference(&image, quick).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    s.server.stop().await?;
    Ok(json!({
        "run_task_to_running": run_to_running,
        "sustained_launches": sustained,
        "replacement_after_kill": replacement,
        "podman_run_rm_reference": podman,
    }))
}

fn nix_kill(pid: u32) -> anyhow::Result<()> {
    let st = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status()?;
    anyhow::ensure!(st.success(), "kill -KILL {pid} failed");
    Ok(())
}

/// `podman run --rm` of the same image (loaded from the same OCI archive), for reference.
fn podman_reference(image: &oci::Image, quick: bool) -> anyhow::Result<Value> {
    let dir = TempDir::new("podman")?;
    let archive = dir.0.join("busybox.tar");
    std::fs::write(&archive, image.oci_archive("bench/busybox:latest")?)?;
    let root = dir.0.join("root");
    let runroot = dir.0.join("runroot");
    let podman = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        let out = std::process::Command::new("podman")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc"])
            .args(args)
            .output()
            .context("running podman (apt-get install podman)")?;
        if !out.status.success() {
            bail!("podman {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(out)
    };
    podman(&["load", "-q", "-i", &archive.display().to_string()])?;
    // This host's hard limits are below podman's defaults for nofile/nproc: ask for less.
    let run = [
        "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
        "localhost/bench/busybox:latest", "true",
    ];
    podman(&run)?; // warm-up
    let n = if quick { 5 } else { 20 };
    let mut lat = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        podman(&run)?;
        lat.push(t0.elapsed());
    }
    let s = Samples::from_durations(&lat, as_ms);
    Ok(json!({ "runs": n, "p50": fig(s.pct(50.0), "ms"), "p99": fig(s.pct(99.0), "ms") }))
}

/// Registry scenarios (issue 7).
pub async fn registry(r: &mut Report, nimbus: &Path, results_dir: &Path, quick: bool) -> anyhow::Result<Value> {
    let _ = r;
    let s = start(nimbus, results_dir).await?;
    let mut reg = Conn::new(s.registry);
    let mut api = Conn::new(s.server.addr);
    // ECR refuses pushes to repositories that don't exist.
    for name in ["bench/big", "bench/small", "bench/fat", "bench/skopeo"] {
        let t = Template::new(Method::POST, "/")
            .header("x-amz-target", "AmazonEC2ContainerRegistry_V20150921.CreateRepository")
            .header("content-type", "application/x-amz-json-1.1")
            .body(serde_json::to_vec(&json!({ "repositoryName": name }))?);
        api.send(&t).await?.ok()?;
    }

    // 1. One ~500 MB image (5 uncompressed 100 MB layers): push then pull.
    let mb = if quick { 100 } else { 500 };
    let big = oci::busybox_image(mb, 5)?;
    let bytes = big.layer_bytes() + big.config.len();
    let t0 = Instant::now();
    push_image(&mut reg, "bench/big", "v1", &big).await?;
    let push_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut pulled = 0usize;
    for l in &big.layers {
        let path = format!("/v2/bench/big/blobs/{}", oci::sha256(&l.bytes));
        pulled += reg.send(&Template::new(Method::GET, path)).await?.ok()?.body.len();
    }
    let pull_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(pulled == big.layer_bytes(), "pulled {pulled} bytes, pushed {}", big.layer_bytes());
    let mbytes = bytes as f64 / 1e6;
    let big_fig = json!({
        "image_mb": fig(mbytes, "MB"),
        "push": fig(mbytes / push_s, "MB/s"),
        "pull": fig(mbytes / pull_s, "MB/s"),
        "server_peak_rss": fig(peak_rss_mb(s.server.pid()), "MB"),
    });
    drop(big);

    // 2. 1,000 small blobs (1 KiB): monolithic pushes, then GETs, over one connection.
    let n = if quick { 200 } else { 1000 };
    let blobs: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let mut b = vec![0u8; 1024];
            fastrand::fill(&mut b);
            b
        })
        .collect();
    let t0 = Instant::now();
    for b in &blobs {
        let t = Template::new(Method::POST, format!("/v2/bench/small/blobs/uploads/?digest={}", oci::sha256(b)))
            .header("content-type", "application/octet-stream")
            .body(b.clone());
        reg.send(&t).await?.ok()?;
    }
    let push_rate = n as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    for b in &blobs {
        reg.send(&Template::new(Method::GET, format!("/v2/bench/small/blobs/{}", oci::sha256(b)))).await?.ok()?;
    }
    let pull_rate = n as f64 / t0.elapsed().as_secs_f64();
    let small = json!({ "blobs": n, "push": fig(push_rate, "blobs/s"), "pull": fig(pull_rate, "blobs/s") });

    // 3. 50 tasks of a never-unpacked ~64 MB image, pulled from the registry at once.
    let fat = oci::busybox_image(64, 2)?;
    push_image(&mut reg, "bench/fat", "v1", &fat).await?;
    call(&mut api, "CreateCluster", &json!({ "clusterName": "pull" })).await?;
    let image_ref = format!("{}/bench/fat:v1", s.registry);
    register(&mut api, "fat", &image_ref, &["sleep", "3600"]).await?;
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..5 {
        let addr = s.server.addr;
        clients.push(tokio::spawn(async move { run_task(&mut Conn::new(addr), "pull", "fat", 10).await }));
    }
    let mut arns = Vec::new();
    for c in clients {
        arns.extend(c.await??);
    }
    wait_running(&mut api, "pull", &arns, Duration::from_secs(120)).await?;
    let concurrent = json!({ "tasks": arns.len(), "image_mb": fig(fat.layer_bytes() as f64 / 1e6, "MB"), "all_running": fig(t0.elapsed().as_secs_f64() * 1000.0, "ms") });
    stop_all(&mut api, "pull", &arns).await;

    let skopeo = skopeo_ratio(&s.registry, quick).unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    s.server.stop().await?;
    Ok(json!({ "image_500mb": big_fig, "small_blobs": small, "concurrent_task_pulls": concurrent, "skopeo": skopeo }))
}

/// Pushes every blob (one POST + PUT each), then the manifest under `tag`.
async fn push_image(reg: &mut Conn, repo: &str, tag: &str, img: &oci::Image) -> anyhow::Result<()> {
    let mut blobs: Vec<&[u8]> = img.layers.iter().map(|l| l.bytes.as_slice()).collect();
    blobs.push(&img.config);
    for b in blobs {
        let start = reg.send(&Template::new(Method::POST, format!("/v2/{repo}/blobs/uploads/"))).await?.ok()?;
        let loc = start.headers.get("location").and_then(|v| v.to_str().ok()).context("upload has no Location")?;
        let loc = loc.split_once("://").map(|(_, rest)| rest.find('/').map_or("/", |i| &rest[i..])).unwrap_or(loc);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put = Template::new(Method::PUT, format!("{loc}{sep}digest={}", oci::sha256(b)))
            .header("content-type", "application/octet-stream")
            .body(b.to_vec());
        reg.send(&put).await?.ok()?;
    }
    let m = Template::new(Method::PUT, format!("/v2/{repo}/manifests/{tag}"))
        .header("content-type", oci::MANIFEST)
        .body(img.manifest.clone());
    reg.send(&m).await?.ok()?;
    Ok(())
}

fn peak_rss_mb(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return f64::NAN };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// skopeo copy of one OCI archive into this registry vs into a plain directory. Every round
/// uses a fresh image (new random filler), so neither destination already holds its blobs
/// (skopeo skips blobs a registry already has, and remembers where it pushed them).
fn skopeo_ratio(registry: &SocketAddr, quick: bool) -> anyhow::Result<Value> {
    let dir = TempDir::new("skopeo")?;
    let mb = if quick { 50 } else { 200 };
    let time = |src: &str, dest: &str| -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let out = std::process::Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false", src, dest])
            .output()
            .context("running skopeo (apt-get install skopeo)")?;
        if !out.status.success() {
            bail!("skopeo copy to {dest}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(t0.elapsed())
    };
    let (mut to_reg, mut to_dir) = (Vec::new(), Vec::new());
    let mut image_mb = 0.0;
    for i in 0..3 {
        let img = oci::busybox_image(mb, 4)?;
        image_mb = img.layer_bytes() as f64 / 1e6;
        let archive = dir.0.join(format!("img{i}.tar"));
        std::fs::write(&archive, img.oci_archive("bench/skopeo:latest")?)?;
        let src = format!("oci-archive:{}", archive.display());
        to_reg.push(time(&src, &format!("docker://{registry}/bench/skopeo:r{i}"))?);
        let d = dir.0.join(format!("dir{i}"));
        to_dir.push(time(&src, &format!("dir:{}", d.display()))?);
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_file(&archive);
    }
    let reg = Samples::from_durations(&to_reg, as_ms).pct(50.0);
    let dirm = Samples::from_durations(&to_dir, as_ms).pct(50.0);
    Ok(json!({
        "image_mb": fig(image_mb, "MB"),
        "into_registry_p50": fig(reg, "ms"),
        "into_dir_p50": fig(dirm, "ms"),
        "ratio": fig(reg / dirm, "x"),
    }))
}
