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
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use nimbus_functions::{InvocationType, InvokeRequest};
use nimbus_model::{Cors, FunctionUrlConfig};
use serde::Deserialize;
use serde_json::{Map, Value, json};

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

fn is_text(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.is_empty()
        || ct.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded", "yaml"].iter().any(|t| ct.contains(t))
}

/// The payload-format-2.0 event Lambda sends for a function URL request.
fn event(
    c: &FunctionUrlConfig,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
    request_id: &str,
) -> Value {
    let mut hmap: Map<String, Value> = Map::new();
    let mut cookies = Vec::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if k.as_str() == "cookie" {
            cookies.extend(v.split(';').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()));
            continue;
        }
        match hmap.get_mut(k.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                hmap.insert(k.as_str().to_string(), Value::String(v));
            }
        }
    }
    let mut qmap: Map<String, Value> = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |x: &str| {
            percent_encoding::percent_decode_str(&x.replace('+', " ")).decode_utf8_lossy().into_owned()
        };
        let (k, v) = (dec(k), dec(v));
        match qmap.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                qmap.insert(k, Value::String(v));
            }
        }
    }
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = chrono::Utc::now();
    let domain = header("host").to_string();
    let mut ev = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hmap,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": c.url_id,
            "domainName": domain,
            "domainPrefix": c.url_id,
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": header("x-forwarded-for").split(',').next().filter(|s| !s.is_empty()).unwrap_or("127.0.0.1").trim(),
                "userAgent": header("user-agent"),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        ev["cookies"] = json!(cookies);
    }
    if !qmap.is_empty() {
        ev["queryStringParameters"] = Value::Object(qmap);
    }
    if !body.is_empty() {
        if is_text(header("content-type")) && std::str::from_utf8(body).is_ok() {
            ev["body"] = json!(String::from_utf8_lossy(body));
        } else {
            ev["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
            ev["isBase64Encoded"] = json!(true);
        }
    }
    ev
}

/// Lambda's interpretation of a function's answer (payload format 2.0): a
/// `{statusCode, headers, cookies, body, isBase64Encoded}` object is used as is; any
/// other JSON becomes a 200 `application/json` body.
fn http_response(payload: &[u8]) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(payload).ok();
    let Some(obj) = parsed.as_ref().and_then(Value::as_object).filter(|o| o.contains_key("statusCode"))
    else {
        return (StatusCode::OK, [("content-type", "application/json")], payload.to_vec()).into_response();
    };
    let status = obj
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|c| StatusCode::from_u16(c as u16).ok())
        .unwrap_or(StatusCode::OK);
    let body = match obj.get("body") {
        Some(Value::String(b)) if obj.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) => {
            base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default()
        }
        Some(Value::String(b)) => b.clone().into_bytes(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => other.to_string().into_bytes(),
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(headers) = obj.get("headers").and_then(Value::as_object) {
        for (k, v) in headers {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                h.insert(k, v);
            }
        }
    }
    if let Some(cookies) = obj.get("cookies").and_then(Value::as_array) {
        for c in cookies.iter().filter_map(Value::as_str) {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append("set-cookie", v);
            }
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
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok()).map(str::to_string);
    let cors = c.cors.clone().unwrap_or_default();
    let allowed_origin = origin.as_deref().and_then(|o| cors.allowed_origin(o));
    // CORS preflight is answered by the URL itself, without invoking the function.
    if req.method() == Method::OPTIONS
        && req.headers().contains_key("access-control-request-method")
        && c.cors.is_some()
    {
        let mut resp = StatusCode::OK.into_response();
        let h = resp.headers_mut();
        if let Some(o) = &allowed_origin {
            set(h, "access-control-allow-origin", o);
            set(h, "access-control-allow-methods", &cors.allow_methods.join(","));
            if !cors.allow_headers.is_empty() {
                set(h, "access-control-allow-headers", &cors.allow_headers.join(","));
            }
            if let Some(age) = cors.max_age {
                set(h, "access-control-max-age", &age.to_string());
            }
            if cors.allow_credentials == Some(true) {
                set(h, "access-control-allow-credentials", "true");
            }
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
    let ev =
        event(&c, &path, &parts.method, &parts.headers, parts.uri.query().unwrap_or(""), &body, &request_id);
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
    if let Some(o) = &allowed_origin {
        set(h, "access-control-allow-origin", o);
        if !cors.expose_headers.is_empty() {
            set(h, "access-control-expose-headers", &cors.expose_headers.join(","));
        }
        if cors.allow_credentials == Some(true) {
            set(h, "access-control-allow-credentials", "true");
        }
    }
    resp
}
