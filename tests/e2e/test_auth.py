"""SigV4: strict mode verifies header and presigned-query signatures against configured keys;
the default dev mode accepts any credentials and unsigned requests (like LocalStack)."""
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from nimbus_e2e import (create_function, error_code, http_status, invoke, ok, python_zip,
                        rust_echo_zip, unique_name)

KEY, SECRET = "AKIDTEST", "secret1"


def _fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _tamper_query(url, param, fn):
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    q = [(k, fn(v) if k == param else v) for k, v in q]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))


def test_strict_auth(nimbus, tmp_path):
    s = nimbus("--auth", "strict", "--access-key", f"{KEY}:{SECRET}",
               "--access-key", "123456789012:other-secret")
    good = s.client("lambda", key=KEY, secret=SECRET)
    name = unique_name("strict")
    create_function(good, name, rust_echo_zip(), runtime="provided.al2023")
    assert ok(invoke(good, name, {"signed": True}))["echo"] == {"signed": True}
    assert any(f["FunctionName"] == name for f in good.list_functions()["Functions"])
    # A second configured key works too (its 12-digit id is its account).
    other = s.client("lambda", key="123456789012", secret="other-secret")
    assert other.list_functions()["Functions"] == []

    with pytest.raises(ClientError) as e:
        s.client("lambda", key="AKIDUNKNOWN", secret=SECRET).list_functions()
    assert error_code(e.value) == "UnrecognizedClientException"
    assert http_status(e.value) == 403

    with pytest.raises(ClientError) as e:
        s.client("lambda", key=KEY, secret="wrong-secret").list_functions()
    assert error_code(e.value) == "InvalidSignatureException"
    assert http_status(e.value) == 403

    with pytest.raises(ClientError) as e:              # signed request, body changed: no
        s.client("lambda", key=KEY, secret="wrong-secret").invoke(FunctionName=name, Payload=b"{}")
    assert http_status(e.value) == 403

    status, _, body = s.http("GET", "/2015-03-31/functions/")
    assert status == 403, body

    # The CLI with good and bad credentials.
    env_good = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    got = s.aws_json("lambda", "get-function", "--function-name", name, env=env_good)
    assert got["Configuration"]["FunctionName"] == name
    bad = s.aws("lambda", "list-functions", check=False,
                env={"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": "nope"})
    assert bad.returncode != 0 and "InvalidSignatureException" in bad.stderr, bad.stderr

    # Presigned URL (query-string SigV4).
    url = good.generate_presigned_url("get_function", Params={"FunctionName": name}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    status, body = _fetch(url)
    assert status == 200, body
    assert json.loads(body)["Configuration"]["FunctionName"] == name
    flip = lambda sig: sig[:-1] + ("0" if sig[-1] != "0" else "1")  # noqa: E731
    status, body = _fetch(_tamper_query(url, "X-Amz-Signature", flip))
    assert status == 403, body
    other_fn = url.replace(f"/functions/{name}", f"/functions/{name}x")
    assert other_fn != url
    status, body = _fetch(other_fn)
    assert status == 403, body
    unknown_key = _tamper_query(url, "X-Amz-Credential", lambda c: c.replace(KEY, "AKIDUNKNOWN"))
    status, body = _fetch(unknown_key)
    assert status == 403, body

    # An expired presigned URL is refused.
    short = good.generate_presigned_url("get_function", Params={"FunctionName": name}, ExpiresIn=1)
    time.sleep(2.2)
    status, body = _fetch(short)
    assert status == 403, body
    assert good.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_dev_mode_accepts_any_credentials(server):
    name = unique_name("devauth")
    real_looking = server.client("lambda", key="AKIAIOSFODNN7EXAMPLE",
                                 secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    create_function(real_looking, name, python_zip())
    for key, secret in (("test", "test"), ("AKIDANYTHING", "whatever"), ("x", "y")):
        assert ok(invoke(server.client("lambda", key=key, secret=secret), name, {}))
    # Unsigned requests too.
    status, _, body = server.http("GET", f"/2015-03-31/functions/{name}")
    assert status == 200, body
    assert json.loads(body)["Configuration"]["FunctionName"] == name
    status, _, body = server.http("POST", f"/2015-03-31/functions/{name}/invocations", b'{"u": 1}')
    assert status == 200, body
    assert json.loads(body)["event"] == {"u": 1}


def test_strict_auth_json_protocol_and_clock_skew(nimbus, monkeypatch):
    import datetime

    import botocore.auth
    s = nimbus("--auth", "strict", "--access-key", f"{KEY}:{SECRET}")
    # The JSON-1.1 dispatcher (CloudWatch Logs) is behind the same check, with its error shape.
    assert "logGroups" in s.client("logs", key=KEY, secret=SECRET).describe_log_groups()
    with pytest.raises(ClientError) as e:
        s.client("logs", key="AKIDUNKNOWN", secret=SECRET).describe_log_groups()
    assert error_code(e.value) == "UnrecognizedClientException" and http_status(e.value) == 403
    with pytest.raises(ClientError) as e:
        s.client("logs", key=KEY, secret="bad").describe_log_groups()
    assert error_code(e.value) == "InvalidSignatureException" and http_status(e.value) == 403

    # Signatures dated more than 15 minutes away are refused; within the window they pass.
    good = s.client("lambda", key=KEY, secret=SECRET)
    real_now = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda: real_now() - datetime.timedelta(minutes=20))
    with pytest.raises(ClientError) as e:
        good.list_functions()
    assert error_code(e.value) == "InvalidSignatureException" and http_status(e.value) == 403
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda: real_now() + datetime.timedelta(minutes=20))
    with pytest.raises(ClientError) as e:
        good.list_functions()
    assert http_status(e.value) == 403
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda: real_now() - datetime.timedelta(minutes=10))
    assert "Functions" in good.list_functions()
