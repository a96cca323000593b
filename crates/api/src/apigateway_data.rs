//! API Gateway's data plane on the main port. A request is for an HTTP API when its
//! `Host` is `{apiId}.execute-api.<anything>` (e.g. `abc123.execute-api.localhost:4566`)
//! or its path starts with `/_aws/execute-api/{apiId}/` (for clients that cannot set
//! `Host`). Flow: API → stage (first path segment naming a stage, else `$default`) → CORS
//! preflight → the stage's deployment → route selection → throttling → authorizer →
//! integration (Lambda proxy 1.0/2.0, or HTTP proxy with streaming bodies) → CORS headers
//! → access log. API Gateway's own answers are `{"message": …}` JSON.
// Handlers return `Result<_, Response>`: the error side is a finished HTTP answer.
#![allow(clippy::result_large_err)]
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use nimbus_functions::{InvocationType, InvokeRequest};
use nimbus_gateway::payload::{EventContext, HttpRequest, HttpResponse};
use nimbus_gateway::{self as gw, Live, Served, authorizer, cors, jwt};
use nimbus_store::LogEvent;
use parking_lot::Mutex;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The documented path-based form: `/_aws/execute-api/{apiId}/{stage}/path`.
pub const PATH_PREFIX: &str = "/_aws/execute-api/";
/// HTTP APIs accept payloads up to 10 MB.
const MAX_BODY: usize = 10 * 1024 * 1024;
/// Upstream answers up to this size (with a Content-Length) are read whole before replying.
const BUFFERED_RESPONSE_MAX: usize = 64 * 1024;
const JWKS_TTL: Duration = Duration::from_secs(300);

type HttpClient = Client<HttpConnector, Body>;

/// One pooled HTTP/1.1 client for HTTP_PROXY integrations and JWKS fetches.
fn client() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build(connector)
    })
}

struct Target {
    api_id: String,
    /// The path as the API sees it (stage prefix included, path-form prefix removed).
    path: String,
    domain: String,
}

fn target(req: &Request) -> Option<Target> {
    let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
    if let Some((id, rest)) = host.split_once('.')
        && rest.starts_with("execute-api.")
        && !id.is_empty()
    {
        let domain = host.split(':').next().unwrap_or(host).to_string();
        return Some(Target { api_id: id.to_ascii_lowercase(), path: req.uri().path().to_string(), domain });
    }
    let rest = req.uri().path().strip_prefix(PATH_PREFIX)?;
    let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some(Target {
        api_id: id.to_ascii_lowercase(),
        path: format!("/{path}"),
        domain: format!("{id}.execute-api.localhost"),
    })
}

/// Middleware in front of SigV4: API invocations are not AWS API calls.
pub async fn intercept(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match target(&req) {
        Some(t) => serve(s, t, req).await,
        None => next.run(req).await,
    }
}

fn message(status: u16, text: &str) -> HttpResponse {
    HttpResponse::message(status, text)
}

/// What the access log and `$context` know about one request.
#[derive(Default)]
struct Trace {
    request_id: String,
    api_id: String,
    account_id: String,
    domain: String,
    method: String,
    path: String,
    protocol: String,
    source_ip: String,
    user_agent: String,
    stage: String,
    route_key: String,
    status: u16,
    response_length: Option<u64>,
    integration_status: Option<u16>,
    integration_latency_ms: Option<u128>,
    integration_error: Option<String>,
    authorizer_error: Option<String>,
    error_message: Option<String>,
    authorizer: Option<Value>,
    time: chrono::DateTime<chrono::Utc>,
}

impl Trace {
    fn context(&self, name: &str, started: Instant) -> Option<String> {
        let s = |v: &str| Some(v.to_string());
        match name {
            "requestId" | "extendedRequestId" => s(&self.request_id),
            "apiId" => s(&self.api_id),
            "accountId" => s(&self.account_id),
            "domainName" => s(&self.domain),
            "domainPrefix" => self.domain.split('.').next().map(str::to_string),
            "httpMethod" => s(&self.method),
            "path" => s(&self.path),
            "protocol" => s(&self.protocol),
            "identity.sourceIp" => s(&self.source_ip),
            "identity.userAgent" => s(&self.user_agent),
            "stage" => s(&self.stage),
            "routeKey" => s(&self.route_key),
            "status" => Some(self.status.to_string()),
            "responseLength" => self.response_length.map(|l| l.to_string()),
            "requestTime" => Some(gw::payload::request_time(&self.time)),
            "requestTimeEpoch" => Some(self.time.timestamp_millis().to_string()),
            "responseLatency" => Some(started.elapsed().as_millis().to_string()),
            "integrationStatus" | "integration.status" | "integration.integrationStatus" => {
                self.integration_status.map(|s| s.to_string())
            }
            "integrationLatency" | "integration.latency" => {
                self.integration_latency_ms.map(|l| l.to_string())
            }
            "integrationErrorMessage" | "integration.error" => self.integration_error.clone(),
            "error.message" => self.error_message.clone(),
            "authorizer.error" => self.authorizer_error.clone(),
            other => {
                // $context.authorizer.claims.sub, $context.authorizer.<key>
                let path = other.strip_prefix("authorizer.")?;
                let auth = self.authorizer.as_ref()?;
                let v = match path.strip_prefix("claims.") {
                    Some(claim) => auth.get("jwt")?.get("claims")?.get(claim)?,
                    None => auth.get("lambda").and_then(|l| l.get(path)).or_else(|| auth.get(path))?,
                };
                Some(match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            }
        }
    }
}

fn request_id() -> String {
    // AWS's `apigw-requestid` looks like `JkHgKjYPoAMEVSw=`: base64 of 11 bytes.
    let bytes: [u8; 11] = std::array::from_fn(|_| fastrand::u8(..));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn into_response(r: HttpResponse) -> Response {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
            h.append(k, v);
        }
    }
    resp
}

async fn serve(s: AppState, t: Target, req: Request) -> Response {
    let started = Instant::now();
    let mut trace = {
        // Scoped: a borrow of the request (not `Sync`) must not live across an await.
        let header = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        Trace {
            request_id: request_id(),
            api_id: t.api_id.clone(),
            domain: t.domain.clone(),
            method: req.method().as_str().to_string(),
            path: t.path.clone(),
            protocol: format!("{:?}", req.version()),
            source_ip: header("x-forwarded-for").split(',').next().unwrap_or("").trim().to_string(),
            user_agent: header("user-agent"),
            time: chrono::Utc::now(),
            ..Trace::default()
        }
    };
    if trace.source_ip.is_empty() {
        trace.source_ip = "127.0.0.1".into();
    }
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok()).map(str::to_string);
    // A preflight's CORS headers are decided by the preflight rules alone.
    let preflight = req.method() == axum::http::Method::OPTIONS
        && req.headers().contains_key("access-control-request-method");
    let live = s.gateway.live(&t.api_id);
    let mut resp = match &live {
        Some(live) => handle(&s, live, &t, req, &mut trace).await,
        None => into_response(message(404, "Not Found")),
    };
    let h = resp.headers_mut();
    if let Some(cors_cfg) = live.as_ref().and_then(|l| l.api.cors.as_ref())
        && !preflight
        && !h.contains_key("access-control-allow-origin")
    {
        for (k, v) in cors::response_headers(cors_cfg, origin.as_deref()) {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&trace.request_id) {
        h.insert("apigw-requestid", v);
    }
    trace.status = resp.status().as_u16();
    // Buffered bodies know their size before hyper writes the Content-Length.
    trace.response_length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| axum::body::HttpBody::size_hint(resp.body()).exact());
    if let Some(live) = &live {
        access_log(&s, live, &trace, started);
    }
    if let Some(usage) = &s.usage
        && !trace.route_key.is_empty()
    {
        let at_ms = trace.time.timestamp_millis().max(0) as u64;
        usage.recorder.record_request(&trace.api_id, &trace.route_key, at_ms);
    }
    resp
}

fn access_log(s: &AppState, live: &Live, trace: &Trace, started: Instant) {
    let Some(stage) = live.api.stages.iter().find(|st| st.stage_name == trace.stage) else { return };
    let Some(settings) = &stage.access_log_settings else { return };
    let (Some(format), Some(group)) = (settings.format.as_deref(), settings.log_group()) else { return };
    let line = gw::access_log::access_log_line(format, &|name| trace.context(name, started));
    s.logs.append(LogEvent {
        scope: format!("{}:{}", live.api.account, live.api.region).into(),
        group: group.into(),
        stream: format!("{}_{}", live.api.api_id, stage.stage_name.trim_start_matches('$')).into(),
        timestamp_ms: trace.time.timestamp_millis(),
        message: line,
    });
}

/// Request data for `$request.*`, `$context.*` and `$stageVariables.*` references.
struct Vars<'a> {
    headers: &'a HeaderMap,
    query: &'a str,
    path: &'a str,
    path_parameters: &'a [(String, String)],
    stage_variables: &'a std::collections::BTreeMap<String, String>,
    trace: &'a Trace,
    started: Instant,
}

impl<'a> Vars<'a> {
    fn new(
        headers: &'a HeaderMap,
        query: &'a str,
        t: &'a Target,
        path_parameters: &'a [(String, String)],
        stage: &'a gw::Stage,
        trace: &'a Trace,
        started: Instant,
    ) -> Vars<'a> {
        Vars {
            headers,
            query,
            path: &t.path,
            path_parameters,
            stage_variables: &stage.stage_variables,
            trace,
            started,
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        if let Some(h) = name.strip_prefix("request.header.") {
            let all: Vec<&str> = self.headers.get_all(h).iter().filter_map(|v| v.to_str().ok()).collect();
            return (!all.is_empty()).then(|| all.join(","));
        }
        if let Some(q) = name.strip_prefix("request.querystring.") {
            let vals: Vec<String> = gw::payload::query_pairs(self.query)
                .into_iter()
                .filter(|(k, _)| k == q)
                .map(|(_, v)| v)
                .collect();
            return (!vals.is_empty()).then(|| vals.join(","));
        }
        if name == "request.path" {
            return Some(self.path.to_string());
        }
        if let Some(p) = name.strip_prefix("request.path.") {
            return self.path_parameters.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone());
        }
        if let Some(v) = name.strip_prefix("stageVariables.") {
            return self.stage_variables.get(v).cloned();
        }
        if let Some(c) = name.strip_prefix("context.") {
            return self.trace.context(c, self.started);
        }
        None
    }
}

async fn handle(s: &AppState, live: &Live, t: &Target, req: Request, trace: &mut Trace) -> Response {
    match handle_inner(s, live, t, req, trace).await {
        Ok(r) | Err(r) => r,
    }
}

async fn handle_inner(
    s: &AppState,
    live: &Live,
    t: &Target,
    req: Request,
    trace: &mut Trace,
) -> Result<Response, Response> {
    let not_found = || into_response(message(404, "Not Found"));
    let api = &live.api;
    trace.account_id = api.account.clone();
    if api.disable_execute_api_endpoint {
        return Err(into_response(message(403, "Forbidden")));
    }
    let (stage, route_path) = live.stage_for(&t.path).ok_or_else(not_found)?;
    trace.stage = stage.stage_name.clone();
    // CORS preflights are answered by API Gateway itself when CORS is configured.
    let preflight = {
        let header = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        api.cors
            .as_ref()
            .filter(|_| {
                cors::is_preflight(req.method().as_str(), header("access-control-request-method").as_deref())
            })
            .map(|c| {
                cors::preflight(
                    c,
                    header("origin").as_deref(),
                    header("access-control-request-method").as_deref(),
                    header("access-control-request-headers").as_deref(),
                )
            })
    };
    if let Some(preflight) = preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        for (k, v) in preflight {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        return Ok(resp);
    }
    let served: Arc<Served> = live.served(stage).ok_or_else(not_found)?;
    let method = req.method().as_str().to_string();
    let selected = served.table.select(&method, route_path).ok_or_else(not_found)?;
    let route = served.snapshot.routes.get(*selected.value).ok_or_else(not_found)?;
    let path_parameters = selected.path_parameters;
    trace.route_key = route.route_key.clone();

    // Throttling: the route's settings over the stage's defaults.
    let mut settings = stage.default_route_settings.clone();
    if let Some(r) = stage.route_settings.get(&route.route_key) {
        settings.merge(r.clone());
    }
    if settings.throttling_rate_limit.is_some() || settings.throttling_burst_limit.is_some() {
        let rate = settings.throttling_rate_limit.unwrap_or(1e12);
        let burst = settings.throttling_burst_limit.unwrap_or_else(|| rate.ceil().clamp(1.0, 1e9) as u32);
        let key = format!("{}/{}/{}", api.api_id, stage.stage_name, route.route_key);
        if !s.gateway.throttles.admit(&key, rate, burst, Instant::now()) {
            trace.error_message = Some("Too Many Requests".into());
            return Err(into_response(message(429, "Too Many Requests")));
        }
    }

    let (parts, body) = req.into_parts();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let started = Instant::now();
    let resource_path =
        route.route_key.split_once(' ').map(|(_, p)| p).unwrap_or(&route.route_key).to_string();

    // Authorizer.
    if route.authorization_type == "JWT" || route.authorization_type == "CUSTOM" {
        let authorizer =
            route.authorizer_id.as_deref().and_then(|id| served.authorizer(id)).ok_or_else(|| {
                trace.authorizer_error = Some("authorizer not found".into());
                into_response(message(500, "Internal Server Error"))
            })?;
        let vars = Vars::new(&parts.headers, &raw_query, t, &path_parameters, stage, trace, started);
        let identity = authorizer::identity_values(&authorizer.identity_source, &|n| vars.get(n));
        let result = if authorizer.authorizer_type == "JWT" {
            authorize_jwt(authorizer, route, identity).await
        } else {
            let req = HttpRequest {
                method: &method,
                raw_path: &t.path,
                raw_query: &raw_query,
                headers: &parts.headers,
                body: &[],
                source_ip: &trace.source_ip,
                protocol: &trace.protocol,
            };
            let ctx = event_context(
                live,
                stage,
                t,
                trace,
                &route.route_key,
                &resource_path,
                &path_parameters,
                None,
            );
            authorize_lambda(s, live, authorizer, &req, &ctx, identity, &method, route_path).await
        };
        match result {
            Ok(ctx) => trace.authorizer = Some(ctx),
            Err((resp, why)) => {
                trace.authorizer_error = Some(why);
                return Err(into_response(resp));
            }
        }
    }

    let integration = route.integration_id().and_then(|id| served.integration(id)).ok_or_else(not_found)?;
    let timeout = Duration::from_millis(integration.timeout_in_millis.clamp(50, gw::MAX_TIMEOUT_MS) as u64);
    if integration.integration_type == "HTTP_PROXY" {
        // A private integration: one healthy target of the ELBv2 target group, round-robin.
        let target_group = integration.integration_uri.as_deref().and_then(gw::elb_target_group_of);
        // A target that refuses the connection (its task just stopped, or its server is not
        // listening yet, so the host port's forwarder hangs up) can hand a request without a
        // body to the next target instead of failing — as a load balancer's "next upstream".
        let resendable = target_group.is_some() && axum::body::HttpBody::is_end_stream(&body);
        let idempotent = parts.method.is_idempotent();
        let mut body = Some(body);
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let private = match target_group {
                Some(arn) => match s.ecs.pick_target(arn) {
                    Some(addr) => Some(PrivateTarget { addr, path: &t.path }),
                    None => {
                        trace.integration_error = Some(format!("no healthy target in {arn}"));
                        return Err(into_response(message(503, "Service Unavailable")));
                    }
                },
                None => None,
            };
            let vars = Vars::new(&parts.headers, &raw_query, t, &path_parameters, stage, trace, started);
            let fwd = forward_request(
                integration,
                private,
                route,
                route_path,
                &parts.headers,
                &raw_query,
                &path_parameters,
                &vars,
            );
            let (uri, headers) = match fwd {
                Ok(f) => f,
                Err(e) => break Err((message(500, "Internal Server Error"), e)),
            };
            let body = body.take().unwrap_or_else(Body::empty);
            match proxy(parts.method.clone(), uri, headers, body, timeout, &trace.source_ip).await {
                Err(ProxyError { refused, hung_up, .. })
                    if resendable
                        && (refused || (hung_up && idempotent))
                        && attempts < MAX_TARGET_ATTEMPTS => {}
                other => break other.map_err(|e| e.failure),
            }
        };
        trace.integration_latency_ms = Some(started.elapsed().as_millis());
        return match result {
            Ok(resp) => {
                trace.integration_status = Some(resp.status().as_u16());
                Ok(resp)
            }
            Err((r, why)) => {
                trace.integration_error = Some(why);
                Err(into_response(r))
            }
        };
    }

    // Lambda proxy.
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| into_response(message(413, "Request Entity Too Large")))?;
    let req = HttpRequest {
        method: &method,
        raw_path: &t.path,
        raw_query: &raw_query,
        headers: &parts.headers,
        body: &body,
        source_ip: &trace.source_ip,
        protocol: &trace.protocol,
    };
    let v1 = integration.payload_format_version == "1.0";
    let ctx = event_context(
        live,
        stage,
        t,
        trace,
        &route.route_key,
        &resource_path,
        &path_parameters,
        trace.authorizer.clone(),
    );
    let event = if v1 { gw::payload::event_v1(&req, &ctx) } else { gw::payload::event_v2(&req, &ctx) };
    let function = integration.integration_uri.as_deref().and_then(gw::lambda_function_of).unwrap_or("");
    let outcome = invoke(s, live, function, event, timeout).await;
    trace.integration_latency_ms = Some(started.elapsed().as_millis());
    let payload = match outcome {
        Ok(p) => p,
        Err((r, why)) => {
            trace.integration_error = Some(why);
            return Err(into_response(r));
        }
    };
    trace.integration_status = Some(200);
    let parsed = if v1 { gw::payload::response_v1(&payload) } else { gw::payload::response_v2(&payload) };
    match parsed {
        Ok(r) => Ok(into_response(r)),
        Err(e) => {
            trace.integration_error = Some(e.to_string());
            Err(into_response(message(500, "Internal Server Error")))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn event_context<'a>(
    live: &'a Live,
    stage: &'a gw::Stage,
    t: &'a Target,
    trace: &'a Trace,
    route_key: &'a str,
    resource_path: &'a str,
    path_parameters: &'a [(String, String)],
    authorizer: Option<Value>,
) -> EventContext<'a> {
    EventContext {
        account_id: &live.api.account,
        api_id: &live.api.api_id,
        domain_name: &t.domain,
        domain_prefix: &live.api.api_id,
        request_id: &trace.request_id,
        route_key,
        resource_path,
        stage: &stage.stage_name,
        path_parameters,
        stage_variables: &stage.stage_variables,
        authorizer,
        time: trace.time,
    }
}

type Failure = (HttpResponse, String);

/// Invokes a function synchronously, bounded by the integration timeout.
async fn invoke(
    s: &AppState,
    live: &Live,
    function: &str,
    event: Value,
    timeout: Duration,
) -> Result<Bytes, Failure> {
    let call = s.functions.invoke(InvokeRequest {
        scope: nimbus_model::Scope::new(live.api.account.clone(), live.api.region.clone()),
        // The function's own invocation id, distinct from the API request id (as on AWS).
        request_id: uuid::Uuid::new_v4().to_string(),
        function: function.to_string(),
        qualifier: None,
        payload: Bytes::from(event.to_string()),
        invocation_type: InvocationType::RequestResponse,
        tail_log: false,
        client_context: None,
    });
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err((message(503, "Service Unavailable"), "Integration timed out".into())),
        Ok(Ok(r)) if r.function_error.is_none() => Ok(r.payload),
        Ok(Ok(r)) => Err((
            message(500, "Internal Server Error"),
            format!("The Lambda function returned an error: {}", String::from_utf8_lossy(&r.payload)),
        )),
        Ok(Err(nimbus_functions::Error::TooManyRequests { message: m, .. })) => {
            Err((message(429, "Too Many Requests"), m))
        }
        Ok(Err(e)) => Err((message(500, "Internal Server Error"), e.to_string())),
    }
}

// ---------- authorizers ----------

fn unauthorized() -> HttpResponse {
    let mut r = message(401, "Unauthorized");
    r.headers.push(("www-authenticate".into(), "Bearer".into()));
    r
}

#[allow(clippy::too_many_arguments)]
async fn authorize_lambda(
    s: &AppState,
    live: &Live,
    a: &gw::Authorizer,
    req: &HttpRequest<'_>,
    ctx: &EventContext<'_>,
    identity: Option<Vec<String>>,
    method: &str,
    route_path: &str,
) -> Result<Value, Failure> {
    let identity = match identity {
        Some(i) => i,
        None if a.identity_source.is_empty() => Vec::new(),
        None => return Err((unauthorized(), "identity source missing".into())),
    };
    let arn = authorizer::route_arn(
        &live.api.region,
        &live.api.account,
        &live.api.api_id,
        ctx.stage,
        method,
        route_path,
    );
    let ttl = Duration::from_secs(a.authorizer_result_ttl_in_seconds as u64);
    let key = gw::authorizer::ResultCache::key(&a.authorizer_id, &identity);
    let cached = if ttl.is_zero() { None } else { s.gateway.auth_cache.get(&key, Instant::now()) };
    let decision = match cached {
        Some(d) => d,
        None => {
            let v2 = a.authorizer_payload_format_version.as_deref() == Some("2.0");
            let event = if v2 {
                authorizer::event_v2(gw::payload::event_v2(req, ctx), &arn, &identity)
            } else {
                authorizer::event_v1(gw::payload::event_v1(req, ctx), &arn, &identity)
            };
            let function = a.authorizer_uri.as_deref().and_then(gw::lambda_function_of).unwrap_or("");
            let payload = invoke(s, live, function, event, Duration::from_millis(10_000)).await.map_err(
                |(_, why)| (message(500, "Internal Server Error"), format!("authorizer failed: {why}")),
            )?;
            let d = authorizer::decide(&payload, a.enable_simple_responses && v2, &arn).ok_or_else(|| {
                (message(500, "Internal Server Error"), "malformed authorizer response".to_string())
            })?;
            s.gateway.auth_cache.put(key, d.clone(), ttl, Instant::now());
            d
        }
    };
    if !decision.allowed {
        return Err((message(403, "Forbidden"), "authorizer denied the request".into()));
    }
    let mut out = json!({ "lambda": decision.context });
    if let Some(p) = decision.principal_id {
        out["principalId"] = json!(p);
    }
    Ok(out)
}

async fn authorize_jwt(
    a: &gw::Authorizer,
    route: &gw::Route,
    identity: Option<Vec<String>>,
) -> Result<Value, Failure> {
    let fail = |why: String| (unauthorized(), why);
    let token = identity.and_then(|i| i.into_iter().next()).ok_or_else(|| fail("no token".into()))?;
    let token = jwt::Token::parse(&token).map_err(|e| fail(e.to_string()))?;
    let issuer = a.jwt_issuer.clone().unwrap_or_default();
    let jwks = jwks(&issuer, false).await.map_err(fail)?;
    let verified = match token.verify_signature(&jwks) {
        Err(jwt::JwtError::UnknownKey(_)) => {
            // Keys rotate: refetch once before refusing.
            let fresh = jwks_refresh(&issuer).await.map_err(fail)?;
            token.verify_signature(&fresh)
        }
        other => other,
    };
    verified.map_err(|e| fail(e.to_string()))?;
    token
        .validate_claims(&issuer, &a.jwt_audience, chrono::Utc::now().timestamp())
        .map_err(|e| fail(e.to_string()))?;
    let scopes = token.scopes();
    if !jwt::scopes_allow(&route.authorization_scopes, &scopes) {
        return Err((message(403, "Forbidden"), "insufficient scopes".into()));
    }
    let claims: serde_json::Map<String, Value> = token
        .claims
        .iter()
        .map(|(k, v)| (k.clone(), if let Value::String(_) = v { v.clone() } else { json!(v.to_string()) }))
        .collect();
    let scopes = if scopes.is_empty() { Value::Null } else { json!(scopes) };
    Ok(json!({ "jwt": { "claims": claims, "scopes": scopes } }))
}

type JwksCache = Mutex<HashMap<String, (Instant, Arc<Value>)>>;

fn jwks_cache() -> &'static JwksCache {
    static CACHE: OnceLock<JwksCache> = OnceLock::new();
    CACHE.get_or_init(JwksCache::default)
}

async fn jwks(issuer: &str, force: bool) -> Result<Arc<Value>, String> {
    if !force
        && let Some((at, v)) = jwks_cache().lock().get(issuer)
        && at.elapsed() < JWKS_TTL
    {
        return Ok(v.clone());
    }
    let discovery =
        get_json(&format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))).await?;
    let uri = discovery.get("jwks_uri").and_then(Value::as_str).ok_or("discovery has no jwks_uri")?;
    let keys = Arc::new(get_json(uri).await?);
    jwks_cache().lock().insert(issuer.to_string(), (Instant::now(), keys.clone()));
    Ok(keys)
}

async fn jwks_refresh(issuer: &str) -> Result<Arc<Value>, String> {
    let recent =
        jwks_cache().lock().get(issuer).is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(10));
    jwks(issuer, !recent).await
}

async fn get_json(url: &str) -> Result<Value, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// issuers are supported by this build"));
    }
    let req = http::Request::get(uri).body(Body::empty()).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client().request(req))
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let bytes =
        axum::body::to_bytes(Body::new(resp.into_body()), 1024 * 1024).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
}

// ---------- HTTP proxy ----------

/// Characters escaped when a path variable is put into an integration URI.
const PATH_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'%');
const QUERY_VALUE: &AsciiSet = &PATH_VALUE.add(b'&').add(b'=').add(b'+');

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Where a private integration (an ELBv2 target group URI) sends this request.
struct PrivateTarget<'a> {
    /// The target picked from the group's healthy targets.
    addr: std::net::SocketAddr,
    /// The request path as the API saw it: like AWS, private integrations forward it whole,
    /// stage segment included (parameter mapping can overwrite it).
    path: &'a str,
}

/// The upstream URI and headers: `{var}`s in the integration URI take path parameters,
/// the `$default` route appends the request path, then the parameter mapping applies.
#[allow(clippy::too_many_arguments)]
fn forward_request(
    i: &gw::Integration,
    private: Option<PrivateTarget>,
    route: &gw::Route,
    route_path: &str,
    headers: &HeaderMap,
    raw_query: &str,
    path_parameters: &[(String, String)],
    vars: &Vars,
) -> Result<(Uri, HeaderMap), String> {
    let mut query = raw_query.to_string();
    let (authority, mut path) = match private {
        Some(p) => {
            let authority: http::uri::Authority =
                p.addr.to_string().parse().map_err(|e| format!("bad target address: {e}"))?;
            (authority, p.path.to_string())
        }
        None => {
            let base: Uri = i
                .integration_uri
                .as_deref()
                .unwrap_or("")
                .parse()
                .map_err(|e| format!("bad integration URI: {e}"))?;
            if base.scheme_str() != Some("http") {
                return Err("only http:// integration URIs are supported by this build".into());
            }
            let authority = base.authority().ok_or("integration URI has no host")?.clone();
            let mut path = base.path().to_string();
            for (k, v) in path_parameters {
                path = path.replace(&format!("{{{k}}}"), &utf8_percent_encode(v, PATH_VALUE).to_string());
                path = path.replace(&format!("{{{k}+}}"), &utf8_percent_encode(v, PATH_VALUE).to_string());
            }
            if route.route_key == "$default" {
                path = format!("{}{}", path.trim_end_matches('/'), route_path);
            }
            if let Some(q) = base.query() {
                query = if query.is_empty() { q.to_string() } else { format!("{q}&{query}") };
            }
            (authority, path)
        }
    };
    let mut out_headers = HeaderMap::new();
    for (k, v) in headers {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            out_headers.append(k.clone(), v.clone());
        }
    }
    if !i.request_parameters.is_empty() {
        let mut fwd = gw::mapping::ForwardRequest {
            path,
            headers: out_headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            query: gw::payload::query_pairs(&query),
        };
        gw::mapping::apply(&i.request_parameters, &mut fwd, &|n| vars.get(n)).map_err(|e| e.to_string())?;
        path = fwd.path;
        query = fwd
            .query
            .iter()
            .map(|(k, v)| {
                format!("{}={}", utf8_percent_encode(k, QUERY_VALUE), utf8_percent_encode(v, QUERY_VALUE))
            })
            .collect::<Vec<_>>()
            .join("&");
        out_headers = HeaderMap::new();
        for (k, v) in fwd.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                out_headers.append(k, v);
            }
        }
    }
    let pq = if query.is_empty() { path } else { format!("{path}?{query}") };
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| format!("bad upstream URI: {e}"))?;
    if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
        out_headers.insert("host", v);
    }
    Ok((uri, out_headers))
}

/// Tries per request of a private integration when targets refuse connections.
const MAX_TARGET_ATTEMPTS: u32 = 3;

struct ProxyError {
    failure: Failure,
    /// The upstream connection could not be made: the request was not sent.
    refused: bool,
    /// The upstream closed the connection without answering (a forwarder whose target is
    /// not listening does this); only an idempotent request may be sent again.
    hung_up: bool,
}

impl From<Failure> for ProxyError {
    fn from(failure: Failure) -> ProxyError {
        ProxyError { failure, refused: false, hung_up: false }
    }
}

/// Whether a client error is hyper's "connection closed before message completed".
fn closed_without_answer(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        source = err.source();
    }
    false
}

async fn proxy(
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    timeout: Duration,
    source_ip: &str,
) -> Result<Response, ProxyError> {
    let mut req = http::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    if let Ok(v) = HeaderValue::from_str(source_ip) {
        req.headers_mut().append("x-forwarded-for", v);
    }
    let resp = match tokio::time::timeout(timeout, client().request(req)).await {
        Err(_) => return Err((message(504, "Gateway Timeout"), "Integration timed out".to_string()).into()),
        Ok(Err(e)) => {
            return Err(ProxyError {
                refused: e.is_connect(),
                hung_up: closed_without_answer(&e),
                failure: (message(500, "Internal Server Error"), format!("upstream: {e}")),
            });
        }
        Ok(Ok(r)) => r,
    };
    let (mut parts, incoming) = resp.into_parts();
    for h in ["connection", "keep-alive", "proxy-connection", "upgrade", "trailer"] {
        parts.headers.remove(h);
    }
    // Small answers of known length are read whole: the response then leaves in one write
    // without further hops between the upstream connection's task and this one. Anything
    // else streams through as it arrives.
    let small = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= BUFFERED_RESPONSE_MAX);
    if small {
        let bytes = axum::body::to_bytes(Body::new(incoming), BUFFERED_RESPONSE_MAX)
            .await
            .map_err(|e| ProxyError::from((message(502, "Bad Gateway"), format!("upstream body: {e}"))))?;
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    Ok(Response::from_parts(parts, Body::new(incoming)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: Option<&str>, uri: &str) -> Request {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(Body::empty()).unwrap_or_default()
    }

    #[test]
    fn recognises_host_and_path_forms() {
        let t = target(&request(Some("AbC123.execute-api.localhost:4566"), "/prod/x?y=1")).unwrap();
        assert_eq!((t.api_id.as_str(), t.path.as_str()), ("abc123", "/prod/x"));
        assert_eq!(t.domain, "AbC123.execute-api.localhost");
        let t = target(&request(Some("127.0.0.1:4566"), "/_aws/execute-api/abc123/prod/x")).unwrap();
        assert_eq!((t.api_id.as_str(), t.path.as_str()), ("abc123", "/prod/x"));
        let t = target(&request(None, "/_aws/execute-api/abc123")).unwrap();
        assert_eq!(t.path, "/");
        assert!(target(&request(Some("127.0.0.1:4566"), "/v2/apis")).is_none());
        assert!(target(&request(Some("x.lambda-url.us-east-1.localhost"), "/")).is_none());
    }

    #[test]
    fn forward_request_substitutes_appends_and_maps() {
        let stage = gw::Stage { stage_name: "prod".into(), ..gw::Stage::default() };
        let trace = Trace { request_id: "r1".into(), ..Trace::default() };
        let t = Target {
            api_id: "a".into(),
            path: "/prod/api/x/y".into(),
            domain: "a.execute-api.localhost".into(),
        };
        let params = vec![("proxy".to_string(), "x/y z".to_string())];
        let mut headers = HeaderMap::new();
        headers.insert("x-in", HeaderValue::from_static("1"));
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        let vars = Vars::new(&headers, "q=1", &t, &params, &stage, &trace, Instant::now());
        let integration = gw::Integration {
            integration_uri: Some("http://127.0.0.1:9000/base/{proxy}".into()),
            request_parameters: [("append:header.x-req".to_string(), "$context.requestId".to_string())]
                .into(),
            ..gw::Integration::default()
        };
        let route = gw::Route { route_key: "ANY /api/{proxy+}".into(), ..gw::Route::default() };
        let (uri, h) =
            forward_request(&integration, None, &route, "/api/x/y", &headers, "q=1", &params, &vars).unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9000/base/x/y%20z?q=1");
        assert_eq!(h.get("x-req").and_then(|v| v.to_str().ok()), Some("r1"));
        assert_eq!(h.get("host").and_then(|v| v.to_str().ok()), Some("127.0.0.1:9000"));
        assert!(h.get("connection").is_none());
        let default = gw::Route { route_key: "$default".into(), ..gw::Route::default() };
        let plain =
            gw::Integration { integration_uri: Some("http://h:1/b/".into()), ..gw::Integration::default() };
        let (uri, _) = forward_request(&plain, None, &default, "/p/q", &headers, "", &[], &vars).unwrap();
        assert_eq!(uri.to_string(), "http://h:1/b/p/q");
        let tls =
            gw::Integration { integration_uri: Some("https://h/".into()), ..gw::Integration::default() };
        assert!(forward_request(&tls, None, &default, "/", &headers, "", &[], &vars).is_err());
    }

    #[test]
    fn private_integrations_forward_the_whole_path_to_the_picked_target() {
        let stage = gw::Stage { stage_name: "prod".into(), ..gw::Stage::default() };
        let trace = Trace::default();
        let t = Target { api_id: "a".into(), path: "/prod/api/x".into(), domain: "d".into() };
        let headers = HeaderMap::new();
        let vars = Vars::new(&headers, "", &t, &[], &stage, &trace, Instant::now());
        let tg = gw::Integration {
            integration_uri: Some("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/1".into()),
            connection_type: "VPC_LINK".into(),
            ..gw::Integration::default()
        };
        let private = PrivateTarget { addr: ([127, 0, 0, 1], 32770).into(), path: "/prod/api/x" };
        let route = gw::Route { route_key: "ANY /api/{proxy+}".into(), ..gw::Route::default() };
        let params = vec![("proxy".to_string(), "x".to_string())];
        let (uri, h) =
            forward_request(&tg, Some(private), &route, "/api/x", &headers, "a=1", &params, &vars).unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:32770/prod/api/x?a=1");
        assert_eq!(h.get("host").and_then(|v| v.to_str().ok()), Some("127.0.0.1:32770"));
    }
}
