//! A minimal HTTP/1.1 client on raw hyper connections: one keep-alive connection per
//! `Conn`, and a closed-loop load generator with one connection per virtual client.
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A response with its body fully read.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// Fails with the status and body unless the status is 2xx.
    pub fn ok(self) -> anyhow::Result<Self> {
        if !self.status.is_success() {
            bail!("HTTP {}: {}", self.status, String::from_utf8_lossy(&self.body));
        }
        Ok(self)
    }
}

/// A request template; `build` makes a fresh `Request` for every send.
#[derive(Clone)]
pub struct Template {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Template {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Template { method, path: path.into(), headers: Vec::new(), body: Bytes::new() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn json(self, v: &serde_json::Value) -> Self {
        self.header("content-type", "application/json").body(serde_json::to_vec(v).expect("JSON value"))
    }

    fn build(&self, host: &str) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(self.method.clone()).uri(&self.path);
        // A template may name its own Host (API Gateway's `{api}.execute-api.…`).
        if !self.headers.iter().any(|(k, _)| *k == "host") {
            b = b.header("host", host);
        }
        for (k, v) in &self.headers {
            b = b.header(*k, v);
        }
        b.body(Full::new(self.body.clone())).expect("valid request")
    }
}

/// One keep-alive HTTP/1.1 connection (TCP_NODELAY), reopened if the server closes it.
pub struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Conn { addr, host: addr.to_string(), sender: None }
    }

    async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Opens the connection now, so that the first timed request doesn't pay for it.
    pub async fn open(&mut self) -> anyhow::Result<()> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(Self::connect(self.addr).await?);
        }
        Ok(())
    }

    pub async fn send(&mut self, t: &Template) -> anyhow::Result<Response> {
        self.open().await?;
        let sender = self.sender.as_mut().expect("opened above");
        sender.ready().await?;
        let resp = sender
            .send_request(t.build(&self.host))
            .await
            .with_context(|| format!("{} {}", t.method, t.path))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response { status: parts.status, headers: parts.headers, body })
    }
}

/// What a closed-loop run measured.
pub struct LoadResult {
    /// Latency of every successful request.
    pub latencies: Vec<Duration>,
    /// Requests that got a non-2xx status, failed at the transport, or that `check` rejected.
    pub errors: u64,
    /// First error seen, for the report.
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

/// Decides whether a response counts as a success; `Err` carries the reason.
pub type Check = Arc<dyn Fn(&Response) -> Result<(), String> + Send + Sync>;

/// `clients` tasks, each on its own keep-alive connection, send `template` back to back
/// for `duration` (each starts its next request as soon as the previous one answered).
pub async fn closed_loop(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    template: Template,
    check: Check,
) -> anyhow::Result<LoadResult> {
    // Connect everyone before the clock starts.
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut c = Conn::new(addr);
        c.open().await?;
        conns.push(c);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let t = template.clone();
            let check = check.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                let (mut errors, mut first_error) = (0u64, None);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let outcome = match conn.send(&t).await {
                        Ok(r) if r.status.is_success() => check(&r),
                        Ok(r) => Err(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body))),
                        Err(e) => Err(format!("{e:#}")),
                    };
                    match outcome {
                        Ok(()) => lat.push(t0.elapsed()),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (lat, errors, first_error)
            })
        })
        .collect();
    let mut out = LoadResult { latencies: Vec::new(), errors: 0, first_error: None, elapsed: Duration::ZERO };
    for t in tasks {
        let (lat, errors, first_error) = t.await?;
        out.latencies.extend(lat);
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    out.elapsed = start.elapsed();
    Ok(out)
}
