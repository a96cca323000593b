"""API Gateway HTTP APIs: the apigatewayv2 control API through the AWS CLI and boto3, then
Lambda proxy integrations (payload 2.0 and 1.0) and AWS's route selection through plain HTTP."""
import base64
import json
import time

import pytest
from botocore.exceptions import ClientError

from apigw_e2e import ECHO_SRC, call
from nimbus_e2e import create_function, error_code, make_zip, unique_name


@pytest.fixture(scope="module")
def echo_fn(server):
    name = unique_name("apigw-echo")
    create_function(server.lam, name, make_zip({"lambda_function.py": ECHO_SRC}), Timeout=10)
    return server.lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]


def test_seed_docs_quick_create_serves_the_function(server):
    """Verbatim from the seed docs, as account 123456789012 in us-west-2."""
    lam = server.client("lambda", region="us-west-2", key="123456789012")
    create_function(lam, "myIntegration", make_zip({"lambda_function.py": ECHO_SRC}))
    env = {"AWS_ACCESS_KEY_ID": "123456789012", "AWS_DEFAULT_REGION": "us-west-2"}
    api = server.aws_json("apigatewayv2", "create-api", "--name", "MyAPI", "--protocol-type", "HTTP",
                          "--target", "arn:aws:lambda:us-west-2:123456789012:function:myIntegration",
                          region="us-west-2", env=env)
    api_id = api["ApiId"]
    assert api["ApiEndpoint"] == f"http://{api_id}.execute-api.localhost:{server.port}"
    assert api["ProtocolType"] == "HTTP" and api["Name"] == "MyAPI"
    routes = server.aws_json("apigatewayv2", "get-routes", "--api-id", api_id, region="us-west-2", env=env)
    assert [r["RouteKey"] for r in routes["Items"]] == ["$default"]
    stages = server.aws_json("apigatewayv2", "get-stages", "--api-id", api_id, region="us-west-2", env=env)
    assert stages["Items"][0]["StageName"] == "$default" and stages["Items"][0]["AutoDeploy"] is True
    integ = server.aws_json("apigatewayv2", "get-integrations", "--api-id", api_id, region="us-west-2", env=env)
    assert integ["Items"][0]["IntegrationType"] == "AWS_PROXY"
    assert integ["Items"][0]["PayloadFormatVersion"] == "2.0"

    r = call(server, api_id, "GET", "/hello/world?a=1", headers={"User-Agent": "seed-test"})
    assert r.status == 200, r
    ev = r.json()
    assert ev["routeKey"] == "$default" and ev["rawPath"] == "/hello/world"
    rc = ev["requestContext"]
    assert rc["accountId"] == "123456789012" and rc["apiId"] == api_id and rc["stage"] == "$default"
    assert rc["domainName"] == f"{api_id}.execute-api.localhost"
    assert rc["http"]["userAgent"] == "seed-test"
    assert r.headers.get("apigw-requestid")
    # Another account does not see the API.
    with pytest.raises(ClientError) as e:
        server.client("apigatewayv2", region="us-west-2").get_api(ApiId=api_id)
    assert error_code(e.value) == "NotFoundException"


def test_control_api_crud_errors_and_pagination(server, echo_fn):
    gw = server.client("apigatewayv2")
    ids = [gw.create_api(Name=unique_name("p"), ProtocolType="HTTP")["ApiId"] for _ in range(3)]
    api_id = ids[0]
    page1 = gw.get_apis(MaxResults="2")
    assert len(page1["Items"]) == 2 and page1.get("NextToken")
    page2 = gw.get_apis(MaxResults="2", NextToken=page1["NextToken"])
    seen = {a["ApiId"] for a in page1["Items"] + page2["Items"]}
    assert set(ids) <= seen

    with pytest.raises(ClientError) as e:
        gw.create_api(Name="x", ProtocolType="SOAP")
    assert error_code(e.value) == "BadRequestException"
    with pytest.raises(ClientError) as e:
        gw.get_api(ApiId="nope123456")
    assert error_code(e.value) == "NotFoundException"

    upd = gw.update_api(ApiId=api_id, Description="d1", CorsConfiguration={"AllowOrigins": ["https://a"]})
    assert upd["Description"] == "d1" and upd["CorsConfiguration"]["AllowOrigins"] == ["https://a"]
    gw.delete_cors_configuration(ApiId=api_id)
    assert "CorsConfiguration" not in gw.get_api(ApiId=api_id)

    integ = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo_fn,
                                  PayloadFormatVersion="2.0")
    iid = integ["IntegrationId"]
    assert integ["TimeoutInMillis"] == 30000
    with pytest.raises(ClientError) as e:
        gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo_fn)
    assert error_code(e.value) == "BadRequestException"  # PayloadFormatVersion is required
    assert gw.update_integration(ApiId=api_id, IntegrationId=iid, TimeoutInMillis=5000)["TimeoutInMillis"] == 5000

    route = gw.create_route(ApiId=api_id, RouteKey="GET /items/{id}", Target=f"integrations/{iid}")
    rid = route["RouteId"]
    assert route["AuthorizationType"] == "NONE"
    with pytest.raises(ClientError) as e:
        gw.create_route(ApiId=api_id, RouteKey="GET /items/{id}")
    assert error_code(e.value) == "ConflictException"
    with pytest.raises(ClientError) as e:
        gw.create_route(ApiId=api_id, RouteKey="GET items")
    assert error_code(e.value) == "BadRequestException"
    assert gw.update_route(ApiId=api_id, RouteId=rid, RouteKey="POST /items/{id}")["RouteKey"] == "POST /items/{id}"
    assert gw.get_route(ApiId=api_id, RouteId=rid)["Target"] == f"integrations/{iid}"
    with pytest.raises(ClientError) as e:
        gw.delete_integration(ApiId=api_id, IntegrationId=iid)
    assert error_code(e.value) == "ConflictException"

    stage = gw.create_stage(ApiId=api_id, StageName="prod", StageVariables={"env": "prod"})
    assert stage["StageName"] == "prod" and stage["AutoDeploy"] is False
    with pytest.raises(ClientError) as e:
        gw.create_stage(ApiId=api_id, StageName="prod")
    assert error_code(e.value) == "ConflictException"
    dep = gw.create_deployment(ApiId=api_id, StageName="prod", Description="first")
    assert dep["DeploymentStatus"] == "DEPLOYED"
    assert gw.get_stage(ApiId=api_id, StageName="prod")["DeploymentId"] == dep["DeploymentId"]
    assert [d["DeploymentId"] for d in gw.get_deployments(ApiId=api_id)["Items"]] == [dep["DeploymentId"]]
    assert gw.update_deployment(ApiId=api_id, DeploymentId=dep["DeploymentId"], Description="x")["Description"] == "x"
    st = gw.update_stage(ApiId=api_id, StageName="prod",
                         DefaultRouteSettings={"ThrottlingBurstLimit": 5, "ThrottlingRateLimit": 10.0})
    assert st["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 5

    auth = gw.create_authorizer(ApiId=api_id, Name="a", AuthorizerType="REQUEST", AuthorizerUri=echo_fn,
                                AuthorizerPayloadFormatVersion="2.0", EnableSimpleResponses=True,
                                IdentitySource=["$request.header.Authorization"])
    assert gw.get_authorizer(ApiId=api_id, AuthorizerId=auth["AuthorizerId"])["EnableSimpleResponses"] is True
    with pytest.raises(ClientError) as e:
        gw.create_authorizer(ApiId=api_id, Name="j", AuthorizerType="JWT", IdentitySource=["$request.header.Authorization"])
    assert error_code(e.value) == "BadRequestException"  # JwtConfiguration.Issuer required
    gw.update_authorizer(ApiId=api_id, AuthorizerId=auth["AuthorizerId"], AuthorizerResultTtlInSeconds=60)
    assert len(gw.get_authorizers(ApiId=api_id)["Items"]) == 1
    gw.delete_authorizer(ApiId=api_id, AuthorizerId=auth["AuthorizerId"])

    gw.delete_route(ApiId=api_id, RouteId=rid)
    gw.delete_integration(ApiId=api_id, IntegrationId=iid)
    with pytest.raises(ClientError) as e:
        gw.get_route(ApiId=api_id, RouteId=rid)
    assert error_code(e.value) == "NotFoundException"
    gw.delete_stage(ApiId=api_id, StageName="prod")
    for i in ids:
        gw.delete_api(ApiId=i)
    with pytest.raises(ClientError) as e:
        gw.delete_api(ApiId=api_id)
    assert error_code(e.value) == "NotFoundException"


def _api_with_routes(server, echo_fn):
    gw = server.client("apigatewayv2")
    api_id = gw.create_api(Name=unique_name("routes"), ProtocolType="HTTP")["ApiId"]
    v2 = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo_fn,
                               PayloadFormatVersion="2.0")["IntegrationId"]
    v1 = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo_fn,
                               PayloadFormatVersion="1.0")["IntegrationId"]
    short = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo_fn,
                                  PayloadFormatVersion="2.0", TimeoutInMillis=700)["IntegrationId"]
    for key, iid in [("GET /pets", v2), ("GET /pets/{id}", v2), ("GET /pets/dog", v2), ("ANY /pets/{id}", v2),
                     ("ANY /{proxy+}", v2), ("POST /v1/{id}", v1), ("GET /slow", short)]:
        gw.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{iid}")
    gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True, StageVariables={"color": "blue"})
    return api_id


def test_route_selection_and_payload_2_0(server, echo_fn):
    api_id = _api_with_routes(server, echo_fn)
    pick = lambda m, p: call(server, api_id, m, p).json()["routeKey"]  # noqa: E731
    assert pick("GET", "/pets") == "GET /pets"
    assert pick("GET", "/pets/dog") == "GET /pets/dog"
    assert pick("GET", "/pets/7") == "GET /pets/{id}"
    assert pick("DELETE", "/pets/7") == "ANY /pets/{id}"
    assert pick("GET", "/a/b/c") == "ANY /{proxy+}"
    # No $default route: `/` matches nothing.
    r = call(server, api_id, "GET", "/")
    assert (r.status, r.json()) == (404, {"message": "Not Found"})

    r = call(server, api_id, "POST", "/pets/42?x=1&x=2&y=a%20b", body='{"k": 1}',
             headers={"Content-Type": "application/json", "Cookie": "c1=v1; c2=v2", "X-Multi": "m1",
                      "User-Agent": "ua/1"})
    assert r.status == 200, r
    ev = r.json()
    assert ev["version"] == "2.0" and ev["routeKey"] == "ANY /pets/{id}"
    assert ev["rawPath"] == "/pets/42" and ev["rawQueryString"] == "x=1&x=2&y=a%20b"
    assert ev["cookies"] == ["c1=v1", "c2=v2"]
    assert ev["headers"]["x-multi"] == "m1" and "cookie" not in ev["headers"]
    assert ev["queryStringParameters"] == {"x": "1,2", "y": "a b"}
    assert ev["pathParameters"] == {"id": "42"}
    assert ev["stageVariables"] == {"color": "blue"}
    assert ev["body"] == '{"k": 1}' and ev["isBase64Encoded"] is False
    rc = ev["requestContext"]
    assert set(rc) >= {"accountId", "apiId", "domainName", "domainPrefix", "http", "requestId", "routeKey",
                       "stage", "time", "timeEpoch"}
    assert rc["http"] == {"method": "POST", "path": "/pets/42", "protocol": "HTTP/1.1",
                          "sourceIp": "127.0.0.1", "userAgent": "ua/1"}
    assert abs(rc["timeEpoch"] / 1000 - time.time()) < 60
    assert rc["requestId"] == r.headers["apigw-requestid"]

    # Binary request bodies arrive base64-encoded; the path form reaches the same API.
    r = call(server, api_id, "PUT", "/bin", body=b"\x00\xffdata", headers={"Content-Type": "application/octet-stream"},
             path_form=True)
    ev = r.json()
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == b"\x00\xffdata"


def test_response_forms_errors_and_timeouts(server, echo_fn):
    api_id = _api_with_routes(server, echo_fn)
    r = call(server, api_id, "GET", "/x?mode=bare")
    assert (r.status, r.body, r.headers["content-type"]) == (200, b'"hello"', "application/json")
    r = call(server, api_id, "GET", "/x?mode=json")
    assert r.json() == {"hello": "world"}
    r = call(server, api_id, "GET", "/x?mode=multi")
    assert r.status == 202 and r.body == b"multi"
    assert r.all("x-m") == ["a", "b"] and r.headers["x-s"] == "1"
    assert r.all("set-cookie") == ["a=1", "b=2"]
    r = call(server, api_id, "GET", "/x?mode=binary")
    assert r.body == b"\x89PNG\x00\x01" and r.headers["content-type"] == "image/png"
    r = call(server, api_id, "GET", "/x?mode=fail")
    assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})
    r = call(server, api_id, "GET", "/x?mode=malformed")
    assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})
    started = time.monotonic()
    r = call(server, api_id, "GET", "/slow?mode=sleep&s=3")
    assert (r.status, r.json()) == (503, {"message": "Service Unavailable"})
    assert time.monotonic() - started < 2.5


def test_payload_1_0(server, echo_fn):
    api_id = _api_with_routes(server, echo_fn)
    r = call(server, api_id, "POST", "/v1/9?a=1&a=2", body="hi", headers={"X-H": "v", "Content-Type": "text/plain"})
    assert r.status == 200, r
    ev = r.json()
    assert ev["version"] == "1.0" and ev["resource"] == "/v1/{id}" and ev["path"] == "/v1/9"
    assert ev["httpMethod"] == "POST" and ev["body"] == "hi" and ev["isBase64Encoded"] is False
    assert ev["headers"]["x-h"] == "v" and ev["multiValueHeaders"]["x-h"] == ["v"]
    assert ev["queryStringParameters"] == {"a": "2"}
    assert ev["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
    assert ev["pathParameters"] == {"id": "9"} and ev["stageVariables"] == {"color": "blue"}
    rc = ev["requestContext"]
    assert rc["resourcePath"] == "/v1/{id}" and rc["httpMethod"] == "POST" and rc["stage"] == "$default"
    assert rc["identity"]["sourceIp"] == "127.0.0.1"
    # 1.0 makes no assumptions: a bare answer is an error.
    r = call(server, api_id, "POST", "/v1/9?mode=bare")
    assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})


def test_apis_survive_a_crash(nimbus):
    """Acknowledged control-plane writes are in the Store: a kill -9 loses nothing."""
    s = nimbus()
    fn = create_function(s.lam, unique_name("persist"), make_zip({"lambda_function.py": ECHO_SRC}))["FunctionArn"]
    gw = s.client("apigatewayv2")
    api_id = gw.create_api(Name="persist", ProtocolType="HTTP", Target=fn)["ApiId"]
    gw.create_stage(ApiId=api_id, StageName="prod", StageVariables={"v": "1"})
    gw.create_deployment(ApiId=api_id, StageName="prod")
    assert call(s, api_id, "GET", "/prod/x").status == 200
    s.kill9()
    s.restart()
    gw = s.client("apigatewayv2")
    assert gw.get_api(ApiId=api_id)["Name"] == "persist"
    assert gw.get_stage(ApiId=api_id, StageName="prod")["StageVariables"] == {"v": "1"}
    r = call(s, api_id, "GET", "/prod/x")
    assert r.status == 200 and r.json()["stageVariables"] == {"v": "1"}
    assert call(s, api_id, "GET", "/x").json()["routeKey"] == "$default"
