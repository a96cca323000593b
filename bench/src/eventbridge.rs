//! 6. EventBridge: PutEvents throughput with 100 pattern rules on the default bus, each event
//! matching exactly one rule whose target is a Lambda function (delivered as an asynchronous
//! invoke, as AWS does).
use crate::http::{self, Conn, Template};
use crate::lambda::{self, Package};
use crate::scenarios::Sizes;
use crate::server::{Server, TempDir};
use crate::stats::{Report, Samples, Target, fig};
use anyhow::Context;
use hyper::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn events_call(operation: &str, body: &Value) -> Template {
    Template::new(Method::POST, "/")
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", format!("AWSEvents.{operation}"))
        .json(body)
}

pub async fn put_events(
    r: &mut Report,
    nimbus: &Path,
    provided: &Package,
    sizes: &Sizes,
    results_dir: &Path,
) -> anyhow::Result<Value> {
    let dir = TempDir::new("eventbridge")?;
    let (server, _) =
        Server::start(nimbus, &dir.0.join("data"), &results_dir.join("server-eventbridge.log"), "process")
            .await?;
    server.wait_childless(Duration::from_secs(5)).await;
    let mut conn = Conn::new(server.addr);
    lambda::create(&mut conn, "bench-eb", provided).await?;
    // Reserved concurrency 0: deliveries land in the function's durable asynchronous-invoke
    // queue (throttled, retried later) instead of running 20k functions/s on two cores, so
    // the figure is PutEvents → match → delivery to the target, not Lambda's execution rate.
    conn.send(
        &Template::new(Method::PUT, "/2017-10-31/functions/bench-eb/concurrency")
            .json(&json!({"ReservedConcurrentExecutions": 0})),
    )
    .await?
    .ok()
    .context("PutFunctionConcurrency")?;
    let function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench-eb";
    let rules = 100;
    for i in 0..rules {
        let name = format!("bench-rule-{i}");
        let pattern = json!({"source": ["bench"], "detail": {"n": [i]}}).to_string();
        conn.send(&events_call("PutRule", &json!({"Name": name, "EventPattern": pattern}))).await?.ok()?;
        conn.send(&events_call(
            "PutTargets",
            &json!({"Rule": name, "Targets": [{"Id": "fn", "Arn": function_arn}]}),
        ))
        .await?
        .ok()?;
    }
    // Ten entries per request, each matching exactly one rule (n = 0..9, 10..19, … per client
    // would need per-client templates; every entry matching one of the 100 rules is what counts).
    let entries: Vec<Value> = (0..10)
        .map(|i| json!({"Source": "bench", "DetailType": "tick", "Detail": json!({"n": i * 10}).to_string()}))
        .collect();
    let template = events_call("PutEvents", &json!({"Entries": entries}));
    let probe = conn.send(&template).await?.ok().context("PutEvents probe")?;
    let probe: Value = serde_json::from_slice(&probe.body)?;
    anyhow::ensure!(probe["FailedEntryCount"] == 0, "PutEvents probe failed: {probe}");
    let check: http::Check = Arc::new(|resp| {
        let v: Value = serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
        if v["FailedEntryCount"] == 0 { Ok(()) } else { Err(format!("failed entries: {v}")) }
    });
    let clients = 16;
    let res = http::closed_loop(server.addr, clients, sizes.control_duration, template, check).await?;
    let events = res.latencies.len() as f64 * 10.0;
    let rate = events / res.elapsed.as_secs_f64();
    let lat = Samples::from_durations(&res.latencies, |d| d.as_secs_f64() * 1e6);
    let out = json!({
        "what": format!("{clients} keep-alive clients sending PutEvents (10 entries each) for {} s; {rules} rules on the default bus, each entry matches exactly one, whose target is a Lambda function with reserved concurrency 0 (delivery = an asynchronous invoke accepted into its durable queue)", sizes.control_duration.as_secs()),
        "requests": res.latencies.len(),
        "errors": res.errors,
        "first_error": res.first_error,
        "put_events_p50": fig(lat.pct(50.0), "us"),
        "put_events_p99": fig(lat.pct(99.0), "us"),
        "matched_events_per_s": r.checked("eventbridge.matched_events_per_s", rate, "events/s", Target::AtLeast(20_000.0)),
    });
    server.stop().await?;
    Ok(out)
}
