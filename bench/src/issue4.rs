//! Issue 4's scenarios, each on its own fresh server:
//!
//! - `async`: asynchronous (`Event`) invokes end to end through the durable queue, counted
//!   by their on-success destination records arriving in an SQS queue;
//! - `scaleout`: 1,000 concurrent invokes of one function, time until all 1,000
//!   environments are serving (target ≤ 2 s);
//! - `alias`: invoke latency/throughput through a weighted alias vs unqualified.
use crate::http::{self, Conn, Template};
use crate::lambda::{self, Package};
use crate::server::{Server, TempDir};
use crate::stats::{Report, Samples, Target, as_ms, as_us, fig};
use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

async fn fresh_server(nimbus: &Path, results_dir: &Path, tag: &str) -> anyhow::Result<(Server, TempDir)> {
    let dir = TempDir::new(tag)?;
    let log = results_dir.join(format!("server-{tag}.log"));
    let (server, _) = Server::start(nimbus, &dir.0.join("data"), &log, "process").await?;
    server.wait_childless(Duration::from_secs(5)).await;
    Ok((server, dir))
}

fn sqs(target: &str, body: Value) -> Template {
    Template::new(Method::POST, "/")
        .header("x-amz-target", format!("AmazonSQS.{target}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

fn lambda_json(method: Method, path: String, body: Value) -> Template {
    Template::new(method, path).json(&body)
}

async fn call(conn: &mut Conn, t: &Template) -> anyhow::Result<Value> {
    let r = conn.send(t).await?.ok().with_context(|| format!("{} {}", t.method, t.path))?;
    Ok(serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

/// `n` requests from `clients` connections (each sends as soon as its previous answered).
/// Returns every latency and the wall time.
async fn fire(
    addr: SocketAddr,
    clients: usize,
    n: usize,
    template: Template,
    check: fn(&http::Response) -> Result<(), String>,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::new();
    for _ in 0..clients {
        let mut c = Conn::new(addr);
        c.open().await?;
        conns.push(c);
    }
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (t, next) = (template.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < n {
                    let t0 = Instant::now();
                    let r = conn.send(&t).await.map_err(|e| format!("{e:#}"))?;
                    if !r.status.is_success() {
                        return Err(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)));
                    }
                    check(&r)?;
                    lat.push(t0.elapsed());
                }
                Ok::<_, String>(lat)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await?.map_err(anyhow::Error::msg)?);
    }
    Ok((all, start.elapsed()))
}

/// Async events end to end: `n` Event invokes of the no-op function whose on-success
/// destination is an SQS queue; done when the queue holds `n` records.
pub async fn async_events(
    nimbus: &Path,
    provided: &Package,
    results_dir: &Path,
    n: usize,
) -> anyhow::Result<Value> {
    let (server, _dir) = fresh_server(nimbus, results_dir, "async").await?;
    let addr = server.addr;
    let mut conn = Conn::new(addr);
    let name = "bench-async";
    lambda::create(&mut conn, name, provided).await?;
    let url =
        call(&mut conn, &sqs("CreateQueue", json!({"QueueName": "bench-async-done"}))).await?["QueueUrl"]
            .as_str()
            .context("CreateQueue returned no QueueUrl")?
            .to_string();
    let arn = "arn:aws:sqs:us-east-1:000000000000:bench-async-done";
    call(
        &mut conn,
        &lambda_json(
            Method::PUT,
            format!("/2019-09-25/functions/{name}/event-invoke-config"),
            json!({"DestinationConfig": {"OnSuccess": {"Destination": arn}}}),
        ),
    )
    .await?;
    // One synchronous invoke first, so the figure is not dominated by the very first cold start.
    conn.send(&lambda::invoke_template(name, false)).await?.ok()?;
    let event = lambda::invoke_template(name, false).header("x-amz-invocation-type", "Event");
    let count = sqs(
        "GetQueueAttributes",
        json!({"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages"]}),
    );
    let start = Instant::now();
    let (accept, accept_wall) = fire(addr, 16, n, event, |r| {
        if r.status.as_u16() == 202 { Ok(()) } else { Err(format!("expected 202, got {}", r.status)) }
    })
    .await?;
    let deadline = start + Duration::from_secs(120);
    let done = loop {
        let v = call(&mut conn, &count).await?;
        let have: usize =
            v["Attributes"]["ApproximateNumberOfMessages"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        if have >= n {
            break start.elapsed();
        }
        if Instant::now() > deadline {
            bail!("only {have} of {n} destination records after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    server.stop().await?;
    let lat = Samples::from_durations(&accept, as_us);
    Ok(json!({
        "what": format!("{n} Event invokes of the provided no-op function from 16 clients; each is persisted (SQLite) before its 202, run, and its on-success destination record sent to an SQS queue; done when the queue holds {n} records"),
        "events": n,
        "accepted_per_s": fig(n as f64 / accept_wall.as_secs_f64(), "events/s"),
        "accept_latency_p50": fig(lat.pct(50.0), "us"),
        "accept_latency_p99": fig(lat.pct(99.0), "us"),
        "end_to_end": fig(as_ms(done), "ms"),
        "end_to_end_per_s": fig(n as f64 / done.as_secs_f64(), "events/s"),
    }))
}

/// 1,000 concurrent invokes of one function that sleeps `hold_ms`: every invoke needs its
/// own environment. An invoke's latency minus the hold is when its environment started
/// serving it; the maximum is when all 1,000 were serving.
pub async fn scale_out(
    r: &mut Report,
    nimbus: &Path,
    provided: &Package,
    results_dir: &Path,
    n: usize,
) -> anyhow::Result<Value> {
    let (server, _dir) = fresh_server(nimbus, results_dir, "scaleout").await?;
    let addr = server.addr;
    let mut conn = Conn::new(addr);
    let name = "bench-scaleout";
    lambda::create(&mut conn, name, provided).await?;
    let hold_ms = 4000u64;
    call(
        &mut conn,
        &lambda_json(
            Method::PUT,
            format!("/2015-03-31/functions/{name}/configuration"),
            json!({"Timeout": 30}),
        ),
    )
    .await?;
    let t = Template::new(Method::POST, format!("/2015-03-31/functions/{name}/invocations"))
        .header("content-type", "application/json")
        .body(json!({"sleep_ms": hold_ms}).to_string());
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Conn::new(addr);
        c.open().await?;
        conns.push(c);
    }
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let t = t.clone();
            tokio::spawn(async move {
                let r = c.send(&t).await.map_err(|e| format!("{e:#}"))?;
                let took = start.elapsed();
                if !r.status.is_success() || r.headers.contains_key("x-amz-function-error") {
                    return Err(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)));
                }
                let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
                Ok::<_, String>((took, v["pid"].as_u64().unwrap_or(0)))
            })
        })
        .collect();
    let (mut serving, mut pids, mut errors, mut first_error) = (Vec::new(), HashSet::new(), 0, None);
    for t in tasks {
        match t.await? {
            Ok((took, pid)) => {
                serving.push(took.saturating_sub(Duration::from_millis(hold_ms)));
                pids.insert(pid);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    server.stop().await?;
    let s = Samples::from_durations(&serving, as_ms);
    Ok(json!({
        "what": format!("{n} concurrent invokes (one connection each, all sent at once) of the provided function sleeping {hold_ms} ms; serving time = response time - {hold_ms} ms"),
        "invokes_ok": serving.len(),
        "errors": errors,
        "first_error": first_error,
        "distinct_environments": pids.len(),
        "all_serving": r.checked("scaleout.all_serving", s.max(), "ms", Target::AtMost(2000.0)),
        "serving_p50": fig(s.pct(50.0), "ms"),
        "serving_p90": fig(s.pct(90.0), "ms"),
    }))
}

/// Invoke via a weighted alias (version 1 with 50% to version 2) vs unqualified.
pub async fn alias_routing(
    nimbus: &Path,
    provided: &Package,
    results_dir: &Path,
    sequential: usize,
    load: Duration,
) -> anyhow::Result<Value> {
    let (server, _dir) = fresh_server(nimbus, results_dir, "alias").await?;
    let addr = server.addr;
    let mut conn = Conn::new(addr);
    let name = "bench-alias";
    lambda::create(&mut conn, name, provided).await?;
    let publish = lambda_json(Method::POST, format!("/2015-03-31/functions/{name}/versions"), json!({}));
    call(&mut conn, &publish).await?;
    lambda::set_env(&mut conn, name, "2").await?;
    call(&mut conn, &publish).await?;
    call(
        &mut conn,
        &lambda_json(
            Method::POST,
            format!("/2015-03-31/functions/{name}/aliases"),
            json!({"Name": "live", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}}}),
        ),
    )
    .await?;
    let unqualified = lambda::invoke_template(name, false);
    let aliased =
        Template::new(Method::POST, format!("/2015-03-31/functions/{name}/invocations?Qualifier=live"))
            .header("content-type", "application/json")
            .body(lambda::NOOP_EVENT);
    let mut out = serde_json::Map::new();
    let mut p50s = Vec::new();
    for (label, t) in [("unqualified", &unqualified), ("weighted_alias", &aliased)] {
        // Warm both versions' environments first.
        for _ in 0..200 {
            conn.send(t).await?.ok()?;
        }
        let mut lat = Vec::with_capacity(sequential);
        let mut versions = HashSet::new();
        for _ in 0..sequential {
            let t0 = Instant::now();
            let resp = conn.send(t).await?.ok()?;
            lat.push(t0.elapsed());
            if let Some(v) = resp.headers.get("x-amz-executed-version").and_then(|v| v.to_str().ok()) {
                versions.insert(v.to_string());
            }
        }
        let seq = Samples::from_durations(&lat, as_us);
        let res = http::closed_loop(addr, 64, load, t.clone(), Arc::new(lambda::invoke_succeeded)).await?;
        p50s.push(seq.pct(50.0));
        let mut versions: Vec<String> = versions.into_iter().collect();
        versions.sort();
        out.insert(
            label.into(),
            json!({
                "sequential_p50": fig(seq.pct(50.0), "us"),
                "sequential_p99": fig(seq.pct(99.0), "us"),
                "executed_versions": versions,
                "throughput_64_clients": fig(res.latencies.len() as f64 / res.elapsed.as_secs_f64(), "invokes/s"),
                "errors": res.errors,
            }),
        );
    }
    server.stop().await?;
    out.insert(
        "what".into(),
        json!(format!("{sequential} sequential invokes (after 200 warm-up) then 64 clients for {load:?}, unqualified vs alias `live` = version 1 + 50% version 2")),
    );
    out.insert("overhead_p50".into(), fig(p50s[1] - p50s[0], "us"));
    Ok(Value::Object(out))
}
