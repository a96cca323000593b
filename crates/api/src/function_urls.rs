//! Function URLs: the control API (`/2021-10-31/functions/{name}/url[s]`) and the data
//! plane — HTTP requests to `<url-id>.lambda-url.<region>.localhost:<port>` (or the
//! path form `/_nimbus/url/<url-id>/…`) become payload-format-2.0 invocations.
// Handlers return `Result<Response, Response>`: both sides are ready-made HTTP answers.
#![allow(clippy::result_large_err)]
use crate::AppState;
use crate::auth::RequestContext;
use crate::error::{ApiError, Protocol};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nimbus_functions::{InvocationType, InvokeRequest};
use nimbus_gateway::cors;
use nimbus_gateway::payload::{EventContext, HttpRequest};
use nimbus_model::{Cors, FunctionUrlConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

// ---------- control API ----------

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CorsInput {
    allow_credentials: Option<bool>,
    allow_headers: Option<Vec<String>>,
    allow_methods: Option<Vec<String>>,
    allow_origins: Option<Vec<String>>,
    expose_headers: Option<Vec<String>>,
    max_age: Option<u32>,
}

impl From<CorsInput> for Cors {
    fn from(c: CorsInput) -> Cors {
        Cors {
            allow_credentials: c.allow_credentials,
            allow_headers: c.allow_headers.unwrap_or_default(),
            allow_methods: c.allow_methods.unwrap_or_default(),
            allow_origins: c.allow_origins.unwrap_or_default(),
            expose_headers: c.expose_headers.unwrap_or_default(),
            max_age: c.max_age,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UrlConfigInput {
    auth_type: Option<String>,
    cors: Option<CorsInput>,
    invoke_mode: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

type UrlResult = Result<Response, Response>;

fn err(e: impl Into<ApiError>) -> Response {
    e.into().render(Protocol::RestJson)
}

/// The URL clients use: AWS's shape with a `localhost` domain that resolves here.
fn function_url(s: &AppState, c: &FunctionUrlConfig) -> String {
    let port = s.endpoint_url.rsplit(':').next().unwrap_or("4566");
    format!("http://{}.lambda-url.{}.localhost:{port}/", c.url_id, c.region)
}

fn config_out(s: &AppState, c: &FunctionUrlConfig) -> Value {
    let mut v = json!({
        "FunctionUrl": function_url(s, c),
        "FunctionArn": c.function_arn(),
        "AuthType": c.auth_type,
        "CreationTime": c.creation_time,
        "LastModifiedTime": c.last_modified_time,
        "InvokeMode": c.invoke_mode,
    });
    if let Some(cors) = &c.cors {
        v["Cors"] = json!({
            "AllowCredentials": cors.allow_credentials.unwrap_or(false),
            "AllowHeaders": cors.allow_headers,
            "AllowMethods": cors.allow_methods,
            "AllowOrigins": cors.allow_origins,
            "ExposeHeaders": cors.expose_headers,
            "MaxAge": cors.max_age.unwrap_or(0),
        });
    }
    v
}

fn parse_input(body: &[u8]) -> Result<UrlConfigInput, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(UrlConfigInput::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        err(ApiError::new(
            400,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {e}"),
        ))
    })
}

fn reply(status: StatusCode, v: Value) -> Response {
    (status, [("content-type", "application/json")], v.to_string()).into_response()
}

pub(crate) async fn create(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> UrlResult {
    let input = parse_input(&body)?;
    let auth = input.auth_type.ok_or_else(|| {
        err(ApiError::validation(
            "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null",
        ))
    })?;
    let c = s
        .functions
        .create_url_config(
            &ctx.scope,
            &name,
            q.qualifier.as_deref(),
            &auth,
            input.cors.map(Cors::from),
            input.invoke_mode.as_deref(),
        )
        .map_err(err)?;
    let mut v = config_out(&s, &c);
    if let Some(o) = v.as_object_mut() {
        o.remove("LastModifiedTime");
    }
    Ok(reply(StatusCode::CREATED, v))
}

pub(crate) async fn get(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> UrlResult {
    let c = s.functions.get_url_config(&ctx.scope, &name, q.qualifier.as_deref()).map_err(err)?;
    Ok(reply(StatusCode::OK, config_out(&s, &c)))
}

pub(crate) async fn update(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
    body: Bytes,
) -> UrlResult {
    let input = parse_input(&body)?;
    let c = s
        .functions
        .update_url_config(
            &ctx.scope,
            &name,
            q.qualifier.as_deref(),
            input.auth_type.as_deref(),
            input.cors.map(Cors::from),
            input.invoke_mode.as_deref(),
        )
        .map_err(err)?;
    Ok(reply(StatusCode::OK, config_out(&s, &c)))
}

pub(crate) async fn delete(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    Query(q): Query<QualifierQuery>,
) -> UrlResult {
    s.functions.delete_url_config(&ctx.scope, &name, q.qualifier.as_deref()).map_err(err)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn list(
    State(s): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> UrlResult {
    let all = s.functions.list_url_configs(&ctx.scope, &name).map_err(err)?;
    let configs: Vec<Value> = all.iter().map(|c| config_out(&s, c)).collect();
    Ok(reply(StatusCode::OK, json!({"FunctionUrlConfigs": configs})))
}

// ---------- data plane ----------

/// Which URL id a request addresses, and the path the function should see.
fn url_target(req: &Request) -> Option<(String, String)> {
    let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
    if let Some((id, rest)) = host.split_once('.')
        && rest.starts_with("lambda-url.")
    {
        return Some((id.to_ascii_lowercase(), req.uri().path().to_string()));
    }
    let rest = req.uri().path().strip_prefix("/_nimbus/url/")?;
    let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((id.to_ascii_lowercase(), format!("/{path}")))
}

/// Middleware in front of everything: function URL requests never reach the AWS APIs.
pub async fn intercept(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match url_target(&req) {
        Some((id, path)) => serve(s, id, path, req).await,
        None => next.run(req).await,
    }
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, [("content-type", "application/json")], json!({"Message": message}).to_string()).into_response()
}

/// Function URLs send payload format 2.0 with `$default` route and stage, as AWS does;
/// the event and the response interpretation are the gateway's.
fn event(
    c: &FunctionUrlConfig,
    path: &str,
    parts: &axum::http::request::Parts,
    body: &[u8],
    request_id: &str,
) -> Value {
    let header = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let source_ip = header("x-forwarded-for").split(',').next().map(str::trim).filter(|s| !s.is_empty());
    let req = HttpRequest {
        method: parts.method.as_str(),
        raw_path: path,
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
        source_ip: source_ip.unwrap_or("127.0.0.1"),
        protocol: "HTTP/1.1",
    };
    let no_variables = BTreeMap::new();
    let ctx = EventContext {
        account_id: "anonymous",
        api_id: &c.url_id,
        domain_name: header("host"),
        domain_prefix: &c.url_id,
        request_id,
        route_key: "$default",
        resource_path: "$default",
        stage: "$default",
        path_parameters: &[],
        stage_variables: &no_variables,
        authorizer: None,
        time: chrono::Utc::now(),
    };
    nimbus_gateway::payload::event_v2(&req, &ctx)
}

/// Lambda's interpretation of a function's answer (payload format 2.0).
fn http_response(payload: &[u8]) -> Response {
    let Ok(r) = nimbus_gateway::payload::response_v2(payload) else {
        return plain(StatusCode::BAD_GATEWAY, "Internal Server Error");
    };
    let mut resp = (StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK), r.body).into_response();
    let h = resp.headers_mut();
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
            h.append(k, v);
        }
    }
    resp
}

fn set(h: &mut HeaderMap, k: &'static str, v: &str) {
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(k, v);
    }
}

async fn serve(s: AppState, url_id: String, path: String, req: Request) -> Response {
    let Some(c) = s.functions.url_config_by_id(&url_id) else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    // Scoped: a borrow of the request (not `Sync`) must not live across an await.
    let (origin, preflight) = {
        let header = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok());
        let origin = header("origin").map(str::to_string);
        let preflight = c
            .cors
            .as_ref()
            .filter(|_| cors::is_preflight(req.method().as_str(), header("access-control-request-method")))
            .map(|cors| {
                cors::preflight(
                    cors,
                    origin.as_deref(),
                    header("access-control-request-method"),
                    header("access-control-request-headers"),
                )
            });
        (origin, preflight)
    };
    // CORS preflight is answered by the URL itself, without invoking the function.
    if let Some(headers) = preflight {
        let mut resp = StatusCode::OK.into_response();
        for (k, v) in headers {
            set(resp.headers_mut(), k, &v);
        }
        return resp;
    }
    if c.auth_type == "AWS_IAM"
        && !req.headers().contains_key("authorization")
        && !req.uri().query().unwrap_or("").contains("X-Amz-Signature")
    {
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, nimbus_model::limits::SYNC_PAYLOAD_BYTES).await else {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let ev = event(&c, &path, &parts, &body, &request_id);
    let result = s
        .functions
        .invoke(InvokeRequest {
            scope: nimbus_model::Scope::new(c.account.clone(), c.region.clone()),
            request_id: request_id.clone(),
            function: c.function_name.clone(),
            qualifier: c.qualifier.clone(),
            payload: Bytes::from(ev.to_string()),
            invocation_type: InvocationType::RequestResponse,
            tail_log: false,
            client_context: None,
        })
        .await;
    let mut resp = match result {
        Ok(r) if r.function_error.is_none() => http_response(&r.payload),
        Ok(_) => plain(StatusCode::BAD_GATEWAY, "Internal Server Error"),
        Err(nimbus_functions::Error::TooManyRequests { .. }) => {
            plain(StatusCode::TOO_MANY_REQUESTS, "Rate Exceeded.")
        }
        Err(_) => plain(StatusCode::BAD_GATEWAY, "Internal Server Error"),
    };
    let h = resp.headers_mut();
    set(h, "x-amzn-requestid", &request_id);
    if let Some(cors) = &c.cors {
        for (k, v) in cors::response_headers(cors, origin.as_deref()) {
            set(h, k, &v);
        }
    }
    resp
}
