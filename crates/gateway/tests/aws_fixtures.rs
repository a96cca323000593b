//! Events rebuilt with the public payload API must equal AWS's own examples (the
//! `aws_lambda_events` fixtures in `tests/fixtures`), value for value.
use http::{HeaderMap, HeaderName, HeaderValue};
use nimbus_gateway::authorizer;
use nimbus_gateway::payload::{EventContext, HttpRequest, event_v2};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn headers(v: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in v.as_object().unwrap() {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
        );
    }
    h
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap()
}

#[test]
fn no_authorizer_request_matches_aws() {
    let want = fixture("apigw-v2-request-no-authorizer.json");
    let h = headers(&want["headers"]);
    let req = HttpRequest {
        method: "GET",
        raw_path: "/",
        raw_query: "",
        headers: &h,
        body: b"",
        source_ip: "1.2.3.4",
        protocol: "HTTP/1.1",
    };
    let vars = BTreeMap::new();
    let ctx = EventContext {
        account_id: "123456789012",
        api_id: "aaaaaaaaaa",
        domain_name: "aaaaaaaaaa.execute-api.us-west-2.amazonaws.com",
        domain_prefix: "aaaaaaaaaa",
        request_id: "LV7fzho-PHcEJPw=",
        route_key: "$default",
        resource_path: "$default",
        stage: "$default",
        path_parameters: &[],
        stage_variables: &vars,
        authorizer: None,
        time: time(1_587_481_701_067),
    };
    assert_eq!(event_v2(&req, &ctx), want);
}

fn my_path_request<'a>(h: &'a HeaderMap, body: &'a [u8]) -> HttpRequest<'a> {
    HttpRequest {
        method: "GET",
        raw_path: "/my/path",
        raw_query: "parameter1=value1&parameter1=value2&parameter2=value",
        headers: h,
        body,
        source_ip: "IP",
        protocol: "HTTP/1.1",
    }
}

fn my_path_context<'a>(
    params: &'a [(String, String)],
    vars: &'a BTreeMap<String, String>,
    authorizer: Option<Value>,
) -> EventContext<'a> {
    EventContext {
        account_id: "123456789012",
        api_id: "api-id",
        domain_name: "id.execute-api.us-east-1.amazonaws.com",
        domain_prefix: "id",
        request_id: "id",
        route_key: "$default",
        resource_path: "$default",
        stage: "$default",
        path_parameters: params,
        stage_variables: vars,
        authorizer,
        time: time(1_583_348_638_390),
    }
}

#[test]
fn lambda_authorizer_context_request_matches_aws() {
    let want = fixture("apigw-v2-request-lambda-authorizer.json");
    let mut h = headers(&want["headers"]);
    h.insert("cookie", HeaderValue::from_static("cookie1; cookie2"));
    let params = vec![("proxy".to_string(), "hello/world".to_string())];
    let vars: BTreeMap<String, String> = serde_json::from_value(want["stageVariables"].clone()).unwrap();
    let ctx = my_path_context(&params, &vars, Some(json!({"lambda": {"key": "value"}})));
    let req = my_path_request(&h, b"{\r\n\t\"a\": 1\r\n}");
    assert_eq!(event_v2(&req, &ctx), want);
}

#[test]
fn request_authorizer_event_matches_aws() {
    let want = fixture("apigw-v2-custom-authorizer-v2-request.json");
    let mut h = headers(&want["headers"]);
    h.insert("cookie", HeaderValue::from_static("cookie1; cookie2"));
    let params = vec![("proxy".to_string(), "hello/world".to_string())];
    let vars: BTreeMap<String, String> = serde_json::from_value(want["stageVariables"].clone()).unwrap();
    let ctx = my_path_context(&params, &vars, None);
    let req = my_path_request(&h, b"{}");
    let arn = authorizer::route_arn("us-east-1", "123456789012", "api-id", "$default", "GET", "/my/path");
    let identity = vec!["user1".to_string(), "123".to_string()];
    assert_eq!(authorizer::event_v2(event_v2(&req, &ctx), &arn, &identity), want);
}
