//! Lambda proxy payloads: the event API Gateway (and function URLs) send, in payload
//! format 2.0 and 1.0, and how a function's answer becomes an HTTP response. Field by
//! field as `aws_lambda_events`' `ApiGatewayV2httpRequest` / `ApiGatewayProxyRequest`.
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The HTTP request as the client sent it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The raw path, including a stage prefix if the client used one.
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: &'a str,
    pub protocol: &'a str,
}

impl HttpRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What API Gateway knows about the request beyond the HTTP message.
#[derive(Debug, Clone)]
pub struct EventContext<'a> {
    pub account_id: &'a str,
    pub api_id: &'a str,
    pub domain_name: &'a str,
    pub domain_prefix: &'a str,
    pub request_id: &'a str,
    pub route_key: &'a str,
    /// The route's path template (payload 1.0 `resource`), `$default` for the catch-all.
    pub resource_path: &'a str,
    pub stage: &'a str,
    pub path_parameters: &'a [(String, String)],
    pub stage_variables: &'a BTreeMap<String, String>,
    /// `requestContext.authorizer` (2.0: `{"lambda": …}` / `{"jwt": …}`; 1.0: flat).
    pub authorizer: Option<Value>,
    pub time: chrono::DateTime<chrono::Utc>,
}

/// API Gateway's `$context.requestTime` format.
pub fn request_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%d/%b/%Y:%H:%M:%S +0000").to_string()
}

fn decode_query(x: &str) -> String {
    percent_encoding::percent_decode_str(&x.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// Query parameters in order, decoded.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_query(k), decode_query(v))
        })
        .collect()
}

fn is_text(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.is_empty()
        || ct.starts_with("text/")
        || ["json", "xml", "javascript", "x-www-form-urlencoded", "yaml"].iter().any(|t| ct.contains(t))
}

/// `(body, isBase64Encoded)`: text stays text, anything else travels as base64.
fn body_field(req: &HttpRequest) -> (Value, bool) {
    if req.body.is_empty() {
        return (Value::Null, false);
    }
    match std::str::from_utf8(req.body) {
        Ok(s) if is_text(req.header("content-type").unwrap_or("")) => (json!(s), false),
        _ => (json!(B64.encode(req.body)), true),
    }
}

fn joined(pairs: impl Iterator<Item = (String, String)>) -> Map<String, Value> {
    let mut map: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        match map.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                map.insert(k, Value::String(v));
            }
        }
    }
    map
}

fn multi(pairs: impl Iterator<Item = (String, String)>) -> Map<String, Value> {
    let mut map: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        if let Value::Array(list) = map.entry(k).or_insert_with(|| Value::Array(Vec::new())) {
            list.push(Value::String(v));
        }
    }
    map
}

fn header_pairs<'a>(headers: &'a HeaderMap) -> impl Iterator<Item = (String, String)> + 'a {
    headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
}

fn string_map(pairs: &[(String, String)]) -> Map<String, Value> {
    pairs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()
}

/// Payload format 2.0 (`ApiGatewayV2httpRequest`). Absent collections are omitted, as AWS does.
pub fn event_v2(req: &HttpRequest, ctx: &EventContext) -> Value {
    let mut cookies = Vec::new();
    let headers = joined(header_pairs(req.headers).filter(|(k, v)| {
        if k == "cookie" {
            cookies.extend(v.split(';').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()));
            false
        } else {
            true
        }
    }));
    let (body, base64) = body_field(req);
    let mut rc = json!({
        "accountId": ctx.account_id,
        "apiId": ctx.api_id,
        "domainName": ctx.domain_name,
        "domainPrefix": ctx.domain_prefix,
        "http": {
            "method": req.method,
            "path": req.raw_path,
            "protocol": req.protocol,
            "sourceIp": req.source_ip,
            "userAgent": req.header("user-agent").unwrap_or(""),
        },
        "requestId": ctx.request_id,
        "routeKey": ctx.route_key,
        "stage": ctx.stage,
        "time": request_time(&ctx.time),
        "timeEpoch": ctx.time.timestamp_millis(),
    });
    if let Some(a) = &ctx.authorizer {
        rc["authorizer"] = a.clone();
    }
    let mut ev = json!({
        "version": "2.0",
        "routeKey": ctx.route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
        "headers": headers,
        "requestContext": rc,
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        ev["cookies"] = json!(cookies);
    }
    let query = joined(query_pairs(req.raw_query).into_iter());
    if !query.is_empty() {
        ev["queryStringParameters"] = Value::Object(query);
    }
    if !ctx.path_parameters.is_empty() {
        ev["pathParameters"] = Value::Object(string_map(ctx.path_parameters));
    }
    if !ctx.stage_variables.is_empty() {
        ev["stageVariables"] = json!(ctx.stage_variables);
    }
    if !body.is_null() {
        ev["body"] = body;
    }
    ev
}

fn map_or_null(m: Map<String, Value>) -> Value {
    if m.is_empty() { Value::Null } else { Value::Object(m) }
}

/// Payload format 1.0 (`ApiGatewayProxyRequest`): single- and multi-value maps, `null`
/// for absent collections.
pub fn event_v1(req: &HttpRequest, ctx: &EventContext) -> Value {
    let last = |pairs: Vec<(String, String)>| -> Map<String, Value> {
        pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
    };
    let headers: Vec<(String, String)> = header_pairs(req.headers).collect();
    let query = query_pairs(req.raw_query);
    let (body, base64) = body_field(req);
    let path = req.raw_path;
    let mut authorizer = ctx.authorizer.clone().unwrap_or(Value::Null);
    if let Some(o) = authorizer.as_object_mut() {
        // 1.0 carries the Lambda authorizer's context flat, with its integration latency.
        if let Some(Value::Object(lambda)) = o.remove("lambda") {
            o.extend(lambda);
        }
    }
    json!({
        "version": "1.0",
        "resource": ctx.resource_path,
        "path": path,
        "httpMethod": req.method,
        "headers": map_or_null(last(headers.clone())),
        "multiValueHeaders": map_or_null(multi(headers.into_iter())),
        "queryStringParameters": map_or_null(last(query.clone())),
        "multiValueQueryStringParameters": map_or_null(multi(query.into_iter())),
        "requestContext": {
            "accountId": ctx.account_id,
            "apiId": ctx.api_id,
            "authorizer": authorizer,
            "domainName": ctx.domain_name,
            "domainPrefix": ctx.domain_prefix,
            "extendedRequestId": ctx.request_id,
            "httpMethod": req.method,
            "identity": {
                "accessKey": null,
                "accountId": null,
                "caller": null,
                "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null,
                "cognitoIdentityId": null,
                "cognitoIdentityPoolId": null,
                "principalOrgId": null,
                "sourceIp": req.source_ip,
                "user": null,
                "userAgent": req.header("user-agent").unwrap_or(""),
                "userArn": null,
            },
            "path": path,
            "protocol": req.protocol,
            "requestId": ctx.request_id,
            "requestTime": request_time(&ctx.time),
            "requestTimeEpoch": ctx.time.timestamp_millis(),
            "resourceId": ctx.route_key,
            "resourcePath": ctx.resource_path,
            "stage": ctx.stage,
        },
        "pathParameters": map_or_null(string_map(ctx.path_parameters)),
        "stageVariables": if ctx.stage_variables.is_empty() { Value::Null } else { json!(ctx.stage_variables) },
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// An HTTP response for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    /// In order; a name may repeat (`set-cookie`, multi-value headers).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpResponse {
    /// API Gateway's own JSON answers: `{"message": "Not Found"}` and friends.
    pub fn message(status: u16, message: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(json!({ "message": message }).to_string()),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A function answer that isn't a valid proxy response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Lambda proxy response: {0}")]
pub struct MalformedResponse(pub String);

fn value_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn status_of(obj: &Map<String, Value>) -> Result<u16, MalformedResponse> {
    let code = match obj.get("statusCode") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    code.filter(|c| (100..=599).contains(c))
        .map(|c| c as u16)
        .ok_or_else(|| MalformedResponse("statusCode must be an HTTP status".into()))
}

fn body_of(obj: &Map<String, Value>) -> Result<Bytes, MalformedResponse> {
    let base64 = obj.get("isBase64Encoded").and_then(Value::as_bool) == Some(true);
    Ok(match obj.get("body") {
        Some(Value::String(b)) if base64 => {
            Bytes::from(B64.decode(b).map_err(|_| MalformedResponse("body is not valid base64".into()))?)
        }
        Some(Value::String(b)) => Bytes::from(b.clone()),
        Some(Value::Null) | None => Bytes::new(),
        Some(other) => Bytes::from(other.to_string()),
    })
}

fn headers_of(obj: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    let single = obj.get("headers").and_then(Value::as_object);
    if let Some(headers) = single {
        for (k, v) in headers {
            out.push((k.to_ascii_lowercase(), value_string(v)));
        }
    }
    if let Some(multi) = obj.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, vs) in multi {
            let k = k.to_ascii_lowercase();
            // A name in both maps: the single value is replaced by the list.
            out.retain(|(name, _)| *name != k);
            for v in vs.as_array().into_iter().flatten() {
                out.push((k.clone(), value_string(v)));
            }
        }
    }
}

/// Payload format 2.0: a JSON object with `statusCode` is a full response; any other
/// answer is a 200 `application/json` whose body is the payload itself.
pub fn response_v2(payload: &[u8]) -> Result<HttpResponse, MalformedResponse> {
    let parsed: Option<Value> = serde_json::from_slice(payload).ok();
    let Some(obj) = parsed.as_ref().and_then(Value::as_object).filter(|o| o.contains_key("statusCode"))
    else {
        return Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::copy_from_slice(payload),
        });
    };
    let mut headers = Vec::new();
    headers_of(obj, &mut headers);
    if !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".into(), "application/json".into()));
    }
    for c in obj.get("cookies").and_then(Value::as_array).into_iter().flatten() {
        headers.push(("set-cookie".into(), value_string(c)));
    }
    Ok(HttpResponse { status: status_of(obj)?, headers, body: body_of(obj)? })
}

/// Payload format 1.0: only the full object form is valid (AWS answers 500 otherwise).
pub fn response_v1(payload: &[u8]) -> Result<HttpResponse, MalformedResponse> {
    let parsed: Value =
        serde_json::from_slice(payload).map_err(|_| MalformedResponse("not a JSON object".into()))?;
    let obj = parsed.as_object().ok_or_else(|| MalformedResponse("not a JSON object".into()))?;
    let mut headers = Vec::new();
    headers_of(obj, &mut headers);
    Ok(HttpResponse { status: status_of(obj)?, headers, body: body_of(obj)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("abc.execute-api.localhost"));
        h.insert("user-agent", HeaderValue::from_static("curl/8"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        h.insert("cookie", HeaderValue::from_static("c1=v1; c2=v2"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h
    }

    fn ctx<'a>(params: &'a [(String, String)], vars: &'a BTreeMap<String, String>) -> EventContext<'a> {
        EventContext {
            account_id: "123456789012",
            api_id: "abc",
            domain_name: "abc.execute-api.localhost",
            domain_prefix: "abc",
            request_id: "rid",
            route_key: "POST /items/{id}",
            resource_path: "/items/{id}",
            stage: "prod",
            path_parameters: params,
            stage_variables: vars,
            authorizer: None,
            time: chrono::DateTime::from_timestamp_millis(1_583_348_638_390).unwrap_or_default(),
        }
    }

    #[test]
    fn v2_event_has_every_field_aws_sends() {
        let h = headers();
        let req = HttpRequest {
            method: "POST",
            raw_path: "/prod/items/42",
            raw_query: "x=1&x=2&y=a%20b",
            headers: &h,
            body: b"{\"a\":1}",
            source_ip: "127.0.0.1",
            protocol: "HTTP/1.1",
        };
        let params = vec![("id".to_string(), "42".to_string())];
        let vars = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let ev = event_v2(&req, &ctx(&params, &vars));
        assert_eq!(ev["version"], "2.0");
        assert_eq!(ev["routeKey"], "POST /items/{id}");
        assert_eq!(ev["rawPath"], "/prod/items/42");
        assert_eq!(ev["rawQueryString"], "x=1&x=2&y=a%20b");
        assert_eq!(ev["cookies"], json!(["c1=v1", "c2=v2"]));
        assert_eq!(ev["headers"]["x-multi"], "a,b");
        assert!(ev["headers"].get("cookie").is_none());
        assert_eq!(ev["queryStringParameters"], json!({"x": "1,2", "y": "a b"}));
        assert_eq!(ev["pathParameters"], json!({"id": "42"}));
        assert_eq!(ev["stageVariables"], json!({"env": "prod"}));
        assert_eq!(ev["body"], "{\"a\":1}");
        assert_eq!(ev["isBase64Encoded"], false);
        let rc = &ev["requestContext"];
        assert_eq!(rc["http"]["method"], "POST");
        assert_eq!(rc["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(rc["http"]["userAgent"], "curl/8");
        assert_eq!(rc["time"], "04/Mar/2020:19:03:58 +0000");
        assert_eq!(rc["timeEpoch"], 1_583_348_638_390i64);
        assert_eq!(rc["stage"], "prod");
    }

    #[test]
    fn binary_bodies_are_base64() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/octet-stream"));
        let req = HttpRequest {
            method: "PUT",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            body: &[0, 255, 1],
            source_ip: "127.0.0.1",
            protocol: "HTTP/1.1",
        };
        let vars = BTreeMap::new();
        let ev = event_v2(&req, &ctx(&[], &vars));
        assert_eq!(ev["isBase64Encoded"], true);
        assert_eq!(ev["body"], "AP8B");
        assert!(ev.get("queryStringParameters").is_none() && ev.get("pathParameters").is_none());
        let v1 = event_v1(&req, &ctx(&[], &vars));
        assert_eq!(v1["body"], "AP8B");
        assert_eq!(v1["queryStringParameters"], Value::Null);
    }

    #[test]
    fn v1_event_has_single_and_multi_value_maps() {
        let h = headers();
        let req = HttpRequest {
            method: "GET",
            raw_path: "/items/1",
            raw_query: "x=1&x=2",
            headers: &h,
            body: b"",
            source_ip: "10.0.0.1",
            protocol: "HTTP/1.1",
        };
        let vars = BTreeMap::new();
        let params = vec![("id".to_string(), "1".to_string())];
        let ev = event_v1(&req, &ctx(&params, &vars));
        assert_eq!(ev["version"], "1.0");
        assert_eq!(ev["resource"], "/items/{id}");
        assert_eq!(ev["httpMethod"], "GET");
        assert_eq!(ev["headers"]["x-multi"], "b");
        assert_eq!(ev["multiValueHeaders"]["x-multi"], json!(["a", "b"]));
        assert_eq!(ev["queryStringParameters"]["x"], "2");
        assert_eq!(ev["multiValueQueryStringParameters"]["x"], json!(["1", "2"]));
        assert_eq!(ev["requestContext"]["identity"]["sourceIp"], "10.0.0.1");
        assert_eq!(ev["body"], Value::Null);
        assert_eq!(ev["stageVariables"], Value::Null);
    }

    #[test]
    fn v2_response_inference_and_full_form() {
        let r = response_v2(b"\"hello\"").unwrap();
        assert_eq!((r.status, r.body.as_ref()), (200, &b"\"hello\""[..]));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let r = response_v2(br#"{"a":1}"#).unwrap();
        assert_eq!(r.body.as_ref(), br#"{"a":1}"#);
        let r = response_v2(
            br#"{"statusCode":201,"headers":{"X-A":"1"},"multiValueHeaders":{"x-b":["1","2"]},
                 "cookies":["s=1"],"body":"aGk=","isBase64Encoded":true}"#,
        )
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body.as_ref(), b"hi");
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(r.headers.iter().filter(|(k, _)| k == "x-b").count(), 2);
        assert_eq!(r.header("set-cookie"), Some("s=1"));
        assert!(response_v2(br#"{"statusCode":"nope"}"#).is_err());
    }

    #[test]
    fn v1_response_requires_the_object_form() {
        assert!(response_v1(b"\"hello\"").is_err());
        let r = response_v1(br#"{"statusCode":404,"body":"gone"}"#).unwrap();
        assert_eq!((r.status, r.body.as_ref()), (404, &b"gone"[..]));
        assert_eq!(r.header("content-type"), None);
    }
}
