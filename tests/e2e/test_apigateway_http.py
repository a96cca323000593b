"""API Gateway HTTP APIs over plain HTTP: HTTP_PROXY integrations (parameter mapping,
streaming), CORS, stages (variables, explicit deployments), throttling and access logs."""
import json
import time

import pytest

from apigw_e2e import ECHO_SRC, EchoBackend, call
from nimbus_e2e import create_function, make_zip, unique_name, wait_until


@pytest.fixture(scope="module")
def backend():
    b = EchoBackend()
    yield b
    b.close()


def test_http_proxy_quick_create_streams_and_forwards(server, backend):
    gw = server.client("apigatewayv2")
    api = gw.create_api(Name=unique_name("proxy"), ProtocolType="HTTP", Target=backend.url + "/base")
    api_id = api["ApiId"]
    r = call(server, api_id, "POST", "/items/1?q=a%20b", body=b"payload", headers={"X-In": "1"})
    assert r.status == 201, r
    seen = r.json()
    # The $default route forwards the request path under the integration URI's path.
    assert seen["method"] == "POST" and seen["path"] == "/base/items/1?q=a%20b"
    assert seen["body"] == "payload" and seen["headers"]["x-in"] == "1"
    assert seen["headers"]["host"] == f"127.0.0.1:{backend.port}"
    assert r.headers["x-backend"] == "echo" and r.headers.get("apigw-requestid")
    # A chunked backend answer streams through intact.
    r = call(server, api_id, "GET", "/stream")
    assert r.status == 200 and r.body == b"".join(f"chunk{i};".encode() for i in range(5))


def test_http_proxy_path_variables_and_parameter_mapping(server, backend):
    gw = server.client("apigatewayv2")
    api_id = gw.create_api(Name=unique_name("map"), ProtocolType="HTTP")["ApiId"]
    iid = gw.create_integration(
        ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY",
        IntegrationUri=backend.url + "/svc/{proxy}", PayloadFormatVersion="1.0",
        RequestParameters={"append:header.x-from": "gw-$context.stage",
                           "overwrite:querystring.env": "$stageVariables.env",
                           "remove:header.x-secret": "''"})["IntegrationId"]
    gw.create_route(ApiId=api_id, RouteKey="ANY /api/{proxy+}", Target=f"integrations/{iid}")
    iid2 = gw.create_integration(
        ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="GET", IntegrationUri=backend.url,
        RequestParameters={"overwrite:path": "/users/$request.path.id/profile"})["IntegrationId"]
    gw.create_route(ApiId=api_id, RouteKey="GET /u/{id}", Target=f"integrations/{iid2}")
    gw.create_stage(ApiId=api_id, StageName="live", AutoDeploy=True, StageVariables={"env": "staging"})

    r = call(server, api_id, "PUT", "/live/api/a/b?env=x&k=v", body="b",
             headers={"X-Secret": "s", "X-Keep": "k"})
    assert r.status == 200, r
    seen = r.json()
    assert seen["path"].startswith("/svc/a/b?")
    assert "env=staging" in seen["path"] and "k=v" in seen["path"] and "env=x" not in seen["path"]
    assert seen["headers"]["x-from"] == "gw-live" and seen["headers"]["x-keep"] == "k"
    assert "x-secret" not in seen["headers"]
    r = call(server, api_id, "GET", "/live/u/42")
    assert r.json()["path"] == "/users/42/profile"
    # Unknown stage prefix and no $default stage: Not Found.
    r = call(server, api_id, "GET", "/other/u/42")
    assert (r.status, r.json()) == (404, {"message": "Not Found"})


def test_http_proxy_unreachable_backend_is_an_error(server):
    gw = server.client("apigatewayv2")
    api_id = gw.create_api(Name=unique_name("down"), ProtocolType="HTTP", Target="http://127.0.0.1:9/")["ApiId"]
    r = call(server, api_id, "GET", "/")
    assert r.status == 500 and r.json() == {"message": "Internal Server Error"}


def test_cors_preflight_and_response_headers(server, backend):
    gw = server.client("apigatewayv2")
    api_id = gw.create_api(
        Name=unique_name("cors"), ProtocolType="HTTP", Target=backend.url,
        CorsConfiguration={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
                           "AllowHeaders": ["content-type", "x-api"], "ExposeHeaders": ["x-backend"],
                           "MaxAge": 600, "AllowCredentials": True})["ApiId"]
    n = len(backend.seen)
    r = call(server, api_id, "OPTIONS", "/thing", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type,X-Api"})
    assert r.status == 204
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-allow-methods"] == "GET,POST"
    assert r.headers["access-control-allow-headers"] == "content-type,x-api"
    assert r.headers["access-control-max-age"] == "600"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert len(backend.seen) == n, "a preflight never reaches the integration"
    # Disallowed origin or method: no CORS headers.
    r = call(server, api_id, "OPTIONS", "/thing", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = call(server, api_id, "OPTIONS", "/thing", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "DELETE"})
    assert "access-control-allow-origin" not in r.headers
    r = call(server, api_id, "GET", "/thing", headers={"Origin": "https://app.example"})
    assert r.status == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-expose-headers"] == "x-backend"
    r = call(server, api_id, "GET", "/thing", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_stage_deployments_throttling_and_access_logs(server):
    lam, gw, logs = server.lam, server.client("apigatewayv2"), server.logs
    name = unique_name("stagefn")
    fn = create_function(lam, name, make_zip({"lambda_function.py": ECHO_SRC}))["FunctionArn"]
    api_id = gw.create_api(Name=unique_name("stages"), ProtocolType="HTTP")["ApiId"]
    iid = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=fn,
                                PayloadFormatVersion="2.0")["IntegrationId"]
    gw.create_route(ApiId=api_id, RouteKey="GET /a", Target=f"integrations/{iid}")
    group = f"/apigw/{api_id}"
    fmt = '{"requestId":"$context.requestId","routeKey":"$context.routeKey","status":"$context.status","stage":"$context.stage","ip":"$context.identity.sourceIp","len":"$context.responseLength"}'
    gw.create_stage(ApiId=api_id, StageName="prod", StageVariables={"v": "1"},
                    AccessLogSettings={"DestinationArn": f"arn:aws:logs:us-east-1:000000000000:log-group:{group}",
                                       "Format": fmt},
                    RouteSettings={"GET /b": {"ThrottlingBurstLimit": 2, "ThrottlingRateLimit": 0.01}})
    # Not deployed yet.
    assert call(server, api_id, "GET", "/prod/a").status == 404
    gw.create_deployment(ApiId=api_id, StageName="prod")
    r = call(server, api_id, "GET", "/prod/a")
    assert r.status == 200 and r.json()["stageVariables"] == {"v": "1"}
    assert r.json()["requestContext"]["stage"] == "prod" and r.json()["rawPath"] == "/prod/a"
    # A route added after the deployment is not served until the next deployment.
    gw.create_route(ApiId=api_id, RouteKey="GET /b", Target=f"integrations/{iid}")
    assert call(server, api_id, "GET", "/prod/b").status == 404
    gw.create_deployment(ApiId=api_id, StageName="prod")
    # Burst 2 at 0.01 req/s: the third request is throttled.
    statuses = [call(server, api_id, "GET", "/prod/b").status for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
    r = call(server, api_id, "GET", "/prod/b")
    assert (r.status, r.json()) == (429, {"message": "Too Many Requests"})
    assert call(server, api_id, "GET", "/prod/a").status == 200, "other routes keep their own bucket"

    def lines():
        evs = logs.filter_log_events(logGroupName=group).get("events", [])
        return [json.loads(e["message"]) for e in evs] if len(evs) >= 6 else None
    got = wait_until(lines, 10, interval=0.2, what="access log lines")
    assert {(l["routeKey"], l["status"]) for l in got} >= {("GET /a", "200"), ("GET /b", "429"), ("-", "404")}
    assert all(l["stage"] == "prod" and l["ip"] == "127.0.0.1" and l["requestId"] for l in got)
    assert all(int(l["len"]) > 0 for l in got), got
