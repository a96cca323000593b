//! Scenario 5, API Gateway. First, the latency an HTTP API adds in front of a Lambda
//! function: the same event through `GET {api}` vs a direct Invoke, interleaved on two
//! keep-alive connections. Second, HTTP_PROXY throughput against nginx proxying the same
//! nginx backend, measured with wrk in one run and reported as a ratio.
use crate::http::{Conn, Template};
use crate::lambda::{self, Package};
use crate::scenarios::{Sizes, WrkResult, wrk};
use crate::stats::{Report, Samples, Target, as_us, fig};
use anyhow::{Context, bail};
use hyper::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

async fn create_api(conn: &mut Conn, name: &str, target: &str) -> anyhow::Result<String> {
    let body = json!({ "name": name, "protocolType": "HTTP", "target": target });
    let resp = conn.send(&Template::new(Method::POST, "/v2/apis").json(&body)).await?.ok()?;
    let v: Value = serde_json::from_slice(&resp.body)?;
    v["apiId"].as_str().map(str::to_string).context("CreateApi returned no apiId")
}

fn api_host(api_id: &str) -> String {
    format!("{api_id}.execute-api.localhost")
}

pub async fn gateway(
    r: &mut Report,
    addr: SocketAddr,
    provided: &Package,
    s: &Sizes,
    scratch: &Path,
) -> anyhow::Result<Value> {
    let lambda = lambda_latency(r, addr, provided, s).await?;
    let proxy =
        proxy_ratio(r, addr, s, scratch).await.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    Ok(json!({ "lambda_added_latency": lambda, "http_proxy_vs_nginx": proxy }))
}

async fn lambda_latency(
    r: &mut Report,
    addr: SocketAddr,
    provided: &Package,
    s: &Sizes,
) -> anyhow::Result<Value> {
    let name = "bench-gw";
    let mut control = Conn::new(addr);
    lambda::create(&mut control, name, provided).await?;
    let api_id = create_api(
        &mut control,
        "bench-lambda",
        &format!("arn:aws:lambda:us-east-1:000000000000:function:{name}"),
    )
    .await?;
    let through_gateway = Template::new(Method::GET, "/bench?x=1").header("host", api_host(&api_id));
    // The direct invoke carries the very event the gateway builds (rust-echo echoes it), so
    // both paths move the same bytes through the function.
    let mut gw_conn = Conn::new(addr);
    let probe = gw_conn.send(&through_gateway).await?.ok().context("gateway probe")?;
    let echoed: Value = serde_json::from_slice(&probe.body).context("gateway probe body")?;
    let event = echoed.get("echo").cloned().context("rust-echo did not echo the event")?;
    let direct =
        Template::new(Method::POST, format!("/2015-03-31/functions/{name}/invocations")).json(&event);
    let mut direct_conn = Conn::new(addr);

    let (mut gw_lat, mut direct_lat) = (Vec::new(), Vec::new());
    for i in 0..s.warm_warmup + s.warm_sequential {
        // Interleaved, so drift (frequency scaling, other load) hits both equally.
        let t0 = Instant::now();
        let a = gw_conn.send(&through_gateway).await?;
        let ta = t0.elapsed();
        let t1 = Instant::now();
        let b = direct_conn.send(&direct).await?;
        let tb = t1.elapsed();
        if !a.status.is_success() || !b.status.is_success() {
            bail!("HTTP {} / {}: {}", a.status, b.status, String::from_utf8_lossy(&a.body));
        }
        lambda::invoke_succeeded(&b).map_err(anyhow::Error::msg)?;
        if i >= s.warm_warmup {
            gw_lat.push(ta);
            direct_lat.push(tb);
        }
    }
    let (g, d) = (Samples::from_durations(&gw_lat, as_us), Samples::from_durations(&direct_lat, as_us));
    Ok(json!({
        "what": format!("{} interleaved pairs after {} warm-up pairs: GET through a quick-created HTTP API (payload 2.0) vs Invoke with the same event, rust-echo (provided.al2023), one keep-alive connection each", g.len(), s.warm_warmup),
        "event_bytes": serde_json::to_vec(&event)?.len(),
        "gateway": { "p50": fig(g.pct(50.0), "us"), "p99": fig(g.pct(99.0), "us") },
        "direct_invoke": { "p50": fig(d.pct(50.0), "us"), "p99": fig(d.pct(99.0), "us") },
        "added_p50": r.checked("gateway.lambda.added_p50", g.pct(50.0) - d.pct(50.0), "us", Target::AtMost(50.0)),
    }))
}

/// nginx from PATH or /usr/sbin, installing `nginx-light` with apt-get if missing.
fn find_nginx() -> anyhow::Result<PathBuf> {
    let find = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("bench: nginx not found; trying `apt-get install -y nginx-light`");
    let status = std::process::Command::new("apt-get")
        .args(["install", "-y", "nginx-light"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::io::stderr())
        .status()
        .context("running apt-get")?;
    anyhow::ensure!(status.success(), "apt-get install -y nginx-light failed ({status})");
    find().context("nginx still not found after installing nginx-light")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One nginx on a loopback port with a generated config; killed on drop.
struct Nginx {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Nginx {
    async fn start(bin: &Path, dir: &Path, tag: &str, workers: &str, body: &str) -> anyhow::Result<Nginx> {
        let port = free_port()?;
        let d = dir.display();
        let conf = format!(
            "worker_processes {workers};\ndaemon off;\npid {d}/{tag}.pid;\nerror_log {d}/{tag}-error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  default_type text/plain;\n  keepalive_requests 1000000;\n\
             client_body_temp_path {d}/{tag}-body;\n  proxy_temp_path {d}/{tag}-proxy;\n\
             {body}\n  server {{ listen 127.0.0.1:{port}; {{LOCATION}} }}\n}}\n"
        );
        let conf = conf.replace("{LOCATION}", if tag == "backend" {
            "location / { return 200 \"hello from the backend\\n\"; }"
        } else {
            "location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
        });
        let path = dir.join(format!("{tag}.conf"));
        std::fs::write(&path, conf)?;
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut c = Conn::new(addr);
            if let Ok(resp) = c.send(&Template::new(Method::GET, "/")).await
                && resp.status.is_success()
            {
                return Ok(Nginx { child, addr });
            }
            if Instant::now() > deadline {
                bail!("nginx ({tag}) did not answer on {addr}; see {d}/{tag}-error.log");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM lets the master stop its workers (a SIGKILLed master orphans them); the
    /// child handle's kill-on-drop remains the fallback.
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.start_kill();
    }
}

fn wrk_figures(w: &WrkResult) -> Value {
    json!({
        "throughput": fig(w.rps, "req/s"),
        "requests": w.requests,
        "non_2xx": w.non_2xx,
        "socket_errors": w.socket_errors,
        "p50": fig(w.p50_us, "us"),
        "p99": fig(w.p99_us, "us"),
    })
}

async fn proxy_ratio(r: &mut Report, addr: SocketAddr, s: &Sizes, scratch: &Path) -> anyhow::Result<Value> {
    let nginx = find_nginx()?;
    let dir = scratch.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let backend = Nginx::start(&nginx, &dir, "backend", "1", "").await?;
    let upstream = format!("upstream backend {{ server {}; keepalive 64; }}", backend.addr);
    let proxy = Nginx::start(&nginx, &dir, "proxy", "auto", &upstream).await?;
    let mut control = Conn::new(addr);
    let api_id = create_api(&mut control, "bench-proxy", &format!("http://{}", backend.addr)).await?;
    let through_gateway = Template::new(Method::GET, "/").header("host", api_host(&api_id));
    let mut probe = Conn::new(addr);
    let body = probe.send(&through_gateway).await?.ok().context("gateway HTTP_PROXY probe")?.body;
    anyhow::ensure!(body.starts_with(b"hello from the backend"), "unexpected proxied body {body:?}");

    let plain = Template::new(Method::GET, "/");
    let rounds = if s.control_duration >= Duration::from_secs(5) { 2 } else { 1 };
    let (mut nimbus_total, mut nginx_total) = (0.0, 0.0);
    let mut runs = Vec::new();
    for round in 0..rounds {
        let n = wrk(proxy.addr, &plain, s.control_connections, s.control_duration, scratch)?;
        let g = wrk(addr, &through_gateway, s.control_connections, s.control_duration, scratch)?;
        anyhow::ensure!(g.non_2xx == 0 && n.non_2xx == 0, "non-2xx answers during the run");
        nimbus_total += g.rps;
        nginx_total += n.rps;
        runs.push(json!({ "round": round + 1, "nginx_proxy": wrk_figures(&n), "nimbus_gateway": wrk_figures(&g), "ratio": fig(g.rps / n.rps, "x") }));
    }
    let direct = wrk(backend.addr, &plain, s.control_connections, s.control_duration, scratch)?;
    // The server's own floor: an API id that doesn't exist is answered 404 by the gateway
    // without any upstream work (HTTP parsing, routing, the JSON answer).
    let unknown = Template::new(Method::GET, "/").header("host", api_host("nosuchapi0"));
    let floor = wrk(addr, &unknown, s.control_connections, s.control_duration, scratch)?;
    Ok(json!({
        "what": format!("wrk -t2 -c{} -d{}s GET / (22-byte body): nginx (worker_processes auto, upstream keepalive 64) vs a quick-created HTTP API with an HTTP_PROXY integration, both in front of one nginx backend (1 worker); {rounds} alternating round(s) on 2 shared cores", s.control_connections, s.control_duration.as_secs()),
        "rounds": runs,
        "backend_direct": wrk_figures(&direct),
        "nimbus_floor_404": wrk_figures(&floor),
        "ratio": r.checked("gateway.http_proxy.throughput_vs_nginx", nimbus_total / nginx_total, "x", Target::AtLeast(1.0)),
    }))
}
