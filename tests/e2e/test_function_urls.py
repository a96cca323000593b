"""Function URLs: the control API through boto3, then plain HTTP requests (host-based
`<id>.lambda-url.<region>.localhost` and the path form) as payload-format-2.0 invocations."""
import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import create_function, error_code, make_zip, unique_name

SRC = """
import json
def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "bare":
        return {"hello": "world"}
    if mode == "fail":
        raise RuntimeError("nope")
    return {"statusCode": 201, "headers": {"x-echo": "yes", "content-type": "application/json"},
            "cookies": ["session=abc; Path=/"], "body": json.dumps(event)}
"""


def _http(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.headers.get_all("set-cookie") or [], r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, [], e.read()


def test_function_url_serves_http_with_payload_2_0(server):
    lam = server.lam
    name = unique_name("url")
    create_function(lam, name, make_zip({"lambda_function.py": SRC}))
    cfg = lam.create_function_url_config(
        FunctionName=name, AuthType="NONE",
        Cors={"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"], "MaxAge": 60})
    url = cfg["FunctionUrl"]
    assert url.startswith("http://") and ".lambda-url.us-east-1.localhost:" in url
    url_id = url.split("//")[1].split(".")[0]
    assert len(url_id) == 32
    with pytest.raises(ClientError) as e:
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert error_code(e.value) == "ResourceConflictException"
    assert lam.get_function_url_config(FunctionName=name)["FunctionUrl"] == url

    # Host-based, as AWS: the Host header names the URL.
    base = server.endpoint
    host = url.split("//")[1].rstrip("/")
    status, headers, cookies, body = _http(f"{base}/items/42?x=1&x=2&y=z", method="POST", body=b'{"a": 1}',
                                           headers={"Host": host, "Content-Type": "application/json",
                                                    "Cookie": "c1=v1; c2=v2", "Origin": "https://example.com"})
    assert status == 201, body
    assert headers.get("x-echo") == "yes"
    assert headers.get("access-control-allow-origin") == "https://example.com"
    assert cookies == ["session=abc; Path=/"]
    ev = json.loads(body)
    assert ev["version"] == "2.0" and ev["routeKey"] == "$default"
    assert ev["rawPath"] == "/items/42" and ev["rawQueryString"] == "x=1&x=2&y=z"
    assert ev["queryStringParameters"] == {"x": "1,2", "y": "z"}
    assert ev["cookies"] == ["c1=v1", "c2=v2"]
    assert ev["headers"]["content-type"] == "application/json" and "cookie" not in ev["headers"]
    assert ev["body"] == '{"a": 1}' and ev["isBase64Encoded"] is False
    assert ev["requestContext"]["http"]["method"] == "POST"
    assert ev["requestContext"]["apiId"] == url_id

    # Path form; a bare JSON answer becomes a 200 application/json body.
    status, headers, _, body = _http(f"{base}/_nimbus/url/{url_id}/?mode=bare")
    assert status == 200 and json.loads(body) == {"hello": "world"}
    assert headers["content-type"] == "application/json"
    # Binary bodies arrive base64-encoded.
    status, _, _, body = _http(f"{base}/_nimbus/url/{url_id}/bin", method="PUT", body=bytes(range(256)),
                               headers={"Content-Type": "application/octet-stream"})
    ev = json.loads(body)
    assert ev["isBase64Encoded"] is True
    # Function errors are a 502; unknown URL ids a 404.
    assert _http(f"{base}/_nimbus/url/{url_id}/?mode=fail")[0] == 502
    assert _http(f"{base}/_nimbus/url/{'0' * 32}/")[0] == 404
    # CORS preflight is answered without invoking the function.
    status, headers, _, _ = _http(f"{base}/_nimbus/url/{url_id}/", method="OPTIONS",
                                  headers={"Origin": "https://example.com",
                                           "Access-Control-Request-Method": "POST"})
    assert status == 200
    assert headers.get("access-control-allow-origin") == "https://example.com"
    assert headers.get("access-control-allow-methods") == "GET,POST"
    assert headers.get("access-control-max-age") == "60"

    lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert _http(f"{base}/_nimbus/url/{url_id}/")[0] == 403
    assert [c["AuthType"] for c in lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]] == ["AWS_IAM"]
    lam.delete_function_url_config(FunctionName=name)
    assert _http(f"{base}/_nimbus/url/{url_id}/")[0] == 404
