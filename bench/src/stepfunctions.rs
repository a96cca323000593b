//! Step Functions scenarios: state transitions/s of a 100-state Pass/Choice workflow (the
//! pure interpreter in-process, and StartSyncExecution over HTTP), and a 10,000-item Map
//! (MaxConcurrency 100) invoking the no-op provided.al2023 function.
use crate::http::{self, Conn, Template};
use crate::lambda::{self, Package};
use crate::server::{Server, TempDir};
use crate::stats::{Report, Samples, Target, as_us, fig};
use anyhow::{Context, bail};
use hyper::Method;
use nimbus_workflows::{Action, Execution, ExecutionContext, StateMachine};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STATES: usize = 100;
const ROLE: &str = "arn:aws:iam::000000000000:role/bench";

/// 100 states alternating Pass (increments a counter with States.MathAdd) and Choice
/// (checks it), ending in Succeed: every state is one transition.
fn pass_choice_definition() -> Value {
    let mut states = serde_json::Map::new();
    for i in 0..STATES {
        let name = format!("S{i}");
        let next = if i + 1 == STATES { None } else { Some(format!("S{}", i + 1)) };
        let state = match (i % 2, next) {
            (_, None) => json!({"Type": "Succeed"}),
            (0, Some(n)) => {
                json!({"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": n})
            }
            (_, Some(n)) => json!({"Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThanEquals": 0, "Next": n}],
                "Default": "Bad"}),
        };
        states.insert(name, state);
    }
    states.insert("Bad".into(), json!({"Type": "Fail", "Error": "Bad"}));
    json!({"StartAt": "S0", "States": states})
}

/// The interpreter alone: executions of the 100-state machine back to back.
fn interpreter(r: &mut Report, duration: Duration) -> anyhow::Result<Value> {
    let machine =
        StateMachine::parse(&pass_choice_definition().to_string()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < duration {
        let context = ExecutionContext {
            execution_arn: format!("arn:aws:states:us-east-1:1:execution:bench:{runs}"),
            execution_name: runs.to_string(),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:bench".into(),
            state_machine_name: "bench".into(),
            role_arn: ROLE.into(),
            start_time: chrono::Utc::now(),
            seed: runs,
        };
        let mut execution = Execution::new(&machine, json!({"n": 0}), context);
        let step = execution.start(&machine).map_err(|e| anyhow::anyhow!("{e}"))?;
        if !matches!(step.actions.last(), Some(Action::Succeed { .. })) {
            bail!("the benchmark machine did not succeed: {:?}", step.actions);
        }
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = runs as f64 * STATES as f64 / secs;
    Ok(json!({
        "what": "nimbus-workflows in-process, one thread: Execution::start of a 100-state Pass/Choice machine (Pass with States.MathAdd, Choice on it), history included",
        "executions": runs,
        "per_execution": fig(secs * 1e6 / runs as f64, "us"),
        "transitions_per_second": r.checked("stepfunctions.interpreter.transitions_per_s", rate, "transitions/s", Target::AtLeast(100_000.0)),
    }))
}

fn sfn(op: &str, body: &Value) -> Template {
    Template::new(Method::POST, "/")
        .header("x-amz-target", format!("AWSStepFunctions.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(serde_json::to_vec(body).unwrap_or_default())
}

async fn call(conn: &mut Conn, op: &str, body: &Value) -> anyhow::Result<Value> {
    let resp = conn.send(&sfn(op, body)).await?;
    if !resp.status.is_success() {
        bail!("{op}: HTTP {}: {}", resp.status, String::from_utf8_lossy(&resp.body));
    }
    Ok(serde_json::from_slice(&resp.body)?)
}

async fn create_machine(
    conn: &mut Conn,
    name: &str,
    definition: &Value,
    kind: &str,
) -> anyhow::Result<String> {
    let out = call(
        conn,
        "CreateStateMachine",
        &json!({"name": name, "definition": definition.to_string(), "roleArn": ROLE, "type": kind}),
    )
    .await?;
    out["stateMachineArn"].as_str().map(str::to_string).context("no stateMachineArn")
}

/// StartSyncExecution of the 100-state EXPRESS machine from `clients` connections.
async fn sync_http(
    r: &mut Report,
    server: &Server,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Value> {
    let mut conn = Conn::new(server.addr);
    let arn = create_machine(&mut conn, "bench-pass-choice", &pass_choice_definition(), "EXPRESS").await?;
    let t = sfn("StartSyncExecution", &json!({"stateMachineArn": arn, "input": "{\"n\": 0}"}));
    let check: http::Check = Arc::new(|resp| {
        let v: Value = serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
        if v["status"] == "SUCCEEDED" { Ok(()) } else { Err(format!("execution did not succeed: {v}")) }
    });
    let mut sections = serde_json::Map::new();
    for (label, c) in [("sequential", 1), ("concurrent", clients)] {
        http::closed_loop(server.addr, c, Duration::from_millis(500), t.clone(), check.clone()).await?;
        let res = http::closed_loop(server.addr, c, duration, t.clone(), check.clone()).await?;
        let rate = res.latencies.len() as f64 / res.elapsed.as_secs_f64();
        let lat = Samples::from_durations(&res.latencies, as_us);
        let transitions = rate * STATES as f64;
        let figure = if c == 1 {
            fig(transitions, "transitions/s")
        } else {
            r.checked(
                "stepfunctions.sync_http.transitions_per_s",
                transitions,
                "transitions/s",
                Target::AtLeast(100_000.0),
            )
        };
        sections.insert(
            label.into(),
            json!({
                "clients": c,
                "executions": res.latencies.len(),
                "errors": res.errors,
                "first_error": res.first_error,
                "executions_per_second": fig(rate, "executions/s"),
                "latency_p50": fig(lat.pct(50.0), "us"),
                "latency_p99": fig(lat.pct(99.0), "us"),
                "transitions_per_second": figure,
            }),
        );
    }
    sections.insert(
        "what".into(),
        json!("StartSyncExecution (EXPRESS) of the 100-state Pass/Choice machine over HTTP (JSON 1.0, keep-alive), closed loop"),
    );
    Ok(Value::Object(sections))
}

/// A Map over `items` items, MaxConcurrency 100, each invoking the no-op function.
async fn map(server: &Server, provided: &Package, items: usize) -> anyhow::Result<Value> {
    let mut conn = Conn::new(server.addr);
    lambda::create(&mut conn, "bench-sfn-noop", provided).await?;
    let definition = json!({
        "StartAt": "Each",
        "States": {"Each": {
            "Type": "Map", "MaxConcurrency": 100, "ItemsPath": "$.items", "ResultPath": null,
            "ItemSelector": {"noop": true},
            "ItemProcessor": {"StartAt": "Call", "States": {"Call": {
                "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:bench-sfn-noop",
                "ResultPath": null, "End": true}}},
            "End": true}}
    });
    let input = json!({"items": (0..items).collect::<Vec<_>>()}).to_string();
    let mut out = serde_json::Map::new();
    // Warm the function's environments (up to 100) so the figure is the workflow, not cold starts.
    let warm_arn = create_machine(&mut conn, "bench-map-warm", &definition, "EXPRESS").await?;
    let warm_input = json!({"items": (0..200).collect::<Vec<_>>()}).to_string();
    call(&mut conn, "StartSyncExecution", &json!({"stateMachineArn": warm_arn, "input": warm_input})).await?;
    for kind in ["STANDARD", "EXPRESS"] {
        let arn = create_machine(&mut conn, &format!("bench-map-{}", kind.to_lowercase()), &definition, kind)
            .await?;
        let started = Instant::now();
        let status = if kind == "EXPRESS" {
            let v = call(&mut conn, "StartSyncExecution", &json!({"stateMachineArn": arn, "input": input}))
                .await?;
            v["status"].as_str().unwrap_or_default().to_string()
        } else {
            let ex =
                call(&mut conn, "StartExecution", &json!({"stateMachineArn": arn, "input": input})).await?;
            let ex_arn = ex["executionArn"].as_str().context("no executionArn")?.to_string();
            loop {
                let d = call(&mut conn, "DescribeExecution", &json!({"executionArn": ex_arn})).await?;
                if d["status"] != "RUNNING" {
                    break d["status"].as_str().unwrap_or_default().to_string();
                }
                if started.elapsed() > Duration::from_secs(600) {
                    bail!("the Map execution did not finish in 10 minutes");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let secs = started.elapsed().as_secs_f64();
        if status != "SUCCEEDED" {
            bail!("{kind} Map execution ended {status}");
        }
        out.insert(
            kind.to_lowercase(),
            json!({"total": fig(secs, "s"), "items_per_second": fig(items as f64 / secs, "items/s")}),
        );
    }
    out.insert("what".into(), json!(format!(
        "Map over {items} items, MaxConcurrency 100, each item a Task invoking the provided.al2023 no-op function (rust-echo, process sandbox, environments warmed by a 200-item run); STANDARD = durable (every group commit persisted), polled with DescribeExecution every 20 ms; EXPRESS = StartSyncExecution, in memory"
    )));
    Ok(Value::Object(out))
}

/// All Step Functions scenarios against one fresh server.
pub async fn run(
    r: &mut Report,
    nimbus: &Path,
    rust_echo: &Path,
    quick: bool,
    results_dir: &Path,
) -> anyhow::Result<Value> {
    let duration = Duration::from_secs(if quick { 2 } else { 5 });
    let mut out = serde_json::Map::new();
    out.insert("interpreter".into(), crate::section(interpreter(r, duration)));
    let dir = TempDir::new("sfn")?;
    let log = results_dir.join("server-stepfunctions.log");
    let (server, _) = Server::start(nimbus, &dir.0.join("data"), &log, "process").await?;
    server.wait_childless(Duration::from_secs(5)).await;
    out.insert("sync_http".into(), crate::section(sync_http(r, &server, 16, duration).await));
    let provided = lambda::provided(rust_echo)?;
    let items = if quick { 2_000 } else { 10_000 };
    out.insert("map".into(), crate::section(map(&server, &provided, items).await));
    server.stop().await?;
    Ok(Value::Object(out))
}
