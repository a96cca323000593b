//! The four scenarios. Each returns its section of the report; figures with a target are
//! also recorded in the `Report` summary.
use crate::http::{self, Check, Conn, LoadResult, Template};
use crate::lambda::{self, Package};
use crate::server::{CpuTimes, Server, TempDir};
use crate::stats::{Report, Samples, Target, as_ms, as_us, fig};
use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much work each scenario does (`--quick` shrinks everything).
pub struct Sizes {
    pub starts: usize,
    pub cold_samples: usize,
    pub warm_warmup: usize,
    pub warm_sequential: usize,
    pub concurrent_clients: usize,
    pub concurrent_warmup: Duration,
    pub concurrent_duration: Duration,
    pub control_connections: usize,
    pub control_duration: Duration,
    pub freeze_samples: usize,
    pub idle_sandboxes: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Self {
        Sizes {
            starts: 10,
            cold_samples: if quick { 10 } else { 30 },
            warm_warmup: if quick { 100 } else { 200 },
            warm_sequential: if quick { 500 } else { 2000 },
            concurrent_clients: 64,
            concurrent_warmup: Duration::from_secs(1),
            concurrent_duration: Duration::from_secs(if quick { 2 } else { 5 }),
            control_connections: 32,
            control_duration: Duration::from_secs(if quick { 2 } else { 5 }),
            freeze_samples: if quick { 200 } else { 1000 },
            idle_sandboxes: if quick { 200 } else { 1000 },
        }
    }
}

/// 1. Spawn the server on fresh data dirs and time it until it is ready.
pub async fn start_to_ready(r: &mut Report, bin: &Path, n: usize) -> anyhow::Result<Value> {
    let (mut ready, mut health, mut own, mut settle) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let dir = TempDir::new("start")?;
        let (server, t) = Server::start(bin, &dir.0.join("data"), &dir.0.join("server.log"), "process")
            .await
            .with_context(|| format!("start #{i}"))?;
        ready.push(t.ready_line);
        health.push(t.health_200);
        own.push(server.self_reported_ms);
        // Let background startup work (interpreter probes) finish, so it doesn't steal CPU
        // from the next start or outlive the server.
        settle.push(
            server.wait_childless(Duration::from_secs(5)).await.map(|d| (as_ms(d) * 10.0).round() / 10.0),
        );
        server.stop().await?;
    }
    let health_each: Vec<f64> = health.iter().map(|d| (as_ms(*d) * 10.0).round() / 10.0).collect();
    let (ready, health, own) =
        (Samples::from_durations(&ready, as_ms), Samples::from_durations(&health, as_ms), Samples::new(own));
    Ok(json!({
        "what": "spawn `nimbus server --listen 127.0.0.1:0` on a fresh data dir; time until the ready line on stdout, and until the first 200 from GET /_nimbus/health (sent right after the ready line)",
        "samples": n,
        "to_first_health_200": {
            "p50": r.checked("start_to_ready.health_200.p50", health.pct(50.0), "ms", Target::AtMost(50.0)),
            "max": r.checked("start_to_ready.health_200.max", health.max(), "ms", Target::AtMost(50.0)),
        },
        "to_ready_line": { "p50": fig(ready.pct(50.0), "ms"), "max": fig(ready.max(), "ms") },
        "server_self_reported": { "p50": fig(own.pct(50.0), "ms"), "max": fig(own.max(), "ms") },
        "health_200_each_ms": health_each,
        "background_settle_each_ms": settle,
        "background_settle_note": "after each start, time (from the first 200) until the server had no child processes left (its background interpreter probes); the harness waits for that before stopping the server, null = still busy after 5 s",
    }))
}

/// 2. Cold starts: retire the warm environment (new Environment) before every invoke.
pub async fn cold_starts(
    r: &mut Report,
    addr: SocketAddr,
    packages: &[Package],
    n: usize,
    label: &str,
    targets: &[(&str, f64)],
) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    out.insert(
        "what".into(),
        json!(format!(
            "per runtime: UpdateFunctionConfiguration (changed Environment) then one Tail invoke of the no-op event; \
             client-observed invoke latency and the REPORT line's Init Duration; {n} samples after 1 discarded warm-up"
        )),
    );
    for p in packages {
        let section = cold_start_one(r, addr, p, n, label, targets)
            .await
            .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
        out.insert(p.runtime.to_string(), section);
    }
    Ok(Value::Object(out))
}

/// `n` cold starts of one runtime (after a discarded first one).
async fn cold_start_one(
    r: &mut Report,
    addr: SocketAddr,
    p: &Package,
    n: usize,
    label: &str,
    targets: &[(&str, f64)],
) -> anyhow::Result<Value> {
    let name = format!("bench-cold-{}", p.runtime.replace('.', "-"));
    let mut conn = Conn::new(addr);
    lambda::create(&mut conn, &name, p).await?;
    let invoke = lambda::invoke_template(&name, true);
    let (mut client, mut init, mut not_cold, mut errors, mut first_error) =
        (Vec::new(), Vec::new(), 0, 0, None);
    for i in 0..=n {
        lambda::set_env(&mut conn, &name, &i.to_string()).await?;
        conn.open().await?;
        let t0 = Instant::now();
        let resp = conn.send(&invoke).await?;
        let took = t0.elapsed();
        let outcome = if resp.status.is_success() {
            lambda::invoke_succeeded(&resp)
        } else {
            Err(format!("HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body)))
        };
        if let Err(e) = outcome {
            errors += 1;
            first_error.get_or_insert(e);
            continue;
        }
        if i == 0 {
            continue; // warm-up: loads the runtime's files into the page cache
        }
        match lambda::log_tail(&resp).as_deref().and_then(lambda::init_duration_ms) {
            Some(ms) => {
                client.push(took);
                init.push(ms);
            }
            None => not_cold += 1,
        }
    }
    if client.is_empty() {
        bail!("{}: no cold start measured ({errors} errors, first: {first_error:?})", p.runtime);
    }
    let (client, init) = (Samples::from_durations(&client, as_ms), Samples::new(init));
    let target = targets.iter().find(|(rt, _)| *rt == p.runtime).map(|(_, ms)| Target::AtMost(*ms));
    let mut p50 = |key: &str, v: f64| match target {
        Some(t) => r.checked(&format!("{label}.{}.{key}", p.runtime), v, "ms", t),
        None => fig(v, "ms"),
    };
    Ok(json!({
        "cold_samples": client.len(),
        "client_invoke": {
            "p50": p50("client_invoke.p50", client.pct(50.0)),
            "p99": fig(client.pct(99.0), "ms"),
            "max": fig(client.max(), "ms"),
        },
        "init_duration": {
            "p50": p50("init_duration.p50", init.pct(50.0)),
            "p99": fig(init.pct(99.0), "ms"),
            "max": fig(init.max(), "ms"),
        },
        "not_cold": not_cold,
        "errors": errors,
        "first_error": first_error,
    }))
}

fn invoke_check() -> Check {
    Arc::new(lambda::invoke_succeeded)
}

fn load_figures(res: &LoadResult) -> Value {
    let lat = Samples::from_durations(&res.latencies, as_us);
    json!({
        "requests": res.latencies.len(),
        "errors": res.errors,
        "first_error": res.first_error,
        "elapsed": fig(res.elapsed.as_secs_f64(), "s"),
        "p50": fig(lat.pct(50.0), "us"),
        "p99": fig(lat.pct(99.0), "us"),
        "max": fig(lat.max(), "us"),
    })
}

/// 3. Warm invokes of the provided no-op function: sequential latency, then throughput.
pub async fn warm_invokes(
    r: &mut Report,
    server: &Server,
    rust_echo: &Package,
    s: &Sizes,
) -> anyhow::Result<Value> {
    let addr = server.addr;
    let cpu = Cpu::new(server.pid());
    let name = "bench-warm";
    let mut conn = Conn::new(addr);
    lambda::create(&mut conn, name, rust_echo).await?;
    let invoke = lambda::invoke_template(name, false);

    // Sequential: one client, one keep-alive connection.
    let (mut lat, mut errors, mut first_error) = (Vec::with_capacity(s.warm_sequential), 0u64, None);
    let mut cpu_start = None;
    for i in 0..s.warm_warmup + s.warm_sequential {
        if i == s.warm_warmup {
            cpu_start = Some(cpu.now());
        }
        let t0 = Instant::now();
        let outcome = match conn.send(&invoke).await {
            Ok(resp) if resp.status.is_success() => lambda::invoke_succeeded(&resp),
            Ok(resp) => Err(format!("HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body))),
            Err(e) => Err(format!("{e:#}")),
        };
        let took = t0.elapsed();
        match outcome {
            Ok(()) if i >= s.warm_warmup => lat.push(took),
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let seq = Samples::from_durations(&lat, as_us);
    let seq_cpu = cpu.per_request(cpu_start.flatten(), seq.len());

    // For scale: the same connection's round trip to a handler that does nothing.
    let health = Template::new(Method::GET, "/_nimbus/health");
    let mut floor = Vec::with_capacity(s.warm_sequential);
    for _ in 0..s.warm_sequential {
        let t0 = Instant::now();
        conn.send(&health).await?.ok()?;
        floor.push(t0.elapsed());
    }
    let floor = Samples::from_durations(&floor, as_us);

    let sequential = json!({
        "what": format!("1 client, {} sequential invokes on one keep-alive connection after {} warm-up invokes", s.warm_sequential, s.warm_warmup),
        "requests": seq.len(),
        "errors": errors,
        "first_error": first_error,
        "p50": r.checked("warm_invoke.sequential.p50", seq.pct(50.0), "us", Target::AtMost(200.0)),
        "p99": fig(seq.pct(99.0), "us"),
        "max": fig(seq.max(), "us"),
        "mean": fig(seq.mean(), "us"),
        "cpu_per_invoke": seq_cpu,
        "http_floor": {
            "what": "GET /_nimbus/health on the same connection, same count: the HTTP round trip without an invoke",
            "p50": fig(floor.pct(50.0), "us"),
            "p99": fig(floor.pct(99.0), "us"),
        },
    });

    // Concurrent: warm up (lets the server scale out environments), then measure.
    let warmup =
        http::closed_loop(addr, s.concurrent_clients, s.concurrent_warmup, invoke.clone(), invoke_check())
            .await?;
    let before = cpu.now();
    let res =
        http::closed_loop(addr, s.concurrent_clients, s.concurrent_duration, invoke, invoke_check()).await?;
    let cpu_per_invoke = cpu.per_request(before, res.latencies.len());
    let rate = res.latencies.len() as f64 / res.elapsed.as_secs_f64();
    let mut concurrent = load_figures(&res);
    concurrent["what"] = json!(format!(
        "{} clients, each on its own keep-alive connection, invoking back to back for {:?} after a {:?} warm-up ({} invokes, {} errors)",
        s.concurrent_clients,
        s.concurrent_duration,
        s.concurrent_warmup,
        warmup.latencies.len(),
        warmup.errors
    ));
    concurrent["throughput"] =
        r.checked("warm_invoke.concurrent.throughput", rate, "invokes/s", Target::AtLeast(10_000.0));
    concurrent["cpu_per_invoke"] = cpu_per_invoke;
    Ok(json!({ "sequential": sequential, "concurrent": concurrent }))
}

/// CPU accounting for a phase: the server, its function processes, and this harness.
struct Cpu {
    server: Option<u32>,
}

impl Cpu {
    fn new(server: Option<u32>) -> Self {
        Cpu { server }
    }

    /// (server + its children, the harness itself)
    fn now(&self) -> Option<(CpuTimes, CpuTimes)> {
        Some((CpuTimes::of(self.server?)?, CpuTimes::of(std::process::id())?))
    }

    /// CPU µs per request since `before` (10 ms /proc resolution, so use long phases).
    fn per_request(&self, before: Option<(CpuTimes, CpuTimes)>, requests: usize) -> Value {
        let (Some((s0, b0)), Some((s1, b1))) = (before, self.now()) else { return Value::Null };
        let (server, bench) = (s1.since(&s0), b1.since(&b0));
        let per = |d: Duration| fig(as_us(d) / requests.max(1) as f64, "us");
        json!({
            "server": per(server.process),
            "function_processes": per(server.children),
            "bench_client": per(bench.process),
        })
    }
}

/// The two control-plane requests that scenario 4 hammers.
fn control_requests(function: &str) -> [(&'static str, Template); 2] {
    [
        ("get_function", Template::new(Method::GET, format!("/2015-03-31/functions/{function}"))),
        (
            "describe_log_groups",
            Template::new(Method::POST, "/")
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amz-target", "Logs_20140328.DescribeLogGroups")
                .body("{}"),
        ),
    ]
}

/// `wrk`'s version if it is on PATH, installing it with apt-get if it is missing.
fn find_wrk() -> Result<String, String> {
    let version = || {
        // `wrk -v` prints its version and exits non-zero.
        let out = std::process::Command::new("wrk").arg("-v").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        text.lines()
            .find(|l| l.starts_with("wrk"))
            .map(|l| l.split(" [").next().unwrap_or(l).trim().to_string())
    };
    if let Some(v) = version() {
        return Ok(v);
    }
    eprintln!("bench: wrk not found; trying `apt-get install -y wrk`");
    let status = std::process::Command::new("apt-get")
        .args(["install", "-y", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::io::stderr())
        .status();
    match status {
        Ok(s) if s.success() => version().ok_or_else(|| "apt-get installed wrk but it does not run".into()),
        Ok(s) => Err(format!("wrk not on PATH and `apt-get install -y wrk` failed ({s})")),
        Err(e) => Err(format!("wrk not on PATH and apt-get could not run: {e}")),
    }
}

/// 4. Control-plane throughput with wrk (or the in-process generator as a fallback).
pub async fn control_api(
    r: &mut Report,
    addr: SocketAddr,
    function: &str,
    s: &Sizes,
    use_wrk: bool,
    scratch: &Path,
) -> anyhow::Result<Value> {
    let wrk = if use_wrk { find_wrk() } else { Err("disabled by --no-wrk".into()) };
    let mut out = serde_json::Map::new();
    match &wrk {
        Ok(v) => out.insert(
            "tool".into(),
            json!(format!(
                "{v}: wrk -t2 -c{} -d{}s --latency",
                s.control_connections,
                s.control_duration.as_secs()
            )),
        ),
        Err(why) => out.insert(
            "tool".into(),
            json!(format!(
                "in-process hyper load generator, {} keep-alive connections (wrk unavailable: {why})",
                s.control_connections
            )),
        ),
    };
    let mut conn = Conn::new(addr);
    for (key, t) in control_requests(function) {
        // One request by hand first: the run only means something if the answer is a 200.
        let probe = conn.send(&t).await?.ok().with_context(|| format!("probe {key}"))?;
        let section = match &wrk {
            Ok(_) => {
                let w = run_wrk(addr, &t, s, scratch)?;
                let mut v = json!({
                    "requests": w.requests,
                    "non_2xx": w.non_2xx,
                    "socket_errors": w.socket_errors,
                    "p50": fig(w.p50_us, "us"),
                    "p99": fig(w.p99_us, "us"),
                    "max": fig(w.max_us, "us"),
                });
                v["throughput"] = r.checked(
                    &format!("control_api.{key}.throughput"),
                    w.rps,
                    "req/s",
                    Target::AtLeast(40_000.0),
                );
                v
            }
            Err(_) => {
                let res = http::closed_loop(
                    addr,
                    s.control_connections,
                    s.control_duration,
                    t.clone(),
                    Arc::new(|_| Ok(())),
                )
                .await?;
                let rate = res.latencies.len() as f64 / res.elapsed.as_secs_f64();
                let mut v = load_figures(&res);
                v["throughput"] = r.checked(
                    &format!("control_api.{key}.throughput"),
                    rate,
                    "req/s",
                    Target::AtLeast(40_000.0),
                );
                v
            }
        };
        let mut section = section;
        section["request"] = json!(format!(
            "{} {}{} ({} byte response)",
            t.method,
            t.path,
            t.headers
                .iter()
                .find(|(k, _)| *k == "x-amz-target")
                .map(|(_, v)| format!(" X-Amz-Target: {v}"))
                .unwrap_or_default(),
            probe.body.len()
        ));
        out.insert(key.into(), section);
    }
    Ok(Value::Object(out))
}

/// What we read from wrk's `--latency` output.
pub struct WrkResult {
    pub rps: f64,
    pub requests: u64,
    pub non_2xx: u64,
    pub socket_errors: String,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

fn run_wrk(addr: SocketAddr, t: &Template, s: &Sizes, scratch: &Path) -> anyhow::Result<WrkResult> {
    wrk(addr, t, s.control_connections, s.control_duration, scratch)
}

/// One wrk run (`-t2 --latency`) of `t` against `addr`.
pub fn wrk(
    addr: SocketAddr,
    t: &Template,
    connections: usize,
    duration: Duration,
    scratch: &Path,
) -> anyhow::Result<WrkResult> {
    // A Lua script carries the method, headers and body (wrk's -H can't set a body).
    let mut lua = format!("wrk.method = \"{}\"\n", t.method);
    if !t.body.is_empty() {
        lua += &format!("wrk.body = {:?}\n", String::from_utf8_lossy(&t.body));
    }
    for (k, v) in &t.headers {
        let k = if *k == "host" { "Host" } else { k };
        lua += &format!("wrk.headers[\"{k}\"] = {v:?}\n");
    }
    let script = scratch.join("request.lua");
    std::fs::write(&script, lua)?;
    let out = std::process::Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{}s", duration.as_secs()), "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://{addr}{}", t.path))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed ({}): {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

/// wrk durations: `850.00us`, `1.20ms`, `2.00s`, `1.00m`; returned in µs.
fn wrk_duration_us(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        "h" => n * 3600e6,
        _ => return None,
    })
}

fn parse_wrk(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult {
        rps: f64::NAN,
        requests: 0,
        non_2xx: 0,
        socket_errors: "none".into(),
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        max_us: f64::NAN,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => r.rps = v.parse().ok()?,
            ["Latency", _avg, _stdev, max, ..] => r.max_us = wrk_duration_us(max)?,
            ["50%", v] => r.p50_us = wrk_duration_us(v)?,
            ["99%", v] => r.p99_us = wrk_duration_us(v)?,
            [n, "requests", "in", ..] => r.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().ok()?,
            ["Socket", "errors:", ..] => {
                r.socket_errors = line.trim_start_matches("Socket errors:").trim().to_string()
            }
            _ => {}
        }
    }
    r.rps.is_finite().then_some(r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_output() {
        let text = "Running 5s test @ http://127.0.0.1:1/x\n  2 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   564.12us  200.12us   5.00ms   80.00%\n    Req/Sec    28.00k     1.00k   30.00k    70.00%\n  Latency Distribution\n     50%  500.00us\n     75%  600.00us\n     90%  700.00us\n     99%    1.20ms\n  280000 requests in 5.00s, 100.00MB read\n  Socket errors: connect 0, read 1, write 0, timeout 0\n  Non-2xx or 3xx responses: 5\nRequests/sec:  56000.00\nTransfer/sec:     20.00MB\n";
        let r = super::parse_wrk(text).unwrap();
        assert_eq!(r.rps, 56000.0);
        assert_eq!(r.requests, 280000);
        assert_eq!(r.non_2xx, 5);
        assert_eq!(r.p50_us, 500.0);
        assert_eq!(r.p99_us, 1200.0);
        assert_eq!(r.max_us, 5000.0);
        assert_eq!(r.socket_errors, "connect 0, read 1, write 0, timeout 0");
    }
}
