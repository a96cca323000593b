//! `nimbus-bench`: the Nimbus benchmark harness.
//!
//! `cargo run --release -p nimbus-bench -- [--quick]` builds `nimbus` and the `rust-echo`
//! test function in release mode, then measures, against real `nimbus server` processes:
//!
//! 1. start_to_ready — spawn → ready line / first 200 from /_nimbus/health (target ≤ 50 ms);
//! 2. cold_start — provided.al2023 (rust-echo), python3.12 and nodejs20.x cold invokes,
//!    client-observed and the REPORT line's Init Duration (target provided ≤ 5 ms);
//! 3. warm_invoke — sequential latency (p50 ≤ 200 µs) and 64-client throughput
//!    (≥ 10,000 invokes/s) of the provided no-op function;
//! 4. control_api — `wrk` against GetFunction and Logs DescribeLogGroups (≥ 40,000 req/s);
//! 5. gateway — HTTP API → Lambda added latency p50 vs direct invoke (≤ 50 µs) and HTTP_PROXY
//!    throughput vs nginx proxying the same nginx backend (≥ 1.0×);
//! 6. sandbox — the container backend (cold starts, freeze/thaw, idle sandboxes);
//! 7. eventbridge — PutEvents → 100 rules → Lambda targets (≥ 20,000 events/s matched);
//! 8. stepfunctions — transitions/s of a 100-state Pass/Choice workflow, in-process and via
//!    StartSyncExecution (≥ 100,000/s), and a 10,000-item Map invoking a no-op function;
//! 9. async — Event invokes end to end through the durable queue (destination records in SQS);
//! 10. scaleout — 1,000 concurrent invokes, time until all environments serve (≤ 2 s);
//! 11. alias — weighted-alias routing overhead vs unqualified invokes.
//!
//! 12. ecs — RunTask → RUNNING (≤ 50 ms p50), sustained launches (≥ 100 tasks/s), service
//!     replacement after a kill (≤ 1 s), `podman run --rm` of the same image for reference;
//! 13. registry — push/pull of a ~500 MB image and of 1,000 small blobs, 50 tasks pulling
//!     one never-unpacked image, skopeo copy into the registry vs into a directory.
//!
//! Scenarios 9–13 are not in the default set: `--only async,scaleout,alias,ecs,registry`.
//! 12 and 13 need root (the container sandbox), busybox-static, podman and skopeo.
//!
//! The report is pretty JSON on stdout and in bench/results/latest.json; progress goes to
//! stderr. Every figure carries its unit, and figures with a target say whether it was met.
mod ecs;
mod eventbridge;
mod gateway;
mod http;
mod issue4;
mod lambda;
mod oci;
mod sandbox;
mod scenarios;
mod server;
mod stats;
mod stepfunctions;

use anyhow::Context;
use clap::Parser;
use scenarios::Sizes;
use serde_json::{Value, json};
use server::{Server, TempDir};
use stats::Report;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The allocator the server uses, so in-process figures (the ASL interpreter) match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "nimbus-bench", about = "Benchmarks a release build of the nimbus server")]
struct Args {
    /// Fewer samples and shorter runs (about a minute in all).
    #[arg(long)]
    quick: bool,
    /// Don't run `cargo build --release -p nimbus -p rust-echo` first.
    #[arg(long)]
    no_build: bool,
    /// Use the in-process load generator for the control API instead of wrk.
    #[arg(long)]
    no_wrk: bool,
    /// Only these scenarios (comma-separated: start,cold,warm,control,gateway,sandbox,eventbridge,
    /// stepfunctions — the default set — and async,scaleout,alias,ecs,registry).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "start,cold,warm,control,gateway,sandbox,eventbridge,stepfunctions"
    )]
    only: Vec<String>,
    /// Concurrent invokes in the scale-out scenario.
    #[arg(long, default_value_t = 1000)]
    scaleout_invokes: usize,
    /// Where to write the JSON report (besides stdout).
    #[arg(long, default_value_os_t = server::workspace_root().join("bench/results/latest.json"))]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.no_build {
        server::build()?;
    }
    let bin_dir = server::release_dir()?;
    let (nimbus, rust_echo) = (bin_dir.join("nimbus"), bin_dir.join("rust-echo"));
    for b in [&nimbus, &rust_echo] {
        anyhow::ensure!(
            b.is_file(),
            "{} not found; run `cargo build --release -p nimbus -p rust-echo`",
            b.display()
        );
    }
    let results_dir = args.out.parent().context("--out has no directory")?.to_path_buf();
    std::fs::create_dir_all(&results_dir)?;

    // Ctrl-C drops the run's future, and with it the servers (kill_on_drop).
    let report = tokio::select! {
        r = run(&args, &nimbus, &rust_echo, &results_dir) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    let text = serde_json::to_string_pretty(&report)? + "\n";
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    print!("{text}");
    eprintln!("bench: report written to {}", args.out.display());
    if has_error(&report["scenarios"]) {
        anyhow::bail!("some scenarios failed (see their \"error\")");
    }
    Ok(())
}

impl Args {
    fn wants(&self, scenario: &str) -> bool {
        self.only.iter().any(|o| o == scenario)
    }
}

/// A scenario's section of the report, or `{"error": …}` if it failed.
fn section(res: anyhow::Result<Value>) -> Value {
    res.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }))
}

/// Whether any section of the report is an `{"error": …}`.
fn has_error(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.contains_key("error") || o.values().any(has_error))
}

/// Runs the selected scenarios; a failing scenario is reported as `{"error": …}` and the
/// others still run.
async fn run(args: &Args, nimbus: &Path, rust_echo: &Path, results_dir: &Path) -> anyhow::Result<Value> {
    let sizes = Sizes::new(args.quick);
    let mut r = Report::default();
    let mut scenarios = serde_json::Map::new();

    if args.wants("start") {
        eprintln!("bench: 1/4 start_to_ready ({} starts)", sizes.starts);
        scenarios.insert(
            "start_to_ready".into(),
            section(scenarios::start_to_ready(&mut r, nimbus, sizes.starts).await),
        );
    }

    // Scenarios 2–4 share one server on a fresh data dir; its stderr is kept for inspection.
    let server_log = results_dir.join("server.log");
    let mut server_info = Value::Null;
    if args.wants("cold") || args.wants("warm") || args.wants("control") || args.wants("gateway") {
        let res = shared_server(args, &sizes, &mut r, &mut scenarios, nimbus, rust_echo, &server_log).await;
        if let Err(e) = res {
            scenarios.insert("shared_server".into(), json!({ "error": format!("{e:#}") }));
        }
        server_info = log_summary(&server_log);
    }

    if args.wants("sandbox") {
        eprintln!("bench: container sandbox (cold starts, freeze/thaw, idle frozen sandboxes)");
        let res = async {
            let rust_echo = nimbus.with_file_name("rust-echo");
            let packages = sandbox::packages(&rust_echo)?;
            sandbox::run(
                &mut r,
                nimbus,
                &packages,
                sizes.cold_samples,
                sizes.freeze_samples,
                sizes.idle_sandboxes,
                results_dir,
            )
            .await
        };
        scenarios.insert("container_sandbox".into(), section(res.await));
    }

    if args.wants("stepfunctions") {
        eprintln!("bench: step functions (transitions/s, 10,000-item Map)");
        let res = stepfunctions::run(&mut r, nimbus, rust_echo, args.quick, results_dir).await;
        scenarios.insert("stepfunctions".into(), section(res));
    }

    if args.wants("eventbridge") {
        eprintln!("bench: EventBridge PutEvents → 100 rules → Lambda targets");
        let res = async {
            let provided = lambda::provided(&nimbus.with_file_name("rust-echo"))?;
            eventbridge::put_events(&mut r, nimbus, &provided, &sizes, results_dir).await
        };
        scenarios.insert("eventbridge".into(), section(res.await));
    }

    if args.wants("async") || args.wants("scaleout") || args.wants("alias") {
        let provided = lambda::provided(rust_echo)?;
        if args.wants("async") {
            let n = if args.quick { 500 } else { 2000 };
            eprintln!("bench: 5/7 async events ({n})");
            let res = issue4::async_events(nimbus, &provided, results_dir, n).await;
            scenarios.insert("async_events".into(), section(res));
        }
        if args.wants("scaleout") {
            let n = args.scaleout_invokes;
            eprintln!("bench: 6/7 scale-out ({n} concurrent invokes)");
            let res = issue4::scale_out(&mut r, nimbus, &provided, results_dir, n).await;
            scenarios.insert("scale_out".into(), section(res));
        }
        if args.wants("alias") {
            eprintln!("bench: 7/7 alias-weighted routing");
            let res = issue4::alias_routing(
                nimbus,
                &provided,
                results_dir,
                sizes.warm_sequential,
                sizes.concurrent_duration,
            )
            .await;
            scenarios.insert("alias_routing".into(), section(res));
        }
    }

    if args.wants("ecs") {
        eprintln!("bench: ECS (RunTask → RUNNING, sustained launches, replacement, podman reference)");
        let res = ecs::run(&mut r, nimbus, results_dir, args.quick).await;
        scenarios.insert("ecs".into(), section(res));
    }
    if args.wants("registry") {
        eprintln!("bench: registry (500 MB image, 1,000 small blobs, 50 concurrent task pulls, skopeo)");
        let res = ecs::registry(&mut r, nimbus, results_dir, args.quick).await;
        scenarios.insert("registry".into(), section(res));
    }

    Ok(json!({
        "meta": meta(args, nimbus),
        "scenarios": scenarios,
        "server_log": server_info,
        "summary": r.summary(),
    }))
}

/// Scenarios 2–4 against one server.
async fn shared_server(
    args: &Args,
    sizes: &Sizes,
    r: &mut Report,
    scenarios: &mut serde_json::Map<String, Value>,
    nimbus: &Path,
    rust_echo: &Path,
    server_log: &Path,
) -> anyhow::Result<()> {
    let packages = [lambda::provided(rust_echo)?, lambda::python()?, lambda::node()?];
    let provided = &packages[0];
    let dir = TempDir::new("main")?;
    let (server, _) = Server::start(nimbus, &dir.0.join("data"), server_log, "process").await?;
    // Start from a quiet machine: let the server's background startup work finish.
    server.wait_childless(Duration::from_secs(5)).await;
    let addr = server.addr;
    eprintln!("bench: server for scenarios 2-4 at http://{addr} (log: {})", server_log.display());

    if args.wants("cold") {
        eprintln!("bench: 2/4 cold_start ({} samples per runtime)", sizes.cold_samples);
        scenarios.insert(
            "cold_start".into(),
            section(
                scenarios::cold_starts(
                    r,
                    addr,
                    &packages,
                    sizes.cold_samples,
                    "cold_start",
                    &[("provided.al2023", 5.0)],
                )
                .await,
            ),
        );
    }
    if args.wants("warm") {
        eprintln!("bench: 3/4 warm_invoke");
        scenarios.insert(
            "warm_invoke".into(),
            section(scenarios::warm_invokes(r, &server, provided, sizes).await),
        );
    }
    if args.wants("control") {
        eprintln!("bench: 4/4 control_api");
        // GetFunction needs a function; create one unless scenario 3 already did.
        let res = async {
            if !args.wants("warm") {
                lambda::create(&mut http::Conn::new(addr), "bench-warm", provided).await?;
            }
            scenarios::control_api(r, addr, "bench-warm", sizes, !args.no_wrk, &dir.0).await
        };
        scenarios.insert("control_api".into(), section(res.await));
    }
    if args.wants("gateway") {
        eprintln!("bench: gateway (API Gateway: Lambda added latency, HTTP_PROXY vs nginx)");
        scenarios.insert(
            "gateway".into(),
            section(crate::gateway::gateway(r, addr, provided, sizes, &dir.0).await),
        );
    }
    server.stop().await
}

/// Where and how the run happened.
fn meta(args: &Args, nimbus: &Path) -> Value {
    let git = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(server::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    json!({
        "quick": args.quick,
        "nimbus": nimbus.display().to_string(),
        "sandbox": "process (ecs, registry: container)",
        "git": git,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    })
}

/// Counts WARN/ERROR lines in the server's stderr and keeps the first few.
fn log_summary(path: &Path) -> Value {
    let text = server::strip_ansi(&std::fs::read_to_string(path).unwrap_or_default());
    let pick = |level: &str| -> (usize, Vec<String>) {
        let hits: Vec<_> = text.lines().filter(|l| l.contains(level)).collect();
        (hits.len(), hits.iter().take(5).map(|l| l.to_string()).collect())
    };
    let (warns, first_warns) = pick(" WARN ");
    let (errors, first_errors) = pick(" ERROR ");
    json!({ "path": path.display().to_string(), "warn_lines": warns, "error_lines": errors, "first_warns": first_warns, "first_errors": first_errors })
}
